//! HMAC-SHA256: tags that prove a value was made by whoever holds the key
//! (CSRF tokens, webhook signatures, state parameters). Verification is
//! constant-time.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Hex HMAC-SHA256 of `msg` under `key`.
pub fn sign_hex(key: &[u8], msg: &[u8]) -> String {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail here.
    let Ok(mut mac) = HmacSha256::new_from_slice(key) else {
        return String::new();
    };
    mac.update(msg);
    hex::encode(mac.finalize().into_bytes())
}

/// Whether `tag` (hex) is the HMAC of `msg` under `key`, in constant time.
pub fn verify_hex(key: &[u8], msg: &[u8], tag: &str) -> bool {
    let expected = sign_hex(key, msg);
    !expected.is_empty() && crate::ct_eq(expected.as_bytes(), tag.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc4231_case_2() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        assert_eq!(
            sign_hex(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert!(verify_hex(
            b"Jefe",
            b"what do ya want for nothing?",
            &sign_hex(b"Jefe", b"what do ya want for nothing?")
        ));
        assert!(!verify_hex(
            b"Jefe",
            b"what do ya want for nothing!",
            &sign_hex(b"Jefe", b"what do ya want for nothing?")
        ));
        assert!(!verify_hex(b"other", b"x", &sign_hex(b"Jefe", b"x")));
        assert!(!verify_hex(b"Jefe", b"x", ""));
    }
}
