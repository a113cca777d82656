//! TLS for every listener and client (rustls with `ring`): one certificate,
//! key and CA bundle per process, loaded into a server config (with client
//! certificate verification) and a client config (presenting the same
//! certificate, for mutual TLS). [`TlsFiles::changed`] tells when the files
//! were replaced so a server can reload without a restart; during a CA
//! rotation the bundle holds the old and the new CA and both are trusted.
//!
//! A peer's identity is its certificate's subject common name, as issued by
//! the cluster CA (`coordinator`, `node:<id>`, `client:<name>`).
//!
//! [`dev`] makes a development CA and certificates for loopback.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::Error;

/// Whether a server asks clients for certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// Clients may present a certificate; one that is presented must chain
    /// to the CA. Others are authenticated at the HTTP layer (tokens).
    Optional,
    /// Every client must present a certificate that chains to the CA.
    Required,
}

/// The three files of a TLS identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain (leaf first).
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM CA bundle: every CA whose certificates are trusted.
    pub ca: PathBuf,
}

/// Modification stamp of the files, to notice a replacement.
pub type Stamp = Vec<Option<(SystemTime, u64)>>;

/// The current modification times and sizes of `paths`.
pub fn stamp(paths: &[&Path]) -> Stamp {
    paths
        .iter()
        .map(|p| {
            std::fs::metadata(p)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len())))
        })
        .collect()
}

impl TlsFiles {
    /// The files' current modification times and sizes.
    pub fn stamp(&self) -> Stamp {
        stamp(&[&self.cert, &self.key, &self.ca])
    }
}

/// Configs and facts loaded from a [`TlsFiles`].
#[derive(Clone)]
pub struct Loaded {
    /// For listeners.
    pub server: Arc<ServerConfig>,
    /// For outgoing connections: trusts the CA, presents the certificate.
    pub client: Arc<ClientConfig>,
    /// The certificate's subject common name.
    pub identity: String,
    /// When the certificate expires.
    pub cert_not_after: SystemTime,
    /// When the first CA of the bundle to expire does.
    pub ca_not_after: SystemTime,
    /// The stamp of the files that were read.
    pub stamp: Stamp,
    /// The CAs trusted (for [`Loaded::pinned_client`]).
    roots: Arc<RootCertStore>,
}

impl std::fmt::Debug for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loaded")
            .field("identity", &self.identity)
            .field("cert_not_after", &self.cert_not_after)
            .finish()
    }
}

fn file_err(what: &str, path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Config(format!("{what} {}: {e}", path.display()))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Parses a DER certificate: `(identity, not after)`. The identity is the
/// subject's one common name, found by its OID (2.5.4.3), never by reading
/// the subject as text: an organization named `x,CN=coordinator` is not a
/// common name. A subject with several common names is refused, so no
/// reader can pick a different one than another.
pub fn inspect(cert: &CertificateDer<'_>) -> Result<(Option<String>, SystemTime), Error> {
    use x509_cert::der::asn1::{Ia5StringRef, PrintableStringRef, Utf8StringRef};
    use x509_cert::der::Decode;
    let c = x509_cert::Certificate::from_der(cert.as_ref())
        .map_err(|e| Error::Config(format!("certificate does not parse: {e}")))?;
    let tbs = &c.tbs_certificate;
    let mut names = tbs
        .subject
        .0
        .iter()
        .flat_map(|rdn| rdn.0.iter())
        .filter(|atv| atv.oid == x509_cert::der::oid::db::rfc4519::CN);
    let cn = match (names.next(), names.next()) {
        (None, _) => None,
        (Some(_), Some(_)) => {
            return Err(Error::Config(
                "certificate subject has several common names".into(),
            ))
        }
        (Some(atv), None) => {
            let v = &atv.value;
            let text = Utf8StringRef::try_from(v)
                .map(|s| s.as_str().to_owned())
                .or_else(|_| PrintableStringRef::try_from(v).map(|s| s.as_str().to_owned()))
                .or_else(|_| Ia5StringRef::try_from(v).map(|s| s.as_str().to_owned()))
                .map_err(|_| {
                    Error::Config("certificate common name is not a text string".into())
                })?;
            Some(text)
        }
    };
    Ok((cn, tbs.validity.not_after.to_system_time()))
}

/// A certificate chain and its key, read from PEM files: `(chain, key,
/// identity, not after)`.
type Identity = (
    Vec<CertificateDer<'static>>,
    PrivateKeyDer<'static>,
    Option<String>,
    SystemTime,
);

fn read_identity(cert: &Path, key: &Path) -> Result<Identity, Error> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| file_err("certificate", cert, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_err("certificate", cert, e))?;
    let leaf = certs
        .first()
        .ok_or_else(|| file_err("certificate", cert, "holds no certificate"))?;
    let (identity, not_after) = inspect(leaf).map_err(|e| file_err("certificate", cert, e))?;
    let pkey = PrivateKeyDer::from_pem_file(key).map_err(|e| file_err("private key", key, e))?;
    Ok((certs, pkey, identity, not_after))
}

