//! The REST surface of each group-version, independent of the document format: which paths exist,
//! which operations each has (from the resource's verbs and subresources), their parameters and
//! what they take and return. `render` turns it into OpenAPI v3 and Swagger 2.0.

use capstan_api::{ResourceInfo, Subresource};

use crate::schema::{Gvk, MetaNames};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Method {
    Get,
    Put,
    Post,
    Delete,
    Patch,
}

impl Method {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Method::Get => "get",
            Method::Put => "put",
            Method::Post => "post",
            Method::Delete => "delete",
            Method::Patch => "patch",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Location {
    Path,
    Query,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Type {
    String,
    Integer,
    Boolean,
}

impl Type {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Type::String => "string",
            Type::Integer => "integer",
            Type::Boolean => "boolean",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Param {
    pub(crate) name: &'static str,
    pub(crate) location: Location,
    pub(crate) description: String,
    pub(crate) ty: Type,
    pub(crate) required: bool,
}

fn query(name: &'static str, ty: Type, description: &str) -> Param {
    Param {
        name,
        location: Location::Query,
        description: description.to_owned(),
        ty,
        required: false,
    }
}

fn path_param(name: &'static str, description: String) -> Param {
    Param {
        name,
        location: Location::Path,
        description,
        ty: Type::String,
        required: true,
    }
}

/// What a request or response carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Payload {
    /// An object of this definition.
    Definition(String),
    /// Plain text or a stream (logs, exec).
    Text,
}

/// The request body of an operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Body {
    /// An object of this definition, any content type.
    Object(String),
    /// A patch document with the `Patch` definition: the four patch content types, or three
    /// when `false` (custom kinds take no strategic merge patch, and kubectl 1.32 sends one to a
    /// kind whose PATCH lists it).
    Patch(String, bool),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Response {
    pub(crate) code: u16,
    pub(crate) payload: Option<Payload>,
}

#[derive(Clone, Debug)]
pub(crate) struct Operation {
    pub(crate) method: Method,
    pub(crate) id: String,
    pub(crate) description: String,
    /// `x-kubernetes-action`; `None` for discovery endpoints.
    pub(crate) action: Option<&'static str>,
    pub(crate) gvk: Option<Gvk>,
    pub(crate) params: Vec<Param>,
    pub(crate) body: Option<Body>,
    pub(crate) responses: Vec<Response>,
    /// Lists may be watched: the response may also be a watch stream.
    pub(crate) watchable: bool,
}

#[derive(Clone, Debug)]
pub(crate) struct PathItem {
    pub(crate) path: String,
    pub(crate) params: Vec<Param>,
    pub(crate) operations: Vec<Operation>,
}

/// One OpenAPI v3 document's worth of paths: `api/v1`, `apis/apps/v1`, `apis/apps`, `api`, `apis`.
#[derive(Clone, Debug)]
pub(crate) struct Document {
    /// Key in the v3 index and suffix of `/openapi/v3/`.
    pub(crate) key: String,
    pub(crate) tag: String,
    pub(crate) paths: Vec<PathItem>,
}

/// The definition names the operations of one resource refer to.
#[derive(Clone, Debug)]
pub(crate) struct ResourceDefs {
    pub(crate) kind: String,
    pub(crate) list: String,
}

/// How a subresource is served.
#[derive(Clone, Debug)]
pub(crate) enum SubresourceBody {
    /// Pod logs: text, no body.
    Log,
    /// exec, attach, portforward: upgraded connections described by an `*Options` kind.
    Connect,
    /// An object of this definition and GVK (`status`: the parent's own; `scale`: autoscaling/v1 Scale).
    Object { definition: String, gvk: Gvk },
}

const DRY_RUN: &str = "When present, indicates that modifications should not be persisted. An invalid or unrecognized dryRun directive will result in an error response and no further processing of the request. Valid values are: - All: all dry run stages will be processed";
const FIELD_MANAGER: &str = "fieldManager is a name associated with the actor or entity that is making these changes. The value must be less than or 128 characters long, and only contain printable characters. This field is required for apply requests (application/apply-patch) but optional for non-apply patch types (JsonPatch, MergePatch, StrategicMergePatch).";
const FIELD_VALIDATION: &str = "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: - Ignore: unknown fields are silently dropped from the object, and all but the last duplicate field are ignored. - Warn: a warning is sent via the standard warning response header for each unknown field that is dropped and each duplicate field. The request still succeeds if there are no other errors. This is the default. - Strict: the request fails with a BadRequest error if any unknown fields would be dropped or any duplicate fields are present.";
const FORCE: &str = "Force is going to \"force\" Apply requests. It means user will re-acquire conflicting fields owned by other people. Force flag must be unset for non-apply patch requests.";
const PRETTY: &str = "If 'true', then the output is pretty printed.";

fn write_params() -> Vec<Param> {
    vec![
        query("dryRun", Type::String, DRY_RUN),
        query("fieldManager", Type::String, FIELD_MANAGER),
        query("fieldValidation", Type::String, FIELD_VALIDATION),
    ]
}

fn patch_params() -> Vec<Param> {
    let mut params = write_params();
    params.push(query("force", Type::Boolean, FORCE));
    params
}

fn delete_params() -> Vec<Param> {
    vec![
        query("dryRun", Type::String, DRY_RUN),
        query(
            "gracePeriodSeconds",
            Type::Integer,
            "The duration in seconds before the object should be deleted. Value must be non-negative integer. The value zero indicates delete immediately. If this value is nil, the default grace period for the specified type will be used.",
        ),
        query(
            "orphanDependents",
            Type::Boolean,
            "Deprecated: please use the PropagationPolicy. Should the dependent objects be orphaned. Either this field or PropagationPolicy may be set, but not both.",
        ),
        query(
            "propagationPolicy",
            Type::String,
            "Whether and how garbage collection will be performed. Acceptable values are: 'Orphan' - orphan the dependents; 'Background' - allow the garbage collector to delete the dependents in the background; 'Foreground' - a cascading policy that deletes all dependents in the foreground.",
        ),
    ]
}

fn list_params() -> Vec<Param> {
    vec![
        query(
            "allowWatchBookmarks",
            Type::Boolean,
            "allowWatchBookmarks requests watch events with type \"BOOKMARK\". Servers that do not implement bookmarks may ignore this flag.",
        ),
        query(
            "continue",
            Type::String,
            "The continue option should be set when retrieving more results from the server. Its value is the token returned by the previous list call.",
        ),
        query(
            "fieldSelector",
            Type::String,
            "A selector to restrict the list of returned objects by their fields. Defaults to everything.",
        ),
        query(
            "labelSelector",
            Type::String,
            "A selector to restrict the list of returned objects by their labels. Defaults to everything.",
        ),
        query(
            "limit",
            Type::Integer,
            "limit is a maximum number of responses to return for a list call. If more items exist, the server will set the `continue` field on the list metadata to a value that can be used with the same initial query to retrieve the next set of results.",
        ),
        query(
            "resourceVersion",
            Type::String,
            "resourceVersion sets a constraint on what resource versions a request may be served from. Defaults to unset.",
        ),
        query(
            "resourceVersionMatch",
            Type::String,
            "resourceVersionMatch determines how resourceVersion is applied to list calls. Defaults to unset.",
        ),
        query(
            "sendInitialEvents",
            Type::Boolean,
            "`sendInitialEvents=true` may be set together with `watch=true`. In that case, the watch stream will begin with synthetic events to produce the current state of objects in the collection.",
        ),
        query(
            "timeoutSeconds",
            Type::Integer,
            "Timeout for the list/watch call. This limits the duration of the call, regardless of any activity or inactivity.",
        ),
        query(
            "watch",
            Type::Boolean,
            "Watch for changes to the described resources and return them as a stream of add, update, and remove notifications. Specify resourceVersion.",
        ),
    ]
}

fn log_params() -> Vec<Param> {
    vec![
        query(
            "container",
            Type::String,
            "The container for which to stream logs. Defaults to only container if there is one container in the pod.",
        ),
        query(
            "follow",
            Type::Boolean,
            "Follow the log stream of the pod. Defaults to false.",
        ),
        query(
            "limitBytes",
            Type::Integer,
            "If set, the number of bytes to read from the server before terminating the log output.",
        ),
        query(
            "previous",
            Type::Boolean,
            "Return previous terminated container logs. Defaults to false.",
        ),
        query(
            "sinceSeconds",
            Type::Integer,
            "A relative time in seconds before the current time from which to show logs.",
        ),
        query(
            "tailLines",
            Type::Integer,
            "If set, the number of lines from the end of the logs to show.",
        ),
        query(
            "timestamps",
            Type::Boolean,
            "If true, add an RFC3339 timestamp at the beginning of every line of log output. Defaults to false.",
        ),
    ]
}

fn connect_params(subresource: &str) -> Vec<Param> {
    let stream = |name: &'static str, what: &str| {
        query(
            name,
            Type::Boolean,
            &format!("Redirect the {what} of the container for this call."),
        )
    };
    let container = query(
        "container",
        Type::String,
        "The container in which to run the command or to attach to.",
    );
    match subresource {
        "exec" => vec![
            query(
                "command",
                Type::String,
                "Command is the remote command to execute. argv array. Not executed within a shell.",
            ),
            container,
            stream("stderr", "standard error stream"),
            stream("stdin", "standard input stream"),
            stream("stdout", "standard output stream"),
            query(
                "tty",
                Type::Boolean,
                "TTY if true indicates that a tty will be allocated for the exec call.",
            ),
        ],
        "attach" => vec![
            container,
            stream("stderr", "standard error stream"),
            stream("stdin", "standard input stream"),
            stream("stdout", "standard output stream"),
            query(
                "tty",
                Type::Boolean,
                "TTY if true indicates that a tty will be allocated for the attach call.",
            ),
        ],
        "portforward" => vec![query(
            "ports",
            Type::Integer,
            "List of ports to forward. Required when using WebSockets.",
        )],
        _ => Vec::new(),
    }
}

/// `Core`, `Apps`, `RbacAuthorization`, `Coordination`: the group as it appears in operation ids.
fn group_camel(group: &str) -> String {
    if group.is_empty() {
        return "Core".to_owned();
    }
    let group = group.strip_suffix(".k8s.io").unwrap_or(group);
    group.split('.').map(capitalize).collect()
}

/// `rbacAuthorization`, `core`: the group as it appears in tags.
fn group_lower_camel(group: &str) -> String {
    let camel = group_camel(group);
    let mut chars = camel.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => camel,
    }
}

