//! rustls configurations: the API server's (client certificates optional, verified against the
//! cluster CA when presented) and a client's (trusting only the cluster CA).
//!
//! Every config is built with the `ring` provider passed explicitly, so nothing depends on a
//! process-wide default provider being installed.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{CipherSuite, ClientConfig, RootCertStore, ServerConfig};

use crate::{CertKeyPair, Pki, PkiError};

/// ALPN protocols the API server offers, most preferred first.
const SERVER_ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// ring's suites with AES-128-GCM first, as Go's crypto/tls orders them (and so kube-apiserver and
/// kubectl pick them): ~30% less CPU per byte than AES-256-GCM, which matters on watch fan-out.
fn provider() -> Arc<CryptoProvider> {
    let mut provider = rustls::crypto::ring::default_provider();
    provider.cipher_suites.sort_by_key(|suite| {
        !matches!(
            suite.suite(),
            CipherSuite::TLS13_AES_128_GCM_SHA256
                | CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
                | CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
        )
    });
    Arc::new(provider)
}

/// Every certificate of a PEM text; at least one.
fn certs(pem: &str) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| PkiError::Pem {
            what: "certificate",
        })?;
    if certs.is_empty() {
        return Err(PkiError::Pem {
            what: "certificate",
        });
    }
    Ok(certs)
}

fn private_key(pem: &str) -> Result<PrivateKeyDer<'static>, PkiError> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|_| PkiError::Pem {
        what: "private key",
    })
}

fn roots(ca_pem: &str) -> Result<RootCertStore, PkiError> {
    let mut roots = RootCertStore::empty();
    for cert in certs(ca_pem)? {
        roots.add(cert)?;
    }
    Ok(roots)
}

impl Pki {
    /// The API server's rustls config: presents `serving`, offers ALPN `h2` then `http/1.1`, and
    /// asks for a client certificate without requiring one. A presented client certificate must
    /// chain to this CA (and carry clientAuth) or the handshake fails; without one the handshake
    /// succeeds, so bearer tokens still work. Read the verified peer with
    /// `ServerConnection::peer_certificates` and [`crate::identity_from_cert`].
    pub fn server_tls_config(&self, serving: &CertKeyPair) -> Result<Arc<ServerConfig>, PkiError> {
        server_tls_config(self.ca_pem(), serving)
    }
}

/// [`Pki::server_tls_config`] for a holder of the CA certificate only (a joined agent's kubelet).
pub fn server_tls_config(
    ca_pem: &str,
    serving: &CertKeyPair,
) -> Result<Arc<ServerConfig>, PkiError> {
    {
        let provider = provider();
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca_pem)?), provider.clone())
                .allow_unauthenticated()
                .build()?;
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs(&serving.cert_pem)?, private_key(&serving.key_pem)?)?;
        config.alpn_protocols = SERVER_ALPN.iter().map(|p| p.to_vec()).collect();
        // The server's order decides, as in Go's servers: every client gets AES-128-GCM if it offers it.
        config.ignore_client_order = true;
        Ok(Arc::new(config))
    }
}

/// A rustls client config trusting only `ca_pem`, presenting `client` when given. No ALPN is
/// offered; set `alpn_protocols` to match the HTTP stack in use before wrapping it in an `Arc`.
pub fn client_config(ca_pem: &str, client: Option<&CertKeyPair>) -> Result<ClientConfig, PkiError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots(ca_pem)?);
    Ok(match client {
        Some(pair) => {
            builder.with_client_auth_cert(certs(&pair.cert_pem)?, private_key(&pair.key_pem)?)?
        }
        None => builder.with_no_client_auth(),
    })
}

/// [`client_config`], shared.
pub fn client_tls_config(
    ca_pem: &str,
    client: Option<&CertKeyPair>,
) -> Result<Arc<ClientConfig>, PkiError> {
    client_config(ca_pem, client).map(Arc::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_pem_input_is_an_error() {
        assert!(matches!(
            client_tls_config("nothing", None),
            Err(PkiError::Pem { .. })
        ));
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = Pki::load_or_create(dir.path()).expect("ca");
        let serving = pki.serving_cert(&[]).expect("serving");
        let broken = CertKeyPair {
            cert_pem: serving.cert_pem.clone(),
            key_pem: "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".into(),
        };
        assert!(pki.server_tls_config(&broken).is_err());
        let config = pki.server_tls_config(&serving).expect("server config");
        assert_eq!(
            config.alpn_protocols,
            [b"h2".to_vec(), b"http/1.1".to_vec()]
        );
    }

    /// Moves every TLS byte `from` has to send into `to`, and lets `to` process them.
    fn pump<A, B>(from: &mut rustls::ConnectionCommon<A>, to: &mut rustls::ConnectionCommon<B>) {
        let mut wire = Vec::new();
        while from.wants_write() {
            from.write_tls(&mut wire).expect("write");
        }
        let mut read = &wire[..];
        while !read.is_empty() {
            to.read_tls(&mut read).expect("read");
        }
        to.process_new_packets().expect("handshake");
    }

    /// Runs a TLS handshake in memory and returns the suite the server chose.
    fn negotiated(client: ClientConfig, server: Arc<ServerConfig>) -> CipherSuite {
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
        let mut client = rustls::ClientConnection::new(Arc::new(client), name).expect("client");
        let mut server = rustls::ServerConnection::new(server).expect("server");
        for _ in 0..10 {
            pump(&mut client, &mut server);
            pump(&mut server, &mut client);
            if !client.is_handshaking() && !server.is_handshaking() {
                break;
            }
        }
        server
            .negotiated_cipher_suite()
            .expect("handshake finished")
            .suite()
    }

    #[test]
    fn aes_128_gcm_is_chosen_even_for_a_client_preferring_aes_256() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = Pki::load_or_create(dir.path()).expect("ca");
        let server = pki
            .server_tls_config(&pki.serving_cert(&[]).expect("serving"))
            .expect("server config");
        // ring's default order (kube-rs clients) offers AES-256-GCM first.
        let default_order =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .expect("versions")
                .with_root_certificates(roots(pki.ca_pem()).expect("roots"))
                .with_no_client_auth();
        assert_eq!(
            default_order.crypto_provider().cipher_suites[0].suite(),
            CipherSuite::TLS13_AES_256_GCM_SHA384
        );
        assert_eq!(
            negotiated(default_order, server.clone()),
            CipherSuite::TLS13_AES_128_GCM_SHA256
        );
        let ours = client_config(pki.ca_pem(), None).expect("client config");
        assert_eq!(
            negotiated(ours, server),
            CipherSuite::TLS13_AES_128_GCM_SHA256
        );
    }
}
