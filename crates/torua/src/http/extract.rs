//! Extractors that parse path parameters into checked values, answering
//! bad input with [`ApiError`]s.

use axum::extract::{FromRequestParts, RawPathParams};
use axum::http::request::Parts;
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use torua_store::MAX_KEY_LEN;

use super::ApiError;

/// Characters kept as-is when a key is put in a URL path: RFC 3986 unreserved.
const KEY_ENCODE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// Percent-encodes a key for a URL path segment (`/` becomes `%2F`).
pub fn encode_key(key: &str) -> String {
    utf8_percent_encode(key, KEY_ENCODE).to_string()
}

/// Decodes and checks a raw (percent-encoded) key from a path.
pub fn decode_key(raw: &str) -> Result<String, ApiError> {
    let key = percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| ApiError::bad_request("invalid_key", "key is not valid UTF-8 after percent-decoding"))?
        .into_owned();
    if key.is_empty() {
        return Err(ApiError::bad_request("invalid_key", "key must not be empty"));
    }
    if key.len() > MAX_KEY_LEN {
        return Err(ApiError::new(
            axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            "key_too_large",
            format!("key is {} bytes; at most {MAX_KEY_LEN} are allowed", key.len()),
        ));
    }
    Ok(key)
}

fn raw_param<'a>(params: &'a RawPathParams, name: &str) -> Option<&'a str> {
    params.iter().find(|(k, _)| *k == name).map(|(_, v)| v)
}

async fn params(parts: &mut Parts) -> Result<RawPathParams, ApiError> {
    RawPathParams::from_request_parts(parts, &())
        .await
        .map_err(|_| ApiError::internal("route has no path parameters"))
}

/// The `{*key}` path parameter, percent-decoded and checked.
pub struct Key(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Key {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let p = params(parts).await?;
        decode_key(raw_param(&p, "key").unwrap_or_default()).map(Key)
    }
}

/// The `{id}` path parameter as a shard id.
pub struct ShardId(pub u32);

impl<S: Send + Sync> FromRequestParts<S> for ShardId {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let p = params(parts).await?;
        let raw = raw_param(&p, "id").unwrap_or_default();
        raw.parse().map(ShardId).map_err(|_| {
            ApiError::bad_request("invalid_shard_id", format!("`{raw}` is not a shard id (a non-negative integer)"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_urls() {
        for k in ["a/b c", "user@x:1", "?#%", "ünï/😀", "..", "a+b"] {
            assert_eq!(decode_key(&encode_key(k)).ok().as_deref(), Some(k));
        }
        assert!(decode_key("").is_err());
        assert!(decode_key("%FF").is_err());
        assert_eq!(decode_key(&"a".repeat(4097)).err().map(|e| e.status.as_u16()), Some(413));
    }
}
