#![doc = include_str!("../README.md")]
//!
//! # Writes that must not overwrite
//!
//! Every value has a version (its `ETag`). A compare-and-set writes only
//! over the version it read; of several racing, exactly one wins:
//!
//! ```no_run
//! # async fn example(client: &torua_client::Client) -> Result<(), torua_client::Error> {
//! use torua_client::Put;
//!
//! // Create once: fails with `precondition_failed` if the key exists.
//! client.put_with("config/limit", "10", &Put::new().if_absent()).await?;
//!
//! let current = client.get("config/limit").await?.expect("just written");
//! let next = current.text().and_then(|t| t.parse::<u32>().ok()).unwrap_or(0) + 1;
//! match client
//!     .put_with("config/limit", next.to_string(), &Put::new().if_version(current.version))
//!     .await
//! {
//!     Ok(version) => println!("now at version {version}"),
//!     Err(e) if e.is_precondition_failed() => println!("someone else wrote first; read again"),
//!     Err(e) => return Err(e),
//! }
//! # Ok(()) }
//! ```
//!
//! # Listing
//!
//! Keys come in byte order, a page at a time:
//!
//! ```no_run
//! # async fn example(client: &torua_client::Client) -> Result<(), torua_client::Error> {
//! let mut keys = client.list("users/").page_size(500);
//! while let Some(page) = keys.next_page().await? {
//!     for key in page {
//!         println!("{key}");
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! # Retries
//!
//! A request is sent again, with a growing pause, when the coordinator
//! says nothing was done (`node_unavailable`, `no_leader`, `no_quorum`,
//! `starting`, …) or the connection was refused (then the next coordinator
//! URL is tried). After `503 outcome_unknown` only reads and unconditional
//! writes and deletes are sent again: a conditional write that may have
//! been applied would fail its own precondition the second time, so that
//! error is returned for the caller to read and decide.
#![deny(missing_docs)]

mod error;
pub mod wire;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::{header, Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;

pub use error::{Error, Failure};
use wire::{KeyPage, NodeStatus, NodesResponse, ShardsResponse};

/// Characters kept as-is when a key is put in a URL path: RFC 3986
/// unreserved minus `.`, which is encoded so that keys such as `..` are not
/// removed by URL dot-segment normalization on the way.
const KEY_ENCODE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'~');

/// Percent-encodes a key for a URL path segment (`/` becomes `%2F`).
///
/// ```
/// assert_eq!(torua_client::encode_key("a/b c"), "a%2Fb%20c");
/// assert_eq!(torua_client::encode_key(".."), "%2E%2E");
/// ```
pub fn encode_key(key: &str) -> String {
    utf8_percent_encode(key, KEY_ENCODE).to_string()
}

/// A stored value with its content type and version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The bytes stored.
    pub value: Bytes,
    /// The content type stored with them.
    pub content_type: String,
    /// The version (`ETag`) of this value; versions of a key only grow.
    pub version: u64,
}

impl Entry {
    /// The value as text, if it is UTF-8.
    pub fn text(&self) -> Option<&str> {
        std::str::from_utf8(&self.value).ok()
    }
}

/// What a write requires of the key's current state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precondition {
    /// Nothing: write whatever is there.
    #[default]
    None,
    /// The key is at exactly this version (`If-Match: "v"`).
    Version(u64),
    /// The key exists (`If-Match: *`).
    Exists,
    /// The key does not exist (`If-None-Match: *`).
    Absent,
}

/// Options of a write: its content type and precondition.
///
/// ```
/// use torua_client::{Precondition, Put};
/// let put = Put::new().content_type("application/json").if_version(7);
/// assert_eq!(put.precondition, Precondition::Version(7));
/// ```
#[derive(Debug, Clone, Default)]
pub struct Put {
    /// Stored with the value (default `application/octet-stream`).
    pub content_type: Option<String>,
    /// What must hold for the write to happen.
    pub precondition: Precondition,
}

