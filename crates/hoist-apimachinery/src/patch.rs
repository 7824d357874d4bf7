//! JSON merge patch (RFC 7386), JSON patch (RFC 6902) and Kubernetes strategic merge patch.
//!
//! Strategic merge patch is only defined for built-in kinds: Kubernetes answers 415 to a
//! strategic merge patch of a custom resource, and the server should do the same rather
//! than call [`strategic_merge_patch`] with a [`crate::merge_schema::CrdMergeSchema`].

use crate::merge_schema::{ListType, MergeSchema};
use serde_json::{Map, Value};

/// Why a patch could not be applied. The server answers 422 (400 for a malformed patch
/// document, 409 or 422 for a failed `test`), with `to_string()` as the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// The patch document itself is malformed.
    #[error("invalid patch: {0}")]
    Invalid(String),
    /// A JSON patch `test` operation failed.
    #[error("testing value {path} failed: test failed")]
    TestFailed { path: String },
    /// A JSON patch path does not exist / cannot be applied.
    #[error("{0}")]
    Path(String),
}

/// RFC 7386: merge `patch` into `target` in place (`null` deletes a field).
pub fn json_merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(t) = target else { return };
    for (k, v) in patch {
        if v.is_null() {
            t.remove(k);
        } else {
            json_merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

fn parse_pointer(p: &str) -> Result<Vec<String>, PatchError> {
    if p.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = p.strip_prefix('/') else {
        return Err(PatchError::Invalid(format!(
            "JSON pointer {p:?} must start with '/'"
        )));
    };
    rest.split('/')
        .map(|t| {
            if t.contains('~') {
                let mut out = String::new();
                let mut chars = t.chars();
                while let Some(c) = chars.next() {
                    if c == '~' {
                        match chars.next() {
                            Some('0') => out.push('~'),
                            Some('1') => out.push('/'),
                            _ => {
                                return Err(PatchError::Invalid(format!(
                                    "invalid escape in JSON pointer {p:?}"
                                )));
                            }
                        }
                    } else {
                        out.push(c);
                    }
                }
                Ok(out)
            } else {
                Ok(t.to_string())
            }
        })
        .collect()
}

fn array_index(token: &str, len: usize, allow_end: bool, path: &str) -> Result<usize, PatchError> {
    if allow_end && token == "-" {
        return Ok(len);
    }
    let valid = !token.is_empty()
        && token.bytes().all(|b| b.is_ascii_digit())
        && (token == "0" || !token.starts_with('0'));
    let idx = if valid {
        token.parse::<usize>().ok()
    } else {
        None
    };
    match idx {
        Some(i) if i < len || (allow_end && i == len) => Ok(i),
        _ => Err(PatchError::Path(format!(
            "unable to access invalid index: {token} in path {path}"
        ))),
    }
}

fn get_mut<'a>(
    doc: &'a mut Value,
    tokens: &[String],
    path: &str,
) -> Result<&'a mut Value, PatchError> {
    let mut cur = doc;
    for t in tokens {
        cur = match cur {
            Value::Object(m) => m.get_mut(t),
            Value::Array(a) => {
                let i = array_index(t, a.len(), false, path)?;
                a.get_mut(i)
            }
            _ => None,
        }
        .ok_or_else(|| PatchError::Path(format!("doc is missing path: {path:?}")))?;
    }
    Ok(cur)
}

fn add(doc: &mut Value, tokens: &[String], value: Value, path: &str) -> Result<(), PatchError> {
    let Some((last, parent)) = tokens.split_last() else {
        *doc = value;
        return Ok(());
    };
    match get_mut(doc, parent, path)? {
        Value::Object(m) => {
            m.insert(last.clone(), value);
            Ok(())
        }
        Value::Array(a) => {
            let i = array_index(last, a.len(), true, path)?;
            a.insert(i, value);
            Ok(())
        }
        _ => Err(PatchError::Path(format!("doc is missing path: {path:?}"))),
    }
}

fn remove(doc: &mut Value, tokens: &[String], path: &str) -> Result<Value, PatchError> {
    let Some((last, parent)) = tokens.split_last() else {
        return Err(PatchError::Path(
            "unable to remove the document root".into(),
        ));
    };
    match get_mut(doc, parent, path)? {
        Value::Object(m) => m.shift_remove(last).ok_or_else(|| {
            PatchError::Path(format!(
                "unable to remove nonexistent key: {last}: missing value"
            ))
        }),
        Value::Array(a) => {
            let i = array_index(last, a.len(), false, path)?;
            Ok(a.remove(i))
        }
        _ => Err(PatchError::Path(format!("doc is missing path: {path:?}"))),
    }
}

