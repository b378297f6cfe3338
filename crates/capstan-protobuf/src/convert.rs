//! The generic decoder: one protobuf message, driven by the table, into its JSON value.
//!
//! Go's encoder writes every non-pointer field, so a kubectl body carries `namespace: ""` and
//! `nodeName: ""` on the wire where its JSON would omit them (`omitempty`). Singular empty
//! strings and byte strings are therefore dropped (a Go `""` means unset), except the few
//! pointer fields where `""` means something. Numbers and booleans are kept when present, zero or
//! not: `replicas: 0` and `gracePeriodSeconds: 0` are pointers whose zero matters.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Number, Value};

use crate::ProtoError;
use crate::names::{FieldName, names};
use crate::table::{Field, Kind, MESSAGES, MapValue, Message};
use crate::wire::{FIXED64, LEN, Reader, VARINT};

/// Nesting deeper than this is refused (CRD schemas nest, but not this deep).
const MAX_DEPTH: usize = 100;

const META: &str = "apimachinery/pkg/apis/meta/v1";
const APIEXTENSIONS: [&str; 2] = [
    "apiextensions_apiserver/pkg/apis/apiextensions/v1",
    "apiextensions_apiserver/pkg/apis/apiextensions/v1beta1",
];

/// Pointer string fields whose empty value differs from unset (`storageClassName: ""` asks for
/// no storage class, absent asks for the default one).
const KEEP_EMPTY: &[(&str, &str, &str)] = &[(
    "api/core/v1",
    "PersistentVolumeClaimSpec",
    "storage_class_name",
)];

/// Decodes the message `index` of the table from `buf`.
pub(crate) fn message(index: usize, buf: &[u8], depth: usize) -> Result<Value, ProtoError> {
    if depth > MAX_DEPTH {
        return Err(ProtoError::TooDeep);
    }
    // Indices come from the generated table, never from the input.
    let message = &MESSAGES[index];
    if let Some(value) = special(message, buf, depth)? {
        return Ok(value);
    }
    let names = names(index);
    let mut object = Map::new();
    let mut reader = Reader::new(buf);
    while !reader.is_empty() {
        let (tag, wire) = reader.key()?;
        let Some(pos) = message.fields.iter().position(|f| f.tag == tag) else {
            reader.skip(tag, wire)?;
            continue;
        };
        let field = &message.fields[pos];
        let name = names
            .get(pos)
            .cloned()
            .unwrap_or_else(|| FieldName::Json(field.name.to_owned()));
        read_field(message, field, &name, wire, &mut reader, &mut object, depth)?;
    }
    Ok(Value::Object(object))
}

fn read_field(
    message: &Message,
    field: &Field,
    name: &FieldName,
    wire: u8,
    reader: &mut Reader<'_>,
    object: &mut Map<String, Value>,
    depth: usize,
) -> Result<(), ProtoError> {
    let tag = field.tag;
    let key = match name {
        FieldName::Json(key) => key.as_str(),
        FieldName::Inline => {
            expect_wire(tag, wire, LEN)?;
            let Kind::Message(child) = field.kind else {
                return Err(ProtoError::WireType { tag, wire });
            };
            if let Value::Object(inner) = message_at(child, reader.bytes()?, depth)? {
                object.extend(inner);
            }
            return Ok(());
        }
    };
    match field.kind {
        Kind::Map(value_kind) => {
            expect_wire(tag, wire, LEN)?;
            let (k, v) = map_entry(value_kind, reader.bytes()?, depth)?;
            let entry = object
                .entry(key)
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(map) = entry {
                map.insert(k, v);
            }
        }
        Kind::Message(child) => {
            expect_wire(tag, wire, LEN)?;
            let value = message_at(child, reader.bytes()?, depth)?;
            if field.repeated {
                push(object, key, value);
            } else {
                merge(object, key, value);
            }
        }
        kind if field.repeated && wire == LEN && is_packable(kind) => {
            let mut packed = Reader::new(reader.bytes()?);
            while !packed.is_empty() {
                let value = scalar(kind, tag, packed_wire(kind), &mut packed)?;
                push(object, key, value);
            }
        }
        kind => {
            let value = scalar(kind, tag, wire, reader)?;
            if field.repeated {
                push(object, key, value);
            } else if is_unset(&value)
                && !KEEP_EMPTY.contains(&(message.module, message.name, field.name))
            {
                object.remove(key);
            } else {
                object.insert(key.to_owned(), value);
            }
        }
    }
    Ok(())
}

fn message_at(child: usize, buf: &[u8], depth: usize) -> Result<Value, ProtoError> {
    message(child, buf, depth + 1)
}

fn expect_wire(tag: u32, wire: u8, expected: u8) -> Result<(), ProtoError> {
    if wire == expected {
        Ok(())
    } else {
        Err(ProtoError::WireType { tag, wire })
    }
}

fn is_packable(kind: Kind) -> bool {
    matches!(kind, Kind::Int32 | Kind::Int64 | Kind::Bool | Kind::Double)
}

