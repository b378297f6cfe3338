//! [`Lean`]: an API object decoded without `metadata.managedFields`.
//!
//! Components read objects, they never look at who owns which field; yet with k8s-openapi's types
//! most of the work of decoding a small object (a pending pod: ~1 KiB of managedFields out of ~2 KiB)
//! goes into building that tree of maps. `Lean<K>` decodes `K` through a deserializer that skips
//! the field (serde's `IgnoredAny` only scans its bytes), and is a `kube::Resource` like `K`, so
//! `Api<Lean<Pod>>` and kube-runtime watchers work unchanged.

use std::borrow::Cow;
use std::fmt;

use kube::core::ObjectMeta;
use serde::de::{
    self, DeserializeSeed, Deserializer, IgnoredAny, IntoDeserializer, MapAccess, Visitor,
};
use serde::{Deserialize, Serialize};

/// `K`, decoded with `metadata.managedFields` left out (so it is `None`). Serialises as `K`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(transparent)]
pub struct Lean<K>(pub K);

impl<K> Lean<K> {
    /// The object.
    pub fn into_inner(self) -> K {
        self.0
    }
}

impl<'de, K: Deserialize<'de>> Deserialize<'de> for Lean<K> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        K::deserialize(Filter {
            inner: deserializer,
            level: Level::Object,
        })
        .map(Lean)
    }
}

impl<K: kube::Resource> kube::Resource for Lean<K> {
    type DynamicType = K::DynamicType;
    type Scope = K::Scope;

    fn kind(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::kind(dt)
    }
    fn group(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::group(dt)
    }
    fn version(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::version(dt)
    }
    fn api_version(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::api_version(dt)
    }
    fn plural(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::plural(dt)
    }
    fn url_path(dt: &Self::DynamicType, namespace: Option<&str>) -> String {
        K::url_path(dt, namespace)
    }
    fn meta(&self) -> &ObjectMeta {
        self.0.meta()
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        self.0.meta_mut()
    }
}

/// Where the filtering deserializer is: the object (its `metadata` value gets filtered) or its
/// metadata (whose `managedFields` entry is skipped).
#[derive(Clone, Copy, PartialEq)]
enum Level {
    Object,
    Metadata,
}

/// A deserializer that hands maps to the visitor through [`FilterMap`]; everything else passes.
struct Filter<D> {
    inner: D,
    level: Level,
}

macro_rules! forward {
    ($($method:ident($($arg:ident: $ty:ty),*)),* $(,)?) => {
        $(
            fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, D::Error> {
                self.inner.$method($($arg,)* visitor)
            }
        )*
    };
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Filter<D> {
    type Error = D::Error;

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        let level = self.level;
        self.inner.deserialize_map(FilterVisitor {
            inner: visitor,
            level,
        })
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let level = self.level;
        self.inner.deserialize_struct(
            name,
            fields,
            FilterVisitor {
                inner: visitor,
                level,
            },
        )
    }

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        let level = self.level;
        self.inner.deserialize_any(FilterVisitor {
            inner: visitor,
            level,
        })
    }

    // `Option<ObjectMeta>` and newtypes reach the map through `visit_some` / `visit_newtype_struct`.
    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        let level = self.level;
        self.inner.deserialize_option(FilterVisitor {
            inner: visitor,
            level,
        })
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let level = self.level;
        self.inner.deserialize_newtype_struct(
            name,
            FilterVisitor {
                inner: visitor,
                level,
            },
        )
    }

    forward! {
        deserialize_bool(), deserialize_i8(), deserialize_i16(), deserialize_i32(),
        deserialize_i64(), deserialize_u8(), deserialize_u16(), deserialize_u32(),
        deserialize_u64(), deserialize_f32(), deserialize_f64(), deserialize_char(),
        deserialize_str(), deserialize_string(), deserialize_bytes(), deserialize_byte_buf(),
        deserialize_unit(), deserialize_unit_struct(name: &'static str), deserialize_seq(),
        deserialize_tuple(len: usize), deserialize_tuple_struct(name: &'static str, len: usize),
        deserialize_enum(name: &'static str, variants: &'static [&'static str]),
        deserialize_identifier(), deserialize_ignored_any(),
    }
}

/// Passes a map on as a [`FilterMap`].
struct FilterVisitor<V> {
    inner: V,
    level: Level,
}

impl<'de, V: Visitor<'de>> Visitor<'de> for FilterVisitor<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.expecting(f)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.inner.visit_map(FilterMap {
            inner: map,
            level: self.level,
            metadata_next: false,
        })
    }

    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_unit()
    }

    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_none()
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<V::Value, D::Error> {
        self.inner.visit_some(Filter {
            inner: deserializer,
            level: self.level,
        })
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<V::Value, D::Error> {
        self.inner.visit_newtype_struct(Filter {
            inner: deserializer,
            level: self.level,
        })
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        self.inner.visit_seq(seq)
    }
}

/// A map key, borrowed from the input when it has no escapes.
enum Key<'de> {
    Borrowed(&'de str),
    Owned(String),
}

