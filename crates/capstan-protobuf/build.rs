//! Builds the table of Kubernetes protobuf messages (`OUT_DIR/tags.rs`) from the sources of the
//! `k8s-pb` crate, a build-dependency: prost-generated bindings of the upstream `.proto` files.
//! Each `pub struct Name {` and each field's `#[prost(kind, label, tag = "N")]` attribute with
//! the `pub name: Type,` that follows become one row; `impl crate::Resource for X` blocks give
//! which module serves which `apiVersion`. Nothing of `k8s-pb` is compiled into this crate.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::{env, fs};

type BoxError = Box<dyn std::error::Error>;

const PB_NAME: &str = "k8s-pb";
const PB_VERSION: &str = "0.9.0";

/// One field as written in the prost source.
struct RawField {
    tag: u32,
    name: String,
    /// `string`, `bytes`, `int32`, `int64`, `bool`, `double`, `message`, or `map:<value>`.
    kind: String,
    repeated: bool,
    /// For `message` and `map:message`: (module, struct name), resolved from the Rust type path.
    target: Option<(String, String)>,
}

struct RawMessage {
    module: String,
    name: String,
    fields: Vec<RawField>,
}

fn main() -> Result<(), BoxError> {
    println!("cargo:rerun-if-changed=build.rs");
    let src = k8s_pb_src()?;
    let mut messages = Vec::new();
    let mut api_versions = BTreeMap::new();
    let mut files = Vec::new();
    collect_rs_files(&src, &mut files)?;
    files.sort();
    for file in &files {
        let module = module_of(&src, file)?;
        let text = fs::read_to_string(file)?;
        parse_file(&module, &text, &mut messages, &mut api_versions)
            .map_err(|e| format!("{}: {e}", file.display()))?;
    }
    if messages.len() < 100 {
        return Err(format!(
            "only {} messages found under {}",
            messages.len(),
            src.display()
        )
        .into());
    }
    let out = PathBuf::from(env::var("OUT_DIR")?).join("tags.rs");
    fs::write(out, render(&mut messages, &api_versions)?)?;
    Ok(())
}

/// The `src` directory of the `k8s-pb` package cargo resolved for this build.
fn k8s_pb_src() -> Result<PathBuf, BoxError> {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let manifest_dir = env::var("CARGO_MANIFEST_DIR")?;
    // Offline first (everything this crate needs is already fetched), then online for the rest of
    // the workspace's graph.
    for offline in [true, false] {
        let mut cmd = Command::new(&cargo);
        cmd.args(["metadata", "--format-version", "1"])
            .current_dir(&manifest_dir);
        if offline {
            cmd.arg("--offline");
        }
        let Ok(output) = cmd.output() else { continue };
        if !output.status.success() {
            continue;
        }
        let meta: serde_json::Value = serde_json::from_slice(&output.stdout)?;
        let found = meta["packages"].as_array().and_then(|packages| {
            packages.iter().find(|p| {
                p["name"].as_str() == Some(PB_NAME) && p["version"].as_str() == Some(PB_VERSION)
            })
        });
        if let Some(manifest) = found.and_then(|p| p["manifest_path"].as_str()) {
            let dir = Path::new(manifest)
                .parent()
                .ok_or("k8s-pb manifest path has no parent")?;
            return Ok(dir.join("src"));
        }
    }
    // Last resort: the registry cache cargo unpacks sources into.
    let home = env::var("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|_| env::var("HOME").map(|h| Path::new(&h).join(".cargo")))?;
    for entry in fs::read_dir(home.join("registry").join("src"))? {
        let dir = entry?
            .path()
            .join(format!("{PB_NAME}-{PB_VERSION}"))
            .join("src");
        if dir.is_dir() {
            return Ok(dir);
        }
    }
    Err("cannot locate the sources of k8s-pb 0.9.0 (cargo metadata failed)".into())
}

fn collect_rs_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), BoxError> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_rs_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    Ok(())
}

