use crate::{StoreError, MAX_CONTENT_TYPE_LEN};

/// A stored value together with the `Content-Type` it was written with.
#[derive(Clone, PartialEq, Eq)]
pub struct Record {
    /// MIME type given by the writer (`application/octet-stream` when none).
    pub content_type: String,
    /// The value's bytes; may be empty.
    pub value: Vec<u8>,
}

impl std::fmt::Debug for Record {
    // Values are user data: keep them out of logs and panics.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Record")
            .field("content_type", &self.content_type)
            .field("len", &self.value.len())
            .finish()
    }
}

// Record v1 (little-endian):
//   1 byte version (= 1) | 2 bytes content-type length N | N bytes content type (UTF-8) | value
const VERSION_OFFSET: usize = 0;
const CT_LEN_OFFSET: usize = VERSION_OFFSET + 1;
const CT_OFFSET: usize = CT_LEN_OFFSET + size_of::<u16>();
const VERSION_1: u8 = 1;

impl Record {
    /// A record with the given content type and value.
    pub fn new(content_type: impl Into<String>, value: Vec<u8>) -> Self {
        Record {
            content_type: content_type.into(),
            value,
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
        CT_OFFSET + self.content_type.len() + self.value.len()
    }

    /// Encodes the record in the v1 layout. Callers validate first.
    pub fn encode(&self) -> Vec<u8> {
        let ct = self.content_type.as_bytes();
        // validate() bounds the length to 255, so this never saturates.
        let ct_len = u16::try_from(ct.len()).unwrap_or(u16::MAX);
        let mut out = Vec::with_capacity(self.encoded_len());
        out.push(VERSION_1);
        out.extend_from_slice(&ct_len.to_le_bytes());
        out.extend_from_slice(ct);
        out.extend_from_slice(&self.value);
        out
    }

    /// Decodes bytes written by [`Record::encode`].
    pub fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        match bytes.get(VERSION_OFFSET) {
            Some(&VERSION_1) => {}
            Some(_) => return Err(StoreError::Corrupt("unknown record version")),
            None => return Err(StoreError::Corrupt("empty record")),
        }
        let len_bytes: [u8; 2] = bytes
            .get(CT_LEN_OFFSET..CT_OFFSET)
            .and_then(|b| b.try_into().ok())
            .ok_or(StoreError::Corrupt("truncated record header"))?;
        let ct_end = CT_OFFSET + usize::from(u16::from_le_bytes(len_bytes));
        let ct = bytes
            .get(CT_OFFSET..ct_end)
            .ok_or(StoreError::Corrupt("truncated content type"))?;
        let content_type = std::str::from_utf8(ct)
            .map_err(|_| StoreError::Corrupt("content type is not UTF-8"))?
            .to_owned();
        Ok(Record {
            content_type,
            value: bytes[ct_end..].to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trips(ct in "[ -~]{0,255}", value in proptest::collection::vec(any::<u8>(), 0..512)) {
            let r = Record::new(ct, value);
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
    }
}