impl Key<'_> {
    fn as_str(&self) -> &str {
        match self {
            Key::Borrowed(s) => s,
            Key::Owned(s) => s,
        }
    }
}

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key::Borrowed(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key::Owned(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key::Owned(v))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// The map of an object (whose `metadata` value is filtered) or of its metadata (without
/// `managedFields`).
struct FilterMap<A> {
    inner: A,
    level: Level,
    metadata_next: bool,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for FilterMap<A> {
    type Error = A::Error;

    fn next_key_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, A::Error> {
        loop {
            let Some(key) = self.inner.next_key::<Key<'de>>()? else {
                return Ok(None);
            };
            match (self.level, key.as_str()) {
                (Level::Metadata, "managedFields") => {
                    self.inner.next_value::<IgnoredAny>()?;
                    continue;
                }
                (Level::Object, "metadata") => self.metadata_next = true,
                _ => self.metadata_next = false,
            }
            return match key {
                Key::Borrowed(s) => seed.deserialize(de::value::BorrowedStrDeserializer::new(s)),
                Key::Owned(s) => seed.deserialize(s.into_deserializer()),
            }
            .map(Some);
        }
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, A::Error> {
        if std::mem::take(&mut self.metadata_next) {
            self.inner.next_value_seed(MetadataSeed(seed))
        } else {
            self.inner.next_value_seed(seed)
        }
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

/// Decodes the `metadata` value through a metadata-level [`Filter`].
struct MetadataSeed<S>(S);

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for MetadataSeed<S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<S::Value, D::Error> {
        self.0.deserialize(Filter {
            inner: deserializer,
            level: Level::Metadata,
        })
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Pod;
    use kube::Resource;
    use kube::core::{ObjectList, WatchEvent};
    use serde_json::json;

    use super::Lean;

    fn pod_json() -> serde_json::Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": "web-0", "namespace": "default", "uid": "u-1", "resourceVersion": "42",
                "labels": {"app": "web"},
                "managedFields": [{"manager": "kubectl", "operation": "Apply", "apiVersion": "v1",
                    "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {"f:labels": {"f:app": {}}}}}],
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web",
                    "uid": "rs-1", "controller": true}]
            },
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "busybox",
                "resources": {"requests": {"cpu": "100m"}}}]},
            "status": {"phase": "Running"}
        })
    }

    #[test]
    fn decodes_everything_but_managed_fields() {
        let full: Pod = serde_json::from_value(pod_json()).expect("pod");
        assert!(full.metadata.managed_fields.is_some());
        let lean: Lean<Pod> =
            serde_json::from_slice(&serde_json::to_vec(&pod_json()).expect("json"))
                .expect("lean pod");
        let mut expected = full;
        expected.metadata.managed_fields = None;
        assert_eq!(lean.0, expected);
        assert_eq!(lean.meta().resource_version.as_deref(), Some("42"));
        assert_eq!(Lean::<Pod>::plural(&()), "pods");
        assert_eq!(
            Lean::<Pod>::url_path(&(), Some("default")),
            Pod::url_path(&(), Some("default"))
        );
    }

    #[test]
    fn only_the_objects_own_metadata_loses_the_field() {
        // A `managedFields` key elsewhere (here: a label and an annotation-like map under spec) is data.
        let mut value = pod_json();
        value["metadata"]["labels"]["managedFields"] = json!("kept");
        value["spec"]["nodeSelector"] = json!({"managedFields": "kept too"});
        let lean: Lean<Pod> = serde_json::from_value(value).expect("lean pod");
        let labels = lean.0.metadata.labels.expect("labels");
        assert_eq!(labels["managedFields"], "kept");
        let selector = lean.0.spec.expect("spec").node_selector.expect("selector");
        assert_eq!(selector["managedFields"], "kept too");
        assert!(lean.0.metadata.managed_fields.is_none());
    }

    #[test]
    fn works_inside_lists_and_watch_events_and_keeps_escaped_keys() {
        let list = json!({"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "7"},
            "items": [pod_json(), pod_json()]});
        let list: ObjectList<Lean<Pod>> = serde_json::from_value(list).expect("list");
        assert_eq!(list.items.len(), 2);
        assert!(
            list.items
                .iter()
                .all(|p| p.0.metadata.managed_fields.is_none())
        );

        // An escaped key cannot be borrowed from the input: decoded all the same.
        let line = serde_json::to_string(&json!({"type": "MODIFIED", "object": pod_json()}))
            .expect("json")
            .replace("\"phase\"", "\"ph\\u0061se\"");
        let event: WatchEvent<Lean<Pod>> = serde_json::from_str(&line).expect("event");
        let WatchEvent::Modified(pod) = event else {
            panic!("not a modification");
        };
        assert_eq!(
            pod.0.status.and_then(|s| s.phase).as_deref(),
            Some("Running")
        );
        assert!(pod.0.metadata.managed_fields.is_none());
    }

    #[test]
    fn bad_input_is_an_error_not_a_default() {
        let mut value = pod_json();
        value["metadata"]["name"] = json!(5);
        assert!(serde_json::from_value::<Lean<Pod>>(value).is_err());
        assert!(serde_json::from_str::<Lean<Pod>>("[1,2]").is_err());
        assert!(serde_json::from_str::<Lean<Pod>>("{\"metadata\": ").is_err());
    }
}