/// `api/apps/v1` for `src/api/apps/v1/mod.rs` (and for `src/api/apps/v1.rs`).
fn module_of(src: &Path, file: &Path) -> Result<String, BoxError> {
    let rel = file.strip_prefix(src)?;
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().ok_or("empty path")?;
    if last != "mod.rs" && last != "lib.rs" {
        parts.push(last.trim_end_matches(".rs").to_owned());
    }
    Ok(parts.join("/"))
}

fn parse_file(
    module: &str,
    text: &str,
    messages: &mut Vec<RawMessage>,
    api_versions: &mut BTreeMap<String, String>,
) -> Result<(), BoxError> {
    let lines: Vec<&str> = text.lines().collect();
    let mut current: Option<RawMessage> = None;
    let mut resource_impl = false;
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let trimmed = line.trim();
        if let Some(rest) = line.strip_prefix("pub struct ") {
            let name = rest
                .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                .next()
                .unwrap_or_default()
                .to_owned();
            let message = RawMessage {
                module: module.to_owned(),
                name,
                fields: Vec::new(),
            };
            if rest.trim_end().ends_with("{}") {
                messages.push(message);
            } else {
                current = Some(message);
            }
        } else if line.starts_with('}') {
            if let Some(message) = current.take() {
                messages.push(message);
            }
            resource_impl = false;
        } else if line.starts_with("impl crate::Resource for ") {
            resource_impl = true;
        } else if resource_impl && trimmed.starts_with("const API_VERSION") {
            let version = trimmed
                .split('"')
                .nth(1)
                .ok_or("API_VERSION without a string")?;
            api_versions
                .entry(version.to_owned())
                .or_insert_with(|| module.to_owned());
        } else if let (Some(message), Some(attr)) =
            (current.as_mut(), trimmed.strip_prefix("#[prost("))
        {
            // The field declaration follows, possibly over several lines.
            let mut decl = String::new();
            let mut j = i + 1;
            while j < lines.len() {
                decl.push_str(lines[j].trim());
                j += 1;
                if decl.starts_with("pub ")
                    && decl.ends_with(',')
                    && decl.matches('<').count() == decl.matches('>').count()
                {
                    break;
                }
            }
            i = j - 1;
            message.fields.push(parse_field(module, attr, &decl)?);
        }
        i += 1;
    }
    Ok(())
}

fn parse_field(module: &str, attr: &str, decl: &str) -> Result<RawField, BoxError> {
    let attr = attr.trim_end_matches(")]");
    let tag = attr
        .split("tag = \"")
        .nth(1)
        .and_then(|t| t.split('"').next())
        .ok_or_else(|| format!("no tag in {attr}"))?
        .parse()?;
    let decl = decl.strip_prefix("pub ").ok_or("field is not pub")?;
    let (name, ty) = decl.split_once(':').ok_or("field without a type")?;
    let ty: String = ty
        .trim_end_matches(',')
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .replace(",>", ">");
    let name = name.trim().to_owned();
    if let Some(map) = attr.strip_prefix("btree_map = \"") {
        let spec = map.split('"').next().unwrap_or_default();
        let (key, value) = spec.split_once(',').ok_or("map without a value type")?;
        if key.trim() != "string" {
            return Err(format!("map key {key} is not supported").into());
        }
        let value = value.trim();
        let target = if value == "message" {
            let inner = ty
                .strip_prefix("::prost::alloc::collections::BTreeMap<")
                .and_then(|t| t.strip_suffix('>'))
                .ok_or_else(|| format!("map type {ty}"))?;
            let (_, v) = split_top_level(inner).ok_or_else(|| format!("map type {ty}"))?;
            Some(resolve(module, v)?)
        } else {
            None
        };
        return Ok(RawField {
            tag,
            name,
            kind: format!("map:{value}"),
            repeated: false,
            target,
        });
    }
    let kind = attr
        .split([',', ' ', '='])
        .next()
        .unwrap_or_default()
        .to_owned();
    let repeated = attr.split(", ").any(|part| part == "repeated");
    let target = if kind == "message" {
        Some(resolve(module, unwrap_type(&ty))?)
    } else {
        None
    };
    Ok(RawField {
        tag,
        name,
        kind,
        repeated,
        target,
    })
}