/// RFC 6902: apply an array of operations (add, remove, replace, move, copy, test).
/// All or nothing: on error `target` is untouched (it is borrowed immutably anyway).
pub fn json_patch(target: &Value, ops: &Value) -> Result<Value, PatchError> {
    let Value::Array(ops) = ops else {
        return Err(PatchError::Invalid(
            "a JSON patch must be a list of operations".into(),
        ));
    };
    let mut doc = target.clone();
    for (n, op) in ops.iter().enumerate() {
        let Some(obj) = op.as_object() else {
            return Err(PatchError::Invalid(format!(
                "operation {n} is not an object"
            )));
        };
        let str_field = |f: &str| -> Result<&str, PatchError> {
            obj.get(f).and_then(Value::as_str).ok_or_else(|| {
                PatchError::Invalid(format!("operation {n}: missing or non-string {f:?}"))
            })
        };
        let value = || {
            obj.get("value")
                .cloned()
                .ok_or_else(|| PatchError::Invalid(format!("operation {n}: missing \"value\"")))
        };
        let op_name = str_field("op")?;
        let path = str_field("path")?;
        let tokens = parse_pointer(path)?;
        match op_name {
            "add" => add(&mut doc, &tokens, value()?, path)?,
            "remove" => {
                remove(&mut doc, &tokens, path)?;
            }
            "replace" => {
                let v = value()?;
                let slot = get_mut(&mut doc, &tokens, path).map_err(|_| {
                    PatchError::Path(format!("replace operation does not apply: doc is missing key: {path}: missing value"))
                })?;
                *slot = v;
            }
            "move" | "copy" => {
                let from = str_field("from")?;
                let from_tokens = parse_pointer(from)?;
                let v = if op_name == "move" {
                    if tokens.len() > from_tokens.len() && tokens.starts_with(&from_tokens) {
                        return Err(PatchError::Invalid(format!(
                            "operation {n}: cannot move {from:?} into its own child {path:?}"
                        )));
                    }
                    remove(&mut doc, &from_tokens, from)?
                } else {
                    get_mut(&mut doc, &from_tokens, from)?.clone()
                };
                add(&mut doc, &tokens, v, path)?;
            }
            "test" => {
                let expected = value()?;
                let actual =
                    get_mut(&mut doc, &tokens, path).map_err(|_| PatchError::TestFailed {
                        path: path.to_string(),
                    })?;
                if *actual != expected {
                    return Err(PatchError::TestFailed {
                        path: path.to_string(),
                    });
                }
            }
            other => {
                return Err(PatchError::Invalid(format!(
                    "operation {n}: unexpected kind of operation {other:?}"
                )));
            }
        }
    }
    Ok(doc)
}

const PATCH_DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const DELETE_FROM_PRIMITIVE: &str = "$deleteFromPrimitiveList/";
const SET_ELEMENT_ORDER: &str = "$setElementOrder/";

/// Kubernetes strategic merge patch of `original` with `patch` under `schema`:
/// maps merge recursively, `null` deletes, lists with merge keys merge item by item,
/// set lists (e.g. `finalizers`) take the union, other lists are replaced; directives
/// `$patch: replace|delete|merge`, `$retainKeys`, `$deleteFromPrimitiveList/<f>` and
/// `$setElementOrder/<f>` are honoured and never appear in the result.
pub fn strategic_merge_patch(
    original: &Value,
    patch: &Value,
    schema: &dyn MergeSchema,
) -> Result<Value, PatchError> {
    let Value::Object(p) = patch else {
        return Err(PatchError::Invalid(format!(
            "a strategic merge patch must be an object, got {}",
            kind_name(patch)
        )));
    };
    let empty = Map::new();
    let orig = original.as_object().unwrap_or(&empty);
    let mut path = Vec::new();
    match merge_map(Some(orig), p, &mut path, schema)? {
        Some(m) => Ok(Value::Object(m)),
        None => Ok(Value::Object(Map::new())),
    }
}

fn kind_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn patch_directive(p: &Map<String, Value>) -> Result<Option<&str>, PatchError> {
    match p.get(PATCH_DIRECTIVE) {
        None => Ok(None),
        Some(Value::String(s)) if matches!(s.as_str(), "replace" | "delete" | "merge") => {
            Ok(Some(s))
        }
        Some(other) => Err(PatchError::Invalid(format!("Unknown patch type: {other}"))),
    }
}

