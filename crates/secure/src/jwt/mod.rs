//! Signed tokens: keys with `kid`s (RS256, ES256, EdDSA), signing, verifying
//! with the algorithm pinned by the key (never by the token), issuer and
//! audience checks, and JWKS export and import.
//!
//! [`KeyRing`] signs with one key and publishes every key that may still
//! have live tokens. [`Verifier`] is built from a JWKS document, so a
//! service that only verifies (Torua) uses the very same code path as the
//! issuer.

use std::collections::HashMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::{Error, Secret};

mod rsa_native;

/// Signature algorithms Truxe signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyAlg {
    /// RSASSA-PKCS1-v1_5 with SHA-256, 2048-bit keys.
    Rs256,
    /// ECDSA P-256 with SHA-256.
    Es256,
    /// Ed25519.
    EdDsa,
}

impl KeyAlg {
    /// JOSE name: `RS256`, `ES256`, `EdDSA`.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyAlg::Rs256 => "RS256",
            KeyAlg::Es256 => "ES256",
            KeyAlg::EdDsa => "EdDSA",
        }
    }
    fn jwt(self) -> Algorithm {
        match self {
            KeyAlg::Rs256 => Algorithm::RS256,
            KeyAlg::Es256 => Algorithm::ES256,
            KeyAlg::EdDsa => Algorithm::EdDSA,
        }
    }
}

impl std::str::FromStr for KeyAlg {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "RS256" => Ok(KeyAlg::Rs256),
            "ES256" => Ok(KeyAlg::Es256),
            "EdDSA" => Ok(KeyAlg::EdDsa),
            other => Err(Error::Config(format!(
                "`{other}` is not a supported algorithm (RS256, ES256, EdDSA)"
            ))),
        }
    }
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn crypto(e: impl std::fmt::Display) -> Error {
    Error::Crypto(e.to_string())
}

/// A public key that verifies tokens.
#[derive(Clone)]
pub struct PublicKey {
    kid: String,
    alg: KeyAlg,
    jwk: Value,
    decoding: DecodingKey,
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublicKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish()
    }
}

impl PublicKey {
    /// Reads one JWK (`kty` RSA, EC P-256 or OKP Ed25519, with a `kid`).
    /// Without `alg` (as some providers publish them) the algorithm follows
    /// from the key type; encryption keys (`use: enc`) are refused.
    pub fn from_jwk(jwk: &Value) -> Result<Self, Error> {
        let field = |name: &str| {
            jwk[name]
                .as_str()
                .ok_or_else(|| Error::Jwk(format!("JWK has no `{name}`")))
        };
        let kid = field("kid")?.to_owned();
        if jwk["use"].as_str().is_some_and(|u| u != "sig") {
            return Err(Error::Jwk(format!("key {kid}: not a signing key")));
        }
        let implied = match (field("kty")?, jwk["crv"].as_str()) {
            ("RSA", _) => "RS256",
            ("EC", Some("P-256")) => "ES256",
            ("OKP", Some("Ed25519")) => "EdDSA",
            _ => "",
        };
        let alg: KeyAlg = jwk["alg"]
            .as_str()
            .unwrap_or(implied)
            .parse()
            .map_err(|_| Error::Jwk(format!("key {kid}: unsupported alg")))?;
        let decoding = match (alg, field("kty")?) {
            (KeyAlg::Rs256, "RSA") => DecodingKey::from_rsa_components(field("n")?, field("e")?),
            (KeyAlg::Es256, "EC") if field("crv")? == "P-256" => {
                DecodingKey::from_ec_components(field("x")?, field("y")?)
            }
            (KeyAlg::EdDsa, "OKP") if field("crv")? == "Ed25519" => {
                DecodingKey::from_ed_components(field("x")?)
            }
            _ => return Err(Error::Jwk(format!("key {kid}: kty/crv do not match alg"))),
        }
        .map_err(|e| Error::Jwk(format!("key {kid}: {e}")))?;
        Ok(PublicKey {
            kid,
            alg,
            jwk: jwk.clone(),
            decoding,
        })
    }

