//! The cluster CA and the certificates it issues: the API server's serving certificate, client
//! certificates, and client certificates signed from a PKCS#10 CSR.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use ring::rand::{SecureRandom, SystemRandom};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateSigningRequestDer};
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

use crate::der;
use crate::fsutil::{self, PRIVATE, PUBLIC};
use crate::{CertKeyPair, PkiError};

/// Names every serving certificate carries, before the caller's extras.
pub const DEFAULT_SERVING_SANS: [&str; 6] = [
    "localhost",
    "127.0.0.1",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
];

const DAY: i64 = 24 * 60 * 60;
const CA_VALIDITY: i64 = 10 * 365 * DAY;
const SERVING_VALIDITY: i64 = 365 * DAY;
/// A serving certificate closer than this to expiry is replaced at start-up.
const SERVING_RENEW_BEFORE: i64 = 30 * DAY;
/// Leaf certificates start this far in the past, to tolerate clock skew between nodes (as the
/// Kubernetes CSR signer does).
const BACKDATE: i64 = 5 * 60;
const SERVING_COMMON_NAME: &str = "kube-apiserver";

/// The cluster certificate authority, kept in a directory (`ca.crt`, `ca.key`, and the serving
/// certificate's `serving.crt`, `serving.key`).
pub struct Pki {
    dir: PathBuf,
    ca_pem: String,
    ca_der: Vec<u8>,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Pki {
    /// Loads `DIR/ca.crt` + `DIR/ca.key`, or creates a new self-signed CA (ECDSA P-256, CN
    /// `capstan-ca@<unix time>`, 10 years) and writes them (key file mode 0600). Creates `DIR`.
    ///
    /// Fails rather than overwrite when only one of the two files exists, or when the key does not
    /// belong to the certificate.
    pub fn load_or_create(dir: &Path) -> Result<Pki, PkiError> {
        fsutil::create_dir(dir)?;
        let cert_path = dir.join("ca.crt");
        let key_path = dir.join("ca.key");
        match (
            fsutil::read_optional(&cert_path)?,
            fsutil::read_optional(&key_path)?,
        ) {
            (Some(cert_pem), Some(key_pem)) => Self::load(dir, cert_pem, &key_pem),
            (None, None) => Self::create(dir, &cert_path, &key_path),
            (Some(_), None) => Err(PkiError::IncompleteCa {
                present: cert_path,
                missing: key_path,
            }),
            (None, Some(_)) => Err(PkiError::IncompleteCa {
                present: key_path,
                missing: cert_path,
            }),
        }
    }

    fn load(dir: &Path, ca_pem: String, key_pem: &str) -> Result<Pki, PkiError> {
        let ca_der = first_cert_der(ca_pem.as_bytes())?;
        let key = KeyPair::from_pem(key_pem)?;
        let (_, cert) = parse_cert(&ca_der)?;
        if !cert.is_ca() {
            return Err(PkiError::InvalidCertificate(format!(
                "{} is not a ca certificate",
                dir.join("ca.crt").display()
            )));
        }
        if key_spki(&key) != cert.tbs_certificate.subject_pki.raw {
            return Err(PkiError::CaKeyMismatch {
                dir: dir.to_path_buf(),
            });
        }
        let issuer = Issuer::from_ca_cert_der(&CertificateDer::from(ca_der.as_slice()), key)?;
        tracing::debug!(dir = %dir.display(), "loaded cluster ca");
        Ok(Pki {
            dir: dir.to_path_buf(),
            ca_pem,
            ca_der,
            issuer,
        })
    }

    fn create(dir: &Path, cert_path: &Path, key_path: &Path) -> Result<Pki, PkiError> {
        let now = now_unix();
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, format!("capstan-ca@{now}"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = timestamp(now - BACKDATE)?;
        params.not_after = timestamp(now + CA_VALIDITY)?;
        params.serial_number = Some(random_serial()?);
        let cert = params.self_signed(&key)?;
        let ca_pem = cert.pem();
        // Key first: a crash in between leaves a key without a certificate, which load_or_create
        // reports instead of silently minting a second CA.
        fsutil::write_atomic(key_path, key.serialize_pem().as_bytes(), PRIVATE)?;
        fsutil::write_atomic(cert_path, ca_pem.as_bytes(), PUBLIC)?;
        tracing::info!(dir = %dir.display(), "created cluster ca");
        Ok(Pki {
            dir: dir.to_path_buf(),
            ca_der: cert.der().to_vec(),
            ca_pem,
            issuer: Issuer::new(params, key),
        })
    }

    /// The CA certificate, PEM.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The CA certificate, DER.
    pub fn ca_der(&self) -> &[u8] {
        &self.ca_der
    }

    /// The directory the CA lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A serving certificate for the API server with [`DEFAULT_SERVING_SANS`] plus `extra_sans`
    /// (DNS names or IP addresses). Persisted as `DIR/serving.crt`/`.key` and reused on the next
    /// call unless the wanted SANs changed, it expires within 30 days, it was not issued by this CA,
    /// or the files are unreadable. 1 year validity, extended key usage serverAuth.
    pub fn serving_cert(&self, extra_sans: &[String]) -> Result<CertKeyPair, PkiError> {
        let sans = wanted_sans(extra_sans)?;
        let wanted: BTreeSet<String> = sans.iter().filter_map(san_key).collect();
        let cert_path = self.dir.join("serving.crt");
        let key_path = self.dir.join("serving.key");
        if let (Some(cert_pem), Some(key_pem)) = (
            fsutil::read_optional(&cert_path)?,
            fsutil::read_optional(&key_path)?,
        ) {
            match self.reusable_serving(&cert_pem, &key_pem, &wanted) {
                Ok(None) => return Ok(CertKeyPair { cert_pem, key_pem }),
                Ok(Some(reason)) => {
                    tracing::info!(reason, "regenerating serving certificate");
                }
                Err(error) => {
                    tracing::warn!(%error, "existing serving certificate unusable, regenerating");
                }
            }
        }
        let now = now_unix();
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = leaf_params(now, now + SERVING_VALIDITY)?;
        params
            .distinguished_name
            .push(DnType::CommonName, SERVING_COMMON_NAME);
        params.subject_alt_names = sans;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &self.issuer)?;
        let pair = CertKeyPair {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        };
        fsutil::write_atomic(&key_path, pair.key_pem.as_bytes(), PRIVATE)?;
        fsutil::write_atomic(&cert_path, pair.cert_pem.as_bytes(), PUBLIC)?;
        Ok(pair)
    }

    /// `Ok(None)` when the stored serving pair can be reused, `Ok(Some(reason))` when not.
    fn reusable_serving(
        &self,
        cert_pem: &str,
        key_pem: &str,
        wanted: &BTreeSet<String>,
    ) -> Result<Option<&'static str>, PkiError> {
        let der = first_cert_der(cert_pem.as_bytes())?;
        let (_, cert) = parse_cert(&der)?;
        if !self.issued(&cert) {
            return Ok(Some("not issued by the current ca"));
        }
        let key = KeyPair::from_pem(key_pem)?;
        if key_spki(&key) != cert.tbs_certificate.subject_pki.raw {
            return Ok(Some("key does not match certificate"));
        }
        if cert.validity().not_after.timestamp() - now_unix() < SERVING_RENEW_BEFORE {
            return Ok(Some("expires within 30 days"));
        }
        if cert_sans(&cert)? != *wanted {
            return Ok(Some("subject alternative names changed"));
        }
        Ok(None)
    }

