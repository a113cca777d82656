//! The Debian package, as an operator installs it: `scripts/dist` builds
//! it from the binaries under test, `dpkg` installs it, and the installed
//! binaries, started as the package's user with its default configuration
//! (only the ports changed), form a cluster that serves a client.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use testkit::dist::{as_user, build_and_install, env_file, verify_units};
use testkit::{eventually, free_port, ChildGuard};

#[tokio::test]
async fn the_debian_package_installs_and_its_cluster_comes_up() {
    let bins = Path::new(env!("CARGO_BIN_EXE_torua")).parent().unwrap();
    let _installed = build_and_install("torua", bins);

    // The service user, its master key (only it may read it), the hardened
    // units, and what the package ships beside the binaries.
    let key = std::fs::metadata("/etc/torua/master.key").unwrap();
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    assert_eq!(key.permissions().mode() & 0o777, 0o600);
    let torua_uid = String::from_utf8(
        Command::new("id")
            .args(["-u", "torua"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert_eq!(key.uid().to_string(), torua_uid.trim());
    let units = [
        "/lib/systemd/system/torua-coordinator.service",
        "/lib/systemd/system/torua-node.service",
    ];
    verify_units(&units);
    for unit in units {
        let text = std::fs::read_to_string(unit).unwrap();
        for hardening in [
            "User=torua",
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "StateDirectory=torua/",
            "CapabilityBoundingSet=\n",
        ] {
            assert!(text.contains(hardening), "{unit} lacks {hardening}");
        }
    }
    for file in [
        "/usr/share/man/man1/torua.1.gz",
        "/usr/share/man/man1/torua-coordinator.1.gz",
        "/usr/share/man/man1/torua-node.1.gz",
        "/usr/share/bash-completion/completions/torua",
        "/usr/share/zsh/vendor-completions/_torua",
        "/usr/share/fish/vendor_completions.d/torua.fish",
    ] {
        assert!(Path::new(file).exists(), "{file} not installed");
    }

    // Certificates as the configuration's comment says, then both servers
    // as systemd would start them: the package's user, its environment
    // files, its state directories.
    let run = |cmd: &mut Command| assert!(cmd.status().unwrap().success(), "{cmd:?}");
    run(Command::new("/usr/bin/torua").args([
        "certs",
        "init",
        "--dir",
        "/etc/torua/certs",
        "--node",
        "n1",
    ]));
    run(Command::new("chown").args(["-R", "torua:torua", "/etc/torua/certs"]));
    for dir in ["/var/lib/torua/coordinator", "/var/lib/torua/node"] {
        run(Command::new("install").args(["-d", "-m", "0700", "-o", "torua", "-g", "torua", dir]));
    }
    let (cport, nport) = (free_port(), free_port());
    let coordinator_url = format!("https://127.0.0.1:{cport}");
    let logs = testkit::tempdir();
    let mut coord = as_user(Path::new("/usr/bin/torua-coordinator"), "torua");
    coord
        .env_clear()
        .envs(env_file("/etc/torua/coordinator.env"))
        .env("COORDINATOR_ADDR", format!("127.0.0.1:{cport}"));
    let _coord = ChildGuard::spawn("coordinator", coord, logs.path());
    let mut node = as_user(Path::new("/usr/bin/torua-node"), "torua");
    node.env_clear()
        .envs(env_file("/etc/torua/node.env"))
        .env("NODE_LISTEN", format!("127.0.0.1:{nport}"))
        .env("NODE_ADDR", format!("https://127.0.0.1:{nport}"))
        .env("COORDINATOR_ADDR", &coordinator_url);
    let _node = ChildGuard::spawn("node", node, logs.path());

    let key_file = "/var/lib/torua/coordinator/bootstrap-admin.key";
    let admin = eventually(
        "the bootstrap admin key",
        Duration::from_secs(60),
        || async {
            std::fs::read_to_string(key_file)
                .ok()
                .filter(|k| !k.trim().is_empty())
        },
    )
    .await;
    let client = torua_client::Client::builder(&coordinator_url)
        .token(admin.trim())
        .ca_file("/etc/torua/certs/ca.pem")
        .unwrap()
        .build()
        .unwrap();
    eventually(
        "the cluster to be ready",
        Duration::from_secs(60),
        || async { client.ready().await.ok().filter(|r| r.ready) },
    )
    .await;
    client.put("installed", "yes").await.unwrap();
    assert_eq!(client.get("installed").await.unwrap().unwrap().value, "yes");
    // Encrypted at rest under the key the package made, stored where the
    // unit's state directory is.
    let status = client.key_status().await.unwrap();
    assert_eq!(status["nodes"][0]["encrypted"], true, "{status}");
    assert!(Path::new("/var/lib/torua/node/shards").exists());
    // The installed CLI reads the same cluster.
    let out = Command::new("/usr/bin/torua")
        .args([
            "--coordinator",
            &coordinator_url,
            "--ca",
            "/etc/torua/certs/ca.pem",
            "get",
            "installed",
        ])
        .env("TORUA_TOKEN", admin.trim())
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "yes",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