/// `K, V` split at the comma outside any `<>`.
fn split_top_level(s: &str) -> Option<(&str, &str)> {
    let mut depth = 0i32;
    for (i, c) in s.char_indices() {
        match c {
            '<' => depth += 1,
            '>' => depth -= 1,
            ',' if depth == 0 => return Some((&s[..i], &s[i + 1..])),
            _ => {}
        }
    }
    None
}

/// The message path inside `Option<…>`, `Vec<…>`, `Box<…>`.
fn unwrap_type(mut ty: &str) -> &str {
    for wrapper in [
        "::core::option::Option<",
        "::prost::alloc::vec::Vec<",
        "::prost::alloc::boxed::Box<",
    ] {
        if let Some(inner) = ty.strip_prefix(wrapper).and_then(|t| t.strip_suffix('>')) {
            ty = unwrap_type(inner);
        }
    }
    ty
}

/// (module, struct) of a Rust path written inside `module`.
fn resolve(module: &str, path: &str) -> Result<(String, String), BoxError> {
    let mut segments: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
    let name = segments.pop().ok_or("empty type path")?.to_owned();
    let mut base: Vec<&str> = module.split('/').filter(|s| !s.is_empty()).collect();
    let mut rest = segments.as_slice();
    if rest.first() == Some(&"crate") {
        base.clear();
        rest = &rest[1..];
    }
    while rest.first() == Some(&"super") {
        base.pop()
            .ok_or_else(|| format!("{path} climbs above the crate root"))?;
        rest = &rest[1..];
    }
    base.extend(rest.iter().copied());
    Ok((base.join("/"), name))
}

fn render(
    messages: &mut [RawMessage],
    api_versions: &BTreeMap<String, String>,
) -> Result<String, BoxError> {
    messages.sort_by(|a, b| (&a.module, &a.name).cmp(&(&b.module, &b.name)));
    let index: BTreeMap<(String, String), usize> = messages
        .iter()
        .enumerate()
        .map(|(i, m)| ((m.module.clone(), m.name.clone()), i))
        .collect();
    let lookup = |target: &Option<(String, String)>| -> Result<usize, BoxError> {
        let key = target.as_ref().ok_or("message field without a type")?;
        index
            .get(key)
            .copied()
            .ok_or_else(|| format!("unresolved message {}::{}", key.0, key.1).into())
    };
    let mut out = String::from("// Generated by build.rs from the k8s-pb sources. Do not edit.\n");
    out.push_str("pub(crate) static MESSAGES: &[Message] = &[\n");
    for m in messages.iter_mut() {
        m.fields.sort_by_key(|f| f.tag);
        writeln!(
            out,
            "    Message {{ module: {:?}, name: {:?}, fields: &[",
            m.module, m.name
        )?;
        for f in &m.fields {
            let kind = match f.kind.as_str() {
                "string" => "Kind::String".to_owned(),
                "bytes" => "Kind::Bytes".to_owned(),
                "int32" => "Kind::Int32".to_owned(),
                "int64" => "Kind::Int64".to_owned(),
                "bool" => "Kind::Bool".to_owned(),
                "double" => "Kind::Double".to_owned(),
                "message" => format!("Kind::Message({})", lookup(&f.target)?),
                "map:string" => "Kind::Map(MapValue::String)".to_owned(),
                "map:bytes" => "Kind::Map(MapValue::Bytes)".to_owned(),
                "map:message" => format!("Kind::Map(MapValue::Message({}))", lookup(&f.target)?),
                other => return Err(format!("unsupported prost kind {other}").into()),
            };
            writeln!(
                out,
                "        Field {{ tag: {}, name: {:?}, kind: {kind}, repeated: {} }},",
                f.tag,
                f.name.trim_start_matches("r#"),
                f.repeated
            )?;
        }
        out.push_str("    ] },\n");
    }
    out.push_str("];\n\n");
    out.push_str("pub(crate) static API_VERSIONS: &[(&str, &str)] = &[\n");
    for (version, module) in api_versions {
        writeln!(out, "    ({version:?}, {module:?}),")?;
    }
    out.push_str("];\n");
    Ok(out)
}
