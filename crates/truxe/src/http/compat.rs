//! The original Truxe's answer shapes, added beside ours, never instead:
//! its SDK and clients read camelCase fields at the top level of a body
//! (`accessToken`, `tokens.accessToken`, `challengeId`, `backupCodes`,
//! `qrCode`…), where Truxe answers `{"success", "data": {…}}` in snake
//! case. Each answer that has an original counterpart gets its fields here.

use serde_json::{json, Value};

use crate::service::Tokens;

/// Adds `fields` (an object) to the top level of `body`.
pub(crate) fn add(body: &mut Value, fields: Value) {
    if let (Some(b), Value::Object(f)) = (body.as_object_mut(), fields) {
        b.extend(f);
    }
}

/// A token pair as the original answered it: flat (`POST /auth/refresh`)
/// and under `tokens` (sign-in and the MFA challenge).
pub(crate) fn tokens(body: &mut Value, t: &Tokens) {
    let pair = json!({
        "accessToken": t.access_token,
        "refreshToken": t.refresh_token,
        "expiresIn": t.expires_in,
        "tokenType": t.token_type,
    });
    add(body, pair.clone());
    add(body, json!({ "tokens": pair }));
}

/// A sign-in waiting for its second factor.
pub(crate) fn mfa_required(body: &mut Value, challenge_id: &str) {
    add(
        body,
        json!({
            "mfaRequired": true,
            "challengeId": challenge_id,
            "message": "MFA required. Verify with your authenticator app.",
        }),
    );
}

/// `"ABCD EFGH …"`: a secret grouped for typing (the original's
/// `manualEntryCode`).
pub(crate) fn grouped(secret: &str) -> String {
    secret
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}
