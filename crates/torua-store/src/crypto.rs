//! Encryption at rest. A node's **master key** (32 bytes, from a file or
//! the environment, never stored with the data) wraps each shard's **data
//! keys**; the current data key seals every value written. Rotating a data
//! key is online: new writes use the new key while the shard's re-sealer
//! rewrites older values, then forgets the old key. Rotating the master key
//! re-wraps the data keys when the shard opens. Both use
//! `secure::envelope` (AES-256-GCM with key ids).
//!
//! Stored value (the `data` table), tagged by its first byte:
//! * `0x01 …` or `0x03 …` — a plaintext [`Record`] (layout v1 or v3;
//!   encryption off, or written before it was turned on; re-sealed in the
//!   background once it is);
//! * `0x02 | envelope` — a Record encoding sealed with a data key;
//!   AAD = `"torua-value" | shard id (u32 LE) | key`, so a sealed value
//!   cannot be moved to another key or shard.
//!
//! Raft log entries (`wal.rs`) have no data key of their own and are
//! sealed with the master key itself: `0x01 | plaintext` or
//! `0x02 | envelope`, with an AAD naming what they are and where they
//! belong (group, index), so none can be replayed in another place.
//! (Snapshots are not stored: they are read from the sealed shard file
//! when sent, and sealed again by the shard that installs them.)
//!
//! Wrapped data key (the `keys` table, data-key id → bytes): the 32-byte
//! key sealed with the master key; AAD = `"torua-dek" | shard id (u32 LE)`.

use secure::envelope::{self, Envelope};

use crate::{Record, StoreError};

/// Tag of a sealed value.
const SEALED: u8 = 0x02;
/// Tag of node-level data stored in plaintext (Raft log).
const PLAIN: u8 = 0x01;

/// A node's master keys: the current one, and previous ones whose data
/// keys are re-wrapped under the current one when a shard opens.
pub struct MasterKeys {
    envelope: Envelope,
}

impl std::fmt::Debug for MasterKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "MasterKeys(current {:08x})",
            self.envelope.current_key_id()
        )
    }
}

impl MasterKeys {
    /// Wraps with `current`; also unwraps data keys wrapped by `previous`.
    pub fn new(current: [u8; 32], previous: &[[u8; 32]]) -> Self {
        MasterKeys {
            envelope: Envelope::new(current, previous),
        }
    }

    /// Id of the current master key (shown in messages; not secret).
    pub fn current_id(&self) -> u32 {
        self.envelope.current_key_id()
    }

    /// Seals node-level data that has no data key of its own (Raft log
    /// entries): `SEALED | envelope`, bound to `aad`.
    pub(crate) fn seal_tagged(&self, plain: &[u8], aad: &[u8]) -> Result<Vec<u8>, StoreError> {
        let sealed = self
            .envelope
            .seal(plain, aad)
            .map_err(|e| StoreError::Crypto(format!("sealing: {e}")))?;
        let mut out = Vec::with_capacity(1 + sealed.len());
        out.push(SEALED);
        out.extend_from_slice(&sealed);
        Ok(out)
    }
}

/// Opens what [`MasterKeys::seal_tagged`] sealed, or passes a `PLAIN`-tagged
/// value through (written while encryption was off).
pub(crate) fn open_tagged(
    master: Option<&MasterKeys>,
    stored: &[u8],
    aad: &[u8],
) -> Result<Vec<u8>, StoreError> {
    match (stored.split_first(), master) {
        (Some((&SEALED, rest)), Some(m)) => m
            .envelope
            .open(rest, aad)
            .map_err(|e| StoreError::Crypto(format!("opening: {e}"))),
        (Some((&SEALED, _)), None) => Err(StoreError::Crypto(
            "data is encrypted but no master key is configured (TORUA_MASTER_KEY_FILE)".into(),
        )),
        (Some((&PLAIN, rest)), _) => Ok(rest.to_vec()),
        _ => Err(StoreError::Corrupt("unknown tag on sealed data")),
    }
}

