//! TOTP (RFC 6238: HMAC-SHA-1, 6 digits, 30-second steps, ±1 step of clock
//! skew) with a replay guard: [`verify`] returns the matched time step, and
//! callers accept a code only if that step is later than the last one
//! accepted for the account, so each code works once.

use rand::RngCore;
use totp_rs::{Algorithm, Builder, Totp};

use crate::Error;

/// Bytes of a new shared secret (160 bits, as RFC 4226 recommends).
pub const SECRET_LEN: usize = 20;

/// A fresh random shared secret.
pub fn generate_secret() -> Vec<u8> {
    let mut s = vec![0u8; SECRET_LEN];
    rand::rngs::OsRng.fill_bytes(&mut s);
    s
}

fn totp(secret: &[u8], issuer: Option<&str>, account: &str) -> Result<Totp, Error> {
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(6)
        .with_skew(1)
        .with_step_duration(30)
        .with_secret(secret.to_vec())
        .with_account_name(account)
        .with_issuer(issuer)
        .build()
        .map_err(|e| Error::Crypto(format!("totp: {e}")))
}

/// The base32 form users type into an authenticator app.
pub fn base32(secret: &[u8]) -> String {
    totp_rs::Secret::new(secret.to_vec().into_boxed_slice()).to_base32()
}

/// Decodes a base32 secret as shown by [`base32`] (for importing and tests).
pub fn from_base32(s: &str) -> Result<Vec<u8>, Error> {
    totp_rs::Secret::try_from_base32(s)
        .map(|s| s.as_bytes().to_vec())
        .map_err(|e| Error::Crypto(format!("not a base32 secret: {e}")))
}

/// The `otpauth://totp/…` provisioning URI (what a QR code encodes).
pub fn provisioning_uri(secret: &[u8], issuer: &str, account: &str) -> Result<String, Error> {
    totp(secret, Some(issuer), account)?
        .to_url()
        .map_err(|e| Error::Crypto(format!("totp: {e}")))
}

/// The code for unix time `time` (used by tests and tools, never logged).
pub fn code_at(secret: &[u8], time: u64) -> Result<String, Error> {
    Ok(totp(secret, None, "x")?.generate(time).to_string())
}

/// Checks a 6-digit `code` at unix time `now`; returns the matched time
/// step when it is valid and later than `last_step`.
pub fn verify(secret: &[u8], code: &str, now: u64, last_step: Option<u64>) -> Option<u64> {
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let step = totp(secret, None, "x").ok()?.check(&code, now)?;
    last_step.is_none_or(|last| step > last).then_some(step)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6238_vector() -> Result<(), Error> {
        // RFC 6238 appendix B, SHA-1, T = 59 s: 94287082 (8 digits) → last six.
        let secret = b"12345678901234567890";
        assert_eq!(code_at(secret, 59)?, "287082");
        Ok(())
    }

    #[test]
    fn skew_and_replay_guard() -> Result<(), Error> {
        let s = generate_secret();
        let now = 1_700_000_000;
        let code = code_at(&s, now)?;
        let step =
            verify(&s, &code, now, None).ok_or(Error::Crypto("valid code refused".into()))?;
        assert_eq!(step, now / 30);
        assert_eq!(
            verify(&s, &code, now, Some(step)),
            None,
            "a code works once"
        );
        assert!(
            verify(&s, &code, now + 30, None).is_some(),
            "one step of skew"
        );
        assert_eq!(
            verify(&s, &code, now + 90, None),
            None,
            "three steps is too late"
        );
        let spaced = format!("{} {}", &code[..3], &code[3..]);
        assert!(verify(&s, &spaced, now, None).is_some());
        for bad in ["", "12345", "1234567", "abcdef", "12 34 5x"] {
            assert_eq!(verify(&s, bad, now, None), None, "{bad:?}");
        }
        assert!(provisioning_uri(&s, "Truxe", "a@example.com")?.starts_with("otpauth://totp/"));
        assert_eq!(base32(&s).len(), 32);
        assert_eq!(from_base32(&base32(&s))?, s);
        Ok(())
    }
}