fn is_directive_key(k: &str) -> bool {
    k == PATCH_DIRECTIVE
        || k == RETAIN_KEYS
        || k.starts_with(DELETE_FROM_PRIMITIVE)
        || k.starts_with(SET_ELEMENT_ORDER)
}

/// Merge a patch map into an original map. `None` means "delete this map".
fn merge_map(
    original: Option<&Map<String, Value>>,
    patch: &Map<String, Value>,
    path: &mut Vec<String>,
    schema: &dyn MergeSchema,
) -> Result<Option<Map<String, Value>>, PatchError> {
    match patch_directive(patch)? {
        Some("delete") => return Ok(None),
        Some("replace") => {
            // Replace: the patch (without directives) is the new value, merged against nothing.
            let mut rest = patch.clone();
            rest.shift_remove(PATCH_DIRECTIVE);
            return merge_map(None, &rest, path, schema);
        }
        _ => {}
    }
    let mut result = original.cloned().unwrap_or_default();
    if let Some(retain) = patch.get(RETAIN_KEYS) {
        let keys: Vec<&str> = retain
            .as_array()
            .and_then(|ks| ks.iter().map(Value::as_str).collect::<Option<Vec<_>>>())
            .ok_or_else(|| {
                PatchError::Invalid(format!(
                    "{RETAIN_KEYS} must be a list of strings, got {retain}"
                ))
            })?;
        result.retain(|k, _| keys.contains(&k.as_str()));
    }
    for (k, v) in patch {
        if is_directive_key(k) {
            continue;
        }
        if v.is_null() {
            result.shift_remove(k);
            continue;
        }
        if !result.contains_key(k) && !v.is_array() {
            // Not in the original: Kubernetes takes a map or scalar as is (minus what its
            // typed decoding drops, see `strip`), except that `$patch: delete` deletes.
            // New lists are merged into an empty list, so their directives do apply.
            let deletes = v.get(PATCH_DIRECTIVE).and_then(Value::as_str) == Some("delete");
            if !deletes {
                result.insert(k.clone(), strip(v));
            }
            continue;
        }
        path.push(k.clone());
        let merged = match v {
            Value::Array(items) => {
                let order = set_element_order(patch, k)?;
                let orig = result.get(k).and_then(Value::as_array).map(Vec::as_slice);
                merge_list(orig, items, order, path, schema).map(|l| Some(Value::Array(l)))
            }
            _ => merge_value(result.get(k), v, path, schema),
        };
        path.pop();
        match merged? {
            Some(m) => {
                result.insert(k.clone(), m);
            }
            None => {
                result.shift_remove(k);
            }
        }
    }
    for (k, v) in patch {
        if let Some(field) = k.strip_prefix(DELETE_FROM_PRIMITIVE) {
            let Value::Array(del) = v else {
                return Err(PatchError::Invalid(format!("{k} must be a list, got {v}")));
            };
            if let Some(Value::Array(items)) = result.get_mut(field) {
                items.retain(|i| !del.contains(i));
            }
        }
    }
    for k in patch.keys() {
        // `$setElementOrder` for a list the patch does not touch: reorder the original.
        if let Some(field) = k.strip_prefix(SET_ELEMENT_ORDER) {
            let order = set_element_order(patch, field)?;
            if patch.contains_key(field) {
                continue;
            }
            if let Some(Value::Array(items)) = result.get(field) {
                path.push(field.to_string());
                let lt = schema.list_type(&path.iter().map(String::as_str).collect::<Vec<_>>());
                path.pop();
                if let (Some(order), ListType::Map { .. } | ListType::Set) = (order, &lt) {
                    let reordered = normalize_order(items.clone(), order, items, &lt);
                    result.insert(field.to_string(), Value::Array(reordered));
                }
            }
        }
    }
    Ok(Some(result))
}

/// Merge one patch value into an optional original value. `None` = delete the field.
fn merge_value(
    original: Option<&Value>,
    patch: &Value,
    path: &mut Vec<String>,
    schema: &dyn MergeSchema,
) -> Result<Option<Value>, PatchError> {
    match patch {
        Value::Object(p) => {
            let orig = original.and_then(Value::as_object);
            Ok(merge_map(orig, p, path, schema)?.map(Value::Object))
        }
        Value::Array(p) => {
            let orig = original.and_then(Value::as_array).map(Vec::as_slice);
            Ok(Some(Value::Array(merge_list(orig, p, None, path, schema)?)))
        }
        other => Ok(Some(other.clone())),
    }
}

