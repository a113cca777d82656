//! `torua dev`, the README's main command: starts, serves, stops cleanly on
//! a signal, and keeps its data across restarts.

use std::process::Command;
use std::time::Duration;

use reqwest::StatusCode;
use testkit::{free_port_range, wait_http_ok, wait_ok_with, ChildGuard};

const TORUA: &str = env!("CARGO_BIN_EXE_torua");

fn start(dir: &std::path::Path, port: u16, truxe_port: u16, name: &str) -> ChildGuard {
    let mut cmd = Command::new(TORUA);
    cmd.args([
        "dev",
        "--port",
        &port.to_string(),
        "--truxe-port",
        &truxe_port.to_string(),
        "--dir",
    ])
    .arg(dir.join("data"));
    ChildGuard::spawn(name, cmd, dir)
}

/// The development CA `torua dev` makes under `dir/data` (once it exists),
/// and a client trusting it.
fn dev_client(dir: &std::path::Path) -> (std::path::PathBuf, reqwest::Client) {
    let ca = dir.join("data/certs/ca.pem");
    testkit::eventually_sync("dev makes its CA", Duration::from_secs(60), || ca.exists());
    let http = reqwest::Client::builder()
        .use_preconfigured_tls(secure::tls::client_trusting(&ca).unwrap())
        .build()
        .unwrap();
    (ca, http)
}

/// `torua dev` starts Truxe when the workspace built it next to `torua`.
fn truxe_built() -> bool {
    std::path::Path::new(TORUA)
        .with_file_name("truxe")
        .is_file()
}

