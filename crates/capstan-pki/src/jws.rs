//! Signed service account tokens: JWS compact serialization with ES256 (ECDSA P-256, SHA-256), the
//! form kube-apiserver's tokens take (JWTs). This module signs and verifies the envelope only; the
//! claims are JSON bytes the caller builds and reads (the API server knows what they mean).

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _,
    UnparsedPublicKey,
};

use crate::PkiError;
use crate::fsutil::{self, PRIVATE};

const PEM_LABEL: &str = "PRIVATE KEY";

/// Why a token was not accepted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("token is not a JWS in compact form")]
    Malformed,
    #[error("token is not signed with this cluster's service account key")]
    BadSignature,
}

/// The service account token key: signs new tokens and checks presented ones.
pub struct TokenSigner {
    key: EcdsaKeyPair,
    /// `kid` of the header: a hash of the public key, so a key change is visible in tokens.
    key_id: String,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSigner")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl TokenSigner {
    /// A key that lives as long as the process (tests, or a server without a data dir).
    pub fn ephemeral() -> Result<TokenSigner, PkiError> {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| PkiError::Random)?;
        Self::from_pkcs8(pkcs8.as_ref())
    }

    /// Reads the PKCS#8 key at `path` (PEM), creating it (mode 0600) when absent.
    pub fn load_or_create(path: &Path) -> Result<TokenSigner, PkiError> {
        if let Some(pem) = fsutil::read_optional(path)? {
            let der = pem_body(&pem).ok_or(PkiError::Pem { what: PEM_LABEL })?;
            return Self::from_pkcs8(&der);
        }
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| PkiError::Random)?;
        let encoded = base64::engine::general_purpose::STANDARD.encode(pkcs8.as_ref());
        let mut pem = format!("-----BEGIN {PEM_LABEL}-----\n");
        for line in encoded.as_bytes().chunks(64) {
            pem.push_str(&String::from_utf8_lossy(line));
            pem.push('\n');
        }
        pem.push_str(&format!("-----END {PEM_LABEL}-----\n"));
        fsutil::create_parent(path)?;
        fsutil::write_atomic(path, pem.as_bytes(), PRIVATE)?;
        Self::from_pkcs8(pkcs8.as_ref())
    }

    fn from_pkcs8(der: &[u8]) -> Result<TokenSigner, PkiError> {
        let key =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der, &SystemRandom::new())
                .map_err(|e| PkiError::InvalidCertificate(format!("service account key: {e}")))?;
        let digest = ring::digest::digest(&ring::digest::SHA256, key.public_key().as_ref());
        let key_id = URL_SAFE_NO_PAD.encode(&digest.as_ref()[..16]);
        Ok(TokenSigner { key, key_id })
    }

    /// The `kid` this key writes into token headers.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Signs `claims` (a JSON object's bytes) into `header.payload.signature`.
    pub fn sign(&self, claims: &[u8]) -> Result<String, PkiError> {
        let header = format!(r#"{{"alg":"ES256","kid":"{}"}}"#, self.key_id);
        let mut token = URL_SAFE_NO_PAD.encode(header);
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(claims));
        let signature = self
            .key
            .sign(&SystemRandom::new(), token.as_bytes())
            .map_err(|_| PkiError::Random)?;
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(signature.as_ref()));
        Ok(token)
    }

    /// Checks the signature of `token` and returns its claims' bytes. The header must name ES256;
    /// what the claims say (expiry, audience, subject) is the caller's to check.
    pub fn verify(&self, token: &str) -> Result<Vec<u8>, TokenError> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let header_json = URL_SAFE_NO_PAD
            .decode(header)
            .map_err(|_| TokenError::Malformed)?;
        // Only this algorithm is ever accepted (no "none", no algorithm confusion).
        if !header_json
            .windows(br#""alg":"ES256""#.len())
            .any(|w| w == br#""alg":"ES256""#)
        {
            return Err(TokenError::BadSignature);
        }
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| TokenError::Malformed)?;
        let signed_len = header.len() + 1 + payload.len();
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, self.key.public_key().as_ref())
            .verify(&token.as_bytes()[..signed_len], &signature)
            .map_err(|_| TokenError::BadSignature)?;
        URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| TokenError::Malformed)
    }
}

/// The DER inside the first `PRIVATE KEY` PEM block.
fn pem_body(pem: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {PEM_LABEL}-----");
    let end = format!("-----END {PEM_LABEL}-----");
    let start = pem.find(&begin)? + begin.len();
    let stop = start + pem[start..].find(&end)?;
    let body: String = pem[start..stop].split_whitespace().collect();
    base64::engine::general_purpose::STANDARD.decode(body).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_claims_verify_and_any_change_is_refused() {
        let signer = TokenSigner::ephemeral().expect("key");
        let token = signer.sign(br#"{"sub":"a"}"#).expect("sign");
        assert_eq!(signer.verify(&token).expect("verifies"), br#"{"sub":"a"}"#);

        // Another claim set under the same signature.
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged = URL_SAFE_NO_PAD.encode(br#"{"sub":"b"}"#);
        parts[1] = &forged;
        assert_eq!(
            signer.verify(&parts.join(".")),
            Err(TokenError::BadSignature)
        );
        // Another key's token.
        let other = TokenSigner::ephemeral().expect("key");
        assert_eq!(other.verify(&token), Err(TokenError::BadSignature));
        // alg "none" with no signature.
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#),
            URL_SAFE_NO_PAD.encode(br#"{"sub":"a"}"#)
        );
        assert!(signer.verify(&none).is_err());
        assert_eq!(signer.verify("not-a-token"), Err(TokenError::Malformed));
    }

    #[test]
    fn the_key_file_is_created_once_and_read_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sa.key");
        let first = TokenSigner::load_or_create(&path).expect("create");
        let token = first.sign(b"{}").expect("sign");
        let again = TokenSigner::load_or_create(&path).expect("load");
        assert_eq!(again.key_id(), first.key_id());
        assert!(again.verify(&token).is_ok(), "a token outlives a restart");
        std::fs::write(&path, "garbage").expect("write");
        assert!(TokenSigner::load_or_create(&path).is_err());
    }
}
