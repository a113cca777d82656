//! The original (Node) Truxe's sealed values, opened once to move them
//! under Truxe's own [`crate::envelope`]: `truxe import truxe-v1` needs
//! the TOTP secrets it kept in `mfa_settings.totp_secret`.
//!
//! Its format (`services/oauth/token-encryptor.js`): base64url of
//! `iv (12) | tag (16) | ciphertext`, AES-256-GCM, no associated data. Its
//! key is the configured string read as Node's lenient base64 if that
//! gives at least 16 bytes, else as hex, else as UTF-8; then, unless that
//! is 32 bytes, the SHA-256 of it. The key normalisation is reproduced
//! exactly, quirks included (a 64-character hex key is read as base64),
//! because a different key opens nothing.

use aes_gcm::aead::Aead;
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};

use crate::Error;

const IV_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// Opens values the original Truxe sealed with one key.
pub struct V1Cipher(Aes256Gcm);

impl std::fmt::Debug for V1Cipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("V1Cipher(…)")
    }
}

impl V1Cipher {
    /// The cipher of the original's configured key string
    /// (`MFA_ENCRYPTION_KEY`).
    pub fn new(configured: &str) -> Self {
        Self(Aes256Gcm::new(&normalise_key(configured).into()))
    }

    /// Opens one stored value (base64url, padding tolerated).
    pub fn open(&self, stored: &str) -> Result<Vec<u8>, Error> {
        let bytes = URL_SAFE_NO_PAD
            .decode(stored.trim().trim_end_matches('='))
            .map_err(|e| Error::Crypto(format!("not base64url: {e}")))?;
        if bytes.len() < IV_LEN + TAG_LEN {
            return Err(Error::Crypto("sealed value too short".into()));
        }
        let (iv, rest) = bytes.split_at(IV_LEN);
        let iv: [u8; IV_LEN] = iv.try_into().map_err(|_| Error::Crypto("iv".into()))?;
        let (tag, ct) = rest.split_at(TAG_LEN);
        // aes-gcm expects the tag after the ciphertext.
        let joined = [ct, tag].concat();
        self.0
            .decrypt(&Nonce::from(iv), joined.as_slice())
            .map_err(|_| Error::Crypto("does not open with this key".into()))
    }

    /// Seals as the original did (for tests that build its rows).
    pub fn seal(&self, plaintext: &[u8], iv: [u8; IV_LEN]) -> Result<String, Error> {
        let mut sealed = self
            .0
            .encrypt(&Nonce::from(iv), plaintext)
            .map_err(|_| Error::Crypto("sealing failed".into()))?;
        let tag = sealed.split_off(sealed.len() - TAG_LEN);
        Ok(URL_SAFE_NO_PAD.encode([&iv[..], &tag, &sealed].concat()))
    }
}

/// `normalizeKey(tryDecodeStringKey(raw))` of the original.
fn normalise_key(raw: &str) -> [u8; 32] {
    let raw = raw.trim();
    let lenient = node_base64(raw);
    let bytes = if lenient.len() >= 16 {
        lenient
    } else if raw.len().is_multiple_of(2)
        && !raw.is_empty()
        && raw.bytes().all(|b| b.is_ascii_hexdigit())
    {
        hex::decode(raw).unwrap_or_default()
    } else {
        raw.as_bytes().to_vec()
    };
    match <[u8; 32]>::try_from(bytes.as_slice()) {
        Ok(k) => k,
        Err(_) => Sha256::digest(&bytes).into(),
    }
}

/// `Buffer.from(s, 'base64')`: both alphabets, other characters skipped,
/// decoding stops at the first `=`, a trailing partial byte dropped.
fn node_base64(s: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            b'=' => break,
            _ => continue,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Vectors from Node's own `crypto` and `Buffer` running the
    /// original's `OAuthTokenEncryptor` (iv 000102…0b, plaintext the
    /// base32 secret below): each key exercises one branch of its key
    /// normalisation.
    const VECTORS: [(&str, &str, &str); 5] = [
        // 64 hex characters: read as base64 (48 bytes), then hashed.
        (
            "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "cb96fe24d360dbb552a953dc9d011868f0f4a2aff5c7a80e9bca64f3a171a26d",
            "AAECAwQFBgcICQoL0n29eZp0wkT2t9vkfteIgUEgtT3UIbeefNFixnwS57QDGCer1ldq9E2vI1DclYNF",
        ),
        // Spaces and `!` skipped by the lenient base64: 18 bytes, hashed.
        (
            "correct horse battery staple!",
            "3800983f2c990fc683dcc7e2659c0645b6d89968c9088a33d49e5f9c4e5770d5",
            "AAECAwQFBgcICQoL_cbauZzBHHDeN1ehg-M3Q_p4hEpTgNCUr4_t7ASryA9yEH183dIFVe6kPFIg3qBb",
        ),
        // Too short for base64 or hex: UTF-8, hashed.
        (
            "short",
            "f9b0078b5df596d2ea19010c001bbd009e651de2c57e8fb7e355f31eb9d3f739",
            "AAECAwQFBgcICQoLZUo3QSLTX2Zc92Bo6IOsoOovGkw8Yj0DCsRQtoxFwhrxYqsAH12rU2p_rnyO2nTk",
        ),
        // Base64 of exactly 32 bytes: used as it is.
        (
            "q83vEjRWeJq83vEjRWeJq83vEjRWeJq83vEjRWeJq80=",
            "abcdef123456789abcdef123456789abcdef123456789abcdef123456789abcd",
            "AAECAwQFBgcICQoLXMWhaVPiDQsa96NpNt3IjMbPqK5nHPS5hYasI23lYjBimH-JV26W39FzD1m0lcpH",
        ),
        // Decoding stops at `=`: 6 bytes, not hex, so UTF-8, hashed.
        (
            "a-b_c.d e!f==zz",
            "f00e55dd928240960fc3b2db7ffb69e3a6206334002dbfff92a40fff9243ef60",
            "AAECAwQFBgcICQoLh7AXrv5nsyq7_oO0Z8gMFzWpeVrogaPJYTmOGbQ7LmIyKoqY0JpPlqASgrVan-cK",
        ),
    ];
    const SECRET: &[u8] = b"JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";
    const IV: [u8; 12] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];

    #[test]
    fn keys_normalise_as_node_does() {
        for (raw, key, _) in VECTORS {
            assert_eq!(hex::encode(normalise_key(raw)), key, "key {raw:?}");
        }
    }

    #[test]
    fn opens_what_node_sealed_and_seals_the_same_bytes() {
        for (raw, _, sealed) in VECTORS {
            let c = V1Cipher::new(raw);
            assert_eq!(c.open(sealed).unwrap(), SECRET, "key {raw:?}");
            assert_eq!(c.seal(SECRET, IV).unwrap(), sealed);
        }
    }

    #[test]
    fn refuses_a_wrong_key_and_damage() {
        let (_, _, sealed) = VECTORS[0];
        assert!(V1Cipher::new("another key entirely, not the one")
            .open(sealed)
            .is_err());
        let c = V1Cipher::new(VECTORS[0].0);
        let mut damaged = sealed.to_owned();
        damaged.replace_range(30..31, if &sealed[30..31] == "A" { "B" } else { "A" });
        assert!(c.open(&damaged).is_err());
        assert!(c.open("").is_err());
        assert!(c.open("!!!").is_err());
        assert!(c.open("AAECAwQF").is_err());
    }
}
