//! Real TLS handshakes over loopback TCP between `Pki::server_tls_config` and `client_tls_config`.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use capstan_pki::{
    CertIdentity, CertKeyPair, Pki, client_config, client_tls_config, identity_from_cert,
};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, ServerConfig, ServerConnection, StreamOwned};

const TIMEOUT: Duration = Duration::from_secs(10);

/// What the server saw: the peer's identity (if it presented a certificate) and the ALPN protocol.
#[derive(Debug)]
struct Seen {
    identity: Option<CertIdentity>,
    alpn: Option<Vec<u8>>,
}

/// Accepts one connection, reads one line, answers "pong".
fn serve_once(config: Arc<ServerConfig>) -> (SocketAddr, JoinHandle<Result<Seen, String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    let handle = thread::spawn(move || {
        let (sock, _) = listener.accept().map_err(|e| e.to_string())?;
        sock.set_read_timeout(Some(TIMEOUT))
            .map_err(|e| e.to_string())?;
        sock.set_write_timeout(Some(TIMEOUT))
            .map_err(|e| e.to_string())?;
        let conn = ServerConnection::new(config).map_err(|e| e.to_string())?;
        let mut tls = BufReader::new(StreamOwned::new(conn, sock));
        let mut line = String::new();
        tls.read_line(&mut line).map_err(|e| e.to_string())?;
        if line != "ping\n" {
            return Err(format!("unexpected request {line:?}"));
        }
        let tls = tls.get_mut();
        let identity = match tls.conn.peer_certificates() {
            Some([leaf, ..]) => Some(identity_from_cert(leaf).map_err(|e| e.to_string())?),
            _ => None,
        };
        let alpn = tls.conn.alpn_protocol().map(<[u8]>::to_vec);
        tls.write_all(b"pong\n").map_err(|e| e.to_string())?;
        tls.flush().map_err(|e| e.to_string())?;
        tls.conn.send_close_notify();
        let _ = tls.flush();
        Ok(Seen { identity, alpn })
    });
    (addr, handle)
}

/// Connects, sends "ping", returns the answer line.
fn ping(addr: SocketAddr, config: Arc<ClientConfig>, server_name: &str) -> Result<String, String> {
    let sock = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    sock.set_write_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    let name = ServerName::try_from(server_name.to_owned()).map_err(|e| e.to_string())?;
    let conn = ClientConnection::new(config, name).map_err(|e| e.to_string())?;
    let mut tls = StreamOwned::new(conn, sock);
    tls.write_all(b"ping\n").map_err(|e| e.to_string())?;
    tls.flush().map_err(|e| e.to_string())?;
    let mut line = String::new();
    BufReader::new(tls)
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    Ok(line)
}

struct Cluster {
    _dir: tempfile::TempDir,
    pki: Pki,
    server: Arc<ServerConfig>,
}

fn cluster() -> Cluster {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::load_or_create(dir.path()).expect("ca");
    let serving = pki
        .serving_cert(&["capstan.test".to_string()])
        .expect("serving cert");
    let server = pki.server_tls_config(&serving).expect("server config");
    Cluster {
        _dir: dir,
        pki,
        server,
    }
}

fn admin(pki: &Pki) -> CertKeyPair {
    pki.issue_client_cert("admin", &["system:masters"], Duration::from_secs(3600))
        .expect("client cert")
}

#[test]
fn server_sees_the_client_certificate_identity() {
    let c = cluster();
    let client = client_tls_config(c.pki.ca_pem(), Some(&admin(&c.pki))).expect("client config");
    let (addr, server) = serve_once(c.server.clone());
    assert_eq!(ping(addr, client, "localhost").expect("ping"), "pong\n");
    let seen = server.join().expect("server thread").expect("server side");
    assert_eq!(
        seen.identity,
        Some(CertIdentity {
            user: "admin".into(),
            groups: vec!["system:masters".into()]
        })
    );
}

#[test]
fn handshake_without_a_client_certificate_succeeds() {
    let c = cluster();
    let client = client_tls_config(c.pki.ca_pem(), None).expect("client config");
    let (addr, server) = serve_once(c.server.clone());
    // An extra SAN and an IP SAN are both accepted server names.
    assert_eq!(
        ping(addr, client.clone(), "capstan.test").expect("ping"),
        "pong\n"
    );
    let seen = server.join().expect("server thread").expect("server side");
    assert_eq!(seen.identity, None);
    assert_eq!(seen.alpn, None);

    let (addr, server) = serve_once(c.server.clone());
    assert_eq!(
        ping(addr, client, "127.0.0.1").expect("ping by ip"),
        "pong\n"
    );
    server.join().expect("server thread").expect("server side");
}

#[test]
fn server_prefers_h2_and_falls_back_to_http1() {
    let c = cluster();
    for (offered, want) in [
        (vec![b"http/1.1".to_vec(), b"h2".to_vec()], b"h2".to_vec()),
        (vec![b"http/1.1".to_vec()], b"http/1.1".to_vec()),
    ] {
        let mut config = client_config(c.pki.ca_pem(), None).expect("client config");
        config.alpn_protocols = offered;
        let (addr, server) = serve_once(c.server.clone());
        ping(addr, Arc::new(config), "localhost").expect("ping");
        let seen = server.join().expect("server thread").expect("server side");
        assert_eq!(seen.alpn, Some(want));
    }
}

#[test]
fn client_certificate_from_another_ca_is_rejected() {
    let c = cluster();
    let other_dir = tempfile::tempdir().expect("tempdir");
    let other = Pki::load_or_create(other_dir.path()).expect("other ca");
    let client = client_tls_config(c.pki.ca_pem(), Some(&admin(&other))).expect("client config");
    let (addr, server) = serve_once(c.server.clone());
    let answer = ping(addr, client, "localhost");
    let server_result = server.join().expect("server thread");
    let err = server_result.expect_err("server must reject the foreign client cert");
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    assert!(answer.is_err() || answer.as_deref() == Ok(""), "{answer:?}");
}

#[test]
fn client_rejects_a_server_from_another_ca() {
    let c = cluster();
    let other_dir = tempfile::tempdir().expect("tempdir");
    let other = Pki::load_or_create(other_dir.path()).expect("other ca");
    let client = client_tls_config(other.ca_pem(), None).expect("client config");
    let (addr, server) = serve_once(c.server.clone());
    let err = ping(addr, client, "localhost").expect_err("untrusted server");
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    assert!(server.join().expect("server thread").is_err());
}

#[test]
fn csr_signed_certificate_authenticates() {
    let c = cluster();
    let mut params = rcgen::CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "system:node:n1");
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "system:nodes");
    let key = rcgen::KeyPair::generate().expect("key");
    let csr = params
        .serialize_request(&key)
        .expect("csr")
        .pem()
        .expect("csr pem");
    let cert_pem = c
        .pki
        .sign_client_csr(csr.as_bytes(), Duration::from_secs(3600))
        .expect("sign csr");
    let pair = CertKeyPair {
        cert_pem,
        key_pem: key.serialize_pem(),
    };
    let client = client_tls_config(c.pki.ca_pem(), Some(&pair)).expect("client config");
    let (addr, server) = serve_once(c.server.clone());
    assert_eq!(ping(addr, client, "localhost").expect("ping"), "pong\n");
    let seen = server.join().expect("server thread").expect("server side");
    assert_eq!(
        seen.identity,
        Some(CertIdentity {
            user: "system:node:n1".into(),
            groups: vec!["system:nodes".into()]
        })
    );
}
