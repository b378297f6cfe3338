//! Reads the admin kubeconfig `capstan server` writes: the server URL, the cluster CA and the client
//! certificate and key. Only the fixed one-cluster, one-user shape the server writes is understood
//! (inline base64 `*-data` fields), so no YAML library is needed.

use anyhow::{Context, Result, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use capstan_pki::CertKeyPair;

/// What a client needs from a kubeconfig.
#[derive(Debug, Clone)]
pub(crate) struct Credentials {
    pub(crate) server: String,
    pub(crate) ca_pem: String,
    pub(crate) client: CertKeyPair,
}

/// The value of `key:` on the first line that has it, without YAML double quotes.
fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines().find_map(|line| {
        let rest = line.trim_start().strip_prefix(key)?.strip_prefix(':')?;
        let value = rest.trim();
        Some(
            value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value),
        )
    })
}

fn decoded(text: &str, key: &str) -> Result<String> {
    let Some(value) = field(text, key) else {
        bail!("kubeconfig has no {key}");
    };
    let bytes = STANDARD
        .decode(value)
        .with_context(|| format!("kubeconfig {key} is not base64"))?;
    String::from_utf8(bytes).with_context(|| format!("kubeconfig {key} is not text"))
}

/// Parses the text of a kubeconfig written by `capstan server`.
pub(crate) fn parse(text: &str) -> Result<Credentials> {
    let Some(server) = field(text, "server") else {
        bail!("kubeconfig has no server");
    };
    Ok(Credentials {
        server: server.to_owned(),
        ca_pem: decoded(text, "certificate-authority-data")?,
        client: CertKeyPair {
            cert_pem: decoded(text, "client-certificate-data")?,
            key_pem: decoded(text, "client-key-data")?,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_back_what_the_server_writes() {
        let client = CertKeyPair {
            cert_pem: "-----BEGIN CERTIFICATE-----\nCERT\n-----END CERTIFICATE-----\n".into(),
            key_pem: "-----BEGIN PRIVATE KEY-----\nKEY\n-----END PRIVATE KEY-----\n".into(),
        };
        let yaml = capstan_pki::kubeconfig_yaml("https://127.0.0.1:6443", "CA PEM\n", &client);
        let creds = parse(&yaml).expect("parse");
        assert_eq!(creds.server, "https://127.0.0.1:6443");
        assert_eq!(creds.ca_pem, "CA PEM\n");
        assert_eq!(creds.client, client);
    }

    #[test]
    fn missing_or_broken_fields_are_errors() {
        let cases = [
            ("", "no server"),
            ("server: x\n", "no certificate-authority-data"),
            (
                "server: x\ncertificate-authority-data: !!notbase64\n",
                "not base64",
            ),
            (
                "server: x\ncertificate-authority-data: QQ==\nclient-certificate-data: QQ==\n",
                "no client-key-data",
            ),
        ];
        for (text, want) in cases {
            let error = format!("{:#}", parse(text).expect_err(text));
            assert!(error.contains(want), "{text:?}: {error}");
        }
    }
}