    /// Key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }
    /// Algorithm.
    pub fn alg(&self) -> KeyAlg {
        self.alg
    }
    /// The public JWK.
    pub fn jwk(&self) -> &Value {
        &self.jwk
    }

    /// The key as a PEM `PUBLIC KEY` (SubjectPublicKeyInfo), for verifiers
    /// configured with a PEM file rather than a JWKS.
    pub fn spki_pem(&self) -> Result<String, Error> {
        use p256::pkcs8::EncodePublicKey;
        let part = |name: &str| {
            self.jwk[name]
                .as_str()
                .and_then(|v| URL_SAFE_NO_PAD.decode(v).ok())
                .ok_or_else(|| Error::Jwk(format!("key {}: bad `{name}`", self.kid)))
        };
        let lf = p256::pkcs8::LineEnding::LF;
        match self.alg {
            KeyAlg::Rs256 => {
                use rsa::BigUint;
                rsa::RsaPublicKey::new(
                    BigUint::from_bytes_be(&part("n")?),
                    BigUint::from_bytes_be(&part("e")?),
                )
                .map_err(crypto)?
                .to_public_key_pem(lf)
            }
            KeyAlg::Es256 => {
                let mut point = vec![4u8];
                point.extend(part("x")?);
                point.extend(part("y")?);
                p256::PublicKey::from_sec1_bytes(&point)
                    .map_err(crypto)?
                    .to_public_key_pem(lf)
            }
            KeyAlg::EdDsa => {
                let x: [u8; 32] = part("x")?
                    .try_into()
                    .map_err(|_| Error::Jwk(format!("key {}: bad `x`", self.kid)))?;
                ed25519_dalek::VerifyingKey::from_bytes(&x)
                    .map_err(crypto)?
                    .to_public_key_pem(lf)
            }
        }
        .map_err(crypto)
    }
}

/// A private key that signs tokens, with its public half.
pub struct SigningKey {
    pem: Secret<String>,
    encoding: EncodingKey,
    public: PublicKey,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.public.kid)
            .field("alg", &self.public.alg)
            .finish()
    }
}

impl SigningKey {
    /// Generates a new key (RSA 2048, P-256 or Ed25519).
    pub fn generate(alg: KeyAlg) -> Result<Self, Error> {
        use rsa::pkcs8::EncodePrivateKey;
        let mut rng = rand::rngs::OsRng;
        let pem = match alg {
            KeyAlg::Rs256 => rsa::RsaPrivateKey::new(&mut rng, 2048)
                .map_err(crypto)?
                .to_pkcs8_pem(Default::default()),
            KeyAlg::Es256 => p256::SecretKey::random(&mut rng).to_pkcs8_pem(Default::default()),
            KeyAlg::EdDsa => {
                ed25519_dalek::SigningKey::generate(&mut rng).to_pkcs8_pem(Default::default())
            }
        }
        .map_err(crypto)?;
        Self::from_pkcs8_pem(alg, &pem)
    }