impl Put {
    /// An unconditional write of `application/octet-stream`.
    pub fn new() -> Put {
        Put::default()
    }
    /// Stores `ct` as the value's content type.
    pub fn content_type(mut self, ct: impl Into<String>) -> Put {
        self.content_type = Some(ct.into());
        self
    }
    /// Writes only over `version` (compare-and-set).
    pub fn if_version(mut self, version: u64) -> Put {
        self.precondition = Precondition::Version(version);
        self
    }
    /// Writes only if the key exists.
    pub fn if_exists(mut self) -> Put {
        self.precondition = Precondition::Exists;
        self
    }
    /// Writes only if the key does not exist (create once).
    pub fn if_absent(mut self) -> Put {
        self.precondition = Precondition::Absent;
        self
    }
}

/// The cluster's readiness as `GET /ready` reports it.
#[derive(Debug, Clone)]
pub struct Readiness {
    /// Every shard has a healthy owner.
    pub ready: bool,
    /// The whole answer: replication, coordinators, and why not ready.
    pub detail: Value,
}

/// Where a node's removal stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// Everything moved off; the node is gone.
    Done,
    /// Still moving after the coordinator's two minutes: ask again.
    InProgress,
}

/// Builds a [`Client`].
#[derive(Debug)]
pub struct ClientBuilder {
    urls: Vec<String>,
    token: Option<String>,
    ca: Option<Vec<u8>>,
    identity: Option<Vec<u8>>,
    timeout: Duration,
    attempts: u32,
    backoff: Duration,
}

impl ClientBuilder {
    /// Sends `token` (a Torua API key or a Truxe access token) as the
    /// bearer credential of every request.
    pub fn token(mut self, token: impl Into<String>) -> ClientBuilder {
        self.token = Some(token.into()).filter(|t| !t.trim().is_empty());
        self
    }
    /// Trusts only the CA certificates in `pem` for `https://` URLs (a
    /// cluster's own CA, as `torua dev` makes), instead of the public roots.
    pub fn ca_pem(mut self, pem: impl Into<Vec<u8>>) -> ClientBuilder {
        self.ca = Some(pem.into());
        self
    }
    /// [`ca_pem`](Self::ca_pem) read from a file.
    pub fn ca_file(self, path: impl AsRef<std::path::Path>) -> Result<ClientBuilder, Error> {
        let path = path.as_ref();
        let pem = std::fs::read(path)
            .map_err(|e| Error::Config(format!("reading the CA {}: {e}", path.display())))?;
        Ok(self.ca_pem(pem))
    }
    /// Presents a client certificate (mutual TLS): `pem` holds the
    /// certificate chain and its private key.
    pub fn identity_pem(mut self, pem: impl Into<Vec<u8>>) -> ClientBuilder {
        self.identity = Some(pem.into());
        self
    }
    /// The longest a request may take, answer included (default 30 s).
    pub fn timeout(mut self, timeout: Duration) -> ClientBuilder {
        self.timeout = timeout;
        self
    }
    /// How many times a request is tried when a retry is safe (default 5;
    /// 1 turns retries off). Pauses start at 100 ms and double up to 2 s.
    pub fn attempts(mut self, attempts: u32) -> ClientBuilder {
        self.attempts = attempts.max(1);
        self
    }
    /// Also tries `url` when the others cannot be reached (several
    /// coordinators of one cluster share everything).
    pub fn url(mut self, url: impl Into<String>) -> ClientBuilder {
        self.urls.push(url.into());
        self
    }
    /// Builds the client; it pools connections and is cheap to clone.
    pub fn build(self) -> Result<Client, Error> {
        let mut headers = header::HeaderMap::new();
        if let Some(t) = &self.token {
            let mut v =
                header::HeaderValue::from_str(&format!("Bearer {}", t.trim())).map_err(|_| {
                    Error::Config("the token has characters a header cannot carry".into())
                })?;
            v.set_sensitive(true);
            headers.insert(header::AUTHORIZATION, v);
        }
        let mut http = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(self.timeout)
            .connect_timeout(Duration::from_secs(5));
        if let Some(pem) = &self.ca {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| Error::Config(format!("the CA is not PEM certificates: {e}")))?;
            if certs.is_empty() {
                return Err(Error::Config("the CA holds no certificate".into()));
            }
            http = http.tls_built_in_root_certs(false);
            for c in certs {
                http = http.add_root_certificate(c);
            }
        }
        if let Some(pem) = &self.identity {
            http = http.identity(
                reqwest::Identity::from_pem(pem)
                    .map_err(|e| Error::Config(format!("the client certificate: {e}")))?,
            );
        }
        let mut urls = Vec::with_capacity(self.urls.len());
        for u in self.urls {
            let u = u.trim().trim_end_matches('/').to_owned();
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                return Err(Error::Config(format!(
                    "{u:?} is not an http:// or https:// URL"
                )));
            }
            urls.push(u);
        }
        Ok(Client {
            inner: Arc::new(Inner {
                http: http
                    .build()
                    .map_err(|e| Error::Config(format!("building the HTTP client: {e}")))?,
                urls,
                current: AtomicUsize::new(0),
                attempts: self.attempts,
                backoff: self.backoff,
            }),
        })
    }
}

