//! Hosts in network namespaces, for tests that partition a network.
//!
//! A [`NetLab`] is a Linux bridge in the test's own namespace with one veth
//! pair per host; each host is a namespace of its own with one address on
//! the bridge's /24. Processes started with [`NetLab::command`] run inside
//! their host; the test process (and anything it starts directly) reaches
//! every host through the bridge's address, [`NetLab::gateway`].
//!
//! A cut is a pair of blackhole routes, one in each host, so packets
//! between the two are dropped in both directions while every other path
//! keeps working: the kernel's own routing does the partitioning, not a
//! proxy that could hide bugs. Cuts heal by deleting the routes.
//! Everything is removed on drop (also when a test panics), and what a
//! killed test process left behind is swept by the next lab; needs root
//! (CAP_NET_ADMIN) and iproute2.
//!
//! Each lab's /24 comes from 198.18.0.0/15, the range set aside for
//! network benchmarks (RFC 2544), never routed: it is claimed with a lock
//! file, so labs of concurrent processes never share one, and skipped when
//! the host already routes any part of it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// The name of the bridge side in [`NetLab::cut`]: the test's own
/// namespace (the test client and whatever it runs outside the lab).
pub const GATEWAY: &str = "gateway";

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A bridge, its hosts, and the cuts in force.
pub struct NetLab {
    /// Unique per lab (process id and sequence): names of namespaces and
    /// links derive from it.
    tag: u32,
    /// The lab's /24: 198.`subnet.0`.`subnet.1`.0.
    subnet: (u8, u8),
    /// Held for the lab's life: the subnet's claim.
    _claim: std::fs::File,
    bridge: String,
    hosts: BTreeMap<String, u8>,
    cuts: BTreeSet<(String, String)>,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn must(args: &[&str]) {
    ip(args).unwrap_or_else(|e| panic!("{e}"));
}

impl NetLab {
    /// Whether this machine lets the test make namespaces and bridges
    /// (root with CAP_NET_ADMIN and iproute2); the reason when not.
    pub fn available() -> Result<(), String> {
        let probe = format!("tkprobe{}", std::process::id());
        ip(&["netns", "add", &probe])?;
        let _ = ip(&["netns", "del", &probe]);
        let link = format!("tkp{}", std::process::id() % 1_000_000);
        ip(&["link", "add", &link, "type", "bridge"])?;
        let _ = ip(&["link", "del", &link]);
        Ok(())
    }

    /// An empty lab: the bridge, up, with the gateway address.
    pub fn create() -> NetLab {
        if let Err(why) = Self::available() {
            panic!("this test needs root with CAP_NET_ADMIN and iproute2, as CI has (scripts/test installs iproute2): {why}");
        }
        sweep_stale();
        let tag = (std::process::id() % 100_000) * 100 + SEQ.fetch_add(1, Ordering::Relaxed) % 100;
        let (subnet, claim) = claim_subnet();
        let lab = NetLab {
            tag,
            subnet,
            _claim: claim,
            bridge: format!("tkb{tag}"),
            hosts: BTreeMap::new(),
            cuts: BTreeSet::new(),
        };
        must(&["link", "add", &lab.bridge, "type", "bridge"]);
        let gw = format!("{}/24", lab.gateway());
        must(&["addr", "add", &gw, "dev", &lab.bridge]);
        must(&["link", "set", &lab.bridge, "up"]);
        lab
    }

    /// Address `host` of the lab's subnet.
    fn net(&self, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(198, self.subnet.0, self.subnet.1, host)
    }

    /// The test's own address on the bridge.
    pub fn gateway(&self) -> Ipv4Addr {
        self.net(254)
    }

    fn namespace(&self, name: &str) -> String {
        format!("tk-{}-{}-{name}", std::process::id(), self.tag)
    }

    /// Adds host `name` (a namespace with loopback up and an address on
    /// the bridge), unless present; returns its address.
    pub fn add_host(&mut self, name: &str) -> Ipv4Addr {
        if let Some(n) = self.hosts.get(name) {
            return self.net(*n);
        }
        let n = u8::try_from(self.hosts.len() + 1)
            .ok()
            .filter(|n| *n < 254)
            .expect("at most 253 hosts in a lab");
        let ns = self.namespace(name);
        let outer = format!("tkv{}h{n}", self.tag);
        let inner = format!("tki{}h{n}", self.tag);
        must(&["netns", "add", &ns]);
        must(&[
            "link", "add", &outer, "type", "veth", "peer", "name", &inner, "netns", &ns,
        ]);
        must(&["link", "set", &outer, "master", &self.bridge]);
        must(&["link", "set", &outer, "up"]);
        let addr = format!("{}/24", self.net(n));
        must(&["-n", &ns, "addr", "add", &addr, "dev", &inner]);
        must(&["-n", &ns, "link", "set", &inner, "up"]);
        must(&["-n", &ns, "link", "set", "lo", "up"]);
        self.hosts.insert(name.to_owned(), n);
        self.net(n)
    }

    /// Host `name`'s address.
    pub fn addr(&self, name: &str) -> Ipv4Addr {
        self.net(self.hosts[name])
    }

