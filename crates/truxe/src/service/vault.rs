//! Secrets at rest: TOTP and webhook secrets under the MFA key, provider
//! tokens (and PKCE verifiers in flight) under the OAuth token key. Each
//! value is sealed with AES-256-GCM, names its key id, and is bound to its
//! row (the AAD), so a value copied to another row does not open.
//!
//! Rotation without downtime: configure the new key as current and the old
//! one as `…_PREVIOUS` on every instance (both open, only the new seals),
//! run `truxe keys rotate-encryption` to re-seal what is still under an old
//! key, then drop the old key.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use secure::envelope::Envelope;
use secure::Secret;
use serde::Serialize;

use super::auth::AuthService;
use super::AuthError;
use crate::repo::SealedColumn;

/// The keys of the two vaults, and the key that signs OAuth `state`.
pub struct Vaults {
    /// `MFA_ENCRYPTION_KEY`: TOTP and webhook secrets.
    pub mfa: Envelope,
    /// `OAUTH_TOKEN_ENCRYPTION_KEY`: provider tokens.
    pub oauth: Envelope,
    /// HMAC key of OAuth `state` parameters (derived from the OAuth key).
    pub state_key: Secret<Vec<u8>>,
}

/// Which vault a column belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Vault {
    Mfa,
    OAuth,
}

/// The vault and AAD of a value of `col` in the row keyed `key`.
fn binding(col: SealedColumn, key: &str) -> (Vault, String) {
    match col {
        SealedColumn::MfaSecret | SealedColumn::MfaPendingSecret => (Vault::Mfa, key.to_owned()),
        SealedColumn::WebhookSecret | SealedColumn::WebhookPreviousSecret => {
            (Vault::Mfa, format!("webhook:{key}"))
        }
        SealedColumn::OAuthTokens => (Vault::OAuth, format!("oauth:{key}")),
        SealedColumn::OAuthVerifier => (Vault::OAuth, format!("oauth-state:{key}")),
    }
}

/// What rotation found and did in one column.
#[derive(Debug, Default, Clone, Serialize)]
pub struct ColumnReport {
    /// `table.column`.
    pub column: String,
    /// Values per key id (hex) before rotation.
    pub by_key: BTreeMap<String, u64>,
    /// Values already under the current key.
    pub current: u64,
    /// Values re-sealed under the current key.
    pub resealed: u64,
    /// Values changed concurrently (already rewritten by the service).
    pub raced: u64,
    /// Values that did not open (unknown key or damaged).
    pub failed: u64,
}

const BATCH: u32 = 200;

impl AuthService {
    fn envelope(&self, v: Vault) -> &Envelope {
        match v {
            Vault::Mfa => &self.vaults.mfa,
            Vault::OAuth => &self.vaults.oauth,
        }
    }

    /// Seals with the MFA key (base64), bound to `aad`.
    pub(super) fn seal_secret(&self, aad: &str, secret: &[u8]) -> Result<String, AuthError> {
        self.seal_in(Vault::Mfa, aad, secret)
    }

    /// Opens what [`Self::seal_secret`] sealed for `aad`.
    pub(super) fn open_secret(&self, aad: &str, sealed: &str) -> Result<Vec<u8>, AuthError> {
        self.open_in(Vault::Mfa, aad, sealed)
    }

    pub(super) fn seal_in(&self, v: Vault, aad: &str, secret: &[u8]) -> Result<String, AuthError> {
        Ok(STANDARD.encode(self.envelope(v).seal(secret, aad.as_bytes())?))
    }

    pub(super) fn open_in(&self, v: Vault, aad: &str, sealed: &str) -> Result<Vec<u8>, AuthError> {
        let bytes = STANDARD
            .decode(sealed)
            .map_err(|e| AuthError::Internal(format!("sealed secret: {e}")))?;
        Ok(self.envelope(v).open(&bytes, aad.as_bytes())?)
    }

    /// Re-seals every stored secret that is not under its vault's current
    /// key (with `dry_run`, only counts). Each row is rewritten only if it
    /// still holds the value read, so a concurrent change is never undone.
    /// `progress` hears how many columns of how many are done, as each ends.
    pub async fn rotate_encryption(
        &self,
        dry_run: bool,
        progress: &(dyn Fn(u64, u64) + Sync),
    ) -> Result<Vec<ColumnReport>, AuthError> {
        let mut reports = Vec::new();
        let total = SealedColumn::ALL.len() as u64;
        progress(0, total);
        for col in SealedColumn::ALL {
            let (table, _, column) = col.location();
            let mut r = ColumnReport {
                column: format!("{table}.{column}"),
                ..ColumnReport::default()
            };
            let mut after = String::new();
            loop {
                let batch = self.store.sealed_values(col, &after, BATCH).await?;
                let Some((last, _)) = batch.last() else { break };
                after = last.clone();
                for (key, sealed) in &batch {
                    let (vault, aad) = binding(col, key);
                    let envelope = self.envelope(vault);
                    let kid = STANDARD
                        .decode(sealed)
                        .ok()
                        .and_then(|b| secure::envelope::sealed_key_id(&b));
                    let name = kid.map_or_else(|| "damaged".into(), |k| format!("{k:08x}"));
                    *r.by_key.entry(name).or_default() += 1;
                    if kid == Some(envelope.current_key_id()) {
                        r.current += 1;
                        continue;
                    }
                    if dry_run {
                        continue;
                    }
                    let fresh = self
                        .open_in(vault, &aad, sealed)
                        .and_then(|plain| self.seal_in(vault, &aad, &plain));
                    match fresh {
                        Ok(new) => {
                            if self.store.reseal(col, key, sealed, &new).await? {
                                r.resealed += 1;
                            } else {
                                r.raced += 1;
                            }
                        }
                        Err(e) => {
                            tracing::error!(column = %r.column, row = %key, error = %e, "sealed value does not open");
                            r.failed += 1;
                        }
                    }
                }
            }
            reports.push(r);
            progress(reports.len() as u64, total);
        }
        Ok(reports)
    }
}
