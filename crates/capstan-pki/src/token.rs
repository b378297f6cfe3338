//! The k3s-style join token: `K10<sha256 hex of the CA certificate DER>::<user>:<password>`.
//!
//! An agent that holds the token can check the CA the server presents against the hash before it
//! trusts it, then authenticate with the user and password.

use std::fmt::Write as _;
use std::path::Path;

use ring::digest;
use ring::rand::{SecureRandom, SystemRandom};

use crate::PkiError;
use crate::ca::first_cert_der;
use crate::fsutil::{self, PRIVATE};

const PREFIX: &str = "K10";
const SERVER_USER: &str = "server";
const PASSWORD_BYTES: usize = 16;

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Lowercase hex SHA-256 of the DER of the first certificate in `ca_pem`.
pub fn ca_cert_hash(ca_pem: &str) -> Result<String, PkiError> {
    let der = first_cert_der(ca_pem.as_bytes())?;
    Ok(hex(digest::digest(&digest::SHA256, &der).as_ref()))
}

/// Reads the token at `path` if the file exists, else creates
/// `K10<sha256 hex of the CA cert DER>::server:<32 random hex chars>`, writes it (mode 0600,
/// creating parent dirs) and returns it. Surrounding whitespace in the file is ignored.
pub fn load_or_create_join_token(path: &Path, ca_pem: &str) -> Result<String, PkiError> {
    if let Some(existing) = fsutil::read_optional(path)? {
        let token = existing.trim();
        if token.is_empty() {
            return Err(PkiError::EmptyToken(path.to_path_buf()));
        }
        return Ok(token.to_owned());
    }
    let mut password = [0u8; PASSWORD_BYTES];
    SystemRandom::new()
        .fill(&mut password)
        .map_err(|_| PkiError::Random)?;
    let token = format!(
        "{PREFIX}{}::{SERVER_USER}:{}",
        ca_cert_hash(ca_pem)?,
        hex(&password)
    );
    fsutil::create_parent(path)?;
    fsutil::write_atomic(path, format!("{token}\n").as_bytes(), PRIVATE)?;
    Ok(token)
}

/// A parsed join token. A bare password (no `K10` prefix) is accepted too, as k3s does; it carries
/// no CA hash and the user `server`.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken {
    /// Lowercase hex SHA-256 of the CA certificate DER, when the token carries one.
    pub ca_hash: Option<String>,
    /// The user part (`server` for tokens this crate creates).
    pub user: String,
    /// The secret part.
    pub password: String,
}

impl std::fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinToken")
            .field("ca_hash", &self.ca_hash)
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl JoinToken {
    /// Parses `K10<hash>::<user>:<password>` or a bare password.
    pub fn parse(token: &str) -> Result<JoinToken, PkiError> {
        let token = token.trim();
        if token.is_empty() {
            return Err(PkiError::InvalidToken("empty"));
        }
        let Some(rest) = token.strip_prefix(PREFIX) else {
            return Ok(JoinToken {
                ca_hash: None,
                user: SERVER_USER.to_owned(),
                password: token.to_owned(),
            });
        };
        let (hash, credentials) = rest
            .split_once("::")
            .ok_or(PkiError::InvalidToken("missing '::' after the ca hash"))?;
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(PkiError::InvalidToken("ca hash is not 64 hex digits"));
        }
        let (user, password) = credentials.split_once(':').ok_or(PkiError::InvalidToken(
            "missing ':' between user and password",
        ))?;
        if user.is_empty() || password.is_empty() {
            return Err(PkiError::InvalidToken("empty user or password"));
        }
        Ok(JoinToken {
            ca_hash: Some(hash.to_ascii_lowercase()),
            user: user.to_owned(),
            password: password.to_owned(),
        })
    }

    /// Whether `ca_pem` is the CA this token was made for (always true when it carries no hash).
    pub fn ca_matches(&self, ca_pem: &str) -> Result<bool, PkiError> {
        match &self.ca_hash {
            None => Ok(true),
            Some(hash) => Ok(*hash == ca_cert_hash(ca_pem)?),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Pki;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn token_has_k3s_format_and_persists() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = Pki::load_or_create(&dir.path().join("tls")).expect("ca");
        let path = dir.path().join("server/token");
        let token = load_or_create_join_token(&path, pki.ca_pem()).expect("create");

        let rest = token.strip_prefix("K10").expect("prefix");
        let (hash, creds) = rest.split_once("::").expect("::");
        let want_hash = hex(digest::digest(&digest::SHA256, pki.ca_der()).as_ref());
        assert_eq!(hash, want_hash);
        let password = creds.strip_prefix("server:").expect("server user");
        assert_eq!(password.len(), 32);
        assert!(
            password
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );

        let mode = std::fs::metadata(&path)
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            load_or_create_join_token(&path, pki.ca_pem()).expect("reload"),
            token
        );

        let other = load_or_create_join_token(&dir.path().join("token2"), pki.ca_pem())
            .expect("second token");
        assert_ne!(other, token, "passwords are random");
    }

    #[test]
    fn existing_token_file_is_read_as_is() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("token");
        std::fs::write(&path, "  my-secret\n").expect("write");
        assert_eq!(
            load_or_create_join_token(&path, "unused").expect("read"),
            "my-secret"
        );
        std::fs::write(&path, "\n").expect("write");
        assert!(matches!(
            load_or_create_join_token(&path, "unused"),
            Err(PkiError::EmptyToken(_))
        ));
    }

    #[test]
    fn parse_accepts_full_and_bare_tokens() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = Pki::load_or_create(dir.path()).expect("ca");
        let token =
            load_or_create_join_token(&dir.path().join("token"), pki.ca_pem()).expect("token");
        let parsed = JoinToken::parse(&token).expect("parse");
        assert_eq!(parsed.user, "server");
        assert_eq!(parsed.password.len(), 32);
        assert!(parsed.ca_matches(pki.ca_pem()).expect("match"));
        let other = tempfile::tempdir().expect("tempdir");
        let other_ca = Pki::load_or_create(other.path()).expect("other ca");
        assert!(!parsed.ca_matches(other_ca.ca_pem()).expect("no match"));

        let bare = JoinToken::parse("secret").expect("bare");
        assert_eq!(bare.ca_hash, None);
        assert_eq!(bare.password, "secret");
        assert!(bare.ca_matches(other_ca.ca_pem()).expect("no hash"));
        assert!(!format!("{parsed:?}").contains(&parsed.password));
    }

    #[test]
    fn parse_rejects_malformed_tokens() {
        let hash = "a".repeat(64);
        for bad in [
            String::new(),
            "K10abc::server:pw".to_string(),
            format!("K10{hash}server:pw"),
            format!("K10{hash}::serverpw"),
            format!("K10{hash}:::pw"),
            format!("K10{hash}::server:"),
            format!("K10{}::server:pw", "g".repeat(64)),
        ] {
            assert!(JoinToken::parse(&bad).is_err(), "{bad:?}");
        }
    }
}
