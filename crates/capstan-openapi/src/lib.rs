//! The OpenAPI documents kube-apiserver serves, built for Capstan's resources: the v3 index
//! (`GET /openapi/v3`), one v3 document per group-version (`GET /openapi/v3/apis/apps/v1`) and the
//! Swagger 2.0 document (`GET /openapi/v2`). kubectl reads them for `explain`, to detect
//! server-side field validation (the `fieldValidation` parameter of PATCH operations) and to
//! compute apply patches.
//!
//! Schemas are derived from the `k8s-openapi` types through `schemars` (never a copied
//! swagger.json); paths and operations from the resource registry of `capstan-api`.
//!
//! Pure: every document is built once, in memory, by [`OpenApiDocs::build`]. No HTTP and no store:
//! the API server serves the bytes. Depends on `capstan-api` and the schema crates only.

mod model;
mod render;
mod schema;

use std::collections::BTreeSet;
use std::fmt;

use capstan_api::ResourceInfo;
use k8s_openapi::api::{
    authentication::v1 as authn, autoscaling::v1 as autoscaling, core::v1 as core,
    policy::v1 as policy,
};
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha512};

use crate::model::{Document, ResourceDefs, ResourcePaths, SubresourceBody};
use crate::schema::{Definitions, Flavour, Gvk, MetaNames, V3_REF};

/// Why the documents could not be built. Every variant is a bug in the resource table or in
/// this crate, found once at start-up.
#[derive(Debug, thiserror::Error)]
pub enum OpenApiError {
    #[error("schema of {what} is not a reference to a named definition")]
    NotADefinition { what: String },
    #[error("subresource {resource}/{subresource} has kind {kind}, which has no known schema")]
    UnknownSubresourceKind {
        resource: String,
        subresource: String,
        kind: String,
    },
    #[error("reference {reference} does not resolve to a definition")]
    UnresolvedRef { reference: String },
    #[error("encoding an openapi document")]
    Encode(#[from] serde_json::Error),
}

/// One served document: its bytes and their hash.
struct Served {
    key: String,
    body: Vec<u8>,
    hash: String,
}

/// Every OpenAPI document of the API server, encoded once.
pub struct OpenApiDocs {
    index: Vec<u8>,
    groups: Vec<Served>,
    v2: Vec<u8>,
}

impl fmt::Debug for OpenApiDocs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenApiDocs")
            .field(
                "v3",
                &self.groups.iter().map(|g| &g.key).collect::<Vec<_>>(),
            )
            .field("v2_bytes", &self.v2.len())
            .finish()
    }
}

const TITLE: &str = "Kubernetes";
const INFO_VERSION: &str = "unversioned";

type SchemaFn = fn(&mut SchemaGenerator) -> Schema;

fn schema_of<T: JsonSchema>(generator: &mut SchemaGenerator) -> Schema {
    generator.subschema_for::<T>()
}

/// Kinds that are only ever bodies of a subresource, not resources of their own.
fn subresource_kind_schema(group: &str, version: &str, kind: &str) -> Option<SchemaFn> {
    match (group, version, kind) {
        ("autoscaling", "v1", "Scale") => Some(schema_of::<autoscaling::Scale>),
        ("policy", "v1", "Eviction") => Some(schema_of::<policy::Eviction>),
        ("authentication.k8s.io", "v1", "TokenRequest") => Some(schema_of::<authn::TokenRequest>),
        ("", "v1", "Binding") => Some(schema_of::<core::Binding>),
        _ => None,
    }
}

/// Extensions to add to one field of one definition: called with (definition, field name), for
/// example `("io.k8s.api.core.v1.PodSpec", "containers")`, it returns the extensions the
/// `k8s-openapi` schemas do not carry (`x-kubernetes-patch-strategy`,
/// `x-kubernetes-patch-merge-key`, `x-kubernetes-list-type`, `x-kubernetes-list-map-keys`).
/// kubectl computes client-side `apply` patches from the patch strategy and merge key.
pub type FieldExtensions<'a> = &'a dyn Fn(&str, &str) -> Vec<(String, Value)>;

impl OpenApiDocs {
    /// Builds every document once for these resources (`capstan_api::resources()`).
    pub fn build(resources: &[ResourceInfo]) -> Result<OpenApiDocs, OpenApiError> {
        OpenApiDocs::build_with(resources, &|_, _| Vec::new())
    }