/// Whether a value stored by [`seal_tagged`] should be sealed again: it
/// is plaintext while a master key is configured (encryption turned on),
/// or sealed under a previous master key (rotation). Fails when it is
/// sealed under a key that is not configured at all.
pub(crate) fn needs_reseal(
    master: Option<&MasterKeys>,
    stored: &[u8],
    what: &str,
) -> Result<bool, StoreError> {
    match (stored.split_first(), master) {
        (Some((&PLAIN, _)), m) => Ok(m.is_some()),
        (Some((&SEALED, rest)), Some(m)) => match envelope::sealed_key_id(rest) {
            Some(kid) if !m.envelope.knows(kid) => Err(StoreError::Crypto(format!(
                "{what} is encrypted under master key {kid:08x}, which is not configured (the configured master key is {:08x}); check TORUA_MASTER_KEY_FILE and TORUA_PREVIOUS_MASTER_KEY_FILE",
                m.current_id()
            ))),
            Some(kid) => Ok(kid != m.current_id()),
            None => Err(StoreError::Corrupt("malformed sealed data")),
        },
        (Some((&SEALED, _)), None) => Err(StoreError::Crypto(format!(
            "{what} is encrypted but no master key is configured (TORUA_MASTER_KEY_FILE)"
        ))),
        _ => Err(StoreError::Corrupt("unknown tag on sealed data")),
    }
}

/// Tags `plain` as plaintext, or seals it when a master key is configured.
pub(crate) fn seal_tagged(
    master: Option<&MasterKeys>,
    plain: &[u8],
    aad: &[u8],
) -> Result<Vec<u8>, StoreError> {
    match master {
        Some(m) => m.seal_tagged(plain, aad),
        None => {
            let mut out = Vec::with_capacity(1 + plain.len());
            out.push(PLAIN);
            out.extend_from_slice(plain);
            Ok(out)
        }
    }
}

fn dek_aad(shard: u32) -> Vec<u8> {
    [b"torua-dek".as_slice(), &shard.to_le_bytes()].concat()
}

fn value_aad(shard: u32, key: &str) -> Vec<u8> {
    [
        b"torua-value".as_slice(),
        &shard.to_le_bytes(),
        key.as_bytes(),
    ]
    .concat()
}

fn crypto(shard: u32, e: secure::Error) -> StoreError {
    StoreError::Crypto(format!("shard {shard}: {e}"))
}

/// Seals a new data key under the master key: `(data key id, wrapped)`.
pub(crate) fn new_data_key(master: &MasterKeys, shard: u32) -> Result<(u32, Vec<u8>), StoreError> {
    let dek = envelope::generate_key();
    let wrapped = master
        .envelope
        .seal(&dek, &dek_aad(shard))
        .map_err(|e| crypto(shard, e))?;
    Ok((envelope::key_id(&dek), wrapped))
}

/// Unwraps a data key. Fails naming the master key it needs when that key
/// is not configured (a wrong or missing master key).
pub(crate) fn unwrap_data_key(
    master: &MasterKeys,
    shard: u32,
    wrapped: &[u8],
) -> Result<[u8; 32], StoreError> {
    if let Some(kid) = envelope::sealed_key_id(wrapped).filter(|k| !master.envelope.knows(*k)) {
        return Err(StoreError::Crypto(format!(
            "shard {shard} is encrypted under master key {kid:08x}, which is not configured (the configured master key is {:08x}); check TORUA_MASTER_KEY_FILE",
            master.current_id()
        )));
    }
    let bytes = master
        .envelope
        .open(wrapped, &dek_aad(shard))
        .map_err(|e| crypto(shard, e))?;
    bytes
        .try_into()
        .map_err(|_| StoreError::Corrupt("data key has the wrong length"))
}

/// Whether `wrapped` is wrapped by another master key than the current one.
pub(crate) fn needs_rewrap(master: &MasterKeys, wrapped: &[u8]) -> bool {
    envelope::sealed_key_id(wrapped) != Some(master.current_id())
}

/// Re-wraps a data key under the current master key.
pub(crate) fn rewrap(
    master: &MasterKeys,
    shard: u32,
    dek: &[u8; 32],
) -> Result<Vec<u8>, StoreError> {
    master
        .envelope
        .seal(dek, &dek_aad(shard))
        .map_err(|e| crypto(shard, e))
}

/// How one shard encodes values: plaintext, or sealed with its data keys.
pub(crate) enum Codec {
    /// Encryption is off for this shard.
    Plain,
    /// Values are sealed with `envelope`'s current key; older keys still open.
    Sealed {
        /// Shard id, bound into every value's AAD.
        shard: u32,
        /// The shard's data keys.
        envelope: Envelope,
    },
}

impl Codec {
    /// Builds a sealing codec from unwrapped data keys.
    pub(crate) fn sealed(shard: u32, current: [u8; 32], older: &[[u8; 32]]) -> Codec {
        Codec::Sealed {
            shard,
            envelope: Envelope::new(current, older),
        }
    }

