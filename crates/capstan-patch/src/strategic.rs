//! Kubernetes strategic merge patch, as `kubectl apply` (client-side), `edit`, `set image` and
//! `patch --type=strategic` send it.
//!
//! Maps merge recursively and `null` deletes a key. Lists are replaced unless their field has the
//! `merge` strategy: lists of maps then merge element-wise by the field's merge key, lists of
//! primitives are set unions. Directives: `$patch: replace|delete|merge` in maps and list elements,
//! `$retainKeys`, `$deleteFromPrimitiveList/<field>` and `$setElementOrder/<field>`.
//!
//! Where kube-apiserver keeps a directive in the result or errors on `$patch: merge`, this module
//! processes the directive instead (a new field is merged into an empty value, so directives inside
//! it take effect, and `$patch: merge` is an explicit plain merge).

use capstan_api::ResourceInfo;
use serde_json::{Map, Value};

use crate::PatchError;
use crate::meta::{self, Child, Strategy, Ty};

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList/";
const SET_ELEMENT_ORDER: &str = "$setElementOrder/";

/// Applies a strategic merge patch to an object of `resource`.
pub fn strategic_merge_patch(
    doc: &Value,
    patch: &Value,
    resource: &ResourceInfo,
) -> Result<Value, PatchError> {
    let Value::Object(patch) = patch else {
        return Err(PatchError::malformed(
            "strategic merge patch must be a json object",
        ));
    };
    let Value::Object(doc) = doc else {
        return Err(PatchError::cannot_apply(
            "the object to patch is not a json object",
        ));
    };
    merge_map(doc.clone(), patch.clone(), meta::root(resource)).map(Value::Object)
}

fn merge_map(
    mut original: Map<String, Value>,
    mut patch: Map<String, Value>,
    ty: Ty,
) -> Result<Map<String, Value>, PatchError> {
    if let Some(directive) = patch.remove(DIRECTIVE) {
        match directive.as_str() {
            Some("replace") => return merge_map(Map::new(), patch, ty),
            Some("delete") => return Ok(Map::new()),
            Some("merge") => {}
            _ => {
                return Err(PatchError::malformed(format!(
                    "unknown patch type: {directive} in map"
                )));
            }
        }
    }
    retain_keys(&mut original, &mut patch)?;
    set_element_order(&mut original, &mut patch, ty)?;

    let mut deletions = Vec::new();
    for (key, value) in patch {
        if let Some(field) = key.strip_prefix(DELETE_FROM_PRIMITIVE_LIST) {
            deletions.push((field.to_owned(), value));
            continue;
        }
        if value.is_null() {
            original.remove(&key);
            continue;
        }
        let child = ty.child(&key);
        let merged = match (original.remove(&key), value) {
            (Some(Value::Object(_)), Value::Object(new))
                if child.meta.strategy == Strategy::Replace =>
            {
                Some(Value::Object(merge_map(Map::new(), new, child.ty)?))
            }
            (Some(Value::Object(old)), Value::Object(new)) => {
                Some(Value::Object(merge_map(old, new, child.ty)?))
            }
            (Some(Value::Array(old)), Value::Array(new)) => {
                Some(Value::Array(merge_list(old, new, child)?))
            }
            (_, new) => new_value(new, child)?,
        };
        if let Some(merged) = merged {
            original.insert(key, merged);
        }
    }

    for (field, remove) in deletions {
        let Value::Array(remove) = remove else {
            return Err(PatchError::malformed(format!(
                "invalid patch: {DELETE_FROM_PRIMITIVE_LIST}{field} must be a list"
            )));
        };
        if let Some(Value::Array(list)) = original.get_mut(&field) {
            list.retain(|item| !remove.contains(item));
        }
    }
    Ok(original)
}

