//! RSA for `jsonwebtoken` through AWS-LC. The crate's `rust_crypto` backend
//! does RSA in portable big-integer code and parses the key on every call:
//! a 2048-bit verify took 40 % of a verified request's CPU in Truxe
//! (`docs/benchmarks.md`). AWS-LC does both in assembly, and signs RSA-2048
//! in 0.29 ms where `ring` (the TLS provider) takes 0.52 ms on the same core:
//! it has the AVX-512 IFMA exponentiation `ring` lacks, and an RS256
//! signature is most of a token refresh's CPU. Everything that is not RSA
//! stays with `rust_crypto`.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, Once, OnceLock};

use aws_lc_rs::signature::{self as rs, RsaKeyPair, RsaPublicKeyComponents};
use jsonwebtoken::crypto::{rust_crypto, CryptoProvider, JwkUtils, JwtSigner, JwtVerifier};
use jsonwebtoken::errors::{Error, ErrorKind};
use jsonwebtoken::signature::{self, Signer, Verifier};
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind, EncodingKey};
use sha2::{Digest, Sha256};

static PROVIDER: LazyLock<CryptoProvider> = LazyLock::new(|| {
    let base = &rust_crypto::DEFAULT_PROVIDER.jwk_utils;
    CryptoProvider {
        signer_factory: signer,
        verifier_factory: verifier,
        jwk_utils: JwkUtils {
            extract_rsa_public_key_components: base.extract_rsa_public_key_components,
            extract_ec_public_key_coordinates: base.extract_ec_public_key_coordinates,
            compute_digest: base.compute_digest,
        },
    }
});

/// Installs the provider for the process (once; before the first token is
/// signed or verified). Another provider installed first is left in place.
pub(super) fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = LazyLock::force(&PROVIDER).install_default();
    });
}

/// The AWS-LC parameters of an RSA algorithm: verification, signing padding.
fn params(alg: &Algorithm) -> Option<(&'static rs::RsaParameters, &'static dyn rs::RsaEncoding)> {
    Some(match alg {
        Algorithm::RS256 => (&rs::RSA_PKCS1_2048_8192_SHA256, &rs::RSA_PKCS1_SHA256),
        Algorithm::RS384 => (&rs::RSA_PKCS1_2048_8192_SHA384, &rs::RSA_PKCS1_SHA384),
        Algorithm::RS512 => (&rs::RSA_PKCS1_2048_8192_SHA512, &rs::RSA_PKCS1_SHA512),
        Algorithm::PS256 => (&rs::RSA_PSS_2048_8192_SHA256, &rs::RSA_PSS_SHA256),
        Algorithm::PS384 => (&rs::RSA_PSS_2048_8192_SHA384, &rs::RSA_PSS_SHA384),
        Algorithm::PS512 => (&rs::RSA_PSS_2048_8192_SHA512, &rs::RSA_PSS_SHA512),
        _ => return None,
    })
}

struct RsaVerifier {
    alg: Algorithm,
    params: &'static rs::RsaParameters,
    key: DecodingKey,
}

impl Verifier<Vec<u8>> for RsaVerifier {
    fn verify(&self, msg: &[u8], sig: &Vec<u8>) -> Result<(), signature::Error> {
        let checked = match self.key.kind() {
            // PKCS#1 RSAPublicKey DER.
            DecodingKeyKind::SecretOrDer(der) => {
                rs::UnparsedPublicKey::new(self.params, der).verify(msg, sig)
            }
            DecodingKeyKind::RsaModulusExponent { n, e } => {
                RsaPublicKeyComponents { n, e }.verify(self.params, msg, sig)
            }
        };
        checked.map_err(|_| signature::Error::new())
    }
}

