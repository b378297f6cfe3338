//! Continue tokens: opaque to callers, they pin a list to the revision of its first page and name the
//! last key returned. Both engines share one encoding so a token means the same thing everywhere.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::{Revision, StoreError};

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Continuation {
    /// Revision of the first page.
    #[serde(rename = "rv")]
    pub(crate) revision: Revision,
    /// The last key returned; the next page starts after it.
    #[serde(rename = "after")]
    pub(crate) last_key: String,
}

impl Continuation {
    pub(crate) fn encode(&self) -> String {
        // Serializing a struct of an integer and a string cannot fail.
        let json = serde_json::to_vec(self).unwrap_or_default();
        URL_SAFE_NO_PAD.encode(json)
    }

    /// Decodes `token` and checks that it continues a list of `prefix`.
    pub(crate) fn decode(token: &str, prefix: &str) -> Result<Self, StoreError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(token.trim_end_matches('='))
            .map_err(|e| StoreError::InvalidContinue(e.to_string()))?;
        let continuation: Continuation = serde_json::from_slice(&bytes)
            .map_err(|e| StoreError::InvalidContinue(e.to_string()))?;
        if !continuation.last_key.starts_with(prefix) {
            return Err(StoreError::InvalidContinue(
                "the token belongs to another list".into(),
            ));
        }
        if continuation.revision <= 0 {
            return Err(StoreError::InvalidContinue("bad revision".into()));
        }
        Ok(continuation)
    }
}

/// The first key of the next page: the smallest key greater than `last_key`.
pub(crate) fn key_after(last_key: &str) -> Vec<u8> {
    let mut key = last_key.as_bytes().to_vec();
    key.push(0);
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_round_trips() {
        let c = Continuation {
            revision: 42,
            last_key: "/registry/pods/ns/a".into(),
        };
        let decoded = Continuation::decode(&c.encode(), "/registry/pods/").expect("decodes");
        assert_eq!(decoded, c);
    }

    #[test]
    fn token_for_another_prefix_is_rejected() {
        let c = Continuation {
            revision: 42,
            last_key: "/registry/pods/ns/a".into(),
        };
        let err = Continuation::decode(&c.encode(), "/registry/secrets/").expect_err("must fail");
        assert!(matches!(err, StoreError::InvalidContinue(_)));
    }

    #[test]
    fn garbage_token_is_rejected() {
        assert!(matches!(
            Continuation::decode("not base64 at all!", ""),
            Err(StoreError::InvalidContinue(_))
        ));
        assert!(matches!(
            Continuation::decode(&URL_SAFE_NO_PAD.encode(b"{}"), ""),
            Err(StoreError::InvalidContinue(_))
        ));
    }
}
