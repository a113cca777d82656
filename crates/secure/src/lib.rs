//! Security kernel shared by Torua and Truxe.
//!
//! # Brief overview
//!
//! Each security primitive lives here once and both products call it:
//! [`ct_eq`] compares secrets in constant time, [`Secret`] wraps a secret so
//! it never reaches a log through `Debug` or `Display`. Later pieces (password
//! hashing, key rings, AEAD envelopes, rate limiting, audit) land here too.
//!
//! No HTTP, no database: this crate must not depend on axum, sqlx or redb.
//!
//! # Example
//! ```
//! let token = secure::Secret::new(String::from("s3cr3t"));
//! assert_eq!(format!("{token:?}"), "Secret(…)");
//! assert!(secure::ct_eq(token.expose().as_bytes(), b"s3cr3t"));
//! ```
#![deny(missing_docs)]

use subtle::ConstantTimeEq;

/// Compares two byte strings in time that depends only on their lengths.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// A value that must not be printed. `Debug` shows `Secret(…)`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    /// Wraps a secret.
    pub fn new(value: T) -> Self {
        Secret(value)
    }
    /// Gives access to the secret; call sites show where secrets are used.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> std::fmt::Debug for Secret<T> {
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
        assert_eq!(format!("{:?}", Secret::new("pw")), "Secret(…)");
    }
}