    /// Whether `cert` carries a valid signature by this CA.
    fn issued(&self, cert: &X509Certificate<'_>) -> bool {
        match parse_cert(&self.ca_der) {
            Ok((_, ca)) => cert.verify_signature(Some(ca.public_key())).is_ok(),
            Err(_) => false,
        }
    }

    /// A client certificate: subject CN = `common_name` (the user), one O per group. Extended key
    /// usage clientAuth; valid from now (backdated 5 minutes) for `validity`.
    pub fn issue_client_cert(
        &self,
        common_name: &str,
        groups: &[&str],
        validity: Duration,
    ) -> Result<CertKeyPair, PkiError> {
        if common_name.is_empty() {
            return Err(PkiError::NoCommonName);
        }
        let now = now_unix();
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = leaf_params(now, not_after(now, validity)?)?;
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        for group in groups {
            params
                .distinguished_name
                .push(DnType::OrganizationName, *group);
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &self.issuer)?;
        // rcgen holds one value per attribute type: write the subject (every O, then CN) ourselves.
        let mut subject: Vec<(&[u8], &str)> = groups
            .iter()
            .map(|group| (der::OID_ORGANIZATION, *group))
            .collect();
        subject.push((der::OID_COMMON_NAME, common_name));
        let cert_der = der::replace_subject(cert.der(), &der::name(&subject), self.issuer.key())?;
        Ok(CertKeyPair {
            cert_pem: der::pem("CERTIFICATE", &cert_der),
            key_pem: key.serialize_pem(),
        })
    }