    /// [`OpenApiDocs::build`], adding `field_extensions` to the fields of every definition.
    pub fn build_with(
        resources: &[ResourceInfo],
        field_extensions: FieldExtensions<'_>,
    ) -> Result<OpenApiDocs, OpenApiError> {
        let mut generator = schema::generator();
        let meta = MetaNames::generate(&mut generator)?;

        // Generate every kind first: the generator hands out the definitions at the end.
        let mut kinds = Vec::with_capacity(resources.len());
        for r in resources {
            let kind = match r.custom {
                Some(_) => custom_definition_name(r),
                None => schema::ref_name(&(r.schema)(&mut generator), &r.gvr())?,
            };
            let defs = ResourceDefs {
                list: format!("{kind}List"),
                kind,
            };
            let mut subresources = Vec::new();
            for sub in r.subresources {
                let body = subresource_body(r, sub, &defs, &mut generator)?;
                subresources.push((*sub, body));
            }
            kinds.push((r, defs, subresources));
        }

        let mut definitions = Definitions::from_generator(&mut generator);
        for (r, defs, _) in &kinds {
            if let Some(custom) = r.custom {
                definitions.add_custom(&defs.kind, custom.schema.as_ref(), &meta.object_meta);
            }
        }
        let mut group_versions: Vec<(&str, &str)> = Vec::new();
        for (r, defs, subresources) in &kinds {
            if !group_versions.contains(&(r.group, r.version)) {
                group_versions.push((r.group, r.version));
            }
            definitions.add_gvk(&defs.kind, Gvk::new(r.group, r.version, r.kind));
            if r.has_verb("list") {
                definitions.add_list_kind(&defs.list, &defs.kind, r.kind, &meta.list_meta);
                definitions.add_gvk(&defs.list, Gvk::new(r.group, r.version, &r.list_kind()));
            }
            for (_, body) in subresources {
                if let SubresourceBody::Object { definition, gvk } = body {
                    definitions.add_gvk(definition, gvk.clone());
                }
            }
        }
        add_meta_gvks(&mut definitions, &meta, &group_versions);
        definitions.extend_fields(field_extensions);

        // The group-version documents, then the discovery ones.
        let mut documents = Vec::new();
        for &(group, version) in &group_versions {
            let mut paths = vec![model::resource_list_path(group, version, &meta)];
            for (r, defs, subresources) in kinds
                .iter()
                .filter(|(r, ..)| (r.group, r.version) == (group, version))
            {
                let builder = ResourcePaths {
                    resource: r,
                    defs,
                    meta: &meta,
                };
                paths.extend(builder.build(subresources));
            }
            documents.push(Document {
                key: model::group_version_key(group, version),
                tag: model::tag(group, version),
                paths,
            });
        }
        let mut groups: Vec<&str> = Vec::new();
        for &(group, _) in &group_versions {
            if !groups.contains(&group) {
                groups.push(group);
            }
        }
        documents.extend(model::discovery_documents(&groups, &meta));

        let always = [meta.status.clone(), meta.watch_event.clone()];
        let mut served = Vec::new();
        let mut v2_paths = Map::new();
        let mut v2_roots: BTreeSet<String> = always.iter().cloned().collect();
        for doc in &documents {
            let paths = render::v3_paths(&doc.paths, &doc.tag);
            let roots = definition_refs(&Value::Object(paths.clone()))?;
            v2_roots.extend(roots.iter().cloned());
            let names = definitions.closure(roots.into_iter().chain(always.iter().cloned()))?;
            let body = serde_json::to_vec(&json!({
                "openapi": "3.0.0",
                "info": {"title": TITLE, "version": INFO_VERSION},
                "paths": paths,
                "components": {"schemas": definitions.render(&names, Flavour::V3)},
            }))?;
            let hash = hash(&body);
            served.push(Served {
                key: doc.key.clone(),
                body,
                hash,
            });
            render::v2_paths(&doc.paths, &doc.tag, &mut v2_paths);
        }

        let names = definitions.closure(v2_roots)?;
        let v2 = serde_json::to_vec(&json!({
            "swagger": "2.0",
            "info": {"title": TITLE, "version": INFO_VERSION},
            "paths": v2_paths,
            "definitions": definitions.render(&names, Flavour::V2),
        }))?;

        let index_paths: Map<String, Value> = served
            .iter()
            .map(|s| {
                let url = format!("/openapi/v3/{}?hash={}", s.key, s.hash);
                (s.key.clone(), json!({"serverRelativeURL": url}))
            })
            .collect();
        let index = serde_json::to_vec(&json!({"paths": index_paths}))?;

        Ok(OpenApiDocs {
            index,
            groups: served,
            v2,
        })
    }