    /// Loads a PKCS#8 PEM private key. The `kid` is derived from the public
    /// key (RFC 7638 thumbprint), so the same key always has the same id.
    pub fn from_pkcs8_pem(alg: KeyAlg, pem: &str) -> Result<Self, Error> {
        use rsa::pkcs1::EncodeRsaPrivateKey;
        use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey};
        use rsa::traits::PublicKeyParts;
        let wrong = |e: &dyn std::fmt::Display| {
            Error::Config(format!(
                "private key is not a PKCS#8 {} key: {e}",
                alg.as_str()
            ))
        };
        let (encoding, members) = match alg {
            KeyAlg::Rs256 => {
                let k = rsa::RsaPrivateKey::from_pkcs8_pem(pem).map_err(|e| wrong(&e))?;
                if k.size() < 256 {
                    return Err(Error::Config(
                        "RSA keys must have at least 2048 bits".into(),
                    ));
                }
                let der = k.to_pkcs1_der().map_err(crypto)?;
                let members = json!({"e": b64(&k.e().to_bytes_be()), "kty": "RSA", "n": b64(&k.n().to_bytes_be())});
                (EncodingKey::from_rsa_der(der.as_bytes()), members)
            }
            KeyAlg::Es256 => {
                let k = p256::SecretKey::from_pkcs8_pem(pem).map_err(|e| wrong(&e))?;
                let point = p256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(
                    &k.public_key(),
                    false,
                );
                let (x, y) = (
                    point.x().ok_or_else(|| crypto("no x"))?,
                    point.y().ok_or_else(|| crypto("no y"))?,
                );
                let der = k.to_pkcs8_der().map_err(crypto)?;
                let members = json!({"crv": "P-256", "kty": "EC", "x": b64(x), "y": b64(y)});
                (EncodingKey::from_ec_der(der.as_bytes()), members)
            }
            KeyAlg::EdDsa => {
                let k = ed25519_dalek::SigningKey::from_pkcs8_pem(pem).map_err(|e| wrong(&e))?;
                let der = k.to_pkcs8_der().map_err(crypto)?;
                let members =
                    json!({"crv": "Ed25519", "kty": "OKP", "x": b64(k.verifying_key().as_bytes())});
                (EncodingKey::from_ed_der(der.as_bytes()), members)
            }
        };
        // RFC 7638: SHA-256 over the required members in lexicographic order
        // (serde_json's map is ordered), no whitespace.
        let kid = b64(&Sha256::digest(members.to_string().as_bytes()));
        let mut jwk = members;
        jwk["kid"] = json!(kid);
        jwk["alg"] = json!(alg.as_str());
        jwk["use"] = json!("sig");
        let public = PublicKey::from_jwk(&jwk)?;
        Ok(SigningKey {
            pem: Secret::new(pem.to_owned()),
            encoding,
            public,
        })
    }

    /// Loads a PEM private key: PKCS#8, or for RS256 also PKCS#1
    /// (`BEGIN RSA PRIVATE KEY`, as older tools write them).
    pub fn from_pem(alg: KeyAlg, pem: &str) -> Result<Self, Error> {
        if alg == KeyAlg::Rs256 && pem.contains("-----BEGIN RSA PRIVATE KEY-----") {
            use rsa::pkcs1::DecodeRsaPrivateKey;
            use rsa::pkcs8::EncodePrivateKey;
            let k = rsa::RsaPrivateKey::from_pkcs1_pem(pem)
                .map_err(|e| Error::Config(format!("private key is not a PKCS#1 RSA key: {e}")))?;
            let pkcs8 = k.to_pkcs8_pem(Default::default()).map_err(crypto)?;
            return Self::from_pkcs8_pem(alg, &pkcs8);
        }
        Self::from_pkcs8_pem(alg, pem)
    }

    /// The same key under another `kid`: a key carried over from another
    /// issuer keeps the id its tokens name, so they still verify.
    pub fn with_kid(mut self, kid: &str) -> Result<Self, Error> {
        let valid =
            !kid.is_empty() && kid.len() <= 128 && kid.chars().all(|c| c.is_ascii_graphic());
        if !valid {
            return Err(Error::Config(format!(
                "`{kid}` is not a key id (1 to 128 printable ASCII characters)"
            )));
        }
        let mut jwk = self.public.jwk.clone();
        jwk["kid"] = json!(kid);
        self.public = PublicKey::from_jwk(&jwk)?;
        Ok(self)
    }

    /// The PKCS#8 PEM, for storage (never for logs).
    pub fn pem(&self) -> &Secret<String> {
        &self.pem
    }
    /// The public half.
    pub fn public(&self) -> &PublicKey {
        &self.public
    }
    /// Key id.
    pub fn kid(&self) -> &str {
        &self.public.kid
    }
}

