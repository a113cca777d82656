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
//! Everything is removed on drop; needs root (CAP_NET_ADMIN) and iproute2.

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
    /// Unique per lab (process id and sequence): names of namespaces,
    /// links, and the subnet derive from it.
    tag: u32,
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
        sweep_stale();
        let tag = (std::process::id() % 100_000) * 100 + SEQ.fetch_add(1, Ordering::Relaxed) % 100;
        let lab = NetLab {
            tag,
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

    /// The subnet's first two octets after 10: from the tag, so labs of
    /// one machine do not overlap.
    fn net(&self, host: u8) -> Ipv4Addr {
        let t = self.tag;
        Ipv4Addr::new(10, 64 + ((t >> 8) % 128) as u8, (t & 0xff) as u8, host)
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
