//! AEAD envelope encryption (AES-256-GCM) with key ids, so keys can rotate:
//! new data is sealed with the current key, and data sealed with an older
//! key still opens while that key is configured.

use std::collections::HashMap;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::Error;

// Sealed value (little-endian):
//   1 byte version (= 1) | 4 bytes key id | 12 bytes nonce | ciphertext with 16-byte tag
const VERSION_OFFSET: usize = 0;
const KID_OFFSET: usize = VERSION_OFFSET + 1;
const NONCE_OFFSET: usize = KID_OFFSET + size_of::<u32>();
const CT_OFFSET: usize = NONCE_OFFSET + 12;
const VERSION_1: u8 = 1;
const TAG_LEN: usize = 16;

/// Seals and opens values with a set of AES-256 keys.
pub struct Envelope {
    current: u32,
    keys: HashMap<u32, Aes256Gcm>,
}

impl std::fmt::Debug for Envelope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Envelope")
            .field("current_kid", &self.current)
            .finish()
    }
}

/// The key id of a 32-byte key: derived, so it needs no storage.
pub fn key_id(key: &[u8; 32]) -> u32 {
    let d = Sha256::digest([b"truxe-envelope-kid:".as_slice(), key].concat());
    u32::from_le_bytes([d[0], d[1], d[2], d[3]])
}

/// Derives a 32-byte key from a configured secret string (≥ 32 bytes).
pub fn derive_key(secret: &str) -> Result<[u8; 32], Error> {
    if secret.len() < 32 {
        return Err(Error::Config(
            "encryption keys must be at least 32 bytes".into(),
        ));
    }
    Ok(Sha256::digest(secret.as_bytes()).into())
}

/// A key derived from `key` for one purpose, named by `context`
/// (HMAC-SHA256 as a PRF: `key` is uniformly random already). Different
/// contexts give independent keys; nothing needs storing.
pub fn subkey(key: &[u8; 32], context: &[u8]) -> [u8; 32] {
    use hmac::Mac;
    // HMAC accepts keys of any length, so this cannot fail.
    let Ok(mut mac) = <hmac::Hmac<Sha256> as Mac>::new_from_slice(key) else {
        return [0; 32];
    };
    mac.update(b"torua-subkey:");
    mac.update(context);
    mac.finalize().into_bytes().into()
}

/// A new random 256-bit key.
pub fn generate_key() -> [u8; 32] {
    let mut k = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut k);
    k
}