/// A connection pool to one Torua cluster. Clone it freely: clones share
/// connections.
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    http: reqwest::Client,
    urls: Vec<String>,
    /// The URL that answered last; tried first.
    current: AtomicUsize,
    attempts: u32,
    backoff: Duration,
}

/// One request, rebuilt for each attempt.
struct Call<'a> {
    method: Method,
    path: String,
    query: &'a [(&'a str, String)],
    headers: Vec<(header::HeaderName, String)>,
    body: Option<Bytes>,
    /// Safe to send again after `outcome_unknown`.
    idempotent: bool,
    /// Any answer is returned as it is, error statuses included.
    raw: bool,
}

impl<'a> Call<'a> {
    fn new(method: Method, path: String) -> Call<'a> {
        let idempotent = method != Method::POST;
        Call {
            method,
            path,
            query: &[],
            headers: Vec::new(),
            body: None,
            idempotent,
            raw: false,
        }
    }
}

impl Client {
    /// Starts a client of the coordinator at `url` (`https://host:port`).
    pub fn builder(url: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            urls: vec![url.into()],
            token: None,
            ca: None,
            identity: None,
            timeout: Duration::from_secs(30),
            attempts: 5,
            backoff: Duration::from_millis(100),
        }
    }

    /// The coordinator URL requests go to first (the last one that answered).
    pub fn url(&self) -> &str {
        let i = self.inner.current.load(Ordering::Relaxed);
        &self.inner.urls[i % self.inner.urls.len()]
    }

    /// Sends `call`, retrying where that is safe (see the crate docs).
    async fn send(&self, call: Call<'_>) -> Result<reqwest::Response, Error> {
        let inner = &self.inner;
        let mut pause = inner.backoff;
        let mut attempt = 1;
        loop {
            let at = inner.current.load(Ordering::Relaxed) % inner.urls.len();
            let url = format!("{}{}", inner.urls[at], call.path);
            let mut req = inner
                .http
                .request(call.method.clone(), &url)
                .query(call.query);
            for (k, v) in &call.headers {
                req = req.header(k, v);
            }
            if let Some(b) = &call.body {
                req = req.body(b.clone());
            }
            let err = match req.send().await {
                Ok(res) if call.raw || res.status().is_success() => return Ok(res),
                Ok(res) if res.status() == StatusCode::NOT_FOUND => return Ok(res),
                Ok(res) => api_error(&url, res).await,
                Err(e) => Error::unreachable(&url, &e),
            };
            let retry = retry_safe(&err, call.idempotent);
            if let Error::Unreachable {
                kind: Failure::Connect,
                ..
            } = &err
            {
                // Nothing was sent: try the next coordinator.
                let _ = inner.current.compare_exchange(
                    at,
                    (at + 1) % inner.urls.len(),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
            }
            if !retry || attempt >= inner.attempts {
                return Err(err);
            }
            attempt += 1;
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(2));
        }
    }

    /// Sends `call` and decodes a 2xx JSON answer; 404 is an error here.
    async fn json<T: DeserializeOwned>(&self, call: Call<'_>) -> Result<T, Error> {
        let res = self.send(call).await?;
        let url = res.url().to_string();
        if res.status() == StatusCode::NOT_FOUND {
            return Err(api_error(&url, res).await);
        }
        let bytes = res
            .bytes()
            .await
            .map_err(|e| Error::unreachable(&url, &e))?;
        serde_json::from_slice(&bytes).map_err(|e| Error::Decode {
            url,
            cause: e.to_string(),
        })
    }

    /// Stores `value` under `key`; answers the new version once a majority
    /// of the shard's replicas has it on disk.
    pub async fn put(&self, key: &str, value: impl Into<Bytes>) -> Result<u64, Error> {
        self.put_with(key, value, &Put::new()).await
    }

    /// Stores `value` under `key` with a content type and a precondition;
    /// a precondition that does not hold is `412 precondition_failed`
    /// ([`Error::is_precondition_failed`]) and writes nothing.
    pub async fn put_with(
        &self,
        key: &str,
        value: impl Into<Bytes>,
        put: &Put,
    ) -> Result<u64, Error> {
        let mut call = Call::new(Method::PUT, data_path(key));
        call.body = Some(value.into());
        call.headers.push((
            header::CONTENT_TYPE,
            put.content_type
                .clone()
                .unwrap_or_else(|| "application/octet-stream".into()),
        ));
        call.idempotent = precondition(&mut call.headers, put.precondition);
        let res = self.send(call).await?;
        written(res).await
    }

    /// The value of `key`, read linearizably; `None` when absent.
    pub async fn get(&self, key: &str) -> Result<Option<Entry>, Error> {
        self.read(key, &[]).await
    }

    /// The value of `key` from whichever replica answers, possibly behind
    /// the latest write (`?consistency=stale`); cheaper than [`get`](Self::get).
    pub async fn get_stale(&self, key: &str) -> Result<Option<Entry>, Error> {
        self.read(key, &[("consistency", "stale".into())]).await
    }

    async fn read(&self, key: &str, query: &[(&str, String)]) -> Result<Option<Entry>, Error> {
        let mut call = Call::new(Method::GET, data_path(key));
        call.query = query;
        let res = self.send(call).await?;
        let url = res.url().to_string();
        if res.status() == StatusCode::NOT_FOUND {
            return match api_error(&url, res).await {
                e if e.code() == Some("not_found") => Ok(None),
                e => Err(e),
            };
        }
        let version = version_of(&res, &url)?;
        let content_type = res
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/octet-stream")
            .to_owned();
        let value = res
            .bytes()
            .await
            .map_err(|e| Error::unreachable(&url, &e))?;
        Ok(Some(Entry {
            value,
            content_type,
            version,
        }))
    }

    /// Deletes `key`; deleting an absent key succeeds.
    pub async fn delete(&self, key: &str) -> Result<(), Error> {
        self.send(Call::new(Method::DELETE, data_path(key)))
            .await
            .map(drop)
    }

    /// Deletes `key` only at `version`; `412 precondition_failed` otherwise.
    pub async fn delete_if(&self, key: &str, version: u64) -> Result<(), Error> {
        let mut call = Call::new(Method::DELETE, data_path(key));
        call.idempotent = precondition(&mut call.headers, Precondition::Version(version));
        let res = self.send(call).await?;
        let url = res.url().to_string();
        if res.status() == StatusCode::NOT_FOUND {
            return Err(api_error(&url, res).await);
        }
        Ok(())
    }

    /// The keys starting with `prefix`, in byte order, a page at a time.
    pub fn list(&self, prefix: impl Into<String>) -> Keys<'_> {
        Keys {
            client: self,
            prefix: prefix.into(),
            after: None,
            page_size: 1000,
            done: false,
        }
    }

    /// Who the coordinator takes this client for: `{"principal","kind","roles"}`.
    pub async fn whoami(&self) -> Result<Value, Error> {
        self.json(Call::new(Method::GET, "/whoami".into())).await
    }

    /// Every registered node and its health (`monitor` or `admin`).
    pub async fn nodes(&self) -> Result<Vec<NodeStatus>, Error> {
        let nodes: NodesResponse = self.json(Call::new(Method::GET, "/nodes".into())).await?;
        Ok(nodes.nodes)
    }

    /// Where every shard is (`monitor` or `admin`).
    pub async fn shards(&self) -> Result<ShardsResponse, Error> {
        self.json(Call::new(Method::GET, "/shards".into())).await
    }

    /// Whether every shard has a healthy owner, and the coordinator's
    /// account of replication (no credential needed).
    pub async fn ready(&self) -> Result<Readiness, Error> {
        let mut call = Call::new(Method::GET, "/ready".into());
        // Not ready is an answer here, with a body worth reading.
        call.raw = true;
        let res = self.send(call).await?;
        let url = res.url().to_string();
        let ready = res.status().is_success();
        let bytes = res
            .bytes()
            .await
            .map_err(|e| Error::unreachable(&url, &e))?;
        Ok(Readiness {
            ready,
            detail: serde_json::from_slice(&bytes).unwrap_or_default(),
        })
    }

    /// The cluster's API keys, never their secrets (`admin`).
    pub async fn api_keys(&self) -> Result<Value, Error> {
        self.json(Call::new(Method::GET, "/admin/apikeys".into()))
            .await
    }

    /// Makes an API key: `{"name","roles":[…],"node_id"?,"expires_in"?}`.
    /// The answer's `key` is the only time the secret is shown (`admin`).
    pub async fn create_api_key(&self, spec: &Value) -> Result<Value, Error> {
        let mut call = Call::new(Method::POST, "/admin/apikeys".into());
        json_body(&mut call, spec)?;
        self.json(call).await
    }

    /// Revokes the API key `id`; refused from the next request on (`admin`).
    pub async fn revoke_api_key(&self, id: &str) -> Result<Value, Error> {
        let path = format!("/admin/apikeys/{}", encode_key(id));
        self.json(Call::new(Method::DELETE, path)).await
    }

    /// The access policy (`admin`).
    pub async fn policy(&self) -> Result<Value, Error> {
        self.json(Call::new(Method::GET, "/admin/policy".into()))
            .await
    }

    /// Replaces the policy; its `version` must be the current one, else
    /// `409 version_conflict` (`admin`).
    pub async fn set_policy(&self, policy: &Value) -> Result<Value, Error> {
        let mut call = Call::new(Method::PUT, "/admin/policy".into());
        json_body(&mut call, policy)?;
        // Versioned: a second attempt after an unknown outcome would conflict.
        call.idempotent = false;
        self.json(call).await
    }

    /// Starts a new data key in every shard of every healthy node (`admin`).
    pub async fn rotate_keys(&self) -> Result<Value, Error> {
        self.json(Call::new(Method::POST, "/admin/keys/rotate".into()))
            .await
    }

    /// Each shard's data key and whether it is re-sealing (`admin`).
    pub async fn key_status(&self) -> Result<Value, Error> {
        self.json(Call::new(Method::GET, "/admin/keys".into()))
            .await
    }

    /// Moves every shard copy off node `id`, then removes it (`admin`).
    /// `force` removes it even if a shard's only copy is lost with it.
    pub async fn remove_node(&self, id: &str, force: bool) -> Result<Removal, Error> {
        let query = [("force", force.to_string())];
        let mut call = Call::new(Method::DELETE, format!("/nodes/{}", encode_key(id)));
        call.query = &query;
        let res = self.send(call).await?;
        let url = res.url().to_string();
        match res.status() {
            StatusCode::ACCEPTED => Ok(Removal::InProgress),
            StatusCode::NOT_FOUND => Err(api_error(&url, res).await),
            _ => Ok(Removal::Done),
        }
    }
}