/// A patch value for a field the original lacks (or holds with another JSON type).
fn new_value(value: Value, child: Child) -> Result<Option<Value>, PatchError> {
    match value {
        Value::Object(map) if map.get(DIRECTIVE).and_then(Value::as_str) == Some("delete") => {
            Ok(None)
        }
        Value::Object(map) => Ok(Some(Value::Object(merge_map(Map::new(), map, child.ty)?))),
        Value::Array(list) => Ok(Some(Value::Array(merge_list(Vec::new(), list, child)?))),
        scalar => Ok(Some(scalar)),
    }
}

/// `$retainKeys`: clears the keys of `original` not listed, after checking the patch sets no other key.
fn retain_keys(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
) -> Result<(), PatchError> {
    let Some(retain) = patch.remove(RETAIN_KEYS) else {
        return Ok(());
    };
    let bad = || PatchError::malformed("invalid patch: $retainKeys must be a list of field names");
    let Value::Array(retain) = retain else {
        return Err(bad());
    };
    let retain = retain
        .iter()
        .map(|key| key.as_str().ok_or_else(bad))
        .collect::<Result<Vec<_>, _>>()?;
    for (key, value) in patch.iter() {
        if value.is_null()
            || key.starts_with(DELETE_FROM_PRIMITIVE_LIST)
            || key.starts_with(SET_ELEMENT_ORDER)
        {
            continue;
        }
        if !retain.contains(&key.as_str()) {
            return Err(PatchError::malformed(format!(
                "invalid patch: field {key:?} is not present in the $retainKeys list"
            )));
        }
    }
    original.retain(|key, _| retain.contains(&key.as_str()));
    Ok(())
}

/// `$setElementOrder/<field>`: merges the field's list (if patched) and orders the result as the
/// directive lists, with elements only the server has after their predecessors in the live list.
fn set_element_order(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
    ty: Ty,
) -> Result<(), PatchError> {
    let keys: Vec<String> = patch
        .keys()
        .filter(|key| key.starts_with(SET_ELEMENT_ORDER))
        .cloned()
        .collect();
    for key in keys {
        let field = &key[SET_ELEMENT_ORDER.len()..];
        let Some(Value::Array(order)) = patch.remove(&key) else {
            return Err(PatchError::malformed(format!(
                "invalid patch: {key} must be a list"
            )));
        };
        if field.is_empty() {
            return Err(PatchError::malformed(format!(
                "invalid patch: {key} names no field"
            )));
        }
        let child = ty.child(field);
        let merge_key = child.meta.merge_key;
        let live = match original.remove(field) {
            None | Some(Value::Null) => None,
            Some(Value::Array(list)) => Some(list),
            Some(other) => {
                original.insert(field.to_owned(), other);
                return Err(PatchError::cannot_apply(format!(
                    "{field}: the object holds no list to order"
                )));
            }
        };
        let patched = match patch.remove(field) {
            None => None,
            Some(Value::Array(list)) => Some(list),
            Some(_) => {
                return Err(PatchError::malformed(format!(
                    "invalid patch: {field} must be a list"
                )));
            }
        };
        validate_order(patched.as_deref().unwrap_or_default(), &order, merge_key)?;
        let server_order = server_order_after_merge(live.as_deref(), patched.as_deref(), merge_key);
        let merged = match (live, patched) {
            (None, None) => continue,
            (Some(live), None) => live,
            (live, Some(patched)) => merge_list(live.unwrap_or_default(), patched, child)?,
        };
        let (in_order, server_only) = partition(merged, &order, merge_key);
        let ordered = normalize(in_order, server_only, &order, &server_order, merge_key);
        original.insert(field.to_owned(), Value::Array(ordered));
    }
    Ok(())
}

