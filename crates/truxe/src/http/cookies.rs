//! Cookie mode: for browser clients that ask for it with `?mode=cookie`.
//!
//! Tokens travel in `HttpOnly` cookies (`Secure` outside development,
//! `SameSite=Lax`), so page scripts cannot read them. Every state-changing
//! request authenticated by cookie must carry `X-CSRF-Token` equal to the
//! readable `truxe_csrf` cookie, whose value is an HMAC of the session id
//! under `COOKIE_SECRET`: another site can neither read nor forge it.

use axum::http::{header, HeaderMap, HeaderValue, Method};
use axum::response::Response;

use crate::service::Tokens;

/// Access token cookie (the original Truxe's name).
pub const ACCESS: &str = "truxe_access_token";
/// Refresh token cookie (sent only to `/auth`; the original Truxe's name).
pub const REFRESH: &str = "truxe_refresh_token";
/// The names Truxe used before it took the original's: still read, so
/// browsers signed in before an upgrade stay signed in, and expired on
/// sign-out.
const EARLIER: [(&str, &str); 2] = [(ACCESS, "truxe_access"), (REFRESH, "truxe_refresh")];
/// CSRF token cookie (readable by the page).
pub const CSRF: &str = "truxe_csrf";
/// Header that must echo the CSRF cookie.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Cookie settings.
pub struct CookieConfig {
    /// HMAC key for CSRF tokens.
    pub key: Vec<u8>,
    /// Add `Secure` (everywhere but development).
    pub secure: bool,
    /// Lifetime of the refresh cookie (seconds).
    pub refresh_ttl: u64,
}

impl CookieConfig {
    /// The CSRF token of a session.
    pub fn csrf_for(&self, session_id: &str) -> String {
        secure::mac::sign_hex(&self.key, session_id.as_bytes())
    }

    fn set(
        &self,
        res: &mut Response,
        name: &str,
        value: &str,
        path: &str,
        max_age: u64,
        http_only: bool,
    ) {
        let mut c = format!("{name}={value}; Path={path}; Max-Age={max_age}; SameSite=Lax");
        if http_only {
            c.push_str("; HttpOnly");
        }
        if self.secure {
            c.push_str("; Secure");
        }
        if let Ok(v) = HeaderValue::from_str(&c) {
            res.headers_mut().append(header::SET_COOKIE, v);
        }
    }

    /// Sets the session cookies for `tokens`.
    pub fn set_session(&self, res: &mut Response, tokens: &Tokens) {
        self.set(
            res,
            ACCESS,
            &tokens.access_token,
            "/",
            tokens.expires_in,
            true,
        );
        self.set(
            res,
            REFRESH,
            &tokens.refresh_token,
            "/auth",
            self.refresh_ttl,
            true,
        );
        self.set(
            res,
            CSRF,
            &self.csrf_for(&tokens.session_id),
            "/",
            self.refresh_ttl,
            false,
        );
    }

    /// Sets the cookie binding a social sign-in to this browser (sent only
    /// to `/auth/oauth`; `SameSite=Lax` lets the provider's redirect carry it).
    pub fn set_oauth_binding(&self, res: &mut Response, value: &str, max_age: u64) {
        self.set(
            res,
            crate::service::BINDING_COOKIE,
            value,
            "/auth/oauth",
            max_age,
            true,
        );
    }

    /// Expires every session cookie.
    pub fn clear(&self, res: &mut Response) {
        for (name, earlier) in EARLIER {
            let path = if name == REFRESH { "/auth" } else { "/" };
            self.set(res, name, "", path, 0, true);
            self.set(res, earlier, "", path, 0, true);
        }
        self.set(res, CSRF, "", "/", 0, false);
    }
}

/// A session cookie ([`ACCESS`] or [`REFRESH`]) under its name, or under
/// the name Truxe gave it before.
pub fn session(headers: &HeaderMap, name: &str) -> Option<String> {
    get(headers, name).or_else(|| {
        EARLIER
            .iter()
            .find(|(n, _)| *n == name)
            .and_then(|(_, earlier)| get(headers, earlier))
    })
}

/// The value of cookie `name` in the request, if any.
pub fn get(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
        .filter(|v| !v.is_empty())
}

/// Methods that change nothing need no CSRF token.
pub fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The double-submit check: the header equals the cookie (constant time),
/// and when the session is known, the value is that session's HMAC.
pub fn csrf_ok(cfg: &CookieConfig, headers: &HeaderMap, session_id: Option<&str>) -> bool {
    let sent = headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let Some(cookie) = get(headers, CSRF) else {
        return false;
    };
    if sent.is_empty() || !secure::ct_eq(sent.as_bytes(), cookie.as_bytes()) {
        return false;
    }
    session_id.is_none_or(|sid| secure::mac::verify_hex(&cfg.key, sid.as_bytes(), sent))
}
