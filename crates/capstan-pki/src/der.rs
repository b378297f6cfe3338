//! Just enough DER to give a certificate a multi-valued subject.
//!
//! rcgen keeps a subject as one value per attribute type, but Kubernetes puts every group in its own
//! O attribute. So a client certificate is first built by rcgen with an empty subject, then its
//! subject is replaced with the wanted Name and the TBSCertificate re-signed with the CA key.

use rcgen::{KeyPair, SigningKey};

use crate::PkiError;

const TAG_SEQUENCE: u8 = 0x30;
const TAG_SET: u8 = 0x31;
const TAG_UTF8_STRING: u8 = 0x0c;
const TAG_BIT_STRING: u8 = 0x03;
const TAG_OID: u8 = 0x06;
/// `[0] EXPLICIT Version` in a TBSCertificate.
const TAG_VERSION: u8 = 0xa0;

/// DER content of the OID 2.5.4.3 (commonName).
pub(crate) const OID_COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];
/// DER content of the OID 2.5.4.10 (organizationName).
pub(crate) const OID_ORGANIZATION: &[u8] = &[0x55, 0x04, 0x0a];

fn malformed(what: &str) -> PkiError {
    PkiError::InvalidCertificate(format!("malformed der: {what}"))
}

/// One DER element: its tag, the whole encoding, and the content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tlv<'a> {
    pub(crate) tag: u8,
    pub(crate) raw: &'a [u8],
    pub(crate) content: &'a [u8],
}

/// Splits the first DER element off `input`; returns it and the rest.
pub(crate) fn read_tlv(input: &[u8]) -> Result<(Tlv<'_>, &[u8]), PkiError> {
    let (&tag, rest) = input
        .split_first()
        .ok_or_else(|| malformed("empty input"))?;
    if tag & 0x1f == 0x1f {
        return Err(malformed("high tag number"));
    }
    let (&first, rest) = rest
        .split_first()
        .ok_or_else(|| malformed("missing length"))?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return Err(malformed("bad length"));
        }
        let (bytes, rest) = rest.split_at(n);
        let len = bytes
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, rest)
    };
    if rest.len() < len {
        return Err(malformed("truncated element"));
    }
    let header = input.len() - rest.len();
    let (content, rest) = rest.split_at(len);
    Ok((
        Tlv {
            tag,
            raw: &input[..header + len],
            content,
        },
        rest,
    ))
}