/// The live order `$setElementOrder` interleaves server-only elements by. kube-apiserver reads it
/// from the live list after merging into it in place: elements deleted by `$patch: delete` leave
/// their slots to the elements the patch adds, so those count as live for ordering.
fn server_order_after_merge(
    live: Option<&[Value]>,
    patched: Option<&[Value]>,
    merge_key: Option<&str>,
) -> Vec<Value> {
    let live = live.unwrap_or_default();
    let (Some(key), Some(patched)) = (merge_key, patched) else {
        return live.to_vec();
    };
    let directive = |item: &Value| {
        item.get(DIRECTIVE)
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    if patched
        .iter()
        .any(|item| directive(item).as_deref() == Some("replace"))
    {
        return live.to_vec();
    }
    let deleted: Vec<&Value> = patched
        .iter()
        .filter(|item| directive(item).as_deref() == Some("delete"))
        .filter_map(|item| item.get(key))
        .collect();
    let mut order: Vec<Value> = live
        .iter()
        .filter(|item| item.get(key).is_none_or(|id| !deleted.contains(&id)))
        .cloned()
        .collect();
    let freed = live.len() - order.len();
    let added: Vec<Value> = patched
        .iter()
        .filter(|item| directive(item).is_none() && position(&order, item, merge_key).is_none())
        .take(freed)
        .cloned()
        .collect();
    order.extend(added);
    order
}

/// The patch list (without `$patch` elements) must follow the order of the `$setElementOrder` list.
fn validate_order(
    patched: &[Value],
    order: &[Value],
    merge_key: Option<&str>,
) -> Result<(), PatchError> {
    let items: Vec<&Value> = patched
        .iter()
        .filter(|item| item.get(DIRECTIVE).is_none())
        .collect();
    let (mut at, mut at_order) = (0, 0);
    while at < items.len() && at_order < order.len() {
        if identity(items[at], merge_key) == identity(&order[at_order], merge_key) {
            at += 1;
        }
        at_order += 1;
    }
    if at < items.len() {
        return Err(PatchError::malformed(
            "invalid patch: the order of the patch list does not match the $setElementOrder list",
        ));
    }
    Ok(())
}

/// What identifies a list element: its merge key's value, or itself for primitives.
fn identity<'a>(item: &'a Value, merge_key: Option<&str>) -> Option<&'a Value> {
    match merge_key {
        Some(key) => item.get(key),
        None => Some(item),
    }
}

fn position(list: &[Value], item: &Value, merge_key: Option<&str>) -> Option<usize> {
    let id = identity(item, merge_key)?;
    list.iter()
        .position(|other| identity(other, merge_key) == Some(id))
}

/// Splits `merged` into the elements named in `by` and the others, keeping their order.
fn partition(
    merged: Vec<Value>,
    by: &[Value],
    merge_key: Option<&str>,
) -> (Vec<Value>, Vec<Value>) {
    merged
        .into_iter()
        .partition(|item| position(by, item, merge_key).is_some())
}

/// Orders `patched` as `patch_order` and `server_only` as `server_order`, then interleaves them:
/// a server-only element goes before a patched one when the live list had it first.
fn normalize(
    mut patched: Vec<Value>,
    mut server_only: Vec<Value>,
    patch_order: &[Value],
    server_order: &[Value],
    merge_key: Option<&str>,
) -> Vec<Value> {
    let rank =
        |order: &[Value], item: &Value| position(order, item, merge_key).unwrap_or(usize::MAX);
    patched.sort_by_key(|item| rank(patch_order, item));
    server_only.sort_by_key(|item| rank(server_order, item));
    let mut merged = Vec::with_capacity(patched.len() + server_only.len());
    let mut patched = patched.into_iter().peekable();
    let mut server_only = server_only.into_iter().peekable();
    loop {
        let take_server = match (server_only.peek(), patched.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(left), Some(right)) => matches!(
                (position(server_order, left, merge_key), position(server_order, right, merge_key)),
                (Some(l), Some(r)) if l < r
            ),
        };
        let next = if take_server {
            server_only.next()
        } else {
            patched.next()
        };
        merged.extend(next);
    }
    merged
}