/// Pages of keys under a prefix; see [`Client::list`].
#[derive(Debug)]
pub struct Keys<'a> {
    client: &'a Client,
    prefix: String,
    after: Option<String>,
    page_size: usize,
    done: bool,
}

impl Keys<'_> {
    /// Keys per page, 1–10 000 (default 1 000).
    pub fn page_size(mut self, n: usize) -> Self {
        self.page_size = n.clamp(1, 10_000);
        self
    }
    /// Starts after `key` (exclusive).
    pub fn after(mut self, key: impl Into<String>) -> Self {
        self.after = Some(key.into());
        self
    }
    /// The next page; `None` once every key has been given.
    pub async fn next_page(&mut self) -> Result<Option<Vec<String>>, Error> {
        if self.done {
            return Ok(None);
        }
        let mut query = vec![
            ("prefix", self.prefix.clone()),
            ("limit", self.page_size.to_string()),
        ];
        if let Some(a) = &self.after {
            query.push(("after", a.clone()));
        }
        let mut call = Call::new(Method::GET, "/data".into());
        call.query = &query;
        let page: KeyPage = self.client.json(call).await?;
        match page.next_after {
            Some(n) => self.after = Some(n),
            None => self.done = true,
        }
        if page.keys.is_empty() && self.done {
            return Ok(None);
        }
        Ok(Some(page.keys))
    }
    /// Every remaining key, in order.
    pub async fn collect(mut self) -> Result<Vec<String>, Error> {
        let mut all = Vec::new();
        while let Some(page) = self.next_page().await? {
            all.extend(page);
        }
        Ok(all)
    }
}