    /// Signs a PKCS#10 CSR (PEM `CERTIFICATE REQUEST`; DER is accepted too) as a client
    /// certificate: the CSR's subject (CN, O, ...) and public key are kept, its requested
    /// extensions are ignored (the result is never a CA and carries only clientAuth). The CSR's
    /// self-signature must verify. Returns the certificate PEM.
    pub fn sign_client_csr(&self, csr_pem: &[u8], validity: Duration) -> Result<String, PkiError> {
        self.sign_csr(csr_pem, validity, false)
    }

    /// Signs a CSR as a serving certificate (a kubelet's): like [`Pki::sign_client_csr`] but with
    /// serverAuth, and the DNS/IP subject alternative names the CSR requests (at least one).
    pub fn sign_serving_csr(&self, csr_pem: &[u8], validity: Duration) -> Result<String, PkiError> {
        self.sign_csr(csr_pem, validity, true)
    }

    fn sign_csr(
        &self,
        csr_pem: &[u8],
        validity: Duration,
        serving: bool,
    ) -> Result<String, PkiError> {
        let der = match CertificateSigningRequestDer::from_pem_slice(csr_pem) {
            Ok(der) => der,
            Err(_) if csr_pem.first() == Some(&0x30) => CertificateSigningRequestDer::from(csr_pem),
            Err(_) => {
                return Err(PkiError::InvalidCsr(
                    "no certificate request pem block".into(),
                ));
            }
        };
        let (rest, csr) = X509CertificationRequest::from_der(der.as_ref())
            .map_err(|e| PkiError::InvalidCsr(e.to_string()))?;
        if !rest.is_empty() {
            return Err(PkiError::InvalidCsr("trailing data after request".into()));
        }
        csr.verify_signature().map_err(|_| PkiError::CsrSignature)?;
        let info = &csr.certification_request_info;
        let public_key = rcgen::SubjectPublicKeyInfo::from_der(info.subject_pki.raw)
            .map_err(|e| PkiError::InvalidCsr(format!("unsupported public key: {e}")))?;

        let now = now_unix();
        let mut params = leaf_params(now, not_after(now, validity)?)?;
        let has_cn = info
            .subject
            .iter_common_name()
            .any(|cn| cn.as_str().is_ok_and(|cn| !cn.is_empty()));
        if !has_cn {
            return Err(PkiError::NoCommonName);
        }
        if serving {
            params.subject_alt_names = csr_sans(&csr)?;
            if params.subject_alt_names.is_empty() {
                return Err(PkiError::InvalidCsr(
                    "a serving certificate request needs DNS or IP names".into(),
                ));
            }
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        } else {
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        }
        let cert = params.signed_by(&public_key, &self.issuer)?;
        // Keep the requested subject byte for byte, as the Kubernetes signer does.
        let cert_der = der::replace_subject(cert.der(), info.subject.as_raw(), self.issuer.key())?;
        Ok(der::pem("CERTIFICATE", &cert_der))
    }
}