/// Why a token was refused. Messages are safe to show to clients.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Not a JWT, or its header or claims do not parse.
    #[error("token is malformed")]
    Malformed,
    /// No published key has the token's `kid`.
    #[error("token was signed by an unknown key")]
    UnknownKey,
    /// The header's `alg` is not the key's algorithm (e.g. `none`, or HS256
    /// with a public key as the secret).
    #[error("token algorithm is not allowed")]
    AlgorithmNotAllowed,
    /// Signature check failed.
    #[error("token signature is invalid")]
    BadSignature,
    /// `exp` is in the past.
    #[error("token has expired")]
    Expired,
    /// `nbf` or `iat` is in the future.
    #[error("token is not valid yet")]
    NotYetValid,
    /// `iss` is not the expected issuer.
    #[error("token issuer is not accepted")]
    WrongIssuer,
    /// `aud` does not contain the expected audience.
    #[error("token audience is not accepted")]
    WrongAudience,
    /// A required claim is missing.
    #[error("token lacks a required claim")]
    MissingClaim,
}

/// Verifies tokens against a set of public keys, one issuer and one audience.
#[derive(Debug, Clone)]
pub struct Verifier {
    keys: HashMap<String, PublicKey>,
    issuer: String,
    audience: String,
    leeway_secs: u64,
}

impl Verifier {
    /// A verifier for `keys`.
    pub fn new(keys: Vec<PublicKey>, issuer: &str, audience: &str) -> Self {
        Verifier {
            keys: keys.into_iter().map(|k| (k.kid.clone(), k)).collect(),
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            leeway_secs: 5,
        }
    }

    /// A verifier for a JWKS document (`{"keys":[…]}`); unsupported keys are skipped.
    pub fn from_jwks(jwks: &Value, issuer: &str, audience: &str) -> Result<Self, Error> {
        let keys = jwks["keys"]
            .as_array()
            .ok_or_else(|| Error::Jwk("JWKS has no `keys` array".into()))?;
        let keys = keys
            .iter()
            .filter_map(|k| PublicKey::from_jwk(k).ok())
            .collect();
        Ok(Self::new(keys, issuer, audience))
    }

    /// How many keys it verifies with.
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    /// Whether a key id is known (a JWKS fetcher refetches when it is not).
    pub fn knows(&self, kid: &str) -> bool {
        self.keys.contains_key(kid)
    }

    /// Verifies signature, algorithm, `exp`/`nbf`, issuer and audience, and
    /// returns the claims. An issuer containing `{tenantid}` (a multi-tenant
    /// provider such as Microsoft's `common` endpoint) matches when the
    /// token's `iss` is that template filled with the token's own `tid`.
    pub fn verify<C: DeserializeOwned>(&self, token: &str) -> Result<C, TokenError> {
        if !self.issuer.contains("{tenantid}") {
            return self.verify_as(token, Some(&self.issuer), true);
        }
        let claims: Value = self.verify_as(token, None, true)?;
        let tid = claims["tid"].as_str().ok_or(TokenError::MissingClaim)?;
        if tid.is_empty()
            || !tid.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            || claims["iss"].as_str() != Some(&self.issuer.replace("{tenantid}", tid))
        {
            return Err(TokenError::WrongIssuer);
        }
        serde_json::from_value(claims).map_err(|_| TokenError::Malformed)
    }

    /// As [`Verifier::verify`] but accepting an expired token: for hints
    /// (OpenID Connect's `id_token_hint`), which name a past sign-in and
    /// grant nothing. Not for multi-tenant issuers.
    pub fn verify_ignoring_expiry<C: DeserializeOwned>(
        &self,
        token: &str,
    ) -> Result<C, TokenError> {
        self.verify_as(token, Some(&self.issuer), false)
    }