/// Whether a request that failed with `err` may be sent again: when
/// nothing was done, or, for an idempotent request, when it may have been.
fn retry_safe(err: &Error, idempotent: bool) -> bool {
    match err {
        Error::Unreachable {
            kind: Failure::Connect,
            ..
        } => true,
        Error::Api {
            status: 503, code, ..
        } => {
            error::NOTHING_DONE.contains(&code.as_str())
                || (code == "outcome_unknown" && idempotent)
        }
        _ => false,
    }
}

fn data_path(key: &str) -> String {
    format!("/data/{}", encode_key(key))
}

/// Adds the headers of `p`; answers whether the write may be sent again.
fn precondition(headers: &mut Vec<(header::HeaderName, String)>, p: Precondition) -> bool {
    match p {
        Precondition::None => return true,
        Precondition::Version(v) => headers.push((header::IF_MATCH, format!("\"{v}\""))),
        Precondition::Exists => headers.push((header::IF_MATCH, "*".into())),
        Precondition::Absent => headers.push((header::IF_NONE_MATCH, "*".into())),
    }
    false
}

fn json_body(call: &mut Call<'_>, v: &Value) -> Result<(), Error> {
    let body = serde_json::to_vec(v).map_err(|e| Error::Config(e.to_string()))?;
    call.body = Some(body.into());
    call.headers
        .push((header::CONTENT_TYPE, "application/json".into()));
    Ok(())
}

