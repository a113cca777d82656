//! Encryption at rest. A node's **master key** (32 bytes, from a file or
//! the environment, never stored with the data) wraps each shard's **data
//! keys**; the current data key seals every value written. Rotating a data
//! key is online: new writes use the new key while the shard's re-sealer
//! rewrites older values, then forgets the old key. Rotating the master key
//! re-wraps the data keys when the shard opens. Both use
//! `secure::envelope` (AES-256-GCM with key ids).
//!
//! Stored value (the `data` table), tagged by its first byte:
//! * `0x01 …` or `0x03 …` — a plaintext [`Record`] (layout v1 or v3),
//!   in a shard without encryption. In an encrypted shard a plaintext value
//!   is refused, never sealed: whoever can write the file must not be able
//!   to inject values. Plaintext written before encryption was turned on is
//!   sealed only when the node is started to migrate it
//!   ([`MasterKeys::migrating`], `TORUA_MIGRATE_PLAINTEXT=on`);
//! * `0x02 | envelope` — a Record encoding sealed with a data key;
//!   AAD = `"torua-value" | shard id (u32 LE) | key`, so a sealed value
//!   cannot be moved to another key or shard.
//!
//! Raft log entries (`wal.rs`) have no data key of their own. Each is
//! sealed under a key derived from the master key for its group and its
//! window of [`LOG_KEY_SPAN`] indexes, so no key seals more than about that
//! many entries (far inside AES-GCM's budget for random nonces) however
//! long a master key lives: `0x04 | master key id (u32 LE) | envelope`,
//! with an AAD naming what the entry is and where it belongs (group,
//! index), so none can be replayed in another place. `0x01 | plaintext`
//! is a log without encryption (refused under a master key, but when
//! migrating); `0x02 | envelope` (sealed under the master key itself) is
//! an older form, sealed again at start.
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
/// Tag of a log entry sealed under a derived key.
const DERIVED: u8 = 0x04;
/// Log entries of one group whose indexes fall in one window of this many
/// share a derived key.
pub const LOG_KEY_SPAN: u64 = 1 << 20;
/// Derived-key envelopes kept for reuse (the windows in use).
const DERIVED_CACHE: usize = 4096;

/// A node's master keys: the current one, and previous ones whose data
/// keys are rewrapped (and replaced) when a shard opens.
pub struct MasterKeys {
    envelope: Envelope,
    /// The raw keys by id, to derive log keys (current first).
    raw: Vec<(u32, zeroize::Zeroizing<[u8; 32]>)>,
    /// Plaintext met under this key is sealed rather than refused.
    migrating: bool,
    /// Derived log-key envelopes by (master key id, group, window).
    derived: std::sync::Mutex<std::collections::HashMap<(u32, u32, u64), std::sync::Arc<Envelope>>>,
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
        let raw = std::iter::once(&current)
            .chain(previous)
            .map(|k| (envelope::key_id(k), zeroize::Zeroizing::new(*k)))
            .collect();
        MasterKeys {
            envelope: Envelope::new(current, previous),
            raw,
            migrating: false,
            derived: Default::default(),
        }
    }

    /// With `on`, plaintext written before encryption was turned on (shard
    /// values, log entries) is sealed when met, instead of refused: the
    /// explicit, one-time migration of a node that ran without encryption.
    pub fn migrating(mut self, on: bool) -> Self {
        self.migrating = on;
        self
    }

    /// Whether plaintext is sealed rather than refused.
    pub fn is_migrating(&self) -> bool {
        self.migrating
    }

    /// The envelope of the log key of `group`'s window holding `index`,
    /// under master key `kid`, if that key is configured.
    fn log_envelope(&self, kid: u32, group: u32, index: u64) -> Option<std::sync::Arc<Envelope>> {
        let window = index / LOG_KEY_SPAN;
        let mut cache = self.derived.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = cache.get(&(kid, group, window)) {
            return Some(e.clone());
        }
        let (_, master) = self.raw.iter().find(|(id, _)| *id == kid)?;
        let context = [
            b"torua-log".as_slice(),
            &group.to_le_bytes(),
            &window.to_le_bytes(),
        ]
        .concat();
        let key = zeroize::Zeroizing::new(envelope::subkey(master, &context));
        let e = std::sync::Arc::new(Envelope::new(*key, &[]));
        if cache.len() >= DERIVED_CACHE {
            cache.clear();
        }
        cache.insert((kid, group, window), e.clone());
        Some(e)
    }

    /// Seals log entry `index` of `group`: `DERIVED | kid | envelope`.
    pub(crate) fn seal_entry(
        &self,
        group: u32,
        index: u64,
        plain: &[u8],
        aad: &[u8],
    ) -> Result<Vec<u8>, StoreError> {
        let kid = self.current_id();
        let e = self
            .log_envelope(kid, group, index)
            .ok_or_else(|| StoreError::Crypto("the current master key is not loaded".into()))?;
        let sealed = e
            .seal(plain, aad)
            .map_err(|e| StoreError::Crypto(format!("sealing: {e}")))?;
        let mut out = Vec::with_capacity(5 + sealed.len());
        out.push(DERIVED);
        out.extend_from_slice(&kid.to_le_bytes());
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Id of the current master key (shown in messages; not secret).
    pub fn current_id(&self) -> u32 {
        self.envelope.current_key_id()
    }
}