/// Encodes one DER element.
pub(crate) fn encode(tag: u8, content: &[u8]) -> Vec<u8> {
    let len = content.len();
    let mut out = Vec::with_capacity(len + 6);
    out.push(tag);
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

/// A Name with one single-valued RDN per `(oid, value)`, values as UTF8String, in order.
pub(crate) fn name(attributes: &[(&[u8], &str)]) -> Vec<u8> {
    let mut rdns = Vec::new();
    for (oid, value) in attributes {
        let mut atv = encode(TAG_OID, oid);
        atv.extend(encode(TAG_UTF8_STRING, value.as_bytes()));
        rdns.extend(encode(TAG_SET, &encode(TAG_SEQUENCE, &atv)));
    }
    encode(TAG_SEQUENCE, &rdns)
}

/// Returns `cert_der` with its subject replaced by `subject_der` (a DER Name), re-signed by
/// `signer` (which must be the key that signed `cert_der`, so the signature algorithm stays right).
pub(crate) fn replace_subject(
    cert_der: &[u8],
    subject_der: &[u8],
    signer: &KeyPair,
) -> Result<Vec<u8>, PkiError> {
    let (subject, rest) = read_tlv(subject_der)?;
    if subject.tag != TAG_SEQUENCE || !rest.is_empty() {
        return Err(malformed("subject is not one sequence"));
    }
    let (cert, _) = read_tlv(cert_der)?;
    let (tbs, after_tbs) = read_tlv(cert.content)?;
    let (sig_alg, _) = read_tlv(after_tbs)?;
    if cert.tag != TAG_SEQUENCE || tbs.tag != TAG_SEQUENCE || sig_alg.tag != TAG_SEQUENCE {
        return Err(malformed("not a certificate"));
    }

    // TBSCertificate: [0] version?, serial, signature, issuer, validity, subject, spki, ...
    let mut fields = Vec::new();
    let mut rest = tbs.content;
    while !rest.is_empty() {
        let (field, next) = read_tlv(rest)?;
        fields.push(field);
        rest = next;
    }
    let subject_index = if fields.first().map(|f| f.tag) == Some(TAG_VERSION) {
        5
    } else {
        4
    };
    match fields.get(subject_index) {
        Some(field) if field.tag == TAG_SEQUENCE => {}
        _ => return Err(malformed("no subject in certificate")),
    }
    let mut tbs_content = Vec::with_capacity(tbs.content.len() + subject.raw.len());
    for (i, field) in fields.iter().enumerate() {
        if i == subject_index {
            tbs_content.extend_from_slice(subject.raw);
        } else {
            tbs_content.extend_from_slice(field.raw);
        }
    }
    let new_tbs = encode(TAG_SEQUENCE, &tbs_content);
    let signature = signer.sign(&new_tbs)?;
    let mut bits = Vec::with_capacity(signature.len() + 1);
    bits.push(0); // no unused bits
    bits.extend_from_slice(&signature);

    let mut cert_content = new_tbs;
    cert_content.extend_from_slice(sig_alg.raw);
    cert_content.extend(encode(TAG_BIT_STRING, &bits));
    Ok(encode(TAG_SEQUENCE, &cert_content))
}

/// PEM text of one DER block, 64-character lines, trailing newline.
pub(crate) fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        // base64 output is ASCII, so every chunk is valid UTF-8.
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_and_read_round_trip_short_and_long_lengths() {
        for len in [0usize, 1, 127, 128, 255, 256, 70_000] {
            let content = vec![0xab; len];
            let encoded = encode(TAG_SEQUENCE, &content);
            let (tlv, rest) = read_tlv(&encoded).expect("read");
            assert_eq!(tlv.tag, TAG_SEQUENCE);
            assert_eq!(tlv.content, content.as_slice(), "len {len}");
            assert_eq!(tlv.raw, encoded.as_slice());
            assert!(rest.is_empty());
        }
        assert_eq!(encode(0x04, &[0; 200])[..3], [0x04, 0x81, 200]);
    }

    #[test]
    fn read_rejects_malformed_input() {
        for bad in [
            &[][..],
            &[0x30],
            &[0x30, 0x05, 0x00],
            &[0x30, 0x80, 0x00, 0x00],
            &[0x30, 0x85, 1, 1, 1, 1, 1],
            &[0x1f, 0x01, 0x00],
        ] {
            assert!(read_tlv(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn name_parses_back_with_every_attribute() {
        let der = name(&[
            (OID_ORGANIZATION, "system:masters"),
            (OID_ORGANIZATION, "team-a"),
            (OID_COMMON_NAME, "admin"),
        ]);
        let (rest, parsed) =
            <x509_parser::x509::X509Name as x509_parser::prelude::FromDer<_>>::from_der(&der)
                .expect("parse name");
        assert!(rest.is_empty());
        let orgs: Vec<_> = parsed
            .iter_organization()
            .map(|a| a.as_str().expect("str"))
            .collect();
        assert_eq!(orgs, ["system:masters", "team-a"]);
        assert_eq!(
            parsed
                .iter_common_name()
                .map(|a| a.as_str().expect("str"))
                .collect::<Vec<_>>(),
            ["admin"]
        );
    }

    #[test]
    fn pem_wraps_at_64_and_parses_back() {
        use rustls::pki_types::{CertificateDer, pem::PemObject};
        let der: Vec<u8> = (0..=255u8).collect();
        let text = pem("CERTIFICATE", &der);
        assert!(text.lines().all(|l| l.len() <= 64));
        let back = CertificateDer::from_pem_slice(text.as_bytes()).expect("parse");
        assert_eq!(back.as_ref(), der.as_slice());
    }

    #[test]
    fn replace_subject_rejects_garbage() {
        let key = KeyPair::generate().expect("key");
        let subject = name(&[(OID_COMMON_NAME, "x")]);
        assert!(replace_subject(b"garbage", &subject, &key).is_err());
        assert!(replace_subject(&encode(TAG_SEQUENCE, &[]), &subject, &key).is_err());
        assert!(replace_subject(&encode(TAG_SEQUENCE, &[]), b"\x04\x00", &key).is_err());
    }
}