/// The version a write's `204` names.
async fn written(res: reqwest::Response) -> Result<u64, Error> {
    let url = res.url().to_string();
    if res.status() == StatusCode::NOT_FOUND {
        return Err(api_error(&url, res).await);
    }
    version_of(&res, &url)
}

fn version_of(res: &reqwest::Response, url: &str) -> Result<u64, Error> {
    res.headers()
        .get(header::ETAG)
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.strip_prefix('"')?.strip_suffix('"')?.parse().ok())
        .ok_or_else(|| Error::Decode {
            url: url.to_owned(),
            cause: "no ETag with the version".into(),
        })
}

/// Reads `{"error":{"code","message"}}` from an error answer.
async fn api_error(url: &str, res: reqwest::Response) -> Error {
    let status = res.status().as_u16();
    let body: Value = match res.bytes().await {
        Ok(b) => serde_json::from_slice(&b).unwrap_or_default(),
        Err(e) => return Error::unreachable(url, &e),
    };
    let field = |f: &str| body["error"][f].as_str().map(str::to_owned);
    Error::Api {
        status,
        code: field("code").unwrap_or_else(|| format!("http_{status}")),
        message: field("message").unwrap_or_else(|| "(no message)".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16, code: &str) -> Error {
        Error::Api {
            status,
            code: code.into(),
            message: String::new(),
        }
    }

    #[test]
    fn retries_only_what_is_safe() {
        // Nothing done: any request, conditional writes included.
        for code in ["node_unavailable", "no_leader", "no_quorum", "starting"] {
            assert!(retry_safe(&api(503, code), false), "{code}");
        }
        // Maybe done: only what gives the same result twice.
        assert!(retry_safe(&api(503, "outcome_unknown"), true));
        assert!(!retry_safe(&api(503, "outcome_unknown"), false));
        // Answers, not outages.
        for (status, code) in [
            (412, "precondition_failed"),
            (429, "rate_limited"),
            (503, "not_ready"),
            (401, "invalid_api_key"),
        ] {
            assert!(!retry_safe(&api(status, code), true), "{code}");
        }
        let refused = Error::Unreachable {
            url: "u".into(),
            kind: Failure::Connect,
            cause: String::new(),
        };
        assert!(retry_safe(&refused, false));
        let late = Error::Unreachable {
            url: "u".into(),
            kind: Failure::Timeout,
            cause: String::new(),
        };
        assert!(
            !retry_safe(&late, true),
            "a timeout leaves the outcome to the caller"
        );
    }

    #[test]
    fn conditional_writes_are_not_idempotent() {
        let mut h = Vec::new();
        assert!(precondition(&mut h, Precondition::None));
        assert!(h.is_empty());
        assert!(!precondition(&mut h, Precondition::Version(7)));
        assert!(!precondition(&mut h, Precondition::Absent));
        assert_eq!(h[0], (header::IF_MATCH, "\"7\"".to_owned()));
        assert_eq!(h[1], (header::IF_NONE_MATCH, "*".to_owned()));
    }

    #[test]
    fn refuses_bad_settings_with_their_reason() {
        let e = Client::builder("127.0.0.1:8080").build().unwrap_err();
        assert!(
            e.to_string().contains("not an http:// or https:// URL"),
            "{e}"
        );
        let e = Client::builder("https://x")
            .ca_pem("not pem")
            .build()
            .unwrap_err();
        assert!(e.to_string().contains("CA"), "{e}");
        let e = Client::builder("https://x")
            .token("a\nb")
            .build()
            .unwrap_err();
        assert!(e.to_string().contains("token"), "{e}");
        assert!(Client::builder("https://x/").build().is_ok());
    }

    #[test]
    fn the_readme_shows_the_quickstart_that_runs() {
        // The README's lines are the ones tests run against a real cluster
        // (torua's tests/it/client.rs includes examples/quickstart.rs).
        let readme = include_str!("../README.md");
        let example = include_str!("../examples/quickstart.rs");
        let block = readme
            .split("```rust")
            .nth(1)
            .unwrap()
            .split("```")
            .next()
            .unwrap();
        let shown: Vec<&str> = block
            .lines()
            .skip(1)
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect();
        assert!(shown.len() >= 5, "{shown:?}");
        for line in shown {
            assert!(
                example.contains(line),
                "README line not in the quickstart: {line}"
            );
        }
    }
}