fn packed_wire(kind: Kind) -> u8 {
    match kind {
        Kind::Double => FIXED64,
        _ => VARINT,
    }
}

fn is_unset(value: &Value) -> bool {
    value.as_str().is_some_and(str::is_empty)
}

fn push(object: &mut Map<String, Value>, key: &str, value: Value) {
    match object
        .entry(key)
        .or_insert_with(|| Value::Array(Vec::new()))
    {
        Value::Array(items) => items.push(value),
        other => *other = Value::Array(vec![value]),
    }
}

/// A singular message seen twice is merged, as protobuf parsers do.
fn merge(object: &mut Map<String, Value>, key: &str, value: Value) {
    match (object.get_mut(key), value) {
        (Some(Value::Object(old)), Value::Object(new)) => old.extend(new),
        (_, value) => {
            object.insert(key.to_owned(), value);
        }
    }
}

/// One scalar of `kind` read with wire type `wire`.
fn scalar(kind: Kind, tag: u32, wire: u8, reader: &mut Reader<'_>) -> Result<Value, ProtoError> {
    let mismatch = || ProtoError::WireType { tag, wire };
    Ok(match kind {
        Kind::String => {
            expect_wire(tag, wire, LEN)?;
            Value::String(utf8(reader.bytes()?, tag)?)
        }
        Kind::Bytes => {
            expect_wire(tag, wire, LEN)?;
            Value::String(STANDARD.encode(reader.bytes()?))
        }
        // Two's complement truncation is how protobuf reads int32 from a varint.
        Kind::Int32 => {
            expect_wire(tag, wire, VARINT)?;
            Value::from(reader.varint()? as i32)
        }
        Kind::Int64 => {
            expect_wire(tag, wire, VARINT)?;
            Value::from(reader.varint()? as i64)
        }
        Kind::Bool => {
            expect_wire(tag, wire, VARINT)?;
            Value::Bool(reader.varint()? != 0)
        }
        Kind::Double => {
            expect_wire(tag, wire, FIXED64)?;
            number(f64::from_bits(reader.fixed64()?), tag)?
        }
        Kind::Message(_) | Kind::Map(_) => return Err(mismatch()),
    })
}

fn number(v: f64, tag: u32) -> Result<Value, ProtoError> {
    Number::from_f64(v)
        .map(Value::Number)
        .ok_or(ProtoError::NonFiniteNumber { tag })
}

fn utf8(bytes: &[u8], tag: u32) -> Result<String, ProtoError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| ProtoError::InvalidUtf8 { tag })
}

/// One `map<string, V>` entry: {1 key, 2 value}. Missing parts are Go's zero values.
fn map_entry(kind: MapValue, buf: &[u8], depth: usize) -> Result<(String, Value), ProtoError> {
    let mut key = String::new();
    let mut value = None;
    let mut reader = Reader::new(buf);
    while !reader.is_empty() {
        match reader.key()? {
            (1, LEN) => key = utf8(reader.bytes()?, 1)?,
            (2, LEN) => {
                let bytes = reader.bytes()?;
                value = Some(match kind {
                    MapValue::String => Value::String(utf8(bytes, 2)?),
                    MapValue::Bytes => Value::String(STANDARD.encode(bytes)),
                    MapValue::Message(child) => message_at(child, bytes, depth)?,
                });
            }
            (tag @ (1 | 2), wire) => return Err(ProtoError::WireType { tag, wire }),
            (tag, wire) => reader.skip(tag, wire)?,
        }
    }
    let value = match (value, kind) {
        (Some(v), _) => v,
        (None, MapValue::Message(child)) => message_at(child, &[], depth)?,
        (None, _) => Value::String(String::new()),
    };
    Ok((key, value))
}

/// Scalar fields of a small special message, by tag: (tag, wire, bytes or varint).
enum Raw<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

fn fields(buf: &[u8]) -> Result<Vec<(u32, Raw<'_>)>, ProtoError> {
    let mut out = Vec::new();
    let mut reader = Reader::new(buf);
    while !reader.is_empty() {
        let (tag, wire) = reader.key()?;
        match wire {
            VARINT => out.push((tag, Raw::Varint(reader.varint()?))),
            LEN => out.push((tag, Raw::Bytes(reader.bytes()?))),
            _ => reader.skip(tag, wire)?,
        }
    }
    Ok(out)
}

fn last_varint(fields: &[(u32, Raw<'_>)], tag: u32) -> u64 {
    fields
        .iter()
        .rev()
        .find_map(|(t, raw)| match raw {
            Raw::Varint(v) if *t == tag => Some(*v),
            _ => None,
        })
        .unwrap_or(0)
}

fn last_bytes<'a>(fields: &[(u32, Raw<'a>)], tag: u32) -> Option<&'a [u8]> {
    fields.iter().rev().find_map(|(t, raw)| match raw {
        Raw::Bytes(b) if *t == tag => Some(*b),
        _ => None,
    })
}

