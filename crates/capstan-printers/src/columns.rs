//! Column definitions (`TableColumnDefinition`). Descriptions of API fields are read from the
//! field's documentation in the `k8s-openapi` JSON schema, as kube-apiserver reads them from the
//! types' swagger docs.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use schemars::{JsonSchema, SchemaGenerator};
use serde_json::{Value, json};

/// One column of a table.
#[derive(Debug, Clone)]
pub(crate) struct Column {
    name: &'static str,
    kind: &'static str,
    format: &'static str,
    description: String,
    priority: i64,
}

impl Column {
    pub(crate) fn new(
        name: &'static str,
        kind: &'static str,
        description: impl Into<String>,
    ) -> Column {
        Column {
            name,
            kind,
            format: "",
            description: description.into(),
            priority: 0,
        }
    }

    /// Shown only with `-o wide`.
    pub(crate) fn wide(mut self) -> Column {
        self.priority = 1;
        self
    }

    pub(crate) fn format(mut self, format: &'static str) -> Column {
        self.format = format;
        self
    }

    pub(crate) fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "type": self.kind,
            "format": self.format,
            "description": self.description,
            "priority": self.priority,
        })
    }
}

/// The documentation of field `field` of type `T`, `""` if the schema has none.
pub(crate) fn doc<T: JsonSchema>(field: &str) -> String {
    let schema = T::json_schema(&mut SchemaGenerator::default());
    schema
        .as_value()
        .get("properties")
        .and_then(|p| p.get(field))
        .and_then(|f| f.get("description"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned()
}

/// The first column of nearly every table.
pub(crate) fn name() -> Column {
    Column::new("Name", "string", doc::<ObjectMeta>("name")).format("name")
}

pub(crate) fn age() -> Column {
    Column::new("Age", "string", doc::<ObjectMeta>("creationTimestamp"))
}

pub(crate) fn created_at() -> Column {
    Column::new("Created At", "date", doc::<ObjectMeta>("creationTimestamp"))
}

/// `Containers` and `Images` of a pod template, both wide.
pub(crate) fn containers_images() -> [Column; 2] {
    [
        Column::new(
            "Containers",
            "string",
            "Names of each container in the template.",
        )
        .wide(),
        Column::new(
            "Images",
            "string",
            "Images referenced by each container in the template.",
        )
        .wide(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_field_docs_from_schemas() {
        assert!(doc::<ObjectMeta>("name").starts_with("Name must be unique within a namespace."));
        assert!(
            doc::<ObjectMeta>("creationTimestamp").starts_with("CreationTimestamp is a timestamp")
        );
        assert_eq!(doc::<ObjectMeta>("noSuchField"), "");
    }

    #[test]
    fn serializes_every_field_even_when_empty() {
        let c = Column::new("Ready", "string", "x").wide().to_json();
        assert_eq!(
            c,
            json!({"name": "Ready", "type": "string", "format": "", "description": "x", "priority": 1})
        );
    }
}