    fn verify_as<C: DeserializeOwned>(
        &self,
        token: &str,
        issuer: Option<&str>,
        check_expiry: bool,
    ) -> Result<C, TokenError> {
        use jsonwebtoken::errors::ErrorKind as K;
        rsa_native::install();
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        let kid = header.kid.ok_or(TokenError::UnknownKey)?;
        let key = self.keys.get(&kid).ok_or(TokenError::UnknownKey)?;
        if header.alg != key.alg.jwt() {
            return Err(TokenError::AlgorithmNotAllowed);
        }
        let mut v = Validation::new(key.alg.jwt());
        if let Some(iss) = issuer {
            v.set_issuer(&[iss]);
        }
        v.set_audience(&[&self.audience]);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        v.validate_exp = check_expiry;
        v.validate_nbf = true;
        v.leeway = self.leeway_secs;
        jsonwebtoken::decode::<C>(token, &key.decoding, &v)
            .map(|d| d.claims)
            .map_err(|e| match e.kind() {
                K::ExpiredSignature => TokenError::Expired,
                K::ImmatureSignature => TokenError::NotYetValid,
                K::InvalidIssuer => TokenError::WrongIssuer,
                K::InvalidAudience => TokenError::WrongAudience,
                K::InvalidSignature => TokenError::BadSignature,
                K::InvalidAlgorithm => TokenError::AlgorithmNotAllowed,
                K::MissingRequiredClaim(_) => TokenError::MissingClaim,
                _ => TokenError::Malformed,
            })
    }
}

/// Signs with the current key; publishes every key that may still have live tokens.
#[derive(Debug)]
pub struct KeyRing {
    current: SigningKey,
    published: Vec<PublicKey>,
}

impl KeyRing {
    /// A ring signing with `current` and also publishing `others`
    /// (retiring keys, and keys announced before they sign).
    pub fn new(current: SigningKey, others: Vec<PublicKey>) -> Self {
        let mut published = vec![current.public.clone()];
        published.extend(others.into_iter().filter(|k| k.kid != current.public.kid));
        KeyRing { current, published }
    }

    /// Kid of the signing key.
    pub fn current_kid(&self) -> &str {
        self.current.kid()
    }

    /// Signs claims with the current key, setting `kid` and `alg` in the header.
    pub fn sign<C: Serialize>(&self, claims: &C) -> Result<String, Error> {
        rsa_native::install();
        let mut header = Header::new(self.current.public.alg.jwt());
        header.kid = Some(self.current.kid().to_owned());
        jsonwebtoken::encode(&header, claims, &self.current.encoding).map_err(crypto)
    }

    /// `{"keys":[…]}` with every published key.
    pub fn jwks(&self) -> Value {
        json!({"keys": self.published.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()})
    }

    /// The public half of the signing key.
    pub fn current(&self) -> &PublicKey {
        &self.current.public
    }

    /// A verifier accepting every published key.
    pub fn verifier(&self, issuer: &str, audience: &str) -> Verifier {
        Verifier::new(self.published.clone(), issuer, audience)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct Claims {
        sub: String,
        iss: String,
        aud: String,
        exp: u64,
        iat: u64,
    }

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }

    fn claims(exp_in: i64) -> Claims {
        Claims {
            sub: "u1".into(),
            iss: "https://id".into(),
            aud: "api".into(),
            exp: (now() as i64 + exp_in) as u64,
            iat: now(),
        }
    }

    #[test]
    fn every_algorithm_round_trips_through_jwks() -> Result<(), Error> {
        for alg in [KeyAlg::EdDsa, KeyAlg::Es256, KeyAlg::Rs256] {
            let key = SigningKey::generate(alg)?;
            let again = SigningKey::from_pkcs8_pem(alg, key.pem().expose())?;
            assert_eq!(again.kid(), key.kid(), "kid is stable for {alg:?}");
            let ring = KeyRing::new(key, vec![]);
            let token = ring.sign(&claims(60))?;
            let v = Verifier::from_jwks(&ring.jwks(), "https://id", "api")?;
            assert_eq!(
                v.verify::<Claims>(&token).ok().map(|c| c.sub),
                Some("u1".into()),
                "{alg:?}"
            );
        }
        Ok(())
    }

