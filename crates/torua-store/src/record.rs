use crate::{StoreError, MAX_CONTENT_TYPE_LEN};

/// A stored value together with the `Content-Type` it was written with.
#[derive(Clone, PartialEq, Eq)]
pub struct Record {
    /// MIME type given by the writer (`application/octet-stream` when none).
    pub content_type: String,
    /// The value's bytes; may be empty.
    pub value: Vec<u8>,
    /// The shard revision that wrote it (the key's `ETag`); set by the
    /// shard's writer at commit, 0 for records written before versions.
    pub version: u64,
}

impl std::fmt::Debug for Record {
    // Values are user data: keep them out of logs and panics.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Record")
            .field("content_type", &self.content_type)
            .field("len", &self.value.len())
            .field("version", &self.version)
            .finish()
    }
}

// Record v3 (little-endian):
//   1 byte layout (= 3) | 8 bytes version | 2 bytes content-type length N | N bytes content type (UTF-8) | value
// Record v1, still read (version 0):
//   1 byte layout (= 1) | 2 bytes content-type length N | N bytes content type | value
// Layout 2 is never used: a stored value starting with 2 is sealed (crypto.rs).
const LAYOUT_OFFSET: usize = 0;
const VERSION_OFFSET: usize = LAYOUT_OFFSET + 1;
const LAYOUT_1: u8 = 1;
const LAYOUT_3: u8 = 3;
const HEADER_3: usize = VERSION_OFFSET + size_of::<u64>();

impl Record {
    /// A record with the given content type and value (version 0 until written).
    pub fn new(content_type: impl Into<String>, value: Vec<u8>) -> Self {
        Record {
            content_type: content_type.into(),
            value,
            version: 0,
        }
    }

    /// Checks the limits a record must respect before it is stored.
    pub fn validate(&self) -> Result<(), StoreError> {
        if self.content_type.len() > MAX_CONTENT_TYPE_LEN {
            return Err(StoreError::Invalid(format!(
                "content type is {} bytes; at most {MAX_CONTENT_TYPE_LEN} are allowed",
                self.content_type.len()
            )));
        }
        Ok(())
    }

    /// Size of [`Record::encode`]'s output.
    pub fn encoded_len(&self) -> usize {
        HEADER_3 + size_of::<u16>() + self.content_type.len() + self.value.len()
    }

    /// Encodes the record in the v3 layout. Callers validate first.
    pub fn encode(&self) -> Vec<u8> {
        let ct = self.content_type.as_bytes();
        // validate() bounds the length to 255, so this never saturates.
        let ct_len = u16::try_from(ct.len()).unwrap_or(u16::MAX);
        let mut out = Vec::with_capacity(self.encoded_len());
        out.push(LAYOUT_3);
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&ct_len.to_le_bytes());
        out.extend_from_slice(ct);
        out.extend_from_slice(&self.value);
        out
    }

    /// Decodes bytes written by [`Record::encode`] (or the v1 layout).
    pub fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        let (version, ct_len_offset) = match bytes.get(LAYOUT_OFFSET) {
            Some(&LAYOUT_3) => {
                let v: [u8; 8] = bytes
                    .get(VERSION_OFFSET..HEADER_3)
                    .and_then(|b| b.try_into().ok())
                    .ok_or(StoreError::Corrupt("truncated record header"))?;
                (u64::from_le_bytes(v), HEADER_3)
            }
            Some(&LAYOUT_1) => (0, VERSION_OFFSET),
            Some(_) => return Err(StoreError::Corrupt("unknown record version")),
            None => return Err(StoreError::Corrupt("empty record")),
        };
        let ct_offset = ct_len_offset + size_of::<u16>();
        let len_bytes: [u8; 2] = bytes
            .get(ct_len_offset..ct_offset)
            .and_then(|b| b.try_into().ok())
            .ok_or(StoreError::Corrupt("truncated record header"))?;
        let ct_end = ct_offset + usize::from(u16::from_le_bytes(len_bytes));
        let ct = bytes
            .get(ct_offset..ct_end)
            .ok_or(StoreError::Corrupt("truncated content type"))?;
        let content_type = std::str::from_utf8(ct)
            .map_err(|_| StoreError::Corrupt("content type is not UTF-8"))?
            .to_owned();
        Ok(Record {
            content_type,
            value: bytes[ct_end..].to_vec(),
            version,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trips(ct in "[ -~]{0,255}", value in proptest::collection::vec(any::<u8>(), 0..512), version in any::<u64>()) {
            let r = Record { version, ..Record::new(ct, value) };
            prop_assert_eq!(Record::decode(&r.encode())?, r);
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Record::decode(&bytes);
        }
    }

    #[test]
    fn rejects_truncated_and_unknown() {
        assert!(Record::decode(&[]).is_err());
        assert!(Record::decode(&[2, 0, 0]).is_err());
        assert!(Record::decode(&[1, 5, 0, b'a']).is_err());
        assert!(Record::decode(&[3, 1, 0, 0]).is_err());
    }

    #[test]
    fn reads_the_v1_layout_as_version_0() {
        let v1 = [1, 4, 0, b't', b'e', b'x', b't', b'h', b'i'];
        let r = Record::decode(&v1);
        assert!(r.is_ok(), "{r:?}");
        let Ok(r) = r else { return };
        assert_eq!(
            (r.content_type.as_str(), r.value.as_slice(), r.version),
            ("text", &b"hi"[..], 0)
        );
    }
}
