//! What can go wrong talking to a coordinator.

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The coordinator answered with an error (`{"error":{"code","message"}}`).
    #[error("{status} {code}: {message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// Torua's error code, such as `precondition_failed` or `forbidden`.
        code: String,
        /// What the coordinator said.
        message: String,
    },
    /// No answer came back from any coordinator.
    #[error("{url}: {cause}")]
    Unreachable {
        /// The coordinator last tried.
        url: String,
        /// What kind of failure it was.
        kind: Failure,
        /// The underlying error, with its causes.
        cause: String,
    },
    /// An answer came back that is not what the API documents.
    #[error("unexpected answer from {url}: {cause}")]
    Decode {
        /// The request's URL.
        url: String,
        /// What did not parse.
        cause: String,
    },
    /// The client could not be built (CA file, credential, URL).
    #[error("{0}")]
    Config(String),
}

/// How a request failed to get an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Failure {
    /// The connection was refused or could not be made: nothing was sent.
    Connect,
    /// The TLS handshake failed, usually an untrusted certificate.
    Tls,
    /// No answer in time; a write may or may not have been applied.
    Timeout,
    /// The connection broke some other way.
    Other,
}

impl Error {
    /// Torua's error code of an API error (`not_found`, `forbidden`, …).
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// The HTTP status of an API error.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// True when a conditional write or delete found another version.
    pub fn is_precondition_failed(&self) -> bool {
        self.code() == Some("precondition_failed")
    }

    /// True when a write may or may not have been applied (`503
    /// outcome_unknown`, or no answer in time): read before deciding.
    pub fn is_outcome_unknown(&self) -> bool {
        matches!(
            self,
            Error::Unreachable {
                kind: Failure::Timeout,
                ..
            }
        ) || self.code() == Some("outcome_unknown")
    }

    /// Builds the error for a request that got no answer.
    pub(crate) fn unreachable(url: &str, e: &reqwest::Error) -> Error {
        let mut causes = Vec::new();
        let mut src: Option<&dyn std::error::Error> = Some(e);
        while let Some(s) = src {
            causes.push(s.to_string());
            src = s.source();
        }
        let cause = causes.join(": ");
        let kind = if cause.contains("certificate") || cause.contains("UnknownIssuer") {
            Failure::Tls
        } else if e.is_timeout() {
            Failure::Timeout
        } else if e.is_connect() {
            Failure::Connect
        } else {
            Failure::Other
        };
        Error::Unreachable {
            url: url.to_owned(),
            kind,
            cause,
        }
    }
}

/// Codes after which the coordinator did nothing, so any request may be
/// sent again: the owner was down, no leader or quorum yet, still starting.
pub(crate) const NOTHING_DONE: &[&str] = &[
    "node_unavailable",
    "no_leader",
    "no_quorum",
    "shard_unassigned",
    "starting",
    "metadata_contended",
    "overloaded",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_api_errors() {
        let e = Error::Api {
            status: 412,
            code: "precondition_failed".into(),
            message: "the key is at version 8".into(),
        };
        assert!(e.is_precondition_failed());
        assert!(!e.is_outcome_unknown());
        assert_eq!(e.status(), Some(412));
        assert_eq!(
            e.to_string(),
            "412 precondition_failed: the key is at version 8"
        );
        let unknown = Error::Api {
            status: 503,
            code: "outcome_unknown".into(),
            message: String::new(),
        };
        assert!(unknown.is_outcome_unknown());
        assert_eq!(Error::Config("x".into()).code(), None);
    }
}