/// A server config from a certificate chain and key alone, asking clients
/// for no certificate (a public listener, such as Truxe's): the config and
/// when the certificate expires. Fails naming the file.
pub fn load_server(cert: &Path, key: &Path) -> Result<(Arc<ServerConfig>, SystemTime), Error> {
    let (certs, pkey, _, not_after) = read_identity(cert, key)?;
    let mut server = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Crypto(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, pkey)
        .map_err(|e| file_err("private key", key, e))?;
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((Arc::new(server), not_after))
}

/// Reads the files and builds both configs. Fails, naming the file, when a
/// file is missing, empty, malformed, or the key does not match.
pub fn load(files: &TlsFiles, client_auth: ClientAuth) -> Result<Loaded, Error> {
    let stamp = files.stamp();
    let (certs, key, identity, cert_not_after) = read_identity(&files.cert, &files.key)?;
    let cas: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.ca)
        .map_err(|e| file_err("CA bundle", &files.ca, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_err("CA bundle", &files.ca, e))?;
    let mut roots = RootCertStore::empty();
    let mut ca_not_after: Option<SystemTime> = None;
    for ca in &cas {
        roots
            .add(ca.clone())
            .map_err(|e| file_err("CA bundle", &files.ca, e))?;
        let (_, until) = inspect(ca).map_err(|e| file_err("CA bundle", &files.ca, e))?;
        ca_not_after = Some(ca_not_after.map_or(until, |t| t.min(until)));
    }
    let ca_not_after =
        ca_not_after.ok_or_else(|| file_err("CA bundle", &files.ca, "holds no certificate"))?;
    let roots = Arc::new(roots);
    let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider());
    let verifier = match client_auth {
        ClientAuth::Optional => verifier.allow_unauthenticated(),
        ClientAuth::Required => verifier,
    }
    .build()
    .map_err(|e| file_err("CA bundle", &files.ca, e))?;
    let mut server = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Crypto(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs.clone(), key.clone_key())
        .map_err(|e| file_err("private key", &files.key, e))?;
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    let client = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Crypto(e.to_string()))?
        .with_root_certificates(roots.clone())
        .with_client_auth_cert(certs, key)
        .map_err(|e| file_err("private key", &files.key, e))?;
    Ok(Loaded {
        roots,
        server: Arc::new(server),
        client: Arc::new(client),
        identity: identity.unwrap_or_default(),
        cert_not_after,
        ca_not_after,
        stamp,
    })
}

impl Loaded {
    /// Like [`Loaded::client`], but a server is accepted only when its
    /// certificate, besides chaining to the CA and naming the host, has the
    /// identity `expected`: a process holding another certificate of the
    /// same CA cannot stand in for it at its address.
    pub fn pinned_client(&self, expected: &str) -> Result<Arc<ClientConfig>, Error> {
        let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(
            self.roots.clone(),
            provider(),
        )
        .build()
        .map_err(|e| Error::Crypto(e.to_string()))?;
        let mut config = (*self.client).clone();
        config
            .dangerous()
            .set_certificate_verifier(Arc::new(PinnedIdentity {
                inner,
                expected: expected.to_owned(),
            }));
        Ok(Arc::new(config))
    }
}

/// Web PKI verification plus one required certificate identity.
#[derive(Debug)]
struct PinnedIdentity {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    expected: String,
}

#[derive(Debug)]
struct WrongIdentity(String);

impl std::fmt::Display for WrongIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for WrongIdentity {}

