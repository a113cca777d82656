//! `torua certs init`: a development CA and certificates for loopback, so a
//! cluster (and `torua dev`) runs with TLS and mutual TLS from the start.
//! Production deployments bring certificates from their own CA.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use secure::tls::dev::DevCa;

use crate::config::TlsConfig;
use crate::tls::{COORDINATOR_IDENTITY, NODE_IDENTITY_PREFIX};

/// Common name of the development CA.
pub const CA_NAME: &str = "Torua development CA";
/// Names every development certificate is valid for (besides `--host`s).
const LOOPBACK: &[&str] = &["127.0.0.1", "::1", "localhost"];

/// Flags of `torua certs init`.
#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// Directory for the files (created 0700).
    #[arg(long, default_value = "torua-certs")]
    dir: PathBuf,
    /// Node ids to make certificates for (repeat).
    #[arg(long = "node", default_values_t = ["n1".to_string(), "n2".to_string(), "n3".to_string()])]
    nodes: Vec<String>,
    /// Client names to make certificates for (repeat); identity `client:<name>`.
    #[arg(long = "client", default_values_t = ["dev".to_string()])]
    clients: Vec<String>,
    /// Another address or DNS name the certificates are valid for, beyond
    /// loopback (repeat), for a cluster spread over hosts.
    #[arg(long = "host", value_name = "NAME_OR_IP")]
    hosts: Vec<String>,
    /// Validity of new certificates, in days.
    #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(u64).range(1..=3650))]
    days: u64,
}

/// A directory of development certificates.
#[derive(Debug, Clone)]
pub struct CertDir {
    dir: PathBuf,
}

impl CertDir {
    /// The CA bundle.
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// TLS settings presenting the certificate named `file` (`coordinator`,
    /// `node-n1`, `client-dev`).
    pub fn tls(&self, file: &str) -> TlsConfig {
        TlsConfig {
            enabled: true,
            cert: Some(self.dir.join(format!("{file}.pem"))),
            key: Some(self.dir.join(format!("{file}.key"))),
            ca: Some(self.ca()),
        }
    }

    /// Makes the CA (once) and every listed certificate that is missing,
    /// valid for loopback and `hosts`. `leaves` are `(file name, identity)`.
    pub fn ensure(
        dir: &Path,
        leaves: &[(String, String)],
        hosts: &[String],
        days: u64,
    ) -> anyhow::Result<CertDir> {
        let names: Vec<&str> = LOOPBACK
            .iter()
            .copied()
            .chain(hosts.iter().map(String::as_str))
            .collect();
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
        let set = CertDir {
            dir: dir.to_owned(),
        };
        let until = SystemTime::now() + Duration::from_secs(days * 86_400);
        let (ca_pem, ca_key) = (set.ca(), dir.join("ca.key"));
        let ca = if ca_pem.exists() && ca_key.exists() {
            DevCa::load(
                CA_NAME,
                &std::fs::read_to_string(&ca_key)?,
                &std::fs::read_to_string(&ca_pem)?,
            )?
        } else {
            // A CA outlives the certificates it signs.
            let ca = DevCa::new(CA_NAME, until + Duration::from_secs(365 * 86_400))?;
            write(&ca_key, ca.key_pem().expose(), true)?;
            write(&ca_pem, &ca.cert_pem, false)?;
            ca
        };
        for (file, identity) in leaves {
            let cert = dir.join(format!("{file}.pem"));
            if cert.exists() {
                continue;
            }
            let issued = ca.issue(identity, &names, SystemTime::now(), until)?;
            write(
                &dir.join(format!("{file}.key")),
                issued.key_pem.expose(),
                true,
            )?;
            write(&cert, &issued.cert_pem, false)?;
        }
        Ok(set)
    }
}

fn write(path: &Path, text: &str, private: bool) -> anyhow::Result<()> {
    crate::persist::replace_file(path, text.as_bytes(), private)
        .with_context(|| format!("writing {}", path.display()))
}

/// The `(file, identity)` pairs of a cluster's certificates.
pub fn cluster_leaves(nodes: &[String], clients: &[String]) -> Vec<(String, String)> {
    let mut out = vec![(
        COORDINATOR_IDENTITY.to_owned(),
        COORDINATOR_IDENTITY.to_owned(),
    )];
    out.extend(
        nodes
            .iter()
            .map(|n| (format!("node-{n}"), format!("{NODE_IDENTITY_PREFIX}{n}"))),
    );
    out.extend(
        clients
            .iter()
            .map(|c| (format!("client-{c}"), format!("client:{c}"))),
    );
    out
}

/// Runs `torua certs init`.
pub fn init(args: InitArgs) -> anyhow::Result<ExitCode> {
    for n in &args.nodes {
        crate::config::parse_node_id(n).map_err(anyhow::Error::msg)?;
    }
    for c in &args.clients {
        crate::config::parse_node_id(c).map_err(anyhow::Error::msg)?;
    }
    let set = CertDir::ensure(
        &args.dir,
        &cluster_leaves(&args.nodes, &args.clients),
        &args.hosts,
        args.days,
    )?;
    println!(
        "Development certificates in {} (CA: {}).",
        args.dir.display(),
        set.ca().display()
    );
    println!("  coordinator: TORUA_TLS_CERT={0}/coordinator.pem TORUA_TLS_KEY={0}/coordinator.key TORUA_TLS_CA={0}/ca.pem", args.dir.display());
    for n in &args.nodes {
        println!("  node {n}: TORUA_TLS_CERT={0}/node-{n}.pem TORUA_TLS_KEY={0}/node-{n}.key TORUA_TLS_CA={0}/ca.pem", args.dir.display());
    }
    println!(
        "  clients: curl --cacert {}  (client certificates: client-NAME.pem/.key)",
        set.ca().display()
    );
    Ok(ExitCode::SUCCESS)
}
