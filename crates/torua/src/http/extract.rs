//! Extractors that parse path parameters into checked values, answering
//! bad input with [`ApiError`]s.

use axum::extract::{FromRequestParts, RawPathParams};
use axum::http::request::Parts;
use torua_store::MAX_KEY_LEN;

use super::ApiError;

// One encoding for both ends: the client's.
pub use torua_client::encode_key;

/// Checks a key taken (already percent-decoded) from a path.
pub fn check_key(key: String) -> Result<String, ApiError> {
    if key.is_empty() {
        return Err(ApiError::bad_request(
            "invalid_key",
            "key must not be empty",
        ));
    }
    // URL clients (WHATWG) drop `.` and `..` segments, even percent-encoded,
    // so such keys could be written by one client and never read by another.
    if key == "." || key == ".." {
        return Err(ApiError::bad_request(
            "invalid_key",
            "`.` and `..` cannot be keys: URL clients remove them",
        ));
    }
    if key.len() > MAX_KEY_LEN {
        return Err(ApiError::new(
            axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            "key_too_large",
            format!(
                "key is {} bytes; at most {MAX_KEY_LEN} are allowed",
                key.len()
            ),
        ));
    }
    Ok(key)
}

/// Answers a route whose key is empty (`/data/`).
pub async fn empty_key() -> ApiError {
    ApiError::bad_request("invalid_key", "key must not be empty")
}

fn param<'a>(params: &'a RawPathParams, name: &str) -> Option<&'a str> {
    params.iter().find(|(k, _)| *k == name).map(|(_, v)| v)
}

/// Path parameters, percent-decoded once by axum's router.
async fn params(parts: &mut Parts) -> Result<RawPathParams, ApiError> {
    RawPathParams::from_request_parts(parts, &())
        .await
        .map_err(|e| {
            ApiError::bad_request(
                "invalid_key",
                format!(
                    "path is not valid UTF-8 after percent-decoding ({})",
                    e.body_text()
                ),
            )
        })
}

/// The `{*key}` path parameter, percent-decoded and checked.
pub struct Key(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Key {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let p = params(parts).await?;
        check_key(param(&p, "key").unwrap_or_default().to_owned()).map(Key)
    }
}

/// The `{id}` path parameter as a shard id.
pub struct ShardId(pub u32);

impl<S: Send + Sync> FromRequestParts<S> for ShardId {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let p = params(parts).await?;
        let raw = param(&p, "id").unwrap_or_default();
        raw.parse().map(ShardId).map_err(|_| {
            ApiError::bad_request(
                "invalid_shard_id",
                format!("`{raw}` is not a shard id (a non-negative integer)"),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use percent_encoding::percent_decode_str;

    #[test]
    fn keys_round_trip_through_urls() {
        for k in ["a/b c", "user@x:1", "?#%", "%41", "ünï/😀", "a/../b", "a+b"] {
            let decoded = percent_decode_str(&encode_key(k))
                .decode_utf8()
                .map(|c| c.into_owned());
            assert_eq!(
                decoded.ok().and_then(|d| check_key(d).ok()).as_deref(),
                Some(k)
            );
        }
        assert!(check_key(String::new()).is_err());
        assert!(check_key("..".into()).is_err());
        assert_eq!(
            check_key("a".repeat(4097)).err().map(|e| e.status.as_u16()),
            Some(413)
        );
    }
}
