//! Security kernel shared by Torua and Truxe.
//!
//! # Brief overview
//!
//! Each security primitive lives here once and both products call it:
//! * [`ct_eq`] compares secrets in constant time; [`Secret`] keeps a value
//!   out of logs (`Debug` prints `Secret(…)`) and zeroizes strings on drop.
//! * [`password`] — Argon2id on a bounded blocking pool, dummy verification
//!   for unknown users, rehash detection.
//! * [`token`] — opaque secrets (refresh tokens, API keys) stored as SHA-256.
//! * [`audit`] — the audit event type, the sink trait, and a MAC-chained
//!   JSON-lines log with its verifier.
//! * [`envelope`] — AES-256-GCM envelope encryption with key ids.
//! * [`scratch`] — a keystream that lives only in memory, to encrypt
//!   scratch files (Raft snapshots in transit) at any offset.
//! * [`totp`] — RFC 6238 codes with a replay guard.
//! * [`tls`] — rustls (ring) server and client configs with mutual TLS,
//!   reload on file change, certificate identities and expiry, a dev CA.
//! * [`mac`] — HMAC-SHA256 tags with constant-time verification.
//! * [`jwt`] — key ring with `kid`s (RS256, ES256, EdDSA), signing,
//!   verification with pinned algorithm, issuer and audience, JWKS.
//! * [`jwks`] — a verifier that follows an issuer's JWKS URL (cached,
//!   refetched on an unknown `kid`) for services that only verify.
//! * [`keystore`] — signing keys on disk with rotation and a grace period.
//! * [`legacy`] — opens the original Truxe's sealed values, for importing.
//! * [`ratelimit`] — GCRA rate limiting with a pluggable store and the
//!   `RateLimit-*` headers.
//! * [`oauth`] — PKCE and signed `state` for social sign-in.
//! * [`webhook`] — webhook signatures (`sha256=` HMAC of `timestamp.body`)
//!   and the receiver's verifier.
//!
//! No HTTP, no database: this crate must not depend on axum, hyper, sqlx,
//! redb or reqwest (`scripts/test` checks it).
//!
//! # Example
//! ```
//! let token = secure::Secret::new(String::from("s3cr3t"));
//! assert_eq!(format!("{token:?}"), "Secret(…)");
//! assert!(secure::ct_eq(token.expose().as_bytes(), b"s3cr3t"));
//! ```
#![deny(missing_docs)]

pub mod audit;
pub mod envelope;
pub mod jwks;
pub mod jwt;
pub mod keystore;
pub mod legacy;
pub mod mac;
pub mod oauth;
pub mod password;
pub mod ratelimit;
pub mod scratch;
pub mod tls;
pub mod token;
pub mod totp;
pub mod webhook;

use subtle::ConstantTimeEq;

/// Errors of the security kernel.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A setting or stored key is unusable; the message says which.
    #[error("{0}")]
    Config(String),
    /// A cryptographic operation failed.
    #[error("crypto: {0}")]
    Crypto(String),
    /// A JWK or JWKS document is invalid.
    #[error("jwk: {0}")]
    Jwk(String),
    /// File-system error on key material.
    #[error("{0}")]
    Io(String),
}

/// Compares two byte strings in time that depends only on their lengths.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// A value that must not be printed. `Debug` shows `Secret(…)`; the inner
/// value is zeroized on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret<T: zeroize::Zeroize>(T);

impl<T: zeroize::Zeroize> Secret<T> {
    /// Wraps a secret.
    pub fn new(value: T) -> Self {
        Secret(value)
    }
    /// Gives access to the secret; call sites show where secrets are used.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T: zeroize::Zeroize> Drop for Secret<T> {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl<T: zeroize::Zeroize> std::fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ct_eq_matches_eq() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
        assert!(ct_eq(b"", b""));
    }

    #[test]
    fn secret_is_redacted() {
        assert_eq!(
            format!("{:?}", Secret::new(String::from("pw"))),
            "Secret(…)"
        );
    }
}