/// The DNS and IP names a CSR asks for (other name types are not granted).
fn csr_sans(csr: &X509CertificationRequest<'_>) -> Result<Vec<SanType>, PkiError> {
    let mut out = Vec::new();
    let Some(extensions) = csr.requested_extensions() else {
        return Ok(out);
    };
    for ext in extensions {
        if let x509_parser::extensions::ParsedExtension::SubjectAlternativeName(san) = ext {
            for name in &san.general_names {
                match name {
                    GeneralName::DNSName(dns) => out.push(SanType::DnsName(
                        (*dns)
                            .to_owned()
                            .try_into()
                            .map_err(|_| PkiError::InvalidSan((*dns).to_owned()))?,
                    )),
                    GeneralName::IPAddress(bytes) => {
                        let ip = match bytes.len() {
                            4 => <[u8; 4]>::try_from(*bytes).ok().map(IpAddr::from),
                            16 => <[u8; 16]>::try_from(*bytes).ok().map(IpAddr::from),
                            _ => None,
                        };
                        if let Some(ip) = ip {
                            out.push(SanType::IpAddress(ip));
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    Ok(out)
}

/// A new P-256 key and a PEM CSR for subject CN=`common_name` (O=`organization` when given) asking
/// for `sans` (DNS names or IPs). Returns `(csr_pem, key_pem)`.
pub fn new_csr(
    common_name: &str,
    organization: Option<&str>,
    sans: &[String],
) -> Result<(String, String), PkiError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    if let Some(org) = organization {
        params
            .distinguished_name
            .push(DnType::OrganizationName, org);
    }
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    for name in sans {
        params.subject_alt_names.push(match name.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(
                name.clone()
                    .try_into()
                    .map_err(|_| PkiError::InvalidSan(name.clone()))?,
            ),
        });
    }
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let csr = params.serialize_request(&key)?;
    Ok((csr.pem()?, key.serialize_pem()))
}

/// Parameters shared by every leaf certificate: empty subject, random serial, not a CA,
/// digitalSignature, authority key identifier, valid from `now` (backdated) to `not_after`.
fn leaf_params(now: i64, not_after: i64) -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(random_serial()?);
    params.not_before = timestamp(now - BACKDATE)?;
    params.not_after = timestamp(not_after)?;
    Ok(params)
}

fn not_after(now: i64, validity: Duration) -> Result<i64, PkiError> {
    if validity.is_zero() {
        return Err(PkiError::InvalidValidity(validity));
    }
    i64::try_from(validity.as_secs())
        .ok()
        .and_then(|secs| now.checked_add(secs))
        .ok_or(PkiError::InvalidValidity(validity))
}

fn timestamp(unix: i64) -> Result<OffsetDateTime, PkiError> {
    OffsetDateTime::from_unix_timestamp(unix)
        .map_err(|_| PkiError::InvalidValidity(Duration::from_secs(unix.unsigned_abs())))
}

pub(crate) fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A random positive 128-bit serial number (RFC 5280 allows up to 20 octets).
fn random_serial() -> Result<SerialNumber, PkiError> {
    let mut bytes = [0u8; 16];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| PkiError::Random)?;
    // Positive, and a non-zero first octet so the DER integer keeps all 16 octets.
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    Ok(SerialNumber::from_slice(&bytes))
}

/// The DER SubjectPublicKeyInfo of a key pair.
fn key_spki(key: &KeyPair) -> Vec<u8> {
    use rcgen::PublicKeyData;
    key.subject_public_key_info()
}

/// The first `CERTIFICATE` block of a PEM text, DER.
pub(crate) fn first_cert_der(pem: &[u8]) -> Result<Vec<u8>, PkiError> {
    CertificateDer::from_pem_slice(pem)
        .map(|der| der.to_vec())
        .map_err(|_| PkiError::Pem {
            what: "certificate",
        })
}

pub(crate) fn parse_cert(der: &[u8]) -> Result<(&[u8], X509Certificate<'_>), PkiError> {
    X509Certificate::from_der(der).map_err(|e| PkiError::InvalidCertificate(e.to_string()))
}

/// The SANs every serving certificate wants, defaults first, duplicates and blanks dropped.
fn wanted_sans(extra: &[String]) -> Result<Vec<SanType>, PkiError> {
    let mut seen = BTreeSet::new();
    let mut sans = Vec::new();
    for name in DEFAULT_SERVING_SANS
        .iter()
        .copied()
        .chain(extra.iter().map(|s| s.trim()))
    {
        if name.is_empty() {
            continue;
        }
        let san = match name.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => {
                if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    return Err(PkiError::InvalidSan(name.to_owned()));
                }
                let dns = rcgen::string::Ia5String::try_from(name.to_ascii_lowercase())
                    .map_err(|_| PkiError::InvalidSan(name.to_owned()))?;
                SanType::DnsName(dns)
            }
        };
        if let Some(key) = san_key(&san)
            && seen.insert(key)
        {
            sans.push(san);
        }
    }
    Ok(sans)
}

/// A comparable spelling of a SAN: `dns:<lowercase name>` or `ip:<address>`.
fn san_key(san: &SanType) -> Option<String> {
    match san {
        SanType::DnsName(name) => Some(format!("dns:{}", name.as_str().to_ascii_lowercase())),
        SanType::IpAddress(ip) => Some(format!("ip:{ip}")),
        _ => None,
    }
}

