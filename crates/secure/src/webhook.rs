//! Webhook signatures, the sender's and the receiver's side.
//!
//! Each delivery carries `X-Truxe-Timestamp: <unix seconds>` and
//! `X-Truxe-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`.
//! While a secret is being rotated the header lists one signature per
//! secret, comma-separated; a receiver accepts the delivery if any of them
//! matches a secret it knows. The key is the secret string's bytes.
//!
//! ```
//! use secure::webhook::{signature_header, verify};
//! let body = br#"{"event":"user.login"}"#;
//! let header = signature_header(&[b"whsec_new", b"whsec_old"], 1_700_000_000, body);
//! assert!(verify(b"whsec_old", &header, "1700000000", body, 1_700_000_100, 300).is_ok());
//! assert!(verify(b"whsec_other", &header, "1700000000", body, 1_700_000_100, 300).is_err());
//! ```

/// Header naming the event type.
pub const EVENT_HEADER: &str = "x-truxe-event";
/// Header with the delivery id (stable across retries, for de-duplication).
pub const DELIVERY_HEADER: &str = "x-truxe-delivery";
/// Header with the signing time in unix seconds.
pub const TIMESTAMP_HEADER: &str = "x-truxe-timestamp";
/// Header with the signature(s).
pub const SIGNATURE_HEADER: &str = "x-truxe-signature";

/// Why a delivery is not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// Missing or malformed timestamp or signature header.
    #[error("malformed signature or timestamp header")]
    Malformed,
    /// The timestamp is outside the tolerance (a replay, or a bad clock).
    #[error("timestamp is outside the allowed window")]
    Stale,
    /// No signature matches the secret.
    #[error("signature does not match")]
    Mismatch,
}

fn signed_payload(timestamp: i64, body: &[u8]) -> Vec<u8> {
    let mut msg = timestamp.to_string().into_bytes();
    msg.push(b'.');
    msg.extend_from_slice(body);
    msg
}

/// `sha256=<hex>` for one secret.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    format!(
        "sha256={}",
        crate::mac::sign_hex(secret, &signed_payload(timestamp, body))
    )
}

/// The signature header value: one `sha256=` entry per secret, newest first.
pub fn signature_header(secrets: &[&[u8]], timestamp: i64, body: &[u8]) -> String {
    secrets
        .iter()
        .map(|s| sign(s, timestamp, body))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Checks a delivery: the timestamp is within `tolerance` seconds of `now`
/// and one of the header's signatures is the HMAC of `"<timestamp>.<body>"`
/// under `secret` (compared in constant time).
pub fn verify(
    secret: &[u8],
    signature_header: &str,
    timestamp: &str,
    body: &[u8],
    now: i64,
    tolerance: u64,
) -> Result<(), VerifyError> {
    let ts: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| VerifyError::Malformed)?;
    if now.abs_diff(ts) > tolerance {
        return Err(VerifyError::Stale);
    }
    let msg = signed_payload(ts, body);
    let mut any = false;
    for entry in signature_header.split(',') {
        let Some(hex) = entry.trim().strip_prefix("sha256=") else {
            continue;
        };
        any = true;
        if crate::mac::verify_hex(secret, &msg, hex) {
            return Ok(());
        }
    }
    Err(if any {
        VerifyError::Mismatch
    } else {
        VerifyError::Malformed
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_timestamp_dot_body() {
        // Independent value: printf '1700000000.{}' | openssl dgst -sha256 -hmac whsec_test
        assert_eq!(
            sign(b"whsec_test", 1_700_000_000, b"{}"),
            "sha256=35495024f4ef3f94e5a93e22221544c4b75e9a42300cd965ab81cb85cd994e91"
        );
    }

    #[test]
    fn rejects_stale_tampered_and_malformed() {
        let body = b"payload";
        let h = signature_header(&[b"k1"], 100, body);
        assert_eq!(verify(b"k1", &h, "100", body, 100, 300), Ok(()));
        assert_eq!(
            verify(b"k1", &h, "100", body, 1000, 300),
            Err(VerifyError::Stale)
        );
        assert_eq!(
            verify(b"k1", &h, "101", body, 101, 300),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify(b"k1", &h, "100", b"payloaD", 100, 300),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify(b"k1", "md5=abc", "100", body, 100, 300),
            Err(VerifyError::Malformed)
        );
        assert_eq!(
            verify(b"k1", &h, "soon", body, 100, 300),
            Err(VerifyError::Malformed)
        );
        assert_eq!(
            verify(b"k1", "", "100", body, 100, 300),
            Err(VerifyError::Malformed)
        );
    }
}