fn merge_list(
    original: Vec<Value>,
    patch: Vec<Value>,
    child: Child,
) -> Result<Vec<Value>, PatchError> {
    if child.meta.strategy != Strategy::Merge {
        return Ok(patch);
    }
    if original.is_empty() && patch.is_empty() {
        return Ok(original);
    }
    let mut kinds = original.iter().chain(&patch).map(|item| match item {
        Value::Object(_) => 0,
        Value::Array(_) => 1,
        _ => 2,
    });
    let first = kinds.next().unwrap_or(2);
    if first == 1 {
        return Err(PatchError::cannot_apply("lists of lists are not supported"));
    }
    if kinds.any(|kind| kind != first) {
        return Err(PatchError::cannot_apply(
            "list element types are not identical",
        ));
    }
    if first == 2 {
        let server_order = original.clone();
        let mut merged: Vec<Value> = Vec::with_capacity(original.len() + patch.len());
        for item in original.into_iter().chain(patch.iter().cloned()) {
            if !merged.contains(&item) {
                merged.push(item);
            }
        }
        let (patched, server_only) = partition(merged, &patch, None);
        return Ok(normalize(patched, server_only, &patch, &server_order, None));
    }
    let Some(merge_key) = child.meta.merge_key else {
        return Err(PatchError::cannot_apply(
            "cannot merge lists without merge key",
        ));
    };
    merge_list_of_maps(original, patch, merge_key, child.ty)
}

fn no_merge_key(merge_key: &str) -> PatchError {
    PatchError::cannot_apply(format!(
        "map does not contain declared merge key: {merge_key}"
    ))
}

fn merge_list_of_maps(
    mut original: Vec<Value>,
    patch: Vec<Value>,
    merge_key: &str,
    ty: Ty,
) -> Result<Vec<Value>, PatchError> {
    let mut plain = Vec::with_capacity(patch.len());
    let mut replace = false;
    for item in patch {
        let Value::Object(mut item) = item else {
            return Err(PatchError::cannot_apply(
                "list element types are not identical",
            ));
        };
        match item.get(DIRECTIVE).map(|d| d.as_str()) {
            None => plain.push(item),
            Some(Some("delete")) => {
                let id = item.get(merge_key).ok_or_else(|| no_merge_key(merge_key))?;
                original.retain(|live| live.get(merge_key) != Some(id));
            }
            Some(Some("replace")) => replace = true,
            Some(Some("merge")) => {
                item.remove(DIRECTIVE);
                plain.push(item);
            }
            Some(_) => {
                return Err(PatchError::malformed(format!(
                    "unknown patch type: {} in list element",
                    item.get(DIRECTIVE).unwrap_or(&Value::Null)
                )));
            }
        }
    }
    if replace {
        return plain
            .into_iter()
            .map(|item| merge_map(Map::new(), item, ty).map(Value::Object))
            .collect();
    }
    let server_order = original.clone();
    let mut merged = original;
    let mut patch_order = Vec::with_capacity(plain.len());
    for item in plain {
        let id = item
            .get(merge_key)
            .ok_or_else(|| no_merge_key(merge_key))?
            .clone();
        patch_order.push(Value::Object(Map::from_iter([(
            merge_key.to_owned(),
            id.clone(),
        )])));
        match merged
            .iter()
            .position(|live| live.get(merge_key) == Some(&id))
        {
            Some(at) => {
                let live = match std::mem::take(&mut merged[at]) {
                    Value::Object(live) => live,
                    _ => {
                        return Err(PatchError::cannot_apply(
                            "list element types are not identical",
                        ));
                    }
                };
                merged[at] = Value::Object(merge_map(live, item, ty)?);
            }
            None => merged.push(Value::Object(merge_map(Map::new(), item, ty)?)),
        }
    }
    let key = Some(merge_key);
    let (patched, server_only) = partition(merged, &patch_order, key);
    Ok(normalize(
        patched,
        server_only,
        &patch_order,
        &server_order,
        key,
    ))
}

#[cfg(test)]
mod tests;