#[tokio::test]
async fn dev_cluster_serves_and_keeps_data_across_restarts() {
    let dir = testkit::tempdir();
    let port = free_port_range(4);
    let url = format!("https://127.0.0.1:{port}");

    let truxe_port = testkit::free_port();
    let mut dev = start(dir.path(), port, truxe_port, "dev-1");
    // TLS by default, with a development CA under the data directory.
    let (ca, http) = dev_client(dir.path());
    wait_ok_with(&http, &format!("{url}/ready"), Duration::from_secs(60)).await;
    let log = dir.path().join("dev-1.log");
    testkit::eventually_sync("dev prints a first curl", Duration::from_secs(30), || {
        std::fs::read_to_string(&log)
            .is_ok_and(|out| out.contains("-X PUT") && out.contains("/data/greeting"))
    });
    if truxe_built() {
        let truxe = format!("http://127.0.0.1:{truxe_port}");
        wait_http_ok(&format!("{truxe}/ready"), Duration::from_secs(60)).await;
        let jwks: serde_json::Value =
            testkit::get_json(&http, &format!("{truxe}/.well-known/jwks.json")).await;
        assert_eq!(jwks["keys"].as_array().map(Vec::len), Some(1), "{jwks}");
        assert!(
            dir.path().join("data/truxe/keys/keys.json").exists(),
            "Truxe keeps its data beside the cluster's"
        );
    }
    testkit::eventually_sync("dev prints credentials", Duration::from_secs(60), || {
        std::fs::read_to_string(&log).is_ok_and(|out| out.contains("export TORUA_TOKEN="))
    });
    let out = std::fs::read_to_string(&log).unwrap();
    // Captured without a terminal: plain text, no colour escapes.
    assert!(
        !out.contains('\u{1b}'),
        "escape codes in output that is not a terminal: {}",
        out.lines()
            .find(|l| l.contains('\u{1b}'))
            .unwrap_or_default()
    );
    // A quiet start: the banner comes first; the components log to files.
    let before = out
        .lines()
        .position(|l| l.contains("cluster is ready"))
        .expect("the banner");
    assert!(before < 10, "{before} lines before the banner:\n{out}");
    assert!(out.contains("4 shard groups, each with a leader"), "{out}");
    assert!(
        !out.contains("raft role") && !out.contains(" INFO "),
        "{out}"
    );
    let logs = dir.path().join("data/logs");
    assert!(out.contains(&format!("Logs: {}", logs.display())), "{out}");
    let read = |f: &str| std::fs::read_to_string(logs.join(f)).unwrap_or_default();
    testkit::eventually_sync(
        "each component logs to its file",
        Duration::from_secs(30),
        || {
            read("n1.log").contains("node started node=n1")
                && read("n2.log").contains("node started node=n2")
                && read("coordinator.log").contains("node joined node=n3")
        },
    );
    assert!(!read("n1.log").contains("node=n2"), "{}", read("n1.log"));
    assert!(!read("coordinator.log").contains("node started"));
    if truxe_built() {
        assert!(read("truxe.log").contains("truxe"), "{}", read("truxe.log"));
    }
    let admin_key = printed(&out, "admin API key").expect("admin key printed");
    // Errors say what to do: the CA to pass, the credential that was sent
    // (never its secret).
    let status = |env: &[(&str, &str)]| {
        let out = Command::new(TORUA)
            .env_remove("TORUA_TOKEN")
            .env_remove("TORUA_CA")
            .envs(env.iter().copied())
            .args(["--coordinator", &url, "status"])
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let ca_path = ca.to_str().unwrap();
    let err = status(&[("TORUA_TOKEN", &admin_key)]);
    assert!(
        err.contains("--ca or TORUA_CA") && err.contains("certs/ca.pem"),
        "{err}"
    );
    let err = status(&[("TORUA_CA", ca_path)]);
    assert!(
        err.contains("401") && err.contains("sent no credential") && err.contains("TORUA_TOKEN"),
        "{err}"
    );
    let err = status(&[
        ("TORUA_CA", ca_path),
        ("TORUA_TOKEN", "torua_0badc0ffee_SECRETPART"),
    ]);
    assert!(err.contains("sent the API key torua_0badc0ffee_…"), "{err}");
    assert!(
        !err.contains("SECRETPART"),
        "the secret is not repeated: {err}"
    );
    // For scripts: `-o json`.
    let env = [("TORUA_TOKEN", admin_key.as_str()), ("TORUA_CA", ca_path)];
    let torua = |args: &[&str]| {
        let args = [&["--coordinator", url.as_str()], args].concat();
        testkit::cli::stdout_of(TORUA, &env, &args)
    };
    let doc: serde_json::Value =
        serde_json::from_str(&torua(&["status", "-o", "json"])).expect("JSON");
    assert_eq!(doc["nodes"].as_array().map(Vec::len), Some(3), "{doc}");
    assert_eq!(doc["shards"]["num_shards"], 4, "{doc}");
    assert!(doc["ready"].is_boolean(), "{doc}");
    // Key rotation prints a table and a summary, not a JSON dump.
    let rotated = torua(&["keys", "rotate"]);
    assert!(rotated.starts_with("NODE"), "{rotated}");
    assert_eq!(
        rotated.lines().filter(|l| l.ends_with("rotated")).count(),
        3,
        "{rotated}"
    );
    assert!(
        rotated.contains("new data keys on 3 of 3 nodes"),
        "{rotated}"
    );
    // `--wait` follows the re-sealing to its end (issue 23), then says so.
    let waited = torua(&["keys", "rotate", "--wait"]);
    assert!(
        waited.contains("every shard re-sealed under its new data key"),
        "{waited}"
    );
    let after: serde_json::Value =
        serde_json::from_str(&torua(&["keys", "status", "-o", "json"])).unwrap();
    let resealing = after["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|n| n["shards"].as_array().into_iter().flatten())
        .filter(|s| s["resealing"] == true)
        .count();
    assert_eq!(resealing, 0, "{after}");
    let status = torua(&["keys", "status"]);
    // Every node lists each of its 4 shards.
    assert_eq!(status.lines().count(), 1 + 3 * 4, "{status}");
    let json: serde_json::Value =
        serde_json::from_str(&torua(&["keys", "status", "-o", "json"])).unwrap();
    assert_eq!(json["nodes"].as_array().map(Vec::len), Some(3), "{json}");
    // `status --watch` refreshes until stopped; off a terminal each
    // refresh starts with a timestamped line, never an escape code.
    let mut watch = Command::new(TORUA);
    watch
        .envs(env)
        .args(["--coordinator", &url, "status", "--watch", "100ms"]);
    let watching = ChildGuard::spawn("watch", watch, dir.path());
    let watched = dir.path().join("watch.log");
    testkit::eventually_sync("three refreshes", Duration::from_secs(30), || {
        let out = std::fs::read_to_string(&watched).unwrap_or_default();
        out.matches("--- ").count() >= 3 && out.matches("cluster: 3 nodes").count() >= 3
    });
    drop(watching);
    assert!(!std::fs::read_to_string(&watched)
        .unwrap()
        .contains('\u{1b}'));
    let keys: serde_json::Value =
        serde_json::from_str(&torua(&["-o", "json", "apikey", "list"])).unwrap();
    assert!(
        keys["keys"].as_array().is_some_and(|k| !k.is_empty()),
        "{keys}"
    );
    assert!(out.contains(&format!("--cacert {}", ca.display())), "{out}");
    // Plain HTTP gets nowhere: the listener speaks TLS.
    assert!(reqwest::get(format!("http://127.0.0.1:{port}/health"))
        .await
        .is_err());
    // Secure by default: no credentials, no data.
    let r = http
        .put(format!("{url}/data/hello%20world"))
        .body("kept")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = http
        .put(format!("{url}/data/hello%20world"))
        .bearer_auth(&admin_key)
        .body("kept")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    if truxe_built() {
        // The printed Truxe token works through the admin role mapping.
        let token = printed(&out, "Truxe admin token").expect("token printed");
        let r = http
            .get(format!("{url}/data/hello%20world"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.text().await.unwrap(), "kept");
    }
    // Replicas report their roles with their heartbeats, so the table
    // may first show them unknown.
    testkit::eventually(
        "`torua status` shows three healthy nodes and the groups' leaders",
        Duration::from_secs(30),
        || async {
            let status = Command::new(TORUA)
                .env("TORUA_TOKEN", &admin_key)
                .env("TORUA_CA", &ca)
                .args(["--coordinator", &url, "status"])
                .output()
                .unwrap();
            let table = String::from_utf8_lossy(&status.stdout);
            (status.status.success()
                && table.contains("n3")
                && table.contains("healthy")
                && table.contains("replication factor 3: 0 shards under-replicated")
                && table.contains("(leader)"))
            .then_some(())
        },
    )
    .await;
    assert_eq!(
        dev.interrupt(Duration::from_secs(30)),
        Some(0),
        "clean stop on Ctrl-C (SIGINT)"
    );

    let mut dev = start(dir.path(), port, truxe_port, "dev-2");
    wait_ok_with(&http, &format!("{url}/ready"), Duration::from_secs(60)).await;
    let log = dir.path().join("dev-2.log");
    testkit::eventually_sync("second start is ready", Duration::from_secs(30), || {
        std::fs::read_to_string(&log).is_ok_and(|out| out.contains("cluster is ready"))
    });
    let got = Command::new(TORUA)
        .env("TORUA_TOKEN", &admin_key)
        .env("TORUA_CA", &ca)
        .args(["--coordinator", &url, "get", "hello world"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&got.stdout), "kept");
    let put = Command::new(TORUA)
        .env("TORUA_TOKEN", &admin_key)
        .env("TORUA_CA", &ca)
        .args(["--coordinator", &url, "put", "cli/key", "v"])
        .output()
        .unwrap();
    assert!(put.status.success());
    let ls = Command::new(TORUA)
        .env("TORUA_TOKEN", &admin_key)
        .env("TORUA_CA", &ca)
        .args(["--coordinator", &url, "ls", "--prefix", "cli/"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&ls.stdout), "cli/key\n");
    let json = Command::new(TORUA)
        .env("TORUA_TOKEN", &admin_key)
        .env("TORUA_CA", &ca)
        .args([
            "--coordinator",
            &url,
            "ls",
            "--prefix",
            "cli/",
            "-o",
            "json",
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&json.stdout), "[\"cli/key\"]\n");
    let del = Command::new(TORUA)
        .env("TORUA_TOKEN", &admin_key)
        .env("TORUA_CA", &ca)
        .args(["--coordinator", &url, "del", "cli/key"])
        .output()
        .unwrap();
    assert!(del.status.success());
    let missing = Command::new(TORUA)
        .env("TORUA_TOKEN", &admin_key)
        .env("TORUA_CA", &ca)
        .args(["--coordinator", &url, "get", "cli/key"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
    if !truxe_built() {
        return;
    }
    // Killed outright (SIGKILL: no chance to stop its children), `torua
    // dev` still leaves no Truxe behind: it sees its parent gone and stops.
    let ready = format!("http://127.0.0.1:{truxe_port}/ready");
    let up = http.get(&ready).send().await;
    assert!(up.is_ok_and(|r| r.status().is_success()), "Truxe serves");
    dev.kill();
    testkit::eventually(
        "Truxe stops once torua dev is killed",
        Duration::from_secs(20),
        || async { http.get(&ready).send().await.is_err().then_some(()) },
    )
    .await;
}

/// The value printed after `label` on a line of the dev banner.
fn printed(out: &str, label: &str) -> Option<String> {
    out.lines()
        .find_map(|l| l.trim_start().strip_prefix(label))
        .map(|rest| rest.trim().to_owned())
        .filter(|v| !v.is_empty())
}

#[tokio::test]
async fn dev_cluster_with_three_coordinators_answers_at_each() {
    let dir = testkit::tempdir();
    let port = free_port_range(6);
    let mut cmd = Command::new(TORUA);
    cmd.args(["dev", "--coordinators", "3", "--no-truxe", "--port"])
        .arg(port.to_string())
        .arg("--dir")
        .arg(dir.path().join("data"));
    let mut dev = ChildGuard::spawn("dev", cmd, dir.path());
    let (ca, http) = dev_client(dir.path());
    let log = dir.path().join("dev.log");
    testkit::eventually_sync("dev prints credentials", Duration::from_secs(90), || {
        std::fs::read_to_string(&log).is_ok_and(|out| out.contains("export TORUA_TOKEN="))
    });
    let out = std::fs::read_to_string(&log).unwrap();
    let admin_key = printed(&out, "admin API key").expect("admin key printed");
    let urls: Vec<String> = (0..3)
        .map(|i| format!("https://127.0.0.1:{}", port + i))
        .collect();
    for (i, url) in urls.iter().enumerate() {
        assert!(out.contains(&format!("c{} ", i + 1)), "{out}");
        wait_ok_with(&http, &format!("{url}/ready"), Duration::from_secs(60)).await;
    }
    // Written at one coordinator, read at another.
    let r = http
        .put(format!("{}/data/shared", urls[0]))
        .bearer_auth(&admin_key)
        .body("one")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = http
        .get(format!("{}/data/shared", urls[2]))
        .bearer_auth(&admin_key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "one");
    // The CLI takes several coordinators and uses the first that answers.
    let dead = format!("https://127.0.0.1:{}", testkit::free_port());
    let status = Command::new(TORUA)
        .env("TORUA_TOKEN", &admin_key)
        .env("TORUA_CA", &ca)
        .args(["--coordinator", &format!("{dead},{}", urls[1]), "status"])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.status.success() && table.contains("coordinators: c1 c2 c3 (leader c"),
        "{table}{}",
        String::from_utf8_lossy(&status.stderr)
    );
    assert_eq!(
        dev.terminate(Duration::from_secs(30)),
        Some(0),
        "clean stop on SIGTERM"
    );
}

#[tokio::test]
async fn dev_cluster_without_tls_registers_each_node_by_its_own_key() {
    let dir = testkit::tempdir();
    let port = free_port_range(4);
    let mut cmd = Command::new(TORUA);
    cmd.args(["dev", "--tls", "off", "--no-truxe", "--port"])
        .arg(port.to_string())
        .arg("--dir")
        .arg(dir.path().join("data"));
    let mut dev = ChildGuard::spawn("dev-plain", cmd, dir.path());
    let url = format!("http://127.0.0.1:{port}");
    wait_http_ok(&format!("{url}/ready"), Duration::from_secs(90)).await;
    // One key per node, each bound to its node.
    let admin_key =
        std::fs::read_to_string(dir.path().join("data/coordinator/bootstrap-admin.key")).unwrap();
    let keys: serde_json::Value = reqwest::Client::new()
        .get(format!("{url}/admin/apikeys"))
        .bearer_auth(admin_key.trim())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut bound: Vec<String> = keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["roles"] == serde_json::json!(["node"]))
        .map(|k| k["node_id"].as_str().unwrap_or_default().to_owned())
        .collect();
    bound.sort();
    assert_eq!(bound, ["n1", "n2", "n3"]);
    assert_eq!(dev.interrupt(Duration::from_secs(30)), Some(0));
}