impl rustls::client::danger::ServerCertVerifier for PinnedIdentity {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &rustls::pki_types::ServerName<'_>,
        ocsp_response: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        let verified = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        let found = inspect(end_entity).ok().and_then(|(cn, _)| cn);
        if found.as_deref() == Some(self.expected.as_str()) {
            return Ok(verified);
        }
        Err(rustls::Error::InvalidCertificate(
            rustls::CertificateError::Other(rustls::OtherError(Arc::new(WrongIdentity(format!(
                "the server's certificate is `{}`, not the expected `{}`",
                found.unwrap_or_default(),
                self.expected
            ))))),
        ))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// A client config trusting only the CA bundle at `ca` (no client
/// certificate): for command-line clients that authenticate with tokens.
pub fn client_trusting(ca: &Path) -> Result<ClientConfig, Error> {
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).map_err(|e| file_err("CA bundle", ca, e))? {
        roots
            .add(c.map_err(|e| file_err("CA bundle", ca, e))?)
            .map_err(|e| file_err("CA bundle", ca, e))?;
    }
    Ok(ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Crypto(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Development certificates: a CA, and leaves for loopback signed by it.
pub mod dev {
    use std::time::{Duration, SystemTime};

    use rcgen::{
        BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose,
        IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };

    use crate::Error;

    fn err(e: impl std::fmt::Display) -> Error {
        Error::Crypto(e.to_string())
    }

    /// A certificate and its key, as PEM.
    #[derive(Clone)]
    pub struct Issued {
        /// Certificate.
        pub cert_pem: String,
        /// Private key (PKCS#8). Secret.
        pub key_pem: crate::Secret<String>,
    }

    /// A development CA that can issue certificates.
    pub struct DevCa {
        params: CertificateParams,
        key: KeyPair,
        /// The CA certificate.
        pub cert_pem: String,
    }

    fn ca_params(name: &str, not_after: SystemTime) -> Result<CertificateParams, Error> {
        let mut p = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        p.distinguished_name = dn;
        p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        p.not_before = (SystemTime::now() - Duration::from_secs(3600)).into();
        p.not_after = not_after.into();
        Ok(p)
    }

    impl DevCa {
        /// A new CA named `name`, valid until `not_after`.
        pub fn new(name: &str, not_after: SystemTime) -> Result<Self, Error> {
            let params = ca_params(name, not_after)?;
            let key = KeyPair::generate().map_err(err)?;
            let cert_pem = params.self_signed(&key).map_err(err)?.pem();
            Ok(DevCa {
                params,
                key,
                cert_pem,
            })
        }

        /// A CA made earlier by [`DevCa::new`] with the same `name`, from its
        /// key and certificate, to issue more certificates.
        pub fn load(name: &str, key_pem: &str, cert_pem: &str) -> Result<Self, Error> {
            let key = KeyPair::from_pem(key_pem).map_err(err)?;
            // Issuing needs the CA's name and key, not its validity.
            let params = ca_params(name, SystemTime::now())?;
            Ok(DevCa {
                params,
                key,
                cert_pem: cert_pem.to_owned(),
            })
        }

        /// The CA key, to keep beside the CA certificate (secret).
        pub fn key_pem(&self) -> crate::Secret<String> {
            crate::Secret::new(self.key.serialize_pem())
        }

        /// Issues a certificate whose common name is `identity`, valid for
        /// `sans` (DNS names or IP addresses) from `not_before` to
        /// `not_after`, for both server and client authentication.
        pub fn issue(
            &self,
            identity: &str,
            sans: &[&str],
            not_before: SystemTime,
            not_after: SystemTime,
        ) -> Result<Issued, Error> {
            let mut p =
                CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                    .map_err(err)?;
            let mut dn = DistinguishedName::new();
            dn.push(DnType::CommonName, identity);
            p.distinguished_name = dn;
            p.not_before = not_before.into();
            p.not_after = not_after.into();
            self.sign(p)
        }

        /// Issues a leaf certificate of `params` (subject, names, validity
        /// as given), for both server and client authentication, with a new
        /// key.
        pub fn sign(&self, mut p: CertificateParams) -> Result<Issued, Error> {
            p.is_ca = IsCa::ExplicitNoCa;
            p.key_usages = vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ];
            p.extended_key_usages = vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ];
            p.use_authority_key_identifier_extension = true;
            let key = KeyPair::generate().map_err(err)?;
            let issuer = Issuer::from_params(&self.params, &self.key);
            let cert = p.signed_by(&key, &issuer).map_err(err)?;
            Ok(Issued {
                cert_pem: cert.pem(),
                key_pem: crate::Secret::new(key.serialize_pem()),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap_or_default();
        p
    }

    #[test]
    fn dev_pki_loads_and_names_identities() -> Result<(), Error> {
        let dir = tempfile::tempdir().map_err(|e| Error::Io(e.to_string()))?;
        let year = SystemTime::now() + Duration::from_secs(365 * 86_400);
        let ca = dev::DevCa::new("Torua dev CA", year)?;
        let leaf = ca.issue(
            "node:n1",
            &["127.0.0.1", "localhost"],
            SystemTime::now(),
            year,
        )?;
        let files = TlsFiles {
            cert: write(dir.path(), "n1.pem", &leaf.cert_pem),
            key: write(dir.path(), "n1.key", leaf.key_pem.expose()),
            ca: write(dir.path(), "ca.pem", &ca.cert_pem),
        };
        let loaded = load(&files, ClientAuth::Required)?;
        assert_eq!(loaded.identity, "node:n1");
        let left = loaded
            .cert_not_after
            .duration_since(SystemTime::now())
            .map_err(|e| Error::Crypto(e.to_string()))?;
        assert!(left > Duration::from_secs(364 * 86_400));
        assert_eq!(loaded.stamp, files.stamp());

        // A reloaded CA issues certificates that chain to the same root.
        let again = dev::DevCa::load("Torua dev CA", ca.key_pem().expose(), &ca.cert_pem)?;
        let second = again.issue("client:ops", &["localhost"], SystemTime::now(), year)?;
        write(dir.path(), "n1.pem", &second.cert_pem);
        write(dir.path(), "n1.key", second.key_pem.expose());
        assert_eq!(load(&files, ClientAuth::Required)?.identity, "client:ops");
        assert_ne!(loaded.stamp, files.stamp());

        // A key that does not match the certificate is refused, naming the file.
        let other = ca.issue("x", &["localhost"], SystemTime::now(), year)?;
        write(dir.path(), "n1.key", other.key_pem.expose());
        let e = load(&files, ClientAuth::Optional)
            .err()
            .map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("n1.key")));
        write(dir.path(), "ca.pem", "");
        let e = load(&files, ClientAuth::Optional)
            .err()
            .map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("ca.pem")));
        assert!(client_trusting(&dir.path().join("missing.pem")).is_err());
        Ok(())
    }

