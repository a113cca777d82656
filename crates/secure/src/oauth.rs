//! The client side of OAuth 2.0 / OpenID Connect sign-in: PKCE (RFC 7636,
//! `S256`) and the `state` parameter, HMAC-signed so a forged or altered
//! one is refused before any lookup, and bound to the provider it was
//! issued for. Single use is the caller's job (it stores the state's id).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};

use crate::Secret;

/// A PKCE verifier and its `S256` challenge.
#[derive(Debug)]
pub struct Pkce {
    /// Sent with the code exchange; keep it server-side until then.
    pub verifier: Secret<String>,
    /// Sent in the authorization request (`code_challenge_method=S256`).
    pub challenge: String,
}

/// A fresh PKCE pair (a 43-character verifier: 256 random bits).
pub fn pkce() -> Pkce {
    let verifier = crate::token::generate("").plaintext;
    let challenge = pkce_challenge(verifier.expose());
    Pkce {
        verifier,
        challenge,
    }
}

/// `BASE64URL(SHA256(verifier))`.
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

fn state_message(provider: &str, id: &str) -> Vec<u8> {
    format!("truxe-oauth-state:{provider}:{id}").into_bytes()
}

/// `<id>.<tag>`: the state id with an HMAC over the provider and id.
pub fn sign_state(key: &[u8], provider: &str, id: &str) -> String {
    format!(
        "{id}.{}",
        crate::mac::sign_hex(key, &state_message(provider, id))
    )
}

/// The id inside `state` if its tag is right for `provider` (constant time).
pub fn verify_state<'a>(key: &[u8], provider: &str, state: &'a str) -> Option<&'a str> {
    let (id, tag) = state.rsplit_once('.')?;
    (!id.is_empty()
        && id.len() <= 128
        && crate::mac::verify_hex(key, &state_message(provider, id), tag))
    .then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7636_appendix_b() {
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        let p = pkce();
        assert_eq!(p.verifier.expose().len(), 43);
        assert_eq!(p.challenge, pkce_challenge(p.verifier.expose()));
    }

    #[test]
    fn state_is_bound_to_key_and_provider() {
        let s = sign_state(b"k1", "google", "abc");
        assert_eq!(verify_state(b"k1", "google", &s), Some("abc"));
        assert_eq!(verify_state(b"k2", "google", &s), None);
        assert_eq!(verify_state(b"k1", "github", &s), None);
        assert_eq!(verify_state(b"k1", "google", "abc"), None);
        assert_eq!(verify_state(b"k1", "google", ""), None);
        let tampered = s.replacen("abc", "abd", 1);
        assert_eq!(verify_state(b"k1", "google", &tampered), None);
    }
}
