//! kubeconfig files as the real kubectl reads them.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use capstan_pki::{Pki, write_kubeconfig, write_token_kubeconfig};

const KUBECTL: &str = "/usr/bin/kubectl";

/// `kubectl config view --raw --kubeconfig PATH -o jsonpath=EXPR`.
fn view(path: &Path, jsonpath: &str) -> String {
    let out = Command::new(KUBECTL)
        .arg("config")
        .arg("view")
        .arg("--raw")
        .arg("--kubeconfig")
        .arg(path)
        .arg("-o")
        .arg(format!("jsonpath={jsonpath}"))
        .env_remove("KUBECONFIG")
        .output()
        .expect("run kubectl");
    assert!(
        out.status.success(),
        "kubectl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn client_cert_kubeconfig_is_read_by_kubectl() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::load_or_create(&dir.path().join("tls")).expect("ca");
    let admin = pki
        .issue_client_cert("admin", &["system:masters"], Duration::from_secs(3600))
        .expect("client cert");
    let path = dir.path().join("nested/dir/admin.kubeconfig");
    for server in [
        "https://127.0.0.1:6443",
        "https://[::1]:6443",
        "https://capstan.test:443/base",
    ] {
        write_kubeconfig(&path, server, pki.ca_pem(), &admin).expect("write");
        assert_eq!(view(&path, "{.clusters[0].cluster.server}"), server);
    }
    assert_eq!(mode(&path), 0o600);
    assert_eq!(view(&path, "{.current-context}"), "default");
    assert_eq!(view(&path, "{.contexts[0].context.cluster}"), "default");
    assert_eq!(view(&path, "{.contexts[0].context.user}"), "default");
    assert_eq!(
        view(&path, "{.clusters[0].cluster.certificate-authority-data}"),
        STANDARD.encode(pki.ca_pem())
    );
    assert_eq!(
        view(&path, "{.users[0].user.client-certificate-data}"),
        STANDARD.encode(&admin.cert_pem)
    );
    assert_eq!(
        view(&path, "{.users[0].user.client-key-data}"),
        STANDARD.encode(&admin.key_pem)
    );
}

#[test]
fn token_kubeconfig_is_read_by_kubectl() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::load_or_create(dir.path()).expect("ca");
    let path = dir.path().join("token.kubeconfig");
    // A token with characters YAML would otherwise treat specially.
    let token = "K10abc::server:pw #not-a-comment \"quoted\" \\ end";
    write_token_kubeconfig(&path, "https://10.0.0.1:6443", pki.ca_pem(), token).expect("write");
    assert_eq!(mode(&path), 0o600);
    assert_eq!(view(&path, "{.users[0].user.token}"), token);
    assert_eq!(
        view(&path, "{.clusters[0].cluster.server}"),
        "https://10.0.0.1:6443"
    );
    assert_eq!(view(&path, "{.users[0].user.client-certificate-data}"), "");
}