    fn der(issued: &dev::Issued) -> Result<CertificateDer<'static>, Error> {
        CertificateDer::from_pem_slice(issued.cert_pem.as_bytes())
            .map_err(|e| Error::Crypto(e.to_string()))
    }

    #[test]
    fn identity_is_the_one_common_name_read_by_its_oid() -> Result<(), Error> {
        use rcgen::{CertificateParams, DistinguishedName, DnType};
        let year = SystemTime::now() + Duration::from_secs(365 * 86_400);
        let ca = dev::DevCa::new("Torua dev CA", year)?;
        let with = |entries: &[(DnType, &str)]| -> Result<Option<String>, Error> {
            let mut p = CertificateParams::new(vec!["localhost".to_string()])
                .map_err(|e| Error::Crypto(e.to_string()))?;
            let mut dn = DistinguishedName::new();
            for (t, v) in entries {
                dn.push(t.clone(), *v);
            }
            p.distinguished_name = dn;
            inspect(&der(&ca.sign(p)?)?).map(|(cn, _)| cn)
        };
        // Control: one common name, beside other attributes.
        assert_eq!(
            with(&[
                (DnType::OrganizationName, "Example"),
                (DnType::CommonName, "node:n1")
            ])?,
            Some("node:n1".into())
        );
        // A comma in another attribute is not a common name.
        assert_eq!(
            with(&[(DnType::OrganizationName, "x,CN=coordinator")])?,
            None
        );
        assert_eq!(
            with(&[
                (DnType::CommonName, "client:evil"),
                (DnType::OrganizationName, "x,CN=coordinator"),
            ])?,
            Some("client:evil".into())
        );
        // Two common names: refused, whichever comes first.
        let two = with(&[
            (DnType::CommonName, "client:evil"),
            (DnType::CustomDnType(vec![2, 5, 4, 3]), "coordinator"),
        ]);
        assert!(
            two.as_ref()
                .is_err_and(|e| e.to_string().contains("several common names")),
            "{two:?}"
        );
        Ok(())
    }
}