fn unconfigured(what: &str, kid: u32, m: &MasterKeys) -> StoreError {
    StoreError::Crypto(format!(
        "{what} is encrypted under master key {kid:08x}, which is not configured (the configured master key is {:08x}); check TORUA_MASTER_KEY_FILE and TORUA_PREVIOUS_MASTER_KEY_FILE",
        m.current_id()
    ))
}

fn no_master(what: &str) -> StoreError {
    StoreError::Crypto(format!(
        "{what} is encrypted but no master key is configured (TORUA_MASTER_KEY_FILE)"
    ))
}

fn plaintext_refused(what: &str) -> StoreError {
    StoreError::Crypto(format!(
        "{what} holds plaintext although encryption is on: refused (it was written without encryption, or by someone else than Torua); to seal data from before encryption was turned on, start the node once with TORUA_MIGRATE_PLAINTEXT=on"
    ))
}

fn derived_kid(rest: &[u8]) -> Option<(u32, &[u8])> {
    let (kid, sealed) = rest.split_first_chunk::<4>()?;
    Some((u32::from_le_bytes(*kid), sealed))
}

/// Opens log entry `index` of `group` as stored (see the module doc).
pub(crate) fn open_entry(
    master: Option<&MasterKeys>,
    group: u32,
    index: u64,
    stored: &[u8],
    aad: &[u8],
) -> Result<Vec<u8>, StoreError> {
    let what = "the raft log";
    match (stored.split_first(), master) {
        (Some((&DERIVED, rest)), Some(m)) => {
            let (kid, sealed) =
                derived_kid(rest).ok_or(StoreError::Corrupt("malformed sealed data"))?;
            m.log_envelope(kid, group, index)
                .ok_or_else(|| unconfigured(what, kid, m))?
                .open(sealed, aad)
                .map_err(|e| StoreError::Crypto(format!("opening: {e}")))
        }
        (Some((&SEALED, rest)), Some(m)) => m
            .envelope
            .open(rest, aad)
            .map_err(|e| StoreError::Crypto(format!("opening: {e}"))),
        (Some((&(SEALED | DERIVED), _)), None) => Err(no_master(what)),
        (Some((&PLAIN, rest)), None) => Ok(rest.to_vec()),
        (Some((&PLAIN, rest)), Some(m)) if m.migrating => Ok(rest.to_vec()),
        (Some((&PLAIN, _)), Some(_)) => Err(plaintext_refused(what)),
        _ => Err(StoreError::Corrupt("unknown tag on sealed data")),
    }
}

/// Whether a stored log entry should be sealed again: sealed under a
/// previous master key (rotation) or under the master key itself (the
/// older form), or plaintext while migrating. Fails when it needs a master
/// key that is not configured, or is plaintext under a master key and not
/// migrating.
pub(crate) fn entry_needs_reseal(
    master: Option<&MasterKeys>,
    stored: &[u8],
) -> Result<bool, StoreError> {
    let what = "the raft log";
    match (stored.split_first(), master) {
        (Some((&PLAIN, _)), None) => Ok(false),
        (Some((&PLAIN, _)), Some(m)) if m.migrating => Ok(true),
        (Some((&PLAIN, _)), Some(_)) => Err(plaintext_refused(what)),
        (Some((&DERIVED, rest)), Some(m)) => match derived_kid(rest) {
            Some((kid, _)) if m.raw.iter().all(|(id, _)| *id != kid) => {
                Err(unconfigured(what, kid, m))
            }
            Some((kid, _)) => Ok(kid != m.current_id()),
            None => Err(StoreError::Corrupt("malformed sealed data")),
        },
        (Some((&SEALED, rest)), Some(m)) => match envelope::sealed_key_id(rest) {
            Some(kid) if !m.envelope.knows(kid) => Err(unconfigured(what, kid, m)),
            Some(_) => Ok(true),
            None => Err(StoreError::Corrupt("malformed sealed data")),
        },
        (Some((&(SEALED | DERIVED), _)), None) => Err(no_master(what)),
        _ => Err(StoreError::Corrupt("unknown tag on sealed data")),
    }
}

/// Seals log entry `index` of `group`, or tags it as plaintext when no
/// master key is configured.
pub(crate) fn seal_entry(
    master: Option<&MasterKeys>,
    group: u32,
    index: u64,
    plain: &[u8],
    aad: &[u8],
) -> Result<Vec<u8>, StoreError> {
    match master {
        Some(m) => m.seal_entry(group, index, plain, aad),
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
        /// Plaintext values are read (and then sealed) rather than refused:
        /// the node migrates a shard from before encryption.
        migrating: bool,
    },
}

impl Codec {
    /// Builds a sealing codec from unwrapped data keys.
    pub(crate) fn sealed(
        shard: u32,
        current: [u8; 32],
        older: &[[u8; 32]],
        migrating: bool,
    ) -> Codec {
        Codec::Sealed {
            shard,
            envelope: Envelope::new(current, older),
            migrating,
        }
    }