    /// The stored form of `record` under `key`.
    pub(crate) fn encode(&self, key: &str, record: &Record) -> Result<Vec<u8>, StoreError> {
        match self {
            Codec::Plain => Ok(record.encode()),
            Codec::Sealed { shard, envelope } => {
                let sealed = envelope
                    .seal(&record.encode(), &value_aad(*shard, key))
                    .map_err(|e| crypto(*shard, e))?;
                let mut out = Vec::with_capacity(1 + sealed.len());
                out.push(SEALED);
                out.extend_from_slice(&sealed);
                Ok(out)
            }
        }
    }

    /// Reads a stored value of `key`.
    pub(crate) fn decode(&self, key: &str, stored: &[u8]) -> Result<Record, StoreError> {
        match (stored.first(), self) {
            (Some(&SEALED), Codec::Sealed { shard, envelope }) => {
                let plain = envelope
                    .open(&stored[1..], &value_aad(*shard, key))
                    .map_err(|e| crypto(*shard, e))?;
                Record::decode(&plain)
            }
            (Some(&SEALED), Codec::Plain) => Err(StoreError::Crypto(
                "value is encrypted but no master key is configured".into(),
            )),
            _ => Record::decode(stored),
        }
    }

    /// Whether a stored value should be re-sealed: plaintext in an
    /// encrypted shard, or sealed with a data key that is not current.
    pub(crate) fn is_stale(&self, stored: &[u8]) -> bool {
        match self {
            Codec::Plain => false,
            Codec::Sealed { envelope, .. } => match stored.first() {
                Some(&SEALED) => {
                    envelope::sealed_key_id(&stored[1..]) != Some(envelope.current_key_id())
                }
                // Plaintext, in any record layout.
                Some(_) => true,
                None => false,
            },
        }
    }

    /// Id of the data key new values are sealed with.
    pub(crate) fn current_key_id(&self) -> Option<u32> {
        match self {
            Codec::Plain => None,
            Codec::Sealed { envelope, .. } => Some(envelope.current_key_id()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_bound_to_key_and_shard_and_keys_to_the_master() -> Result<(), StoreError> {
        let master = MasterKeys::new(envelope::generate_key(), &[]);
        let (_, wrapped) = new_data_key(&master, 1)?;
        let dek = unwrap_data_key(&master, 1, &wrapped)?;
        assert!(
            unwrap_data_key(&master, 2, &wrapped).is_err(),
            "bound to its shard"
        );
        let other = MasterKeys::new(envelope::generate_key(), &[]);
        let err = unwrap_data_key(&other, 1, &wrapped)
            .err()
            .map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("not configured")));

        let codec = Codec::sealed(1, dek, &[]);
        let rec = Record::new("text/secret", b"attack at dawn".to_vec());
        let stored = codec.encode("k", &rec)?;
        assert!(!stored.windows(14).any(|w| w == b"attack at dawn"));
        assert!(!stored.windows(11).any(|w| w == b"text/secret"));
        assert_eq!(codec.decode("k", &stored)?, rec);
        assert!(codec.decode("other", &stored).is_err(), "bound to its key");
        assert!(!codec.is_stale(&stored));
        assert!(codec.is_stale(&rec.encode()), "plaintext is re-sealed");
        assert_eq!(
            codec.decode("k", &rec.encode())?,
            rec,
            "plaintext still reads"
        );

        // After rotation, old values open and are stale.
        let rotated = Codec::sealed(1, envelope::generate_key(), &[dek]);
        assert_eq!(rotated.decode("k", &stored)?, rec);
        assert!(rotated.is_stale(&stored));
        assert!(Codec::Plain.decode("k", &stored).is_err());

        assert!(!needs_rewrap(&master, &wrapped));
        Ok(())
    }

    #[test]
    fn master_rotation_rewraps() -> Result<(), StoreError> {
        let (old, new) = (envelope::generate_key(), envelope::generate_key());
        let (_, wrapped) = new_data_key(&MasterKeys::new(old, &[]), 3)?;
        let both = MasterKeys::new(new, &[old]);
        assert!(needs_rewrap(&both, &wrapped));
        let dek = unwrap_data_key(&both, 3, &wrapped)?;
        let rewrapped = rewrap(&both, 3, &dek)?;
        let only_new = MasterKeys::new(new, &[]);
        assert_eq!(unwrap_data_key(&only_new, 3, &rewrapped)?, dek);
        assert!(unwrap_data_key(&MasterKeys::new(old, &[]), 3, &rewrapped).is_err());
        Ok(())
    }
}
