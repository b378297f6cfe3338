//! Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`) turned into the JSON
//! objects the same requests would carry as `application/json`.
//!
//! kubectl's typed clients (`kubectl create deployment|configmap|secret|job|namespace|service`,
//! `auth whoami`, `drain`, `certificate approve`, `create token`) send built-in kinds as protobuf
//! and do not retry as JSON. The API server works on JSON, so it calls [`decode`] on such bodies.
//!
//! The field numbers are facts of the wire format; `build.rs` reads them from the `k8s-pb` crate's
//! prost sources into a table (nothing of `k8s-pb` is linked). JSON field names come from the
//! `k8s-openapi` schemas. Pure: no IO, no HTTP, no other Capstan crate; input from the network
//! never panics, it is a [`ProtoError`].

mod convert;
mod format;
mod names;
mod openapi_v2;
mod table;
mod wire;

use serde_json::Value;

pub use crate::openapi_v2::{
    OPENAPI_V2_MEDIA_TYPE, OPENAPI_V2_MEDIA_TYPE_DEPRECATED, encode_openapi_v2,
};
use crate::wire::{LEN, Reader};

/// The media type of Kubernetes protobuf bodies.
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// The four bytes every Kubernetes protobuf body starts with.
pub const MAGIC: [u8; 4] = *b"k8s\0";

/// Why a body could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum ProtoError {
    #[error("body does not start with the kubernetes protobuf magic")]
    NotProtobuf,
    #[error("message is truncated")]
    Truncated,
    #[error("varint is longer than 64 bits")]
    VarintOverflow,
    #[error("invalid field number {0}")]
    InvalidTag(u64),
    #[error("field {tag} has unexpected wire type {wire}")]
    WireType { tag: u32, wire: u8 },
    #[error("field {tag} is not valid utf-8")]
    InvalidUtf8 { tag: u32 },
    #[error("field {tag} is not a finite number")]
    NonFiniteNumber { tag: u32 },
    #[error("time {0} is outside the years 0000-9999")]
    TimeOutOfRange(i64),
    #[error("embedded json is invalid")]
    EmbeddedJson(#[source] serde_json::Error),
    #[error("message nests too deeply")]
    TooDeep,
    #[error("envelope has no apiVersion and kind")]
    MissingTypeMeta,
    #[error("content encoding {0:?} is not supported")]
    ContentEncoding(String),
    #[error("no protobuf message is known for kind {kind} in {api_version}")]
    UnknownKind { api_version: String, kind: String },
    #[error("openapi v2 document: {at} {reason}")]
    OpenApiV2 { at: String, reason: &'static str },
}

/// Decodes a Kubernetes protobuf body (the magic, then a `runtime.Unknown` envelope holding
/// apiVersion, kind and the object's bytes) into the object's JSON, `apiVersion` and `kind` set.
pub fn decode(body: &[u8]) -> Result<Value, ProtoError> {
    decode_at(body, 0)
}

/// Decodes the protobuf bytes of one object of `kind` in `api_version` (the envelope's `raw`)
/// into its JSON, `apiVersion` and `kind` set.
pub fn decode_object(api_version: &str, kind: &str, raw: &[u8]) -> Result<Value, ProtoError> {
    decode_raw(api_version, kind, raw, 0)
}

fn decode_at(body: &[u8], depth: usize) -> Result<Value, ProtoError> {
    let envelope = body.strip_prefix(&MAGIC).ok_or(ProtoError::NotProtobuf)?;
    let unknown = Envelope::parse(envelope)?;
    if !unknown.content_encoding.is_empty() {
        return Err(ProtoError::ContentEncoding(unknown.content_encoding));
    }
    if unknown.kind.is_empty() || unknown.api_version.is_empty() {
        return Err(ProtoError::MissingTypeMeta);
    }
    decode_raw(&unknown.api_version, &unknown.kind, unknown.raw, depth)
}

fn decode_raw(
    api_version: &str,
    kind: &str,
    raw: &[u8],
    depth: usize,
) -> Result<Value, ProtoError> {
    let index = table::message_for(api_version, kind).ok_or_else(|| ProtoError::UnknownKind {
        api_version: api_version.to_owned(),
        kind: kind.to_owned(),
    })?;
    let mut value = convert::message(index, raw, depth)?;
    if let Value::Object(object) = &mut value {
        object.insert(
            "apiVersion".to_owned(),
            Value::String(api_version.to_owned()),
        );
        object.insert("kind".to_owned(), Value::String(kind.to_owned()));
    }
    Ok(value)
}

/// `runtime.Unknown`: {1 TypeMeta {1 apiVersion, 2 kind}, 2 raw, 3 contentEncoding, 4 contentType}.
struct Envelope<'a> {
    api_version: String,
    kind: String,
    raw: &'a [u8],
    content_encoding: String,
}

impl<'a> Envelope<'a> {
    fn parse(buf: &'a [u8]) -> Result<Self, ProtoError> {
        let mut envelope = Envelope {
            api_version: String::new(),
            kind: String::new(),
            raw: &[],
            content_encoding: String::new(),
        };
        let mut reader = Reader::new(buf);
        while !reader.is_empty() {
            match reader.key()? {
                (1, LEN) => {
                    let mut type_meta = Reader::new(reader.bytes()?);
                    while !type_meta.is_empty() {
                        match type_meta.key()? {
                            (1, LEN) => envelope.api_version = text(type_meta.bytes()?, 1)?,
                            (2, LEN) => envelope.kind = text(type_meta.bytes()?, 2)?,
                            (tag, wire) => type_meta.skip(tag, wire)?,
                        }
                    }
                }
                (2, LEN) => envelope.raw = reader.bytes()?,
                (3, LEN) => envelope.content_encoding = text(reader.bytes()?, 3)?,
                (tag, wire) => reader.skip(tag, wire)?,
            }
        }
        Ok(envelope)
    }
}

fn text(bytes: &[u8], tag: u32) -> Result<String, ProtoError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| ProtoError::InvalidUtf8 { tag })
}