/// The DNS and IP SANs of a certificate, spelled as [`san_key`] does.
fn cert_sans(cert: &X509Certificate<'_>) -> Result<BTreeSet<String>, PkiError> {
    let mut out = BTreeSet::new();
    let Some(ext) = cert
        .subject_alternative_name()
        .map_err(|e| PkiError::InvalidCertificate(e.to_string()))?
    else {
        return Ok(out);
    };
    for name in &ext.value.general_names {
        match name {
            GeneralName::DNSName(dns) => {
                out.insert(format!("dns:{}", dns.to_ascii_lowercase()));
            }
            GeneralName::IPAddress(bytes) => {
                let ip = match bytes.len() {
                    4 => <[u8; 4]>::try_from(*bytes).ok().map(IpAddr::from),
                    16 => <[u8; 16]>::try_from(*bytes).ok().map(IpAddr::from),
                    _ => None,
                };
                match ip {
                    Some(ip) => out.insert(format!("ip:{ip}")),
                    None => out.insert(format!("ip:invalid:{bytes:?}")),
                };
            }
            _ => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn sans_of(pem: &str) -> BTreeSet<String> {
        let der = first_cert_der(pem.as_bytes()).expect("pem");
        let (_, cert) = parse_cert(&der).expect("parse");
        cert_sans(&cert).expect("sans")
    }

    #[test]
    fn ca_is_created_once_and_reloaded_identically() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki_dir = dir.path().join("tls");
        let first = Pki::load_or_create(&pki_dir).expect("create");
        let second = Pki::load_or_create(&pki_dir).expect("reload");
        assert_eq!(first.ca_pem(), second.ca_pem());
        let mode = std::fs::metadata(pki_dir.join("ca.key"))
            .expect("key metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);

        let (_, ca) = parse_cert(first.ca_der()).expect("parse ca");
        assert!(ca.is_ca());
        let cn = ca
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .expect("ca cn");
        assert!(cn.starts_with("capstan-ca@"), "{cn}");
        let years = (ca.validity().not_after.timestamp() - ca.validity().not_before.timestamp())
            / (365 * DAY);
        assert_eq!(years, 10);
        // The reloaded CA still signs certificates that chain to the stored certificate.
        let client = second
            .issue_client_cert("u", &[], Duration::from_secs(60))
            .expect("issue");
        let der = first_cert_der(client.cert_pem.as_bytes()).expect("pem");
        let (_, cert) = parse_cert(&der).expect("parse");
        assert!(first.issued(&cert));
    }

    #[test]
    fn half_written_ca_is_an_error_not_a_new_ca() {
        let dir = tempfile::tempdir().expect("tempdir");
        Pki::load_or_create(dir.path()).expect("create");
        std::fs::remove_file(dir.path().join("ca.crt")).expect("remove");
        let err = Pki::load_or_create(dir.path()).expect_err("incomplete");
        assert!(matches!(err, PkiError::IncompleteCa { .. }), "{err}");
    }

    #[test]
    fn mismatched_ca_key_is_rejected() {
        let a = tempfile::tempdir().expect("tempdir");
        let b = tempfile::tempdir().expect("tempdir");
        Pki::load_or_create(a.path()).expect("create a");
        Pki::load_or_create(b.path()).expect("create b");
        std::fs::copy(b.path().join("ca.key"), a.path().join("ca.key")).expect("copy");
        let err = Pki::load_or_create(a.path()).expect_err("mismatch");
        assert!(matches!(err, PkiError::CaKeyMismatch { .. }), "{err}");
    }

    #[test]
    fn garbage_ca_files_are_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("ca.crt"), "not pem").expect("write");
        std::fs::write(dir.path().join("ca.key"), "not pem").expect("write");
        assert!(Pki::load_or_create(dir.path()).is_err());
    }

    #[test]
    fn serving_cert_has_default_and_extra_sans_and_is_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = Pki::load_or_create(dir.path()).expect("ca");
        let extras = vec!["10.43.0.1".to_string(), "Node1.Example.com".to_string()];
        let first = pki.serving_cert(&extras).expect("serving");
        let sans = sans_of(&first.cert_pem);
        for want in [
            "dns:localhost",
            "ip:127.0.0.1",
            "dns:kubernetes",
            "dns:kubernetes.default",
            "dns:kubernetes.default.svc",
            "dns:kubernetes.default.svc.cluster.local",
            "ip:10.43.0.1",
            "dns:node1.example.com",
        ] {
            assert!(sans.contains(want), "missing {want} in {sans:?}");
        }
        assert_eq!(sans.len(), 8);

        let der = first_cert_der(first.cert_pem.as_bytes()).expect("pem");
        let (_, cert) = parse_cert(&der).expect("parse");
        let eku = cert
            .extended_key_usage()
            .expect("eku ext")
            .expect("eku present");
        assert!(eku.value.server_auth && !eku.value.client_auth);
        assert!(pki.issued(&cert));
        let days = (cert.validity().not_after.timestamp() - now_unix()) / DAY;
        assert!((364..=365).contains(&days), "{days}");
        let key_mode = std::fs::metadata(dir.path().join("serving.key"))
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(key_mode & 0o777, 0o600);

        // Same SANs (in another order, with a duplicate): reused.
        let again = pki
            .serving_cert(&[
                "node1.example.com".to_string(),
                "10.43.0.1".to_string(),
                "localhost".to_string(),
            ])
            .expect("again");
        assert_eq!(again, first);
        // A reloaded CA reuses it too.
        let reloaded = Pki::load_or_create(dir.path()).expect("reload");
        assert_eq!(reloaded.serving_cert(&extras).expect("reloaded"), first);

        // Changed SANs: regenerated.
        let changed = pki
            .serving_cert(&["10.43.0.1".to_string()])
            .expect("changed");
        assert_ne!(changed.cert_pem, first.cert_pem);
        assert!(!sans_of(&changed.cert_pem).contains("dns:node1.example.com"));
    }

    #[test]
    fn serving_cert_is_regenerated_when_near_expiry_or_from_another_ca() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = Pki::load_or_create(dir.path()).expect("ca");
        // Plant a certificate with the right SANs that expires in 10 days.
        let key = KeyPair::generate().expect("key");
        let now = now_unix();
        let mut params = leaf_params(now, now + 10 * DAY).expect("params");
        params.subject_alt_names = wanted_sans(&[]).expect("sans");
        let cert = params.signed_by(&key, &pki.issuer).expect("sign");
        std::fs::write(dir.path().join("serving.crt"), cert.pem()).expect("write");
        std::fs::write(dir.path().join("serving.key"), key.serialize_pem()).expect("write");
        let renewed = pki.serving_cert(&[]).expect("renew");
        assert_ne!(renewed.cert_pem, cert.pem());

        // A certificate from another CA is replaced as well.
        let other_dir = tempfile::tempdir().expect("tempdir");
        let other = Pki::load_or_create(other_dir.path()).expect("other ca");
        let foreign = other.serving_cert(&[]).expect("foreign");
        std::fs::write(dir.path().join("serving.crt"), &foreign.cert_pem).expect("write");
        std::fs::write(dir.path().join("serving.key"), &foreign.key_pem).expect("write");
        let replaced = pki.serving_cert(&[]).expect("replace");
        assert_ne!(replaced.cert_pem, foreign.cert_pem);

        // Corrupt files are replaced rather than failing start-up.
        std::fs::write(dir.path().join("serving.crt"), "garbage").expect("write");
        let repaired = pki.serving_cert(&[]).expect("repair");
        assert_ne!(repaired.cert_pem, replaced.cert_pem);
    }

    #[test]
    fn invalid_sans_are_rejected() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = Pki::load_or_create(dir.path()).expect("ca");
        for bad in ["bad name", "ünïcode.example"] {
            let err = pki.serving_cert(&[bad.to_string()]).expect_err(bad);
            assert!(matches!(err, PkiError::InvalidSan(_)), "{bad}: {err}");
        }
    }

    #[test]
    fn zero_or_huge_validity_is_rejected() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = Pki::load_or_create(dir.path()).expect("ca");
        for validity in [Duration::ZERO, Duration::from_secs(u64::MAX)] {
            let err = pki
                .issue_client_cert("u", &[], validity)
                .expect_err("invalid validity");
            assert!(matches!(err, PkiError::InvalidValidity(_)), "{err}");
        }
    }

    #[test]
    fn serials_are_distinct_and_positive() {
        let a = random_serial().expect("serial").to_bytes();
        let b = random_serial().expect("serial").to_bytes();
        assert_ne!(a, b);
        assert_eq!(a.len(), 16);
        assert!(a[0] & 0x80 == 0 && a[0] != 0);
    }

    #[test]
    fn serving_csrs_keep_their_names_and_get_server_auth() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = Pki::load_or_create(dir.path()).expect("ca");
        let (csr, _key) = new_csr(
            "system:node:n1",
            Some("system:nodes"),
            &["n1".into(), "10.0.0.7".into()],
        )
        .expect("csr");
        let pem = pki
            .sign_serving_csr(csr.as_bytes(), Duration::from_secs(3600))
            .expect("signed");
        let der = first_cert_der(pem.as_bytes()).expect("der");
        let (_, cert) = parse_cert(&der).expect("parse");
        let sans = cert_sans(&cert).expect("sans");
        assert!(
            sans.contains("dns:n1") && sans.contains("ip:10.0.0.7"),
            "{sans:?}"
        );
        let eku = cert
            .extended_key_usage()
            .expect("eku")
            .expect("present")
            .value
            .clone();
        assert!(eku.server_auth && !eku.client_auth);
        // No names: refused.
        let (bare, _) = new_csr("system:node:n1", Some("system:nodes"), &[]).expect("csr");
        assert!(
            pki.sign_serving_csr(bare.as_bytes(), Duration::from_secs(60))
                .is_err()
        );
        // The same request signed as a client certificate keeps the identity.
        let client = pki
            .sign_client_csr(csr.as_bytes(), Duration::from_secs(60))
            .expect("client");
        let id = crate::identity_from_pem(&client).expect("identity");
        assert_eq!(id.user, "system:node:n1");
        assert_eq!(id.groups, ["system:nodes"]);
    }

    fn client_csr(cn: &str, orgs: &[&str]) -> (KeyPair, rcgen::CertificateSigningRequest) {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, cn);
        for org in orgs {
            params
                .distinguished_name
                .push(DnType::OrganizationName, *org);
        }
        let key = KeyPair::generate().expect("key");
        let csr = params.serialize_request(&key).expect("csr");
        (key, csr)
    }

    /// A CSR with an arbitrary DER subject (rcgen cannot repeat O), self-signed by a new key.
    fn csr_with_subject(subject: &[u8]) -> Vec<u8> {
        use rcgen::SigningKey;
        let (key, csr) = client_csr("placeholder", &[]);
        let (outer, _) = der::read_tlv(csr.der()).expect("outer");
        let (info, after) = der::read_tlv(outer.content).expect("info");
        let (alg, _) = der::read_tlv(after).expect("alg");
        // CertificationRequestInfo: version, subject, subjectPKInfo, [0] attributes.
        let mut rest = info.content;
        let mut fields = Vec::new();
        while !rest.is_empty() {
            let (field, next) = der::read_tlv(rest).expect("field");
            fields.push(field.raw);
            rest = next;
        }
        fields[1] = subject;
        let new_info = der::encode(0x30, &fields.concat());
        let mut bits = vec![0];
        bits.extend(key.sign(&new_info).expect("sign"));
        let mut body = new_info;
        body.extend_from_slice(alg.raw);
        body.extend(der::encode(0x03, &bits));
        der::pem("CERTIFICATE REQUEST", &der::encode(0x30, &body)).into_bytes()
    }

    fn parsed(pem: &str) -> (Vec<u8>, crate::CertIdentity) {
        let der = first_cert_der(pem.as_bytes()).expect("pem");
        let id = crate::identity_from_cert(&der).expect("identity");
        (der, id)
    }

    #[test]
    fn csr_is_signed_keeping_subject_and_public_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = Pki::load_or_create(dir.path()).expect("ca");
        let (key, csr) = client_csr("system:node:n1", &["system:nodes"]);
        let cert_pem = pki
            .sign_client_csr(
                csr.pem().expect("pem").as_bytes(),
                Duration::from_secs(86400),
            )
            .expect("sign");
        let (der, id) = parsed(&cert_pem);
        assert_eq!(id.user, "system:node:n1");
        assert_eq!(id.groups, ["system:nodes"]);
        let (_, cert) = parse_cert(&der).expect("parse");
        assert!(pki.issued(&cert), "chains to the ca");
        let (_, ca) = parse_cert(pki.ca_der()).expect("ca");
        assert_eq!(cert.issuer().as_raw(), ca.subject().as_raw());
        assert_eq!(
            cert.tbs_certificate.subject_pki.raw,
            key_spki(&key).as_slice()
        );
        let eku = cert
            .extended_key_usage()
            .expect("eku")
            .expect("eku present");
        assert!(eku.value.client_auth && !eku.value.server_auth);
        let lifetime = cert.validity().not_after.timestamp() - now_unix();
        assert!((86390..=86400).contains(&lifetime), "{lifetime}");

        // DER input works too.
        let from_der = pki
            .sign_client_csr(csr.der().as_ref(), Duration::from_secs(60))
            .expect("sign der");
        assert_eq!(parsed(&from_der).1, id);
    }

    #[test]
    fn csr_with_repeated_organizations_keeps_every_group() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = Pki::load_or_create(dir.path()).expect("ca");
        // Go's pkix.Name order: O..., then CN.
        let subject = der::name(&[
            (der::OID_ORGANIZATION, "system:nodes"),
            (der::OID_ORGANIZATION, "extra"),
            (der::OID_COMMON_NAME, "system:node:n2"),
        ]);
        let csr = csr_with_subject(&subject);
        let cert_pem = pki
            .sign_client_csr(&csr, Duration::from_secs(60))
            .expect("sign");
        let (der, id) = parsed(&cert_pem);
        assert_eq!(id.user, "system:node:n2");
        assert_eq!(id.groups, ["system:nodes", "extra"]);
        let (_, cert) = parse_cert(&der).expect("parse");
        assert_eq!(cert.subject().as_raw(), subject.as_slice());
        assert!(pki.issued(&cert));
    }

    #[test]
    fn csr_requested_extensions_are_not_granted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = Pki::load_or_create(dir.path()).expect("ca");
        let mut params = CertificateParams::new(vec!["evil.example".to_string()]).expect("params");
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, "mallory");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().expect("key");
        let csr = params
            .serialize_request(&key)
            .expect("csr")
            .pem()
            .expect("pem");
        let cert_pem = pki
            .sign_client_csr(csr.as_bytes(), Duration::from_secs(60))
            .expect("sign");
        let (der, _) = parsed(&cert_pem);
        let (_, cert) = parse_cert(&der).expect("parse");
        assert!(!cert.is_ca());
        let eku = cert
            .extended_key_usage()
            .expect("eku")
            .expect("eku present");
        assert!(eku.value.client_auth && !eku.value.server_auth);
        assert!(cert.subject_alternative_name().expect("san").is_none());
    }

    #[test]
    fn bad_csrs_are_errors_not_panics() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = Pki::load_or_create(dir.path()).expect("ca");
        let (_, csr) = client_csr("system:node:n1", &["system:nodes"]);
        let good = csr.der().to_vec();

        // A changed subject no longer matches the signature.
        let pos = good
            .windows(14)
            .position(|w| w == b"system:node:n1")
            .expect("cn in der");
        let mut tampered = good.clone();
        tampered[pos] ^= 0x01;
        // A changed signature fails too.
        let mut bad_sig = good.clone();
        let last = bad_sig.len() - 1;
        bad_sig[last] ^= 0xff;

        let cases: Vec<(&str, Vec<u8>)> = vec![
            (
                "tampered subject",
                der::pem("CERTIFICATE REQUEST", &tampered).into_bytes(),
            ),
            (
                "tampered signature",
                der::pem("CERTIFICATE REQUEST", &bad_sig).into_bytes(),
            ),
            (
                "truncated",
                der::pem("CERTIFICATE REQUEST", &good[..good.len() / 2]).into_bytes(),
            ),
            ("garbage text", b"hello".to_vec()),
            ("empty", Vec::new()),
            (
                "certificate instead of csr",
                pki.ca_pem().as_bytes().to_vec(),
            ),
        ];
        for (name, input) in cases {
            let result = pki.sign_client_csr(&input, Duration::from_secs(60));
            assert!(
                matches!(
                    result,
                    Err(PkiError::CsrSignature | PkiError::InvalidCsr(_))
                ),
                "{name}: {result:?}"
            );
        }
        assert!(matches!(
            pki.sign_client_csr(
                &der::pem("CERTIFICATE REQUEST", &tampered).into_bytes(),
                Duration::from_secs(60)
            ),
            Err(PkiError::CsrSignature)
        ));

        let no_cn = csr_with_subject(&der::name(&[(der::OID_ORGANIZATION, "g")]));
        assert!(matches!(
            pki.sign_client_csr(&no_cn, Duration::from_secs(60)),
            Err(PkiError::NoCommonName)
        ));
    }
}