    /// The stored form of `record` under `key`.
    pub(crate) fn encode(&self, key: &str, record: &Record) -> Result<Vec<u8>, StoreError> {
        match self {
            Codec::Plain => Ok(record.encode()),
            Codec::Sealed {
                shard, envelope, ..
            } => {
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
            (
                Some(&SEALED),
                Codec::Sealed {
                    shard, envelope, ..
                },
            ) => {
                let plain = envelope
                    .open(&stored[1..], &value_aad(*shard, key))
                    .map_err(|e| crypto(*shard, e))?;
                Record::decode(&plain)
            }
            (Some(&SEALED), Codec::Plain) => Err(StoreError::Crypto(
                "value is encrypted but no master key is configured".into(),
            )),
            (
                _,
                Codec::Sealed {
                    shard,
                    migrating: false,
                    ..
                },
            ) => Err(plaintext_refused(&format!("shard {shard}"))),
            _ => Record::decode(stored),
        }
    }

    /// Whether a stored value should be re-sealed: sealed with a data key
    /// that is not current, or plaintext while migrating (plaintext is
    /// otherwise refused, never sealed).
    pub(crate) fn is_stale(&self, stored: &[u8]) -> bool {
        match self {
            Codec::Plain => false,
            Codec::Sealed {
                envelope,
                migrating,
                ..
            } => match stored.first() {
                Some(&SEALED) => {
                    envelope::sealed_key_id(&stored[1..]) != Some(envelope.current_key_id())
                }
                // Plaintext, in any record layout.
                Some(_) => *migrating,
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

        let codec = Codec::sealed(1, dek, &[], false);
        let rec = Record::new("text/secret", b"attack at dawn".to_vec());
        let stored = codec.encode("k", &rec)?;
        assert!(!stored.windows(14).any(|w| w == b"attack at dawn"));
        assert!(!stored.windows(11).any(|w| w == b"text/secret"));
        assert_eq!(codec.decode("k", &stored)?, rec);
        assert!(codec.decode("other", &stored).is_err(), "bound to its key");
        assert!(!codec.is_stale(&stored));
        // Plaintext in an encrypted shard is refused, never sealed...
        assert!(!codec.is_stale(&rec.encode()));
        let refused = codec
            .decode("k", &rec.encode())
            .err()
            .map(|e| e.to_string());
        assert!(refused.is_some_and(|e| e.contains("TORUA_MIGRATE_PLAINTEXT")));
        // ...unless the node migrates: then it reads, and is sealed.
        let migrating = Codec::sealed(1, dek, &[], true);
        assert!(migrating.is_stale(&rec.encode()));
        assert_eq!(migrating.decode("k", &rec.encode())?, rec);

        // After rotation, old values open and are stale.
        let rotated = Codec::sealed(1, envelope::generate_key(), &[dek], false);
        assert_eq!(rotated.decode("k", &stored)?, rec);
        assert!(rotated.is_stale(&stored));
        assert!(Codec::Plain.decode("k", &stored).is_err());

        assert!(!needs_rewrap(&master, &wrapped));
        Ok(())
    }

    #[test]
    fn log_entries_are_sealed_under_keys_per_group_and_window() -> Result<(), StoreError> {
        let k = envelope::generate_key();
        let m = MasterKeys::new(k, &[]);
        let aad = b"entry";
        let a = m.seal_entry(1, 5, b"value", aad)?;
        assert_eq!(open_entry(Some(&m), 1, 5, &a, aad)?, b"value");
        // Another group, or another window of the same group, has another
        // key: the entry does not open there even with the same AAD.
        assert!(open_entry(Some(&m), 2, 5, &a, aad).is_err());
        assert!(open_entry(Some(&m), 1, 5 + LOG_KEY_SPAN, &a, aad).is_err());
        assert!(open_entry(Some(&m), 1, 6, &a, aad).is_ok(), "same window");
        assert_ne!(
            m.log_envelope(m.current_id(), 1, 0)
                .map(|e| e.current_key_id()),
            m.log_envelope(m.current_id(), 1, LOG_KEY_SPAN)
                .map(|e| e.current_key_id())
        );
        // Plaintext under a master key: refused, unless migrating.
        let plain = seal_entry(None, 1, 5, b"value", aad)?;
        assert!(open_entry(Some(&m), 1, 5, &plain, aad).is_err());
        assert!(entry_needs_reseal(Some(&m), &plain).is_err());
        let migrating = MasterKeys::new(k, &[]).migrating(true);
        assert_eq!(open_entry(Some(&migrating), 1, 5, &plain, aad)?, b"value");
        assert!(entry_needs_reseal(Some(&migrating), &plain)?);
        assert!(!entry_needs_reseal(Some(&m), &a)?);
        // After a master rotation the entry opens and is sealed again.
        let rotated = MasterKeys::new(envelope::generate_key(), &[k]);
        assert_eq!(open_entry(Some(&rotated), 1, 5, &a, aad)?, b"value");
        assert!(entry_needs_reseal(Some(&rotated), &a)?);
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