/// Reads a key written as 64 hex digits (surrounding whitespace ignored).
/// Only full-entropy keys are accepted: no passphrases.
pub fn key_from_hex(text: &str) -> Result<[u8; 32], Error> {
    let t = text.trim();
    let bad = || Error::Config("a key must be exactly 64 hex digits (32 random bytes)".into());
    if t.len() != 64 || !t.is_ascii() {
        return Err(bad());
    }
    let mut k = [0u8; 32];
    for (i, byte) in k.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&t[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(k)
}

/// The key as 64 hex digits (for key files; never for logs).
pub fn key_to_hex(key: &[u8; 32]) -> String {
    hex::encode(key)
}

/// The key id a sealed value names, without opening it.
pub fn sealed_key_id(sealed: &[u8]) -> Option<u32> {
    if sealed.len() < CT_OFFSET + TAG_LEN || sealed[VERSION_OFFSET] != VERSION_1 {
        return None;
    }
    Some(u32::from_le_bytes([
        sealed[KID_OFFSET],
        sealed[KID_OFFSET + 1],
        sealed[KID_OFFSET + 2],
        sealed[KID_OFFSET + 3],
    ]))
}

impl Envelope {
    /// The key id new values are sealed with.
    pub fn current_key_id(&self) -> u32 {
        self.current
    }

    /// Whether a key with this id is configured.
    pub fn knows(&self, kid: u32) -> bool {
        self.keys.contains_key(&kid)
    }

    /// Seals with `current`; also opens data sealed with any of `older`.
    pub fn new(current: [u8; 32], older: &[[u8; 32]]) -> Self {
        let mut keys = HashMap::new();
        for k in older.iter().chain(std::iter::once(&current)) {
            keys.insert(key_id(k), Aes256Gcm::new(k.into()));
        }
        Envelope {
            current: key_id(&current),
            keys,
        }
    }

    /// Encrypts `plaintext`, binding it to `aad` (e.g. the owning record's
    /// id, so a sealed value cannot be moved to another record).
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, Error> {
        let cipher = self
            .keys
            .get(&self.current)
            .ok_or_else(|| Error::Crypto("no current key".into()))?;
        // A random nonce from the thread's CSPRNG (ChaCha12, seeded and
        // reseeded from the OS): as unpredictable as asking the OS, without
        // a `getrandom` system call per seal. Torua seals every log entry
        // on every replica, and that call was 1 % of a replicated write.
        let mut nonce = [0u8; 12];
        rand::thread_rng().fill_bytes(&mut nonce);
        let ct = cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .map_err(|_| Error::Crypto("encryption failed".into()))?;
        let mut out = Vec::with_capacity(CT_OFFSET + ct.len());
        out.push(VERSION_1);
        out.extend_from_slice(&self.current.to_le_bytes());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Decrypts a value made by [`Envelope::seal`] with the same `aad`.
    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, Error> {
        if sealed.len() < CT_OFFSET + TAG_LEN || sealed[VERSION_OFFSET] != VERSION_1 {
            return Err(Error::Crypto("sealed value is malformed".into()));
        }
        let kid = sealed_key_id(sealed)
            .ok_or_else(|| Error::Crypto("sealed value is malformed".into()))?;
        let cipher = self
            .keys
            .get(&kid)
            .ok_or_else(|| Error::Crypto(format!("sealed with unknown key {kid:08x}")))?;
        let nonce: [u8; 12] = sealed[NONCE_OFFSET..CT_OFFSET]
            .try_into()
            .map_err(|_| Error::Crypto("sealed value is malformed".into()))?;
        cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: &sealed[CT_OFFSET..],
                    aad,
                },
            )
            .map_err(|_| Error::Crypto("sealed value failed authentication".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_rotate_and_tamper() -> Result<(), Error> {
        let k1 = derive_key("first key that is at least 32 bytes long")?;
        let k2 = derive_key("second key that is at least 32 bytes long")?;
        let old = Envelope::new(k1, &[]);
        let sealed = old.seal(b"JBSWY3DPEHPK3PXP", b"user-1")?;
        assert!(!sealed.windows(16).any(|w| w == b"JBSWY3DPEHPK3PXP"));
        assert_eq!(old.open(&sealed, b"user-1")?, b"JBSWY3DPEHPK3PXP");
        assert!(old.open(&sealed, b"user-2").is_err(), "bound to its record");
        let rotated = Envelope::new(k2, &[k1]);
        assert_eq!(
            rotated.open(&sealed, b"user-1")?,
            b"JBSWY3DPEHPK3PXP",
            "old data still opens"
        );
        assert_ne!(
            rotated.seal(b"x", b"")?[1..5],
            sealed[1..5],
            "new data uses the new key"
        );
        assert!(Envelope::new(k2, &[]).open(&sealed, b"user-1").is_err());
        let mut bad = sealed.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(old.open(&bad, b"user-1").is_err());
        assert!(old.open(&sealed[..10], b"user-1").is_err());
        assert!(derive_key("short").is_err());
        assert_eq!(sealed_key_id(&sealed), Some(key_id(&k1)));
        assert_eq!(sealed_key_id(b"x"), None);
        Ok(())
    }

    /// AES-GCM under one key must never see a nonce twice (a repeat
    /// leaks the XOR of the plaintexts and the authentication key): the
    /// same value sealed many times, on several threads, gets a new nonce
    /// every time, and each sealed copy still opens.
    #[test]
    fn every_seal_takes_a_fresh_nonce() -> Result<(), Error> {
        let env = std::sync::Arc::new(Envelope::new(generate_key(), &[]));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let env = env.clone();
                std::thread::spawn(move || {
                    (0..2_000)
                        .map(|_| env.seal(b"same value", b"same record"))
                        .collect::<Result<Vec<_>, Error>>()
                })
            })
            .collect();
        let mut nonces = std::collections::HashSet::new();
        for t in threads {
            let sealed = t.join().map_err(|_| Error::Crypto("thread".into()))??;
            for s in &sealed {
                assert_eq!(env.open(s, b"same record")?, b"same value");
                assert!(
                    nonces.insert(s[NONCE_OFFSET..CT_OFFSET].to_vec()),
                    "nonce repeated"
                );
            }
        }
        assert_eq!(nonces.len(), 8_000);
        Ok(())
    }

    #[test]
    fn hex_keys_round_trip_and_weak_ones_are_refused() -> Result<(), Error> {
        let k = generate_key();
        assert_ne!(k, generate_key());
        assert_eq!(key_from_hex(&format!(" {}\n", key_to_hex(&k)))?, k);
        for bad in ["", "00", &"zz".repeat(32), &"0".repeat(63), &"é".repeat(32)] {
            assert!(key_from_hex(bad).is_err(), "{bad}");
        }
        Ok(())
    }
}