impl JwtVerifier for RsaVerifier {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

fn verifier(alg: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>, Error> {
    match params(alg) {
        Some((params, _)) => {
            if key.family() != jsonwebtoken::AlgorithmFamily::Rsa {
                return Err(ErrorKind::InvalidKeyFormat.into());
            }
            Ok(Box::new(RsaVerifier {
                alg: *alg,
                params,
                key: key.clone(),
            }))
        }
        None => (rust_crypto::DEFAULT_PROVIDER.verifier_factory)(alg, key),
    }
}

struct RsaSigner {
    alg: Algorithm,
    padding: &'static dyn rs::RsaEncoding,
    pair: Arc<RsaKeyPair>,
}

impl Signer<Vec<u8>> for RsaSigner {
    fn try_sign(&self, msg: &[u8]) -> Result<Vec<u8>, signature::Error> {
        let mut sig = vec![0; self.pair.public_modulus_len()];
        self.pair
            .sign(
                self.padding,
                &aws_lc_rs::rand::SystemRandom::new(),
                msg,
                &mut sig,
            )
            .map_err(|_| signature::Error::new())?;
        Ok(sig)
    }
}

impl JwtSigner for RsaSigner {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

/// Parsed private keys by the SHA-256 of their DER: AWS-LC validates a key
/// when it parses it, which costs more than a signature, and the signer is
/// made afresh for every token. A process holds a handful of keys.
fn key_pair(der: &[u8]) -> Result<Arc<RsaKeyPair>, Error> {
    static PARSED: OnceLock<Mutex<HashMap<[u8; 32], Arc<RsaKeyPair>>>> = OnceLock::new();
    let id: [u8; 32] = Sha256::digest(der).into();
    let parsed = PARSED.get_or_init(Default::default);
    if let Some(k) = parsed
        .lock()
        .map_err(|_| ErrorKind::InvalidRsaKey("poisoned".into()))?
        .get(&id)
    {
        return Ok(k.clone());
    }
    let pair =
        Arc::new(RsaKeyPair::from_der(der).map_err(|e| ErrorKind::InvalidRsaKey(e.to_string()))?);
    let mut map = parsed
        .lock()
        .map_err(|_| ErrorKind::InvalidRsaKey("poisoned".into()))?;
    // Bounded: keys rotate rarely; a process that somehow cycles through
    // many starts over rather than growing.
    if map.len() >= 64 {
        map.clear();
    }
    map.insert(id, pair.clone());
    Ok(pair)
}

fn signer(alg: &Algorithm, key: &EncodingKey) -> Result<Box<dyn JwtSigner>, Error> {
    match params(alg) {
        Some((_, padding)) => {
            if key.family() != jsonwebtoken::AlgorithmFamily::Rsa {
                return Err(ErrorKind::InvalidKeyFormat.into());
            }
            Ok(Box::new(RsaSigner {
                alg: *alg,
                padding,
                pair: key_pair(key.inner())?,
            }))
        }
        None => (rust_crypto::DEFAULT_PROVIDER.signer_factory)(alg, key),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::pkcs1::{EncodeRsaPrivateKey, EncodeRsaPublicKey};
    use rsa::traits::PublicKeyParts;

    fn keys(bits: usize) -> (EncodingKey, DecodingKey, DecodingKey) {
        let k = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, bits).unwrap();
        let p = k.to_public_key();
        (
            EncodingKey::from_rsa_der(k.to_pkcs1_der().unwrap().as_bytes()),
            DecodingKey::from_rsa_der(p.to_pkcs1_der().unwrap().as_bytes()),
            DecodingKey::from_rsa_raw_components(&p.n().to_bytes_be(), &p.e().to_bytes_be()),
        )
    }

    #[test]
    fn aws_lc_and_rust_crypto_agree_on_every_rsa_algorithm_and_key_form() {
        let (enc, der, parts) = keys(2048);
        let other = &rust_crypto::DEFAULT_PROVIDER;
        for alg in [Algorithm::RS256, Algorithm::RS512, Algorithm::PS256] {
            let msg = b"header.payload";
            let ours = signer(&alg, &enc).unwrap().try_sign(msg).unwrap();
            let theirs = (other.signer_factory)(&alg, &enc)
                .unwrap()
                .try_sign(msg)
                .unwrap();
            for key in [&der, &parts] {
                // Each verifies the other's signatures.
                assert!((other.verifier_factory)(&alg, key)
                    .unwrap()
                    .verify(msg, &ours)
                    .is_ok());
                assert!(verifier(&alg, key).unwrap().verify(msg, &theirs).is_ok());
                // A changed message or signature fails.
                assert!(verifier(&alg, key)
                    .unwrap()
                    .verify(b"header.payloaD", &theirs)
                    .is_err());
                let mut bad = theirs.clone();
                bad[7] ^= 1;
                assert!(verifier(&alg, key).unwrap().verify(msg, &bad).is_err());
            }
        }
    }

    #[test]
    fn keys_shorter_than_2048_bits_are_refused() {
        let (enc, der, _) = keys(1024);
        let sig = (rust_crypto::DEFAULT_PROVIDER.signer_factory)(&Algorithm::RS256, &enc)
            .unwrap()
            .try_sign(b"m")
            .unwrap();
        assert!(verifier(&Algorithm::RS256, &der)
            .unwrap()
            .verify(b"m", &sig)
            .is_err());
        assert!(signer(&Algorithm::RS256, &enc).is_err());
    }

    #[test]
    fn other_algorithms_are_left_to_rust_crypto() {
        let key = EncodingKey::from_secret(b"k");
        let sig = signer(&Algorithm::HS256, &key)
            .unwrap()
            .try_sign(b"m")
            .unwrap();
        let v = verifier(&Algorithm::HS256, &DecodingKey::from_secret(b"k")).unwrap();
        assert!(v.verify(b"m", &sig).is_ok());
        // An RSA algorithm with a non-RSA key is an error, not a panic.
        assert!(verifier(&Algorithm::RS256, &DecodingKey::from_secret(b"k")).is_err());
    }
}
