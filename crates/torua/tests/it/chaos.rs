//! Fault injection, bounded: concurrent clients read, write and
//! compare-and-set a few keys through the coordinator while a nemesis kills
//! (SIGKILL) and restarts, or pauses (SIGSTOP/SIGCONT), storage nodes, or
//! (replicated clusters, nodes in network namespaces) cuts a node off from
//! its peers, or from everyone, and heals; with three coordinators, the
//! clients spread over them while the nemesis kills and restarts them. Every
//! operation is recorded (invoke, completion, outcome: ok, fail or
//! unknown); after healing, a final read of every key is added, and
//! `lincheck` must find the history linearizable with no acknowledged write
//! lost. A failing history is written to a JSON file named in the panic.
//!
//! `TORUA_CHAOS_SECONDS` (default 6) sets how long each run injects faults;
//! `scripts/chaos` runs long ones.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lincheck::{check, Entry, Op, Outcome};
use reqwest::StatusCode;

use crate::cluster::TestCluster;

const KEYS: usize = 3;
const CLIENTS: u32 = 6;
/// A client gives up on a request after this (its outcome is then unknown).
const TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, Debug)]
enum Nemesis {
    Kill,
    Pause,
    /// Cut a node off (from its peers, or from everyone) and heal.
    Partition,
    /// SIGKILL a coordinator and restart it.
    KillCoordinator,
}

/// The cluster under test.
#[derive(Clone, Copy, Debug)]
enum Setup {
    /// One copy of each shard (no replication factor).
    Single,
    /// Replication factor 3 on three nodes, each in a network namespace.
    Replicated,
    /// Replication factor 3, three coordinators sharing the metadata.
    Coordinators,
}