    /// A command that runs `program` inside host `name` (`ip netns exec`
    /// execs it, so the child's pid is the program's own).
    pub fn command(&self, name: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
        assert!(self.hosts.contains_key(name), "no host {name} in the lab");
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.namespace(name)])
            .arg(program);
        cmd
    }

    /// Drops every packet between `a` and `b` (host names or
    /// [`GATEWAY`]), both ways.
    pub fn cut(&mut self, a: &str, b: &str) {
        if a == b || !self.cuts.insert(ordered(a, b)) {
            return;
        }
        self.route("add", a, b);
        self.route("add", b, a);
    }

    /// Cuts host `name` off from every other host, and from the gateway
    /// too with `gateway`.
    pub fn isolate(&mut self, name: &str, gateway: bool) {
        let others: Vec<String> = self.hosts.keys().filter(|h| *h != name).cloned().collect();
        for o in others {
            self.cut(name, &o);
        }
        if gateway {
            self.cut(name, GATEWAY);
        }
    }

    /// Removes every cut.
    pub fn heal(&mut self) {
        for (a, b) in std::mem::take(&mut self.cuts) {
            self.route("del", &a, &b);
            self.route("del", &b, &a);
        }
    }

    /// Adds or deletes, in `from`'s routing table, a blackhole route to `to`.
    fn route(&self, verb: &str, from: &str, to: &str) {
        let dest = if to == GATEWAY {
            self.gateway()
        } else {
            self.addr(to)
        };
        let dest = format!("{dest}/32");
        if from == GATEWAY {
            must(&["route", verb, "blackhole", &dest]);
        } else {
            let ns = self.namespace(from);
            must(&["-n", &ns, "route", verb, "blackhole", &dest]);
        }
    }
}

fn ordered(a: &str, b: &str) -> (String, String) {
    if a <= b {
        (a.to_owned(), b.to_owned())
    } else {
        (b.to_owned(), a.to_owned())
    }
}

impl Drop for NetLab {
    fn drop(&mut self) {
        self.heal();
        for (name, n) in &self.hosts {
            // Deleting one end deletes the pair at once; a namespace's own
            // teardown (which would) runs later, in the background.
            let _ = ip(&["link", "del", &format!("tkv{}h{n}", self.tag)]);
            let _ = ip(&["netns", "del", &self.namespace(name)]);
        }
        let _ = ip(&["link", "del", &self.bridge]);
    }
}

/// Deletes namespaces and bridges left by test processes that died
/// without dropping their labs (a killed test run).
/// Claims a /24 of 198.18.0.0/15 that no other lab holds and the host
/// routes no part of.
fn claim_subnet() -> ((u8, u8), std::fs::File) {
    let dir = std::env::temp_dir().join("testkit-netlab");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let routes = Command::new("ip")
        .args(["-4", "route", "show", "table", "all"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let routed: Vec<(u32, u32)> = routes
        .lines()
        .filter_map(|l| {
            l.split_whitespace()
                .find(|w| w.contains('.'))
                .and_then(prefix)
        })
        .collect();
    let start = std::process::id() as usize;
    for i in 0..512 {
        let n = (start + i * 7) % 512;
        let subnet = (18 + (n / 256) as u8, (n % 256) as u8);
        let net = u32::from(Ipv4Addr::new(198, subnet.0, subnet.1, 0));
        if routed.iter().any(|r| overlaps(*r, (net, 24))) {
            continue;
        }
        let path = dir.join(format!("198.{}.{}.0", subnet.0, subnet.1));
        let Ok(file) = std::fs::File::create(&path) else {
            continue;
        };
        if file.try_lock().is_ok() {
            return (subnet, file);
        }
    }
    panic!("no free /24 left in 198.18.0.0/15 for a network lab");
}

/// `a.b.c.d/len` (or a host address) as (network, length).
fn prefix(s: &str) -> Option<(u32, u32)> {
    let (addr, len) = s.split_once('/').unwrap_or((s, "32"));
    let len: u32 = len.parse().ok().filter(|l| *l <= 32)?;
    let addr: Ipv4Addr = addr.parse().ok()?;
    Some((u32::from(addr), len))
}

fn overlaps(a: (u32, u32), b: (u32, u32)) -> bool {
    let len = a.1.min(b.1);
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    a.0 & mask == b.0 & mask
}

fn sweep_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    let mut dead_tags = BTreeSet::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        let mut parts = name.splitn(4, '-');
        if parts.next() != Some("tk") {
            continue;
        }
        let (Some(pid), Some(tag)) = (parts.next(), parts.next()) else {
            continue;
        };
        if std::path::Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let _ = ip(&["netns", "del", name]);
        dead_tags.insert(tag.to_owned());
    }
    for tag in dead_tags {
        let _ = ip(&["link", "del", &format!("tkb{tag}")]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_overlap_by_their_shorter_prefix() {
        let lab = prefix("198.18.7.0/24").unwrap();
        assert!(overlaps(prefix("198.18.0.0/15").unwrap(), lab));
        assert!(overlaps(prefix("198.18.7.9").unwrap(), lab));
        assert!(overlaps(prefix("0.0.0.0/0").unwrap(), lab));
        assert!(!overlaps(prefix("198.18.8.0/24").unwrap(), lab));
        assert!(!overlaps(prefix("10.0.0.0/8").unwrap(), lab));
        assert_eq!(prefix("not-an-address"), None);
    }
}
