//! Opaque secrets (refresh tokens, API keys, reset links): 256 random bits,
//! shown once, stored only as their SHA-256 digest, compared in constant time.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::Secret;

/// A freshly generated secret and the digest to store.
#[derive(Debug)]
pub struct NewToken {
    /// Give this to the client once; never store or log it.
    pub plaintext: Secret<String>,
    /// Hex SHA-256 of the plaintext; store this.
    pub digest: String,
}

/// Generates `<prefix><43 base64url characters>` (256 bits of entropy).
pub fn generate(prefix: &str) -> NewToken {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let plaintext = format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes));
    let digest = digest(&plaintext);
    NewToken {
        plaintext: Secret::new(plaintext),
        digest,
    }
}

/// Hex SHA-256 of a presented token, for lookup by digest.
pub fn digest(token: &str) -> String {
    // On every authenticated request: one allocation, not one per byte.
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Checks a presented token against a stored digest in constant time.
pub fn matches(token: &str, stored_digest: &str) -> bool {
    crate::ct_eq(digest(token).as_bytes(), stored_digest.as_bytes())
}

/// A random UUID (version 4) string, for record ids.
pub fn random_uuid() -> String {
    let mut b = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut b);
    uuid_string(b, 0x40)
}

/// A UUID version 7 string (RFC 9562): `at_ms` (unix milliseconds) in its
/// first 48 bits, then 74 random bits. For append-mostly records such as
/// audit events: ids made close in time sit side by side in an index, so
/// a commit of many touches one index page, not one page each.
pub fn time_uuid(at_ms: i64) -> String {
    let mut b = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut b[6..]);
    let ms = at_ms.clamp(0, (1 << 48) - 1) as u64;
    b[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
    uuid_string(b, 0x70)
}

/// `b` with its version nibble and RFC 4122 variant set, hyphenated.
fn uuid_string(mut b: [u8; 16], version: u8) -> String {
    b[6] = (b[6] & 0x0f) | version;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_unique_and_match_their_digest() {
        let a = generate("rt_");
        let b = generate("rt_");
        assert_ne!(a.plaintext, b.plaintext);
        assert!(a.plaintext.expose().starts_with("rt_"));
        assert_eq!(a.plaintext.expose().len(), 3 + 43);
        assert!(matches(a.plaintext.expose(), &a.digest));
        assert!(!matches(b.plaintext.expose(), &a.digest));
        assert_eq!(a.digest.len(), 64);
    }

    #[test]
    fn uuids_look_like_v4() {
        let u = random_uuid();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert!(matches!(&u[19..20], "8" | "9" | "a" | "b"));
        assert_ne!(u, random_uuid());
    }

    /// Version 7: the time first, so ids sort by it; random after it.
    #[test]
    fn time_uuids_sort_by_time() {
        let t = 1_765_000_000_123;
        let (a, b, later) = (time_uuid(t), time_uuid(t), time_uuid(t + 1));
        let hex_ms = format!("{t:012x}");
        assert_eq!(a[..8], hex_ms[..8]);
        assert_eq!(a[9..13], hex_ms[8..]);
        assert_eq!(&a[14..15], "7");
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"));
        assert_ne!(a, b);
        assert!(a < later && b < later);
        // Out of range times are clamped, not wrapped.
        assert_eq!(&time_uuid(-5)[..13], "00000000-0000");
    }
}