    /// Body of `GET /openapi/v3`: `{"paths": {"api/v1": {"serverRelativeURL":
    /// "/openapi/v3/api/v1?hash=<HEX>"}, "apis/apps/v1": {...}, ...}}`.
    pub fn v3_index(&self) -> &[u8] {
        &self.index
    }

    /// Body of `GET /openapi/v3/<path>` (`api/v1`, `apis/apps/v1`) and its hash, for the ETag and
    /// for immutable caching when the request's `?hash=` matches. `None` if there is no such
    /// document.
    pub fn v3_group(&self, path: &str) -> Option<(&[u8], &str)> {
        let path = path.trim_matches('/');
        self.groups
            .iter()
            .find(|s| s.key == path)
            .map(|s| (s.body.as_slice(), s.hash.as_str()))
    }

    /// Body of `GET /openapi/v2`: the Swagger 2.0 document as JSON.
    pub fn v2(&self) -> &[u8] {
        &self.v2
    }
}

/// A custom kind's definition name as kube-apiserver gives it: the group's labels reversed, then
/// version and kind (`stable.example.com/v1` `CronTab` -> `com.example.stable.v1.CronTab`).
fn custom_definition_name(r: &ResourceInfo) -> String {
    let group: Vec<&str> = r.group.rsplit('.').collect();
    format!("{}.{}.{}", group.join("."), r.version, r.kind)
}

/// How a subresource's operations read and write.
fn subresource_body(
    r: &ResourceInfo,
    sub: &capstan_api::Subresource,
    defs: &ResourceDefs,
    generator: &mut SchemaGenerator,
) -> Result<SubresourceBody, OpenApiError> {
    if sub.name == "log" {
        return Ok(SubresourceBody::Log);
    }
    let Some((group, version, kind)) = sub.gvk else {
        return Ok(SubresourceBody::Object {
            definition: defs.kind.clone(),
            gvk: Gvk::new(r.group, r.version, r.kind),
        });
    };
    if kind.ends_with("Options") {
        return Ok(SubresourceBody::Connect);
    }
    let api_version = if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    };
    let schema_fn = subresource_kind_schema(group, version, kind)
        .or_else(|| capstan_api::find_kind(&api_version, kind).map(|found| found.schema))
        .ok_or_else(|| OpenApiError::UnknownSubresourceKind {
            resource: r.qualified_plural(),
            subresource: sub.name.to_owned(),
            kind: kind.to_owned(),
        })?;
    let definition = schema::ref_name(&schema_fn(generator), kind)?;
    Ok(SubresourceBody::Object {
        definition,
        gvk: Gvk::new(group, version, kind),
    })
}

/// The kinds kube-apiserver tags meta definitions with: `Status` and the discovery kinds in the
/// core group, `DeleteOptions` and `WatchEvent` in every group-version.
fn add_meta_gvks(definitions: &mut Definitions, meta: &MetaNames, group_versions: &[(&str, &str)]) {
    let core = [
        (&meta.status, "Status"),
        (&meta.api_resource_list, "APIResourceList"),
        (&meta.api_versions, "APIVersions"),
        (&meta.api_group_list, "APIGroupList"),
        (&meta.api_group, "APIGroup"),
    ];
    for (name, kind) in core {
        definitions.add_gvk(name, Gvk::new("", "v1", kind));
    }
    for (name, kind) in [
        (&meta.delete_options, "DeleteOptions"),
        (&meta.watch_event, "WatchEvent"),
    ] {
        definitions.add_gvk(name, Gvk::new("", "v1", kind));
        for &(group, version) in group_versions {
            definitions.add_gvk(name, Gvk::new(group, version, kind));
        }
    }
}

/// The definition names `$ref`ed anywhere in `value`.
fn definition_refs(value: &Value) -> Result<BTreeSet<String>, OpenApiError> {
    let mut refs = BTreeSet::new();
    schema::collect_refs(value, &mut refs);
    refs.into_iter()
        .map(|reference| match reference.strip_prefix(V3_REF) {
            Some(name) => Ok(name.to_owned()),
            None => Err(OpenApiError::UnresolvedRef { reference }),
        })
        .collect()
}

/// Upper-case hex SHA-512 of a document, as kube-apiserver names its v3 documents.
fn hash(body: &[u8]) -> String {
    use fmt::Write as _;
    let digest = Sha512::digest(body);
    let mut out = String::with_capacity(digest.len() * 2);
    for byte in digest {
        // Writing to a String cannot fail.
        let _ = write!(out, "{byte:02X}");
    }
    out
}

#[cfg(test)]
mod tests;
