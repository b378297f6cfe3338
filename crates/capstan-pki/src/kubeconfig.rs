//! kubeconfig files: one cluster, one user and one context, all named `default`, with the CA and
//! the credentials inline. The shape is fixed, so it is written from a template rather than through
//! a YAML library; strings that come from callers are emitted as double-quoted YAML scalars.

use std::fmt::Write as _;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::fsutil::{self, PRIVATE};
use crate::{CertKeyPair, PkiError};

/// Writes a kubeconfig (YAML, mode 0600) for `server_url` trusting `ca_pem` and authenticating
/// with `client`'s certificate and key (all inline as base64 of the PEMs). Creates parent dirs.
pub fn write_kubeconfig(
    path: &Path,
    server_url: &str,
    ca_pem: &str,
    client: &CertKeyPair,
) -> Result<(), PkiError> {
    write(path, &kubeconfig_yaml(server_url, ca_pem, client))
}

/// Same as [`write_kubeconfig`] but authenticating with a bearer token.
pub fn write_token_kubeconfig(
    path: &Path,
    server_url: &str,
    ca_pem: &str,
    token: &str,
) -> Result<(), PkiError> {
    write(path, &token_kubeconfig_yaml(server_url, ca_pem, token))
}

fn write(path: &Path, yaml: &str) -> Result<(), PkiError> {
    fsutil::create_parent(path)?;
    fsutil::write_atomic(path, yaml.as_bytes(), PRIVATE)
}

/// The text [`write_kubeconfig`] writes.
pub fn kubeconfig_yaml(server_url: &str, ca_pem: &str, client: &CertKeyPair) -> String {
    let user = format!(
        "    client-certificate-data: {}\n    client-key-data: {}\n",
        STANDARD.encode(&client.cert_pem),
        STANDARD.encode(&client.key_pem)
    );
    render(server_url, ca_pem, &user)
}

/// The text [`write_token_kubeconfig`] writes.
pub fn token_kubeconfig_yaml(server_url: &str, ca_pem: &str, token: &str) -> String {
    render(
        server_url,
        ca_pem,
        &format!("    token: {}\n", quote(token)),
    )
}

fn render(server_url: &str, ca_pem: &str, user_fields: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: default
  cluster:
    certificate-authority-data: {ca}
    server: {server}
contexts:
- name: default
  context:
    cluster: default
    user: default
current-context: default
preferences: {{}}
users:
- name: default
  user:
{user_fields}",
        ca = STANDARD.encode(ca_pem),
        server = quote(server_url),
    )
}

/// A YAML double-quoted scalar holding exactly `s`.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_escapes_what_yaml_needs() {
        let cases = [
            ("https://127.0.0.1:6443", r#""https://127.0.0.1:6443""#),
            (r#"a"b\c"#, r#""a\"b\\c""#),
            ("line\nbreak\ttab\u{1}", r#""line\nbreak\ttab\u0001""#),
            ("", r#""""#),
        ];
        for (input, want) in cases {
            assert_eq!(quote(input), want, "{input:?}");
        }
    }

    #[test]
    fn token_kubeconfig_has_token_and_no_client_cert() {
        let yaml = token_kubeconfig_yaml("https://h:1", "CA", "abc");
        assert!(yaml.contains("    token: \"abc\"\n"));
        assert!(!yaml.contains("client-certificate-data"));
        assert!(yaml.contains(&format!(
            "certificate-authority-data: {}\n",
            STANDARD.encode("CA")
        )));
    }
}