fn capitalize(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// `api/v1` or `apis/apps/v1`.
pub(crate) fn group_version_key(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

fn ok(code: u16, payload: &Payload) -> Response {
    Response {
        code,
        payload: Some(payload.clone()),
    }
}

/// Builds the paths of one resource into `paths`.
pub(crate) struct ResourcePaths<'a> {
    pub(crate) resource: &'a ResourceInfo,
    pub(crate) defs: &'a ResourceDefs,
    pub(crate) meta: &'a MetaNames,
}

impl ResourcePaths<'_> {
    fn gv(&self) -> String {
        format!(
            "{}{}",
            group_camel(self.resource.group),
            capitalize(self.resource.version)
        )
    }

    fn scope(&self) -> &'static str {
        if self.resource.namespaced() {
            "Namespaced"
        } else {
            ""
        }
    }

    fn gvk(&self) -> Gvk {
        Gvk::new(
            self.resource.group,
            self.resource.version,
            self.resource.kind,
        )
    }

    fn collection_path(&self) -> String {
        let r = self.resource;
        let prefix = format!("/{}", group_version_key(r.group, r.version));
        if r.namespaced() {
            format!("{prefix}/namespaces/{{namespace}}/{}", r.plural)
        } else {
            format!("{prefix}/{}", r.plural)
        }
    }

    fn collection_params(&self) -> Vec<Param> {
        let mut params = Vec::new();
        if self.resource.namespaced() {
            params.push(path_param(
                "namespace",
                "object name and auth scope, such as for teams and projects".to_owned(),
            ));
        }
        params.push(query("pretty", Type::String, PRETTY));
        params
    }

    fn item_params(&self) -> Vec<Param> {
        let mut params = vec![path_param(
            "name",
            format!("name of the {}", self.resource.kind),
        )];
        params.extend(self.collection_params());
        params
    }

    fn operation(
        &self,
        method: Method,
        verb: &str,
        suffix: &str,
        action: &'static str,
    ) -> Operation {
        let kind = self.resource.kind;
        Operation {
            method,
            id: format!("{verb}{}{}{kind}{suffix}", self.gv(), self.scope()),
            description: String::new(),
            action: Some(action),
            gvk: Some(self.gvk()),
            params: Vec::new(),
            body: None,
            responses: Vec::new(),
            watchable: false,
        }
    }

    /// Every path of the resource.
    pub(crate) fn build(&self, subresources: &[(Subresource, SubresourceBody)]) -> Vec<PathItem> {
        let r = self.resource;
        let kind = r.kind;
        let object = Payload::Definition(self.defs.kind.clone());
        let status = Payload::Definition(self.meta.status.clone());
        let mut out = Vec::new();

        // The collection: list, create, deletecollection.
        let mut collection = Vec::new();
        if r.has_verb("list") {
            let mut op = self.operation(Method::Get, "list", "", "list");
            op.description = format!("list or watch objects of kind {kind}");
            op.params = list_params();
            op.responses = vec![ok(200, &Payload::Definition(self.defs.list.clone()))];
            op.watchable = true;
            collection.push(op);
        }
        if r.has_verb("create") {
            let mut op = self.operation(Method::Post, "create", "", "post");
            op.description = format!("create a {kind}");
            op.params = write_params();
            op.body = Some(Body::Object(self.defs.kind.clone()));
            op.responses = vec![ok(200, &object), ok(201, &object), ok(202, &object)];
            collection.push(op);
        }
        if r.has_verb("deletecollection") {
            let mut op = self.operation(Method::Delete, "delete", "", "deletecollection");
            op.id = format!("delete{}Collection{}{kind}", self.gv(), self.scope());
            op.description = format!("delete collection of {kind}");
            op.params = delete_params();
            op.params.extend(list_params().into_iter().filter(|p| {
                !matches!(
                    p.name,
                    "allowWatchBookmarks" | "watch" | "sendInitialEvents"
                )
            }));
            op.params.sort_by_key(|p| p.name);
            op.params.dedup_by_key(|p| p.name);
            op.body = Some(Body::Object(self.meta.delete_options.clone()));
            op.responses = vec![ok(200, &status)];
            collection.push(op);
        }
        if !collection.is_empty() {
            out.push(PathItem {
                path: self.collection_path(),
                params: self.collection_params(),
                operations: collection,
            });
        }

        // Across all namespaces.
        if r.namespaced() && r.has_verb("list") {
            let mut op = self.operation(Method::Get, "list", "ForAllNamespaces", "list");
            op.id = format!("list{}{kind}ForAllNamespaces", self.gv());
            op.description = format!("list or watch objects of kind {kind}");
            op.params = list_params();
            op.responses = vec![ok(200, &Payload::Definition(self.defs.list.clone()))];
            op.watchable = true;
            out.push(PathItem {
                path: format!("/{}/{}", group_version_key(r.group, r.version), r.plural),
                params: vec![query("pretty", Type::String, PRETTY)],
                operations: vec![op],
            });
        }

        // One object: get, update, patch, delete.
        let mut item = Vec::new();
        if r.has_verb("get") {
            let mut op = self.operation(Method::Get, "read", "", "get");
            op.description = format!("read the specified {kind}");
            op.responses = vec![ok(200, &object)];
            item.push(op);
        }
        if r.has_verb("update") {
            let mut op = self.operation(Method::Put, "replace", "", "put");
            op.description = format!("replace the specified {kind}");
            op.params = write_params();
            op.body = Some(Body::Object(self.defs.kind.clone()));
            op.responses = vec![ok(200, &object), ok(201, &object)];
            item.push(op);
        }
        if r.has_verb("patch") {
            let mut op = self.operation(Method::Patch, "patch", "", "patch");
            op.description = format!("partially update the specified {kind}");
            op.params = patch_params();
            op.body = Some(Body::Patch(
                self.meta.patch.clone(),
                self.resource.custom.is_none(),
            ));
            op.responses = vec![ok(200, &object), ok(201, &object)];
            item.push(op);
        }
        if r.has_verb("delete") {
            let mut op = self.operation(Method::Delete, "delete", "", "delete");
            op.description = format!("delete a {kind}");
            op.params = delete_params();
            op.body = Some(Body::Object(self.meta.delete_options.clone()));
            op.responses = vec![ok(200, &status), ok(202, &status)];
            item.push(op);
        }
        let item_path = format!("{}/{{name}}", self.collection_path());
        if !item.is_empty() {
            out.push(PathItem {
                path: item_path.clone(),
                params: self.item_params(),
                operations: item,
            });
        }

        for (sub, body) in subresources {
            let operations = self.subresource_operations(sub, body);
            if !operations.is_empty() {
                out.push(PathItem {
                    path: format!("{item_path}/{}", sub.name),
                    params: self.item_params(),
                    operations,
                });
            }
        }
        out
    }

    fn subresource_operations(&self, sub: &Subresource, body: &SubresourceBody) -> Vec<Operation> {
        let kind = self.resource.kind;
        let name = sub.name;
        let suffix = capitalize(name);
        let has = |verb: &str| sub.verbs.contains(&verb);
        let mut ops = Vec::new();
        match body {
            SubresourceBody::Log => {
                if has("get") {
                    let mut op = self.operation(Method::Get, "read", &suffix, "get");
                    op.description = format!("read {name} of the specified {kind}");
                    op.params = log_params();
                    op.responses = vec![ok(200, &Payload::Text)];
                    ops.push(op);
                }
            }
            SubresourceBody::Connect => {
                let gvk = sub.gvk.map(|(g, v, k)| Gvk::new(g, v, k));
                for (verb, method, label) in [
                    ("get", Method::Get, "Get"),
                    ("create", Method::Post, "Post"),
                ] {
                    if has(verb) {
                        let mut op = self.operation(method, "connect", "", "connect");
                        op.id =
                            format!("connect{}{label}{}{kind}{suffix}", self.gv(), self.scope());
                        op.description = format!(
                            "connect {} requests to {name} of {kind}",
                            label.to_uppercase()
                        );
                        op.gvk.clone_from(&gvk);
                        op.params = connect_params(name);
                        op.responses = vec![ok(200, &Payload::Text)];
                        ops.push(op);
                    }
                }
            }
            SubresourceBody::Object { definition, gvk } => {
                let payload = Payload::Definition(definition.clone());
                let mut push = |mut op: Operation| {
                    op.gvk = Some(gvk.clone());
                    ops.push(op);
                };
                if has("get") {
                    let mut op = self.operation(Method::Get, "read", &suffix, "get");
                    op.description = format!("read {name} of the specified {kind}");
                    op.responses = vec![ok(200, &payload)];
                    push(op);
                }
                if has("create") {
                    let mut op = self.operation(Method::Post, "create", &suffix, "post");
                    op.description = format!("create {name} of a {kind}");
                    op.params = write_params();
                    op.body = Some(Body::Object(definition.clone()));
                    op.responses = vec![ok(200, &payload), ok(201, &payload), ok(202, &payload)];
                    push(op);
                }
                if has("update") {
                    let mut op = self.operation(Method::Put, "replace", &suffix, "put");
                    op.description = format!("replace {name} of the specified {kind}");
                    op.params = write_params();
                    op.body = Some(Body::Object(definition.clone()));
                    op.responses = vec![ok(200, &payload), ok(201, &payload)];
                    push(op);
                }
                if has("patch") {
                    let mut op = self.operation(Method::Patch, "patch", &suffix, "patch");
                    op.description = format!("partially update {name} of the specified {kind}");
                    op.params = patch_params();
                    op.body = Some(Body::Patch(
                        self.meta.patch.clone(),
                        self.resource.custom.is_none(),
                    ));
                    op.responses = vec![ok(200, &payload), ok(201, &payload)];
                    push(op);
                }
            }
        }
        ops
    }
}