fn seconds() -> u64 {
    std::env::var("TORUA_CHAOS_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(6)
}

/// xorshift: a reproducible choice per client without a dependency.
struct Dice(u64);

impl Dice {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

struct Client {
    process: u32,
    http: reqwest::Client,
    /// Each key's name and URL, at every coordinator.
    urls: Arc<Vec<Vec<(String, String)>>>,
    /// The coordinator the next request goes to.
    via: std::sync::atomic::AtomicUsize,
    start: Instant,
}

impl Client {
    fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    /// GET: `Ok(Some((value, etag)))`, `Ok(None)` when absent, `Err(())` without an answer.
    async fn read(&self, key: usize, log: &mut Vec<Entry>) -> Result<Option<(String, String)>, ()> {
        let (name, url) = &self.urls[self.via.load(Relaxed)][key];
        let invoke = self.now();
        let res = self.http.get(url).timeout(TIMEOUT).send().await;
        let (outcome, seen) = match res {
            Ok(r) if r.status() == StatusCode::OK => {
                let tag = r.headers()["etag"].to_str().unwrap_or_default().to_owned();
                match r.text().await {
                    Ok(v) => (Outcome::Ok(Some(v.clone())), Ok(Some((v, tag)))),
                    Err(_) => (Outcome::Unknown, Err(())),
                }
            }
            Ok(r) if r.status() == StatusCode::NOT_FOUND => (Outcome::Ok(None), Ok(None)),
            _ => (Outcome::Unknown, Err(())),
        };
        log.push(Entry::new(
            self.process,
            name,
            Op::Read,
            invoke,
            self.now(),
            outcome,
        ));
        seen
    }

    /// A PUT's or DELETE's outcome: 204 happened (and a DELETE's 404: the
    /// key is absent either way); a refusal (4xx other than 412) and a 503
    /// that says nothing was done (the owner is known down or could not be
    /// reached) did not; `outcome_unknown` and transport errors may or may
    /// not have.
    async fn send(&self, key: usize, op: &Op, if_match: Option<&str>) -> Outcome {
        let url = &self.urls[self.via.load(Relaxed)][key].1;
        let mut req = match op {
            Op::Write(v) | Op::Cas { to: v, .. } => self.http.put(url).body(v.clone()),
            _ => self.http.delete(url),
        }
        .timeout(TIMEOUT);
        if let Some(tag) = if_match {
            req = req.header("if-match", tag);
        }
        match req.send().await {
            Ok(r) if r.status() == StatusCode::NO_CONTENT => match if_match {
                Some(_) => Outcome::Ok(Some("true".into())),
                None => Outcome::Ok(None),
            },
            Ok(r) if r.status() == StatusCode::NOT_FOUND && *op == Op::Delete => Outcome::Ok(None),
            Ok(r) if r.status() == StatusCode::PRECONDITION_FAILED => {
                Outcome::Ok(Some("false".into()))
            }
            Ok(r) if r.status().is_client_error() => Outcome::Fail,
            Ok(r) if r.status() == StatusCode::SERVICE_UNAVAILABLE => {
                let body: serde_json::Value = r.json().await.unwrap_or_default();
                // Refusals that mean nothing was written (for replicated
                // shards: no replica that leads with a quorum took it).
                match body["error"]["code"].as_str() {
                    Some(
                        "node_unavailable" | "shard_unassigned" | "no_quorum" | "no_leader"
                        | "not_leader",
                    ) => Outcome::Fail,
                    _ => Outcome::Unknown,
                }
            }
            _ => Outcome::Unknown,
        }
    }

    /// Runs a write, deletion or compare-and-set (`if_match`) and records
    /// it.
    async fn change(&self, key: usize, op: Op, if_match: Option<&str>, log: &mut Vec<Entry>) {
        let invoke = self.now();
        let outcome = self.send(key, &op, if_match).await;
        let name = &self.urls[0][key].0;
        log.push(Entry::new(
            self.process,
            name,
            op,
            invoke,
            self.now(),
            outcome,
        ));
    }

    async fn run(self, until: Instant) -> Vec<Entry> {
        let mut dice = Dice(0x9E37_79B9_7F4A_7C15 ^ ((u64::from(self.process) + 1) * 0x2545_F491));
        let mut log = Vec::new();
        let mut n = 0u64;
        while Instant::now() < until {
            self.via
                .store(dice.below(self.urls.len() as u64) as usize, Relaxed);
            let key = dice.below(KEYS as u64) as usize;
            n += 1;
            let value = format!("p{}-{n}", self.process);
            match dice.below(10) {
                0..=3 => {
                    let _ = self.read(key, &mut log).await;
                }
                4..=6 => self.change(key, Op::Write(value), None, &mut log).await,
                7 => self.change(key, Op::Delete, None, &mut log).await,
                _ => {
                    // Compare-and-set on the version just read.
                    let Ok(Some((from, tag))) = self.read(key, &mut log).await else {
                        continue;
                    };
                    let op = Op::Cas { from, to: value };
                    self.change(key, op, Some(&tag), &mut log).await;
                }
            }
        }
        log
    }
}

async fn run(setup: Setup, nemesis: Nemesis) {
    let mut c = match setup {
        Setup::Single => TestCluster::start_single(3, 6).await,
        // Replicas are not replaced during a run: faults are short.
        Setup::Replicated => crate::replication::start_in(3, 6, true, "60s").await,
        Setup::Coordinators => crate::coordinators::start(3, 6).await,
    };
    let coordinators = c.coordinator_names();
    let urls: Arc<Vec<Vec<(String, String)>>> = Arc::new(
        coordinators
            .iter()
            .map(|name| {
                let base = c.coordinator_url(name);
                (0..KEYS)
                    .map(|i| {
                        let key = format!("chaos/{i}");
                        let url = format!("{base}/data/{}", torua::http::extract::encode_key(&key));
                        (key, url)
                    })
                    .collect()
            })
            .collect(),
    );
    let start = Instant::now();
    let until = start + Duration::from_secs(seconds());
    let clients: Vec<_> = (0..CLIENTS)
        .map(|process| {
            let client = Client {
                process,
                http: c.http.clone(),
                urls: urls.clone(),
                via: Default::default(),
                start,
            };
            tokio::spawn(client.run(until))
        })
        .collect();

    // The nemesis: one fault at a time, each healed before the next; the
    // first one always, however slow the machine (the clients run for
    // seconds after it starts).
    let mut faults = 0;
    let mut dice = Dice(0xC0FF_EE00_D15E_A5E5);
    while faults == 0 || Instant::now() + Duration::from_secs(2) < until {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let id = format!("n{}", dice.below(3) + 1);
        match nemesis {
            Nemesis::Kill => {
                c.kill_node(&id);
                tokio::time::sleep(Duration::from_millis(700)).await;
                c.add_node(&id);
                c.wait_node_ready(&id).await;
            }
            Nemesis::Pause => {
                let pid = c.node_pid(&id).unwrap().to_string();
                signal("STOP", &pid);
                tokio::time::sleep(Duration::from_millis(900)).await;
                signal("CONT", &pid);
            }
            Nemesis::Partition => {
                // Longer than an election timeout, so leaders change sides.
                let everyone = dice.below(2) == 0;
                c.lab().isolate(&id, everyone);
                tokio::time::sleep(Duration::from_millis(1500)).await;
                c.lab().heal();
            }
            Nemesis::KillCoordinator => {
                let name = &coordinators[dice.below(coordinators.len() as u64) as usize];
                c.kill_coordinator_named(name);
                tokio::time::sleep(Duration::from_millis(700)).await;
                c.start_coordinator_named(name);
                let url = format!("{}/shards", c.coordinator_url(name));
                testkit::wait_ok_with(&c.http, &url, Duration::from_secs(60)).await;
            }
        }
        faults += 1;
    }
    let mut history = Vec::new();
    for t in clients {
        history.extend(t.await.unwrap());
    }
    // Healed: every key read once more, after everything else.
    c.wait_ready().await;
    let last = Client {
        process: CLIENTS,
        http: c.http.clone(),
        urls: urls.clone(),
        via: Default::default(),
        start,
    };
    for key in 0..KEYS {
        let mut attempts = 0;
        while last.read(key, &mut history).await.is_err() {
            attempts += 1;
            assert!(attempts < 50, "final read of key {key} never answered");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let acknowledged = history
        .iter()
        .filter(|e| matches!(e.outcome, Outcome::Ok(_)) && e.op != Op::Read)
        .count();
    let deleted = history
        .iter()
        .filter(|e| matches!(e.outcome, Outcome::Ok(_)) && e.op == Op::Delete)
        .count();
    assert!(
        acknowledged > 20 && deleted > 0,
        "too few changes succeeded to mean anything: {acknowledged}, {deleted} of them deletions"
    );
    let report = check(&history);
    if !report.linearizable() {
        let path = std::env::temp_dir().join(format!(
            "torua-chaos-{setup:?}-{nemesis:?}-{}.json",
            std::process::id()
        ));
        std::fs::write(&path, serde_json::to_vec_pretty(&history).unwrap()).unwrap();
        panic!(
            "{setup:?}/{nemesis:?}: history of {} operations is not linearizable: {:?}; saved to {}",
            history.len(),
            report.failures(),
            path.display()
        );
    }
    println!(
        "{setup:?}/{nemesis:?}: {} operations ({acknowledged} acknowledged changes, {deleted} of them deletions, {faults} faults) linearizable",
        history.len()
    );
}

fn signal(sig: &str, pid: &str) {
    let st = std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid)
        .status()
        .unwrap();
    assert!(st.success(), "kill -{sig} {pid}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linearizable_while_nodes_are_killed_and_restarted() {
    run(Setup::Single, Nemesis::Kill).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linearizable_while_nodes_are_paused() {
    run(Setup::Single, Nemesis::Pause).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicated_linearizable_while_nodes_are_killed_and_restarted() {
    run(Setup::Replicated, Nemesis::Kill).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicated_linearizable_while_nodes_are_paused() {
    run(Setup::Replicated, Nemesis::Pause).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicated_linearizable_while_nodes_are_partitioned() {
    run(Setup::Replicated, Nemesis::Partition).await;
}

#[tokio::test]
async fn linearizable_while_coordinators_are_killed_and_restarted() {
    run(Setup::Coordinators, Nemesis::KillCoordinator).await;
}