fn no_merge_key(m: &Map<String, Value>, key: &str) -> PatchError {
    PatchError::Invalid(format!(
        "map: {} does not contain declared merge key: {key}",
        Value::Object(m.clone())
    ))
}

fn item_key<'a>(item: &'a Value, key: &str) -> Option<&'a Value> {
    item.as_object().and_then(|m| m.get(key))
}

fn set_element_order<'a>(
    patch: &'a Map<String, Value>,
    field: &str,
) -> Result<Option<&'a [Value]>, PatchError> {
    match patch.get(&format!("{SET_ELEMENT_ORDER}{field}")) {
        None => Ok(None),
        Some(Value::Array(order)) => Ok(Some(order)),
        Some(other) => Err(PatchError::Invalid(format!(
            "{SET_ELEMENT_ORDER}{field} must be a list, got {other}"
        ))),
    }
}

fn merge_list(
    original: Option<&[Value]>,
    patch: &[Value],
    order: Option<&[Value]>,
    path: &mut Vec<String>,
    schema: &dyn MergeSchema,
) -> Result<Vec<Value>, PatchError> {
    // `[{"$patch": "replace"}, ...items]` replaces the list whatever its type.
    let replace = patch.iter().any(|i| {
        i.as_object()
            .is_some_and(|m| m.get(PATCH_DIRECTIVE).and_then(Value::as_str) == Some("replace"))
    });
    let lt = schema.list_type(&path.iter().map(String::as_str).collect::<Vec<_>>());
    let original = if replace { None } else { original };
    let patch_items: Vec<&Value> = patch
        .iter()
        .filter(|i| {
            !i.as_object().is_some_and(|m| {
                m.len() == 1 && m.get(PATCH_DIRECTIVE).and_then(Value::as_str) == Some("replace")
            })
        })
        .collect();
    match lt {
        ListType::Map { keys } if patch_items.iter().all(|i| i.is_object()) => {
            let key = keys.first().map(String::as_str).unwrap_or("name");
            let mut result: Vec<Value> = original.map(<[Value]>::to_vec).unwrap_or_default();
            // Special elements first, as Kubernetes does: deletions apply to the original,
            // and an item-level `$patch: replace` replaces the whole list.
            let mut plain: Vec<&Map<String, Value>> = Vec::new();
            let mut replace_all = replace;
            let mut alias = AliasedOriginal::new(original.unwrap_or(&[]));
            for item in patch_items {
                let m = item.as_object().expect("checked objects above");
                match patch_directive(m)? {
                    None => plain.push(m),
                    Some("delete") => {
                        let Some(kv) = m.get(key) else {
                            return Err(no_merge_key(m, key));
                        };
                        while let Some(i) = result.iter().position(|o| item_key(o, key) == Some(kv))
                        {
                            result.remove(i);
                            alias.delete(i);
                        }
                    }
                    Some("replace") => replace_all = true,
                    Some(_) => {
                        return Err(PatchError::Invalid(
                            "merging lists cannot yet be specified in the patch".into(),
                        ));
                    }
                }
            }
            if replace_all {
                return Ok(plain
                    .into_iter()
                    .map(|m| strip(&Value::Object(m.clone())))
                    .collect());
            }
            if original.is_none() {
                // A list the original lacks takes the patch's items as they are, duplicate
                // keys included (only its deletions above and directives are dropped), as
                // kubectl does: there is nothing to merge them into.
                let items: Vec<Value> = plain
                    .iter()
                    .map(|m| strip(&Value::Object((*m).clone())))
                    .collect();
                let lt = ListType::Map { keys };
                return Ok(match order {
                    None => items,
                    Some(order) => normalize_order(items, order, &[], &lt),
                });
            }
            let server_order = result.clone();
            for m in &plain {
                let Some(kv) = m.get(key) else {
                    return Err(no_merge_key(m, key));
                };
                match result.iter().position(|o| item_key(o, key) == Some(kv)) {
                    Some(p) => {
                        let orig = result[p].as_object().cloned();
                        if let Some(new) = merge_map(orig.as_ref(), m, path, schema)? {
                            result[p] = Value::Object(new);
                        }
                    }
                    None => {
                        let new = strip(&Value::Object((*m).clone()));
                        alias.append(&new);
                        result.push(new);
                    }
                }
            }
            let patch_order: Vec<Value> = plain
                .into_iter()
                .map(|m| Value::Object(m.clone()))
                .collect();
            let lt = ListType::Map { keys };
            let merged = normalize_order(result, &patch_order, &server_order, &lt);
            Ok(match order {
                None => merged,
                // `$setElementOrder` orders the merged list once more, against the live list
                // as Kubernetes' in-place slice edits left it (see `AliasedOriginal`).
                Some(order) => normalize_order(merged, order, &alias.items, &lt),
            })
        }
        ListType::Set if patch_items.iter().all(|i| !i.is_object() && !i.is_array()) => {
            let mut result: Vec<Value> = Vec::new();
            for item in original
                .unwrap_or(&[])
                .iter()
                .chain(patch_items.iter().copied())
            {
                if !result.contains(item) {
                    result.push(item.clone());
                }
            }
            if replace {
                return Ok(result);
            }
            Ok(normalize_order(
                result,
                order.unwrap_or(patch),
                original.unwrap_or(&[]),
                &ListType::Set,
            ))
        }
        _ => {
            // Atomic: replaced by the patch value as is (see `strip`).
            Ok(patch_items.into_iter().map(strip).collect())
        }
    }
}

