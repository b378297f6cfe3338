//! The Kubernetes user named by a client certificate, as kube-apiserver's x509 authenticator reads
//! it: subject CN is the user name, every subject O is a group.

use crate::PkiError;
use crate::ca::{first_cert_der, parse_cert};

/// The Kubernetes user of a verified client certificate: CN -> name, every O -> group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertIdentity {
    /// The subject common name.
    pub user: String,
    /// Every subject organization, in certificate order.
    pub groups: Vec<String>,
}

/// Reads the identity from a DER certificate. It does not verify the certificate: call it on the
/// leaf of a chain the TLS layer has already verified.
///
/// When the subject repeats CN, the last one wins (as Go's `pkix.Name` does). A certificate with no
/// or an empty CN names no user and is an error.
pub fn identity_from_cert(der: &[u8]) -> Result<CertIdentity, PkiError> {
    let (_, cert) = parse_cert(der)?;
    let subject = cert.subject();
    let user = subject
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok())
        .last()
        .filter(|cn| !cn.is_empty())
        .ok_or(PkiError::NoCommonName)?
        .to_owned();
    let groups = subject
        .iter_organization()
        .map(|o| {
            o.as_str()
                .map(str::to_owned)
                .map_err(|e| PkiError::InvalidCertificate(format!("organization: {e}")))
        })
        .collect::<Result<_, _>>()?;
    Ok(CertIdentity { user, groups })
}

/// [`identity_from_cert`] on the first certificate of a PEM text.
pub fn identity_from_pem(pem: &str) -> Result<CertIdentity, PkiError> {
    identity_from_cert(&first_cert_der(pem.as_bytes())?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Pki;
    use std::time::Duration;

    fn pki() -> (tempfile::TempDir, Pki) {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = Pki::load_or_create(dir.path()).expect("ca");
        (dir, pki)
    }

    #[test]
    fn client_cert_subject_round_trips_through_identity() {
        let (_dir, pki) = pki();
        let cases: [(&str, &[&str]); 3] = [
            ("admin", &["system:masters"]),
            ("system:node:n1", &["system:nodes", "team-a", "team-b"]),
            ("nobody", &[]),
        ];
        for (user, groups) in cases {
            let pair = pki
                .issue_client_cert(user, groups, Duration::from_secs(3600))
                .expect("issue");
            let id = identity_from_pem(&pair.cert_pem).expect("identity");
            assert_eq!(id.user, user);
            assert_eq!(id.groups, groups);
        }
    }

    #[test]
    fn client_cert_is_client_auth_only_and_chains_to_the_ca() {
        let (_dir, pki) = pki();
        let pair = pki
            .issue_client_cert("admin", &["system:masters"], Duration::from_secs(7200))
            .expect("issue");
        let der = first_cert_der(pair.cert_pem.as_bytes()).expect("pem");
        let (_, cert) = parse_cert(&der).expect("parse");
        let eku = cert
            .extended_key_usage()
            .expect("eku ext")
            .expect("eku present");
        assert!(eku.value.client_auth && !eku.value.server_auth);
        assert!(!cert.is_ca());
        let (_, ca) = parse_cert(pki.ca_der()).expect("ca");
        cert.verify_signature(Some(ca.public_key()))
            .expect("signed by ca");
        assert_eq!(cert.issuer().as_raw(), ca.subject().as_raw());
        let lifetime = cert.validity().not_after.timestamp() - crate::ca::now_unix();
        assert!((7190..=7200).contains(&lifetime), "{lifetime}");
    }

    #[test]
    fn certificate_without_common_name_names_no_user() {
        let (_dir, pki) = pki();
        // Refused at issue time, and a certificate whose subject has only an O names nobody.
        assert!(matches!(
            pki.issue_client_cert("", &["g"], Duration::from_secs(60)),
            Err(PkiError::NoCommonName)
        ));
        let der = crate::der::replace_subject(
            &first_cert_der(
                pki.issue_client_cert("x", &[], Duration::from_secs(60))
                    .expect("issue")
                    .cert_pem
                    .as_bytes(),
            )
            .expect("pem"),
            &crate::der::name(&[(crate::der::OID_ORGANIZATION, "only-a-group")]),
            &rcgen::KeyPair::generate().expect("key"),
        )
        .expect("rewrite");
        assert!(matches!(
            identity_from_cert(&der),
            Err(PkiError::NoCommonName)
        ));
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(identity_from_cert(b"\x30\x03\x02\x01\x00").is_err());
        assert!(identity_from_cert(b"").is_err());
        assert!(identity_from_pem("no pem here").is_err());
    }
}