    #[test]
    fn the_spki_pem_of_every_algorithm_verifies_its_tokens() -> Result<(), Error> {
        for (alg, from_pem) in [
            (KeyAlg::Rs256, DecodingKey::from_rsa_pem as fn(&[u8]) -> _),
            (KeyAlg::Es256, DecodingKey::from_ec_pem),
            (KeyAlg::EdDsa, DecodingKey::from_ed_pem),
        ] {
            let ring = KeyRing::new(SigningKey::generate(alg)?, vec![]);
            let pem = ring.current().spki_pem()?;
            assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"), "{pem}");
            let key = from_pem(pem.as_bytes()).map_err(crypto)?;
            let mut v = Validation::new(alg.jwt());
            v.set_audience(&["api"]);
            let token = ring.sign(&claims(60))?;
            let got = jsonwebtoken::decode::<Claims>(&token, &key, &v).map_err(crypto)?;
            assert_eq!(got.claims.sub, "u1", "{alg:?}");
            // Another key's PEM does not verify it.
            let other = KeyRing::new(SigningKey::generate(alg)?, vec![]);
            let key = from_pem(other.current().spki_pem()?.as_bytes()).map_err(crypto)?;
            assert!(jsonwebtoken::decode::<Claims>(&token, &key, &v).is_err());
        }
        Ok(())
    }