/// Embedded JSON (`RawExtension`, `FieldsV1`, `JSON`): `null` when empty. A `RawExtension` may
/// also hold a protobuf-encoded object of its own.
fn embedded(raw: Option<&[u8]>, depth: usize) -> Result<Value, ProtoError> {
    match raw {
        None | Some([]) => Ok(Value::Null),
        Some(bytes) if bytes.starts_with(&crate::MAGIC) => crate::decode_at(bytes, depth + 1),
        Some(bytes) => serde_json::from_slice(bytes).map_err(ProtoError::EmbeddedJson),
    }
}

/// The JSON forms of messages that are not plain objects in JSON.
fn special(message: &Message, buf: &[u8], depth: usize) -> Result<Option<Value>, ProtoError> {
    let value = match (message.module, message.name) {
        (META, "Time") | (META, "MicroTime") => {
            // An empty Time is Go's zero time, `null` in JSON. Time keeps whole seconds only.
            if buf.is_empty() {
                return Ok(Some(Value::Null));
            }
            let f = fields(buf)?;
            let seconds = last_varint(&f, 1) as i64;
            let micros = (message.name == "MicroTime")
                .then(|| (last_varint(&f, 2) as i32).clamp(0, 999_999_999) as u32 / 1000);
            let text = crate::format::rfc3339(seconds, micros)
                .ok_or(ProtoError::TimeOutOfRange(seconds))?;
            Value::String(text)
        }
        (META, "Duration") => {
            let f = fields(buf)?;
            Value::String(crate::format::go_duration(last_varint(&f, 1) as i64))
        }
        (META, "FieldsV1") => embedded(last_bytes(&fields(buf)?, 1), depth)?,
        ("apimachinery/pkg/runtime", "RawExtension") => {
            embedded(last_bytes(&fields(buf)?, 1), depth)?
        }
        (module, "Json") if APIEXTENSIONS.contains(&module) => {
            embedded(last_bytes(&fields(buf)?, 1), depth)?
        }
        ("apimachinery/pkg/util/intstr", "IntOrString") => {
            let f = fields(buf)?;
            if last_varint(&f, 1) == 1 {
                Value::String(utf8(last_bytes(&f, 3).unwrap_or_default(), 3)?)
            } else {
                Value::from(last_varint(&f, 2) as i32)
            }
        }
        ("apimachinery/pkg/api/resource", "Quantity") => {
            let text = utf8(last_bytes(&fields(buf)?, 1).unwrap_or_default(), 1)?;
            Value::String(if text.is_empty() {
                "0".to_owned()
            } else {
                text
            })
        }
        // Go slice types wrapped in a message: `metav1.Verbs`, the `ExtraValue`s of user info.
        (META, "Verbs") | (_, "ExtraValue") => {
            let f = fields(buf)?;
            let items = f
                .iter()
                .filter_map(|(t, raw)| match raw {
                    Raw::Bytes(b) if *t == 1 => Some(utf8(b, 1).map(Value::String)),
                    _ => None,
                })
                .collect::<Result<Vec<_>, _>>()?;
            Value::Array(items)
        }
        (
            module,
            "JsonSchemaPropsOrArray" | "JsonSchemaPropsOrBool" | "JsonSchemaPropsOrStringArray",
        ) if APIEXTENSIONS.contains(&module) => {
            return either(message, buf, depth).map(Some);
        }
        _ => return Ok(None),
    };
    Ok(Some(value))
}

/// The `JSONSchemaPropsOr*` unions: the schema object, or the array / boolean form.
fn either(message: &Message, buf: &[u8], depth: usize) -> Result<Value, ProtoError> {
    let mut schema = None;
    let mut others = Vec::new();
    let mut allows = false;
    let mut reader = Reader::new(buf);
    while !reader.is_empty() {
        let (tag, wire) = reader.key()?;
        let Some(field) = message.field(tag) else {
            reader.skip(tag, wire)?;
            continue;
        };
        match (field.kind, field.repeated) {
            (Kind::Message(child), false) => {
                expect_wire(tag, wire, LEN)?;
                schema = Some(message_at(child, reader.bytes()?, depth)?);
            }
            (Kind::Message(child), true) => {
                expect_wire(tag, wire, LEN)?;
                others.push(message_at(child, reader.bytes()?, depth)?);
            }
            (Kind::String, true) => {
                expect_wire(tag, wire, LEN)?;
                others.push(Value::String(utf8(reader.bytes()?, tag)?));
            }
            (Kind::Bool, false) => {
                expect_wire(tag, wire, VARINT)?;
                allows = reader.varint()? != 0;
            }
            _ => reader.skip(tag, wire)?,
        }
    }
    Ok(if message.name == "JsonSchemaPropsOrBool" {
        schema.unwrap_or(Value::Bool(allows))
    } else if !others.is_empty() {
        Value::Array(others)
    } else {
        schema.unwrap_or(Value::Null)
    })
}