/// The live list as Kubernetes sees it when applying `$setElementOrder` after merging:
/// its Go code deletes items in place (shifting the tail left and leaving the last
/// slots stale) and appends new items into the freed slots, all within the original
/// length. Reproducing this keeps the order of items the patch does not mention
/// identical to the real API server's.
struct AliasedOriginal {
    items: Vec<Value>,
    len: usize,
}

impl AliasedOriginal {
    fn new(original: &[Value]) -> Self {
        AliasedOriginal {
            items: original.to_vec(),
            len: original.len(),
        }
    }
    fn delete(&mut self, i: usize) {
        if i < self.len {
            for j in i..self.len - 1 {
                self.items[j] = self.items[j + 1].clone();
            }
            self.len -= 1;
        }
    }
    fn append(&mut self, item: &Value) {
        if self.len < self.items.len() {
            self.items[self.len] = item.clone();
        }
        self.len += 1;
    }
}

/// A patch value taken as is, minus what Kubernetes' typed decoding would drop:
/// `$`-directive keys and `null` fields.
fn strip(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, v)| !k.starts_with('$') && !v.is_null())
                .map(|(k, v)| (k.clone(), strip(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(strip).collect()),
        other => other.clone(),
    }
}

/// Order a merged list as Kubernetes does: items named in `patch_order` (the
/// `$setElementOrder` list, else the patch list) sorted by it, the others by their
/// position in `original`, then the two interleaved by their positions in `original`.
/// The precedence is `$setElementOrder` > order in the patch > order in the live list.
fn normalize_order(
    merged: Vec<Value>,
    patch_order: &[Value],
    original: &[Value],
    lt: &ListType,
) -> Vec<Value> {
    // Items are identified by their merge key value (map lists) or themselves (sets),
    // as canonical JSON text; positions are looked up in hash maps so that long lists
    // stay cheap (first occurrence wins, like a linear search).
    let ident = |v: &Value| -> Option<String> {
        match lt {
            ListType::Map { keys } => item_key(v, keys.first()?).map(Value::to_string),
            _ => Some(v.to_string()),
        }
    };
    let positions = |list: &[Value]| -> std::collections::HashMap<String, usize> {
        let mut m = std::collections::HashMap::new();
        for (i, x) in list.iter().enumerate() {
            if let Some(id) = ident(x) {
                m.entry(id).or_insert(i);
            }
        }
        m
    };
    let (patch_pos, original_pos) = (positions(patch_order), positions(original));
    let index = |pos: &std::collections::HashMap<String, usize>, item: &Value| -> Option<usize> {
        ident(item).and_then(|id| pos.get(&id).copied())
    };
    let (mut from_patch, mut server_only): (Vec<Value>, Vec<Value>) = merged
        .into_iter()
        .partition(|item| index(&patch_pos, item).is_some());
    // Kubernetes' comparator answers "less" when either item is not in the order list;
    // an insertion sort (what Go's stable sort does on short lists) reproduces that.
    let sort_by = |items: &mut Vec<Value>, order: &std::collections::HashMap<String, usize>| {
        for i in 1..items.len() {
            let mut j = i;
            while j > 0 {
                let less = match (index(order, &items[j]), index(order, &items[j - 1])) {
                    (Some(a), Some(b)) => a < b,
                    _ => true,
                };
                if !less {
                    break;
                }
                items.swap(j, j - 1);
                j -= 1;
            }
        }
    };
    sort_by(&mut from_patch, &patch_pos);
    sort_by(&mut server_only, &original_pos);
    let mut out = Vec::with_capacity(from_patch.len() + server_only.len());
    let (mut left, mut right) = (
        server_only.into_iter().peekable(),
        from_patch.into_iter().peekable(),
    );
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(l), Some(r)) => {
                matches!((index(&original_pos, l), index(&original_pos, r)), (Some(a), Some(b)) if a < b)
            }
        };
        let next = if take_left { left.next() } else { right.next() };
        out.extend(next);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merge_schema::BuiltinMergeSchema;
    use serde_json::json;

    fn mp(target: Value, patch: Value) -> Value {
        let mut t = target;
        json_merge_patch(&mut t, &patch);
        t
    }

    #[test]
    fn merge_patch_rfc7386_examples() {
        assert_eq!(mp(json!({"a": "b"}), json!({"a": "c"})), json!({"a": "c"}));
        assert_eq!(
            mp(json!({"a": "b"}), json!({"b": "c"})),
            json!({"a": "b", "b": "c"})
        );
        assert_eq!(mp(json!({"a": "b"}), json!({"a": null})), json!({}));
        assert_eq!(
            mp(json!({"a": "b", "b": "c"}), json!({"a": null})),
            json!({"b": "c"})
        );
        assert_eq!(
            mp(json!({"a": ["b"]}), json!({"a": "c"})),
            json!({"a": "c"})
        );
        assert_eq!(
            mp(json!({"a": "c"}), json!({"a": ["b"]})),
            json!({"a": ["b"]})
        );
        assert_eq!(
            mp(
                json!({"a": {"b": "c"}}),
                json!({"a": {"b": "d", "c": null}})
            ),
            json!({"a": {"b": "d"}})
        );
        assert_eq!(
            mp(json!({"a": [{"b": "c"}]}), json!({"a": [1]})),
            json!({"a": [1]})
        );
        assert_eq!(mp(json!(["a", "b"]), json!(["c", "d"])), json!(["c", "d"]));
        assert_eq!(mp(json!({"a": "b"}), json!(["c"])), json!(["c"]));
        assert_eq!(mp(json!({"a": "foo"}), json!(null)), json!(null));
        assert_eq!(
            mp(json!({"e": null}), json!({"a": 1})),
            json!({"e": null, "a": 1})
        );
        assert_eq!(
            mp(json!([1, 2]), json!({"a": "b", "c": null})),
            json!({"a": "b"})
        );
        assert_eq!(
            mp(json!({}), json!({"a": {"bb": {"ccc": null}}})),
            json!({"a": {"bb": {}}})
        );
    }

    #[test]
    fn json_patch_operations() {
        let doc = json!({"metadata": {"labels": {"a": "1"}}, "list": [1, 2, 3]});
        let out = json_patch(
            &doc,
            &json!([
                {"op": "add", "path": "/metadata/labels/b", "value": "2"},
                {"op": "replace", "path": "/metadata/labels/a", "value": "x"},
                {"op": "remove", "path": "/list/0"},
                {"op": "add", "path": "/list/-", "value": 4},
                {"op": "add", "path": "/list/0", "value": 0},
                {"op": "copy", "from": "/metadata/labels", "path": "/copied"},
                {"op": "move", "from": "/copied/b", "path": "/moved"},
                {"op": "test", "path": "/moved", "value": "2"}
            ]),
        )
        .unwrap();
        assert_eq!(
            out,
            json!({"metadata": {"labels": {"a": "x", "b": "2"}}, "list": [0, 2, 3, 4], "copied": {"a": "x"}, "moved": "2"})
        );
    }

    #[test]
    fn json_patch_pointer_escapes_and_root() {
        let doc = json!({"metadata": {"annotations": {"kubectl.kubernetes.io/last-applied": "x", "a~b": 1}}});
        let out = json_patch(
            &doc,
            &json!([
                {"op": "remove", "path": "/metadata/annotations/kubectl.kubernetes.io~1last-applied"},
                {"op": "replace", "path": "/metadata/annotations/a~0b", "value": 2}
            ]),
        )
        .unwrap();
        assert_eq!(out, json!({"metadata": {"annotations": {"a~b": 2}}}));
        assert_eq!(
            json_patch(&doc, &json!([{"op": "add", "path": "", "value": [1]}])).unwrap(),
            json!([1])
        );
    }

    #[test]
    fn json_patch_errors() {
        let doc = json!({"a": [1], "rv": "5"});
        let err =
            json_patch(&doc, &json!([{"op": "test", "path": "/rv", "value": "4"}])).unwrap_err();
        assert_eq!(err, PatchError::TestFailed { path: "/rv".into() });
        assert_eq!(err.to_string(), "testing value /rv failed: test failed");
        for bad in [
            json!({"op": "add"}),
            json!([{"op": "remove", "path": "/missing"}]),
            json!([{"op": "replace", "path": "/missing", "value": 1}]),
            json!([{"op": "add", "path": "/a/5", "value": 1}]),
            json!([{"op": "add", "path": "/a/01", "value": 1}]),
            json!([{"op": "add", "path": "/x/y", "value": 1}]),
            json!([{"op": "frobnicate", "path": "/a"}]),
            json!([{"op": "add", "path": "a", "value": 1}]),
            json!([{"op": "move", "from": "/a", "path": "/a/0"}]),
            json!([{"op": "add", "path": "/a/-"}]),
            json!([{"op": "test", "path": "/nope", "value": 1}]),
            json!([{"op": "remove", "path": ""}]),
            json!([7]),
        ] {
            assert!(json_patch(&doc, &bad).is_err(), "{bad}");
        }
    }

    fn deploy() -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web", "tier": "front"}, "finalizers": ["a", "b"]},
            "spec": {
                "replicas": 1,
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}},
                "template": {"spec": {"containers": [
                    {"name": "app", "image": "app:1", "args": ["-v"], "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                     "ports": [{"containerPort": 80, "protocol": "TCP"}]},
                    {"name": "sidecar", "image": "side:1"}
                ]}}
            }
        })
    }

    fn smp(orig: &Value, patch: Value) -> Value {
        strategic_merge_patch(orig, &patch, &BuiltinMergeSchema::for_object(orig)).unwrap()
    }

    #[test]
    fn smp_merges_containers_by_name() {
        let out = smp(
            &deploy(),
            json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "app:2"}]}}}}),
        );
        let cs = &out["spec"]["template"]["spec"]["containers"];
        assert_eq!(cs.as_array().unwrap().len(), 2);
        assert_eq!(cs[0]["image"], "app:2");
        assert_eq!(cs[0]["args"], json!(["-v"]));
        assert_eq!(cs[1]["image"], "side:1");
        let out = smp(
            &deploy(),
            json!({"spec": {"template": {"spec": {"containers": [{"name": "new", "image": "n"}]}}}}),
        );
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"][0],
            json!({"name": "new", "image": "n"})
        );
    }

    #[test]
    fn smp_nested_lists_env_and_ports() {
        let out = smp(
            &deploy(),
            json!({"spec": {"template": {"spec": {"containers": [{"name": "app",
                "env": [{"name": "B", "value": "3"}, {"name": "C", "value": "4"}, {"name": "A", "$patch": "delete"}],
                "ports": [{"containerPort": 8080}]}]}}}}),
        );
        let c = &out["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(
            c["env"],
            json!([{"name": "B", "value": "3"}, {"name": "C", "value": "4"}])
        );
        assert_eq!(
            c["ports"],
            json!([{"containerPort": 8080}, {"containerPort": 80, "protocol": "TCP"}])
        );
    }

    #[test]
    fn smp_atomic_lists_are_replaced() {
        let out = smp(
            &deploy(),
            json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "args": ["-q"]}]}}}}),
        );
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"][0]["args"],
            json!(["-q"])
        );
    }

    #[test]
    fn smp_null_deletes_and_maps_merge() {
        let out = smp(
            &deploy(),
            json!({"metadata": {"labels": {"tier": null, "new": "x"}}, "spec": {"replicas": null}}),
        );
        assert_eq!(out["metadata"]["labels"], json!({"app": "web", "new": "x"}));
        assert!(out["spec"].get("replicas").is_none());
    }

    #[test]
    fn smp_patch_directives_on_maps_and_lists() {
        let out = smp(
            &deploy(),
            json!({"spec": {"strategy": {"$patch": "replace", "type": "Recreate"}}}),
        );
        assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));
        let out = smp(
            &deploy(),
            json!({"spec": {"strategy": {"$patch": "delete"}}}),
        );
        assert!(out["spec"].get("strategy").is_none());
        let out = smp(
            &deploy(),
            json!({"spec": {"template": {"spec": {"containers": [{"$patch": "replace"}, {"name": "only", "image": "o"}]}}}}),
        );
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"],
            json!([{"name": "only", "image": "o"}])
        );
        let out = smp(
            &deploy(),
            json!({"spec": {"template": {"spec": {"containers": [{"name": "sidecar", "$patch": "delete"}]}}}}),
        );
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        let out = smp(
            &deploy(),
            json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "$patch": "replace", "image": "r"}, {"name": "z"}]}}}}),
        );
        // As in kubectl: an item carrying `$patch: replace` replaces the whole list with
        // the plain items (the marked item itself is dropped).
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"],
            json!([{"name": "z"}])
        );
        assert_eq!(smp(&deploy(), json!({"$patch": "delete"})), json!({}));
        assert!(
            strategic_merge_patch(
                &deploy(),
                &json!({"$patch": "bogus"}),
                &BuiltinMergeSchema::new("apps", "Deployment")
            )
            .is_err()
        );
    }

    #[test]
    fn smp_retain_keys() {
        let out = smp(
            &deploy(),
            json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}),
        );
        assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));
    }

    #[test]
    fn smp_primitive_set_lists() {
        let out = smp(&deploy(), json!({"metadata": {"finalizers": ["c", "a"]}}));
        assert_eq!(out["metadata"]["finalizers"], json!(["c", "a", "b"]));
        let out = smp(
            &deploy(),
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}),
        );
        assert_eq!(out["metadata"]["finalizers"], json!(["b"]));
        let out = smp(
            &deploy(),
            json!({"metadata": {"$setElementOrder/finalizers": ["b", "a"]}}),
        );
        assert_eq!(out["metadata"]["finalizers"], json!(["b", "a"]));
    }

    #[test]
    fn smp_set_element_order_on_map_lists() {
        let out = smp(
            &deploy(),
            json!({"spec": {"template": {"spec": {
                "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "app"}],
                "containers": [{"name": "app", "image": "app:3"}]
            }}}}),
        );
        let cs = &out["spec"]["template"]["spec"]["containers"];
        assert_eq!(cs[0]["name"], "sidecar");
        assert_eq!(cs[1]["image"], "app:3");
        assert!(
            out.to_string().find('$').is_none(),
            "no directive leaks: {out}"
        );
    }

    #[test]
    fn smp_service_ports_by_port_and_errors() {
        let svc = json!({"apiVersion": "v1", "kind": "Service", "spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 443}]}});
        let out = smp(
            &svc,
            json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}]}}),
        );
        assert_eq!(
            out["spec"]["ports"],
            json!([{"port": 80, "targetPort": 9090}, {"port": 443}])
        );
        let err = strategic_merge_patch(
            &svc,
            &json!({"spec": {"ports": [{"targetPort": 1}]}}),
            &BuiltinMergeSchema::new("", "Service"),
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("does not contain declared merge key: port"),
            "{err}"
        );
        assert!(
            strategic_merge_patch(&svc, &json!([1]), &BuiltinMergeSchema::new("", "Service"))
                .is_err()
        );
    }

    #[test]
    fn smp_new_keyed_list_keeps_duplicate_keys_and_drops_deletions() {
        // Checked against `kubectl patch --local`: a keyed list absent from the original
        // keeps the patch's items as given (duplicates too), minus deletion items.
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c1", "image": "a:0"}]}});
        let out = smp(
            &pod,
            json!({"spec": {"containers": [{"name": "c1", "env": [
                {"name": "D", "value": "p1"}, {"name": "D", "value": "p1"},
                {"name": "X", "$patch": "delete"}]}]}}),
        );
        assert_eq!(
            out["spec"]["containers"][0]["env"],
            json!([{"name": "D", "value": "p1"}, {"name": "D", "value": "p1"}])
        );
    }

    #[test]
    fn smp_new_values_are_taken_as_is_minus_directives_and_nulls() {
        // Like Kubernetes: a field absent from the original gets the patch value verbatim,
        // and typed decoding drops `$` keys and nulls (so no directive is ever stored).
        let cm = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}});
        let out = smp(
            &cm,
            json!({"spec": {"containers": [{"name": "a", "env": [{"name": "X", "$patch": "delete"}]}], "$setElementOrder/containers": [{"name": "a"}]}}),
        );
        assert_eq!(
            out["spec"],
            json!({"containers": [{"name": "a", "env": [{"name": "X"}]}]})
        );
        let out = smp(&cm, json!({"metadata": {"labels": {"a": null, "b": "1"}}}));
        assert_eq!(out["metadata"]["labels"], json!({"b": "1"}));
    }
}