    #[test]
    fn pkcs1_keys_load_and_a_kid_can_be_kept() -> Result<(), Error> {
        use rsa::pkcs1::EncodeRsaPrivateKey;
        let k = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).map_err(crypto)?;
        let pkcs1 = k.to_pkcs1_pem(Default::default()).map_err(crypto)?;
        let key = SigningKey::from_pem(KeyAlg::Rs256, &pkcs1)?;
        let same = SigningKey::from_pem(KeyAlg::Rs256, key.pem().expose())?;
        assert_eq!(key.kid(), same.kid(), "PKCS#1 and PKCS#8 forms are one key");
        let kept = key.with_kid("truxe-rsa-2025")?;
        assert_eq!(kept.kid(), "truxe-rsa-2025");
        let ring = KeyRing::new(kept, vec![]);
        assert_eq!(ring.jwks()["keys"][0]["kid"], "truxe-rsa-2025");
        let token = ring.sign(&claims(60))?;
        let v = Verifier::from_jwks(&ring.jwks(), "https://id", "api")?;
        assert!(v.verify::<Claims>(&token).is_ok());
        for bad in ["", "a b", &"x".repeat(129)] {
            assert!(
                SigningKey::generate(KeyAlg::EdDsa)?.with_kid(bad).is_err(),
                "{bad:?}"
            );
        }
        Ok(())
    }

    #[test]
    fn tenant_issuers_and_jwks_without_alg() -> Result<(), Error> {
        let ring = KeyRing::new(SigningKey::generate(KeyAlg::Rs256)?, vec![]);
        let mut jwks = ring.jwks();
        if let Some(k) = jwks["keys"][0].as_object_mut() {
            k.remove("alg");
        }
        let template = "https://login.example/{tenantid}/v2.0";
        let v = Verifier::from_jwks(&jwks, template, "api")?;
        let token = |iss: &str, tid: Option<&str>| {
            let mut c = serde_json::to_value(claims(60)).unwrap_or_default();
            c["iss"] = json!(iss);
            if let Some(t) = tid {
                c["tid"] = json!(t);
            }
            ring.sign(&c)
        };
        let ok = token("https://login.example/t-1/v2.0", Some("t-1"))?;
        assert_eq!(v.verify::<Claims>(&ok).map(|c| c.sub), Ok("u1".into()));
        let other_tenant = token("https://login.example/t-2/v2.0", Some("t-1"))?;
        assert_eq!(
            v.verify::<Claims>(&other_tenant),
            Err(TokenError::WrongIssuer)
        );
        let no_tid = token("https://login.example/t-1/v2.0", None)?;
        assert_eq!(v.verify::<Claims>(&no_tid), Err(TokenError::MissingClaim));
        let mut enc = ring.jwks();
        enc["keys"][0]["use"] = json!("enc");
        assert!(!Verifier::from_jwks(&enc, "https://id", "api")?.knows(ring.current_kid()));
        Ok(())
    }

    #[test]
    fn forged_tokens_are_refused() -> Result<(), Error> {
        let ring = KeyRing::new(SigningKey::generate(KeyAlg::Es256)?, vec![]);
        let v = ring.verifier("https://id", "api");
        let good = ring.sign(&claims(60))?;
        assert_eq!(
            v.verify::<Claims>(&ring.sign(&claims(-60))?),
            Err(TokenError::Expired)
        );
        assert_eq!(
            ring.verifier("https://other", "api")
                .verify::<Claims>(&good),
            Err(TokenError::WrongIssuer)
        );
        assert_eq!(
            ring.verifier("https://id", "other").verify::<Claims>(&good),
            Err(TokenError::WrongAudience)
        );
        // Tampered payload.
        let parts: Vec<&str> = good.split('.').collect();
        let mut c = claims(60);
        c.sub = "admin".into();
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            b64(serde_json::to_string(&c).unwrap_or_default().as_bytes()),
            parts[2]
        );
        assert_eq!(v.verify::<Claims>(&forged), Err(TokenError::BadSignature));
        // alg=none, and HS256 keyed with the public key.
        let kid = ring.current_kid().to_owned();
        let none_header = b64(json!({"alg": "none", "kid": kid}).to_string().as_bytes());
        assert!(v
            .verify::<Claims>(&format!("{none_header}.{}.", parts[1]))
            .is_err());
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some(kid);
        let hs = jsonwebtoken::encode(
            &h,
            &claims(60),
            &EncodingKey::from_secret(ring.jwks().to_string().as_bytes()),
        )
        .map_err(crypto)?;
        assert_eq!(
            v.verify::<Claims>(&hs),
            Err(TokenError::AlgorithmNotAllowed)
        );
        // Unknown key and garbage.
        let other = KeyRing::new(SigningKey::generate(KeyAlg::Es256)?, vec![]);
        assert_eq!(
            v.verify::<Claims>(&other.sign(&claims(60))?),
            Err(TokenError::UnknownKey)
        );
        assert_eq!(v.verify::<Claims>("not.a.jwt"), Err(TokenError::Malformed));
        assert_eq!(v.verify::<Claims>(""), Err(TokenError::Malformed));
        Ok(())
    }

    #[test]
    fn rotation_keeps_old_tokens_valid_while_published() -> Result<(), Error> {
        let old = SigningKey::generate(KeyAlg::EdDsa)?;
        let old_ring = KeyRing::new(
            SigningKey::from_pkcs8_pem(KeyAlg::EdDsa, old.pem().expose())?,
            vec![],
        );
        let token = old_ring.sign(&claims(60))?;
        let rotated = KeyRing::new(
            SigningKey::generate(KeyAlg::EdDsa)?,
            vec![old.public().clone()],
        );
        assert_ne!(rotated.current_kid(), old.kid());
        assert!(rotated
            .verifier("https://id", "api")
            .verify::<Claims>(&token)
            .is_ok());
        let retired = KeyRing::new(SigningKey::generate(KeyAlg::EdDsa)?, vec![]);
        assert_eq!(
            retired
                .verifier("https://id", "api")
                .verify::<Claims>(&token),
            Err(TokenError::UnknownKey)
        );
        Ok(())
    }
}
