//! Encryption of scratch files: data that must touch the disk for a while
//! (a Raft snapshot being sent or received) but never outlive the process.
//!
//! A [`Keystream`] is AES-256 in counter mode under a random key that
//! exists only in memory, so it can encrypt or decrypt at any byte offset
//! (files are written and read in chunks, and seeked). Counter mode has no
//! integrity of its own: it is meant for unnamed files that no other
//! process can open, where the threat is the disk being read later, not
//! written now. Once the key is dropped the bytes are noise.

use aes::cipher::{KeyIvInit, StreamCipher, StreamCipherSeek};
use rand::RngCore;
use zeroize::Zeroizing;

type Ctr = ctr::Ctr128BE<aes::Aes256>;

/// A random key and nonce for one scratch file.
pub struct Keystream {
    key: Zeroizing<[u8; 32]>,
    nonce: [u8; 16],
}

impl std::fmt::Debug for Keystream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keystream(…)")
    }
}

impl Keystream {
    /// A fresh key from the operating system's generator.
    pub fn random() -> Keystream {
        let mut key = Zeroizing::new([0u8; 32]);
        let mut nonce = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(key.as_mut());
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        Keystream { key, nonce }
    }

    /// Encrypts (or decrypts: it is the same) `buf`, which sits at byte
    /// `offset` of the file, in place.
    pub fn apply(&self, offset: u64, buf: &mut [u8]) {
        let mut c = Ctr::new(self.key.as_ref().into(), (&self.nonce).into());
        c.seek(offset);
        c.apply_keystream(buf);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn any_split_at_any_offset_gives_the_same_bytes() {
        let k = Keystream::random();
        let plain: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
        let mut whole = plain.clone();
        k.apply(0, &mut whole);
        assert_ne!(whole, plain, "encrypted");
        // Pieces at odd offsets, as chunked writes and seeks give them.
        let mut pieces = plain.clone();
        for (start, end) in [(0, 3), (3, 17), (17, 500), (500, 1000)] {
            k.apply(start as u64, &mut pieces[start..end]);
        }
        assert_eq!(pieces, whole);
        k.apply(0, &mut pieces);
        assert_eq!(pieces, plain, "the same keystream decrypts");
        // Another key gives other bytes.
        let mut other = plain.clone();
        Keystream::random().apply(0, &mut other);
        assert_ne!(other, whole);
    }
}