/// `GET /api/v1/` or `GET /apis/apps/v1/`: the group-version's resource list.
pub(crate) fn resource_list_path(group: &str, version: &str, meta: &MetaNames) -> PathItem {
    PathItem {
        path: format!("/{}/", group_version_key(group, version)),
        params: Vec::new(),
        operations: vec![Operation {
            method: Method::Get,
            id: format!(
                "get{}{}APIResources",
                group_camel(group),
                capitalize(version)
            ),
            description: "get available resources".to_owned(),
            action: None,
            gvk: None,
            params: Vec::new(),
            body: None,
            responses: vec![ok(
                200,
                &Payload::Definition(meta.api_resource_list.clone()),
            )],
            watchable: false,
        }],
    }
}

/// The documents that describe discovery itself: `api` (`GET /api/`), `apis` (`GET /apis/`) and
/// `apis/<group>` (`GET /apis/<group>/`).
pub(crate) fn discovery_documents(groups: &[&str], meta: &MetaNames) -> Vec<Document> {
    let get = |path: String, id: String, description: &str, definition: &str| PathItem {
        path,
        params: Vec::new(),
        operations: vec![Operation {
            method: Method::Get,
            id,
            description: description.to_owned(),
            action: None,
            gvk: None,
            params: Vec::new(),
            body: None,
            responses: vec![ok(200, &Payload::Definition(definition.to_owned()))],
            watchable: false,
        }],
    };
    let mut docs = vec![
        Document {
            key: "api".to_owned(),
            tag: "core".to_owned(),
            paths: vec![get(
                "/api/".to_owned(),
                "getCoreAPIVersions".to_owned(),
                "get available API versions",
                &meta.api_versions,
            )],
        },
        Document {
            key: "apis".to_owned(),
            tag: "apis".to_owned(),
            paths: vec![get(
                "/apis/".to_owned(),
                "getAPIVersions".to_owned(),
                "get available API versions",
                &meta.api_group_list,
            )],
        },
    ];
    for group in groups.iter().filter(|g| !g.is_empty()) {
        docs.push(Document {
            key: format!("apis/{group}"),
            tag: group_lower_camel(group),
            paths: vec![get(
                format!("/apis/{group}/"),
                format!("get{}APIGroup", group_camel(group)),
                "get information of a group",
                &meta.api_group,
            )],
        });
    }
    docs
}

/// The tag of a group-version's operations: `core_v1`, `apps_v1`, `rbacAuthorization_v1`.
pub(crate) fn tag(group: &str, version: &str) -> String {
    format!("{}_{version}", group_lower_camel(group))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_names_follow_kubernetes_operation_ids() {
        let cases = [
            ("", "Core", "core_v1"),
            ("apps", "Apps", "apps_v1"),
            (
                "rbac.authorization.k8s.io",
                "RbacAuthorization",
                "rbacAuthorization_v1",
            ),
            ("coordination.k8s.io", "Coordination", "coordination_v1"),
        ];
        for (group, camel, want_tag) in cases {
            assert_eq!(group_camel(group), camel);
            assert_eq!(tag(group, "v1"), want_tag);
        }
    }
}
