//! Capstan's public key infrastructure: the cluster CA, the API server's serving certificate, client
//! certificates (issued directly or by signing a PKCS#10 CSR), the k3s-style join token, kubeconfig
//! files, and the rustls configurations that use them.
//!
//! Everything here is synchronous file and crypto work with no network IO; call it from a blocking
//! context. Keys are ECDSA P-256, signatures go through `ring` (never aws-lc), and every rustls
//! config is built with [`rustls::crypto::ring::default_provider`] rather than a process-wide default.
//!
//! Files under the PKI directory (see [`Pki::load_or_create`]):
//!
//! | file | what | mode |
//! |---|---|---|
//! | `ca.crt` / `ca.key` | self-signed cluster CA, 10 years | 0644 / 0600 |
//! | `serving.crt` / `serving.key` | API server serving certificate, 1 year, reused while valid | 0644 / 0600 |
//! | `service-account.key` | ES256 key signing service account tokens ([`TokenSigner`]) | 0600 |
//!
//! Invariants: this crate depends on no other Capstan crate and knows nothing of HTTP or Kubernetes
//! objects beyond the conventions it encodes (CN = user, O = groups, the kubeconfig shape). Input read
//! from disk or the network (PEM files, CSRs, certificates) never panics: it yields a [`PkiError`].

mod ca;
mod der;
mod fsutil;
mod identity;
mod jws;
mod kubeconfig;
mod tls;
mod token;

use std::path::PathBuf;

pub use ca::{DEFAULT_SERVING_SANS, Pki, new_csr};
pub use identity::{CertIdentity, identity_from_cert, identity_from_pem};
pub use jws::{TokenError, TokenSigner};
pub use kubeconfig::{
    kubeconfig_yaml, token_kubeconfig_yaml, write_kubeconfig, write_token_kubeconfig,
};
pub use tls::{client_config, client_tls_config, server_tls_config};
pub use token::{JoinToken, ca_cert_hash, load_or_create_join_token};

/// A PEM certificate and its PEM (PKCS#8) private key.
#[derive(Clone, PartialEq, Eq)]
pub struct CertKeyPair {
    /// The certificate, PEM (`-----BEGIN CERTIFICATE-----`).
    pub cert_pem: String,
    /// The private key, PEM (`-----BEGIN PRIVATE KEY-----`).
    pub key_pem: String,
}

impl std::fmt::Debug for CertKeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the private key.
        f.debug_struct("CertKeyPair")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// Reading, writing or creating a file or directory failed.
    #[error("i/o error on {path}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Only one of `ca.crt` and `ca.key` exists; refusing to replace the other.
    #[error("{present} exists but {missing} does not")]
    IncompleteCa {
        /// The file that exists.
        present: PathBuf,
        /// The file that is missing.
        missing: PathBuf,
    },
    /// The CA private key does not belong to the CA certificate.
    #[error("ca key does not match ca certificate in {dir}")]
    CaKeyMismatch {
        /// The PKI directory.
        dir: PathBuf,
    },
    /// PEM input had no block of the wanted kind, or was malformed.
    #[error("no valid {what} pem block found")]
    Pem {
        /// What was looked for, e.g. "certificate".
        what: &'static str,
    },
    /// A DER certificate could not be parsed.
    #[error("invalid certificate: {0}")]
    InvalidCertificate(String),
    /// A certificate signing request could not be parsed or is unsupported.
    #[error("invalid certificate signing request: {0}")]
    InvalidCsr(String),
    /// A certificate signing request's self-signature does not verify.
    #[error("certificate signing request signature does not verify")]
    CsrSignature,
    /// A certificate has no subject common name, so it names no user.
    #[error("certificate subject has no common name")]
    NoCommonName,
    /// A subject alternative name is neither an IP address nor an ASCII DNS name.
    #[error("invalid subject alternative name {0:?}")]
    InvalidSan(String),
    /// A validity period is zero or too large to represent.
    #[error("invalid certificate validity {0:?}")]
    InvalidValidity(std::time::Duration),
    /// A join token file exists but holds no token.
    #[error("join token file {0} is empty")]
    EmptyToken(PathBuf),
    /// A join token is not in a recognised format.
    #[error("invalid join token: {0}")]
    InvalidToken(&'static str),
    /// The system random number generator failed.
    #[error("system random number generator failed")]
    Random,
    /// rcgen could not build or sign a certificate or key.
    #[error("certificate generation failed")]
    Rcgen(#[from] rcgen::Error),
    /// rustls rejected a certificate, key or configuration.
    #[error("tls configuration failed")]
    Rustls(#[from] rustls::Error),
    /// The client certificate verifier could not be built.
    #[error("client certificate verifier configuration failed")]
    ClientVerifier(#[from] rustls::server::VerifierBuilderError),
}

/// Shorthand for this crate's results.
pub type Result<T, E = PkiError> = std::result::Result<T, E>;
