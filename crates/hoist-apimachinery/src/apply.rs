//! Server-side apply and ownership tracking for ordinary writes.
//!
//! Ownership follows Kubernetes: an `Apply` by manager M owns exactly the fields of its
//! last applied configuration; an `Update` (create/update/patch) by M takes the fields it
//! changed away from everyone else. Applying a value that differs from the live value of
//! a field owned by another manager is a conflict unless `force` is set.

use crate::managed_fields::{
    FieldPath, FieldSet, FieldsError, ManagedFieldsEntry, PathElement, Scope, excluded,
    fields_in_scope, item_key_element, read_managed_fields, sort_entries, write_managed_fields,
};
use crate::merge_schema::{ListType, MergeSchema};
use serde_json::{Map, Value};

/// One conflicting field: another manager owns it with a different value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// Display name as in Kubernetes: `"kubectl-client-side-apply" using apps/v1`.
    pub manager: String,
    /// `.spec.replicas`
    pub field: String,
    pub path: FieldPath,
}

/// Why an apply or update failed. The server turns `Conflicts` into a 409 with
/// `reason: Conflict`, `details.causes[] = {reason: "FieldManagerConflict",
/// message: cause_message(c), field: c.field}` and `message = to_string()`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    #[error("{}", conflict_message(.0))]
    Conflicts(Vec<Conflict>),
    /// The applied configuration or managed fields are malformed (400/422).
    #[error("{0}")]
    Invalid(String),
}

impl From<FieldsError> for ApplyError {
    fn from(e: FieldsError) -> Self {
        ApplyError::Invalid(e.to_string())
    }
}

/// `Apply failed with 1 conflict: conflict with "m" using apps/v1: .spec.replicas`, or for
/// several, grouped by manager (sorted): `Apply failed with 2 conflicts: conflicts with "m":\n- .a\n- .b`.
pub fn conflict_message(conflicts: &[Conflict]) -> String {
    if let [c] = conflicts {
        return format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            c.manager, c.field
        );
    }
    let mut managers: Vec<&str> = conflicts.iter().map(|c| c.manager.as_str()).collect();
    managers.sort();
    managers.dedup();
    let mut lines = Vec::new();
    for m in managers {
        lines.push(format!("conflicts with {m}:"));
        for c in conflicts.iter().filter(|c| c.manager == m) {
            lines.push(format!("- {}", c.field));
        }
    }
    format!(
        "Apply failed with {} conflicts: {}",
        conflicts.len(),
        lines.join("\n")
    )
}

/// The message of one conflict's Status cause: `conflict with "m" using apps/v1`.
pub fn cause_message(conflict: &Conflict) -> String {
    format!("conflict with {}", conflict.manager)
}

/// What an apply or update is about.
#[derive(Clone, Copy)]
pub struct WriteContext<'a> {
    pub manager: &'a str,
    /// `None` for the main resource, `Some("status")` for the status subresource.
    pub subresource: Option<&'a str>,
    /// RFC 3339 time for the managedFields entry.
    pub now: &'a str,
    pub schema: &'a dyn MergeSchema,
}

fn api_version(v: &Value) -> String {
    v.get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

fn without_managed_fields(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(Value::Object(meta)) = v.get_mut("metadata") {
        meta.shift_remove("managedFields");
    }
    v
}

/// Server-side apply `applied` onto `live` (None = create). Returns the new object with
/// `metadata.managedFields` updated; the caller then sets server fields (RV, uid, ...).
/// `status` is ignored on the main resource when the schema has a status subresource,
/// and only `status` is applied for `subresource: Some("status")`.
pub fn server_side_apply(
    live: Option<&Value>,
    applied: &Value,
    force: bool,
    ctx: WriteContext<'_>,
) -> Result<Value, ApplyError> {
    let Value::Object(applied_map) = applied else {
        return Err(ApplyError::Invalid(
            "the applied configuration must be an object".into(),
        ));
    };
    if api_version(applied).is_empty()
        || applied
            .get("kind")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
    {
        return Err(ApplyError::Invalid(
            "the applied configuration must set apiVersion and kind".into(),
        ));
    }
    if applied
        .pointer("/metadata/managedFields")
        .is_some_and(|v| !v.is_null())
    {
        return Err(ApplyError::Invalid(
            "metadata.managedFields must be nil".into(),
        ));
    }
    if let Some(live) = live
        && !live.is_object()
    {
        return Err(ApplyError::Invalid(
            "the live object must be an object".into(),
        ));
    }
    let scope = Scope::for_subresource(ctx.subresource);
    let schema = ctx.schema;
    let applied_scoped = restrict(applied_map, scope, schema);
    let applied_set = fields_in_scope(&Value::Object(applied_scoped.clone()), schema, scope);

    let mut entries = match live {
        Some(l) => read_managed_fields(l)?,
        None => Vec::new(),
    };
    if let Some(l) = live
        && entries.is_empty()
    {
        // Objects written before any tracking are owned by a pseudo manager, as in Kubernetes.
        let fields = fields_in_scope(l, schema, Scope::All);
        if !fields.is_empty() {
            entries.push(ManagedFieldsEntry {
                manager: "before-first-apply".into(),
                operation: "Update".into(),
                api_version: api_version(l),
                time: None,
                subresource: None,
                fields,
            });
        }
    }
    let me = ManagedFieldsEntry {
        manager: ctx.manager.to_string(),
        operation: "Apply".into(),
        api_version: api_version(applied),
        time: Some(ctx.now.to_string()),
        subresource: ctx.subresource.map(str::to_string),
        fields: applied_set.clone(),
    };
    let prev_set = entries
        .iter()
        .find(|e| e.same_identity(&me))
        .map(|e| e.fields.clone())
        .unwrap_or_default();

    // Conflicts: fields another manager owns whose value this apply would change.
    let empty = Value::Object(Map::new());
    let live_v = live.unwrap_or(&empty);
    let mut conflicts = Vec::new();
    let mut conflict_sets: Vec<FieldSet> = vec![FieldSet::default(); entries.len()];
    for (i, e) in entries.iter().enumerate() {
        if e.same_identity(&me) {
            continue;
        }
        for path in e.fields.intersection(&applied_set).paths() {
            if matches!(
                path.0.last(),
                Some(PathElement::Key(_) | PathElement::Value(_))
            ) {
                continue; // item existence: both sides have it
            }
            let (Some(lv), Some(av)) = (path.lookup(live_v), path.lookup(applied)) else {
                continue;
            };
            if lv != av {
                conflict_sets[i].insert(&path.0);
                conflicts.push(Conflict {
                    manager: e.display_name(),
                    field: path.to_string(),
                    path,
                });
            }
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(ApplyError::Conflicts(conflicts));
    }
    for (e, c) in entries.iter_mut().zip(&conflict_sets) {
        e.fields = e.fields.difference(c);
    }

    // Merge, then remove what this manager applied before, dropped now, and nobody else owns.
    let mut new = live.cloned().unwrap_or_else(|| empty.clone());
    let mut path = Vec::new();
    merge_applied(&mut new, &Value::Object(applied_scoped), &mut path, schema);
    let others = entries
        .iter()
        .filter(|e| !e.same_identity(&me))
        .fold(FieldSet::default(), |acc, e| acc.union(&e.fields));
    let removed = prev_set.difference(&applied_set);
    let mut to_remove: Vec<FieldPath> = removed
        .paths()
        .into_iter()
        .filter(|p| !others.has_prefix(&p.0))
        .collect();
    // Shallowest first: a removed keyed item takes its fields with it (removing its key
    // field first would make the item impossible to find).
    to_remove.sort_by_key(|p| p.0.len());
    for p in &to_remove {
        remove_path(&mut new, &p.0);
    }

    // Ownership bookkeeping.
    let changed = live.map(without_managed_fields) != Some(without_managed_fields(&new))
        || prev_set != applied_set;
    let old_time = entries
        .iter()
        .find(|e| e.same_identity(&me))
        .and_then(|e| e.time.clone());
    entries.retain(|e| !e.same_identity(&me));
    let mut me = me;
    if !changed {
        me.time = old_time.or(me.time);
    }
    entries.push(me);
    entries.retain(|e| !e.fields.is_empty());
    sort_entries(&mut entries);
    write_managed_fields(&mut new, &entries);
    if let Some(l) = live
        && !changed
        && l.pointer("/metadata/managedFields") == new.pointer("/metadata/managedFields")
    {
        return Ok(l.clone());
    }
    Ok(new)
}

/// Keep only the part of an applied configuration that `scope` may change.
fn restrict(
    applied: &Map<String, Value>,
    scope: Scope,
    schema: &dyn MergeSchema,
) -> Map<String, Value> {
    let mut out = Map::new();
    for (k, v) in applied {
        let keep = match k.as_str() {
            "apiVersion" | "kind" => true,
            "metadata" => scope != Scope::Status,
            _ => !excluded(&[k.as_str()], scope, schema),
        };
        if keep {
            out.insert(k.clone(), v.clone());
        }
    }
    out
}

/// Merge an applied configuration into `target`: objects field by field, map lists by
/// key, set lists as a union, everything else replaced.
fn merge_applied<'a>(
    target: &mut Value,
    applied: &'a Value,
    path: &mut Vec<&'a str>,
    schema: &dyn MergeSchema,
) {
    match (target, applied) {
        (Value::Object(t), Value::Object(a)) if path.is_empty() || !schema.is_atomic_map(path) => {
            for (k, v) in a {
                path.push(k.as_str());
                if v.is_null() {
                    t.shift_remove(k);
                } else {
                    match t.get_mut(k) {
                        Some(slot) => merge_applied(slot, v, path, schema),
                        None => {
                            t.insert(k.clone(), v.clone());
                        }
                    }
                }
                path.pop();
            }
        }
        (Value::Array(t), Value::Array(a)) => match schema.list_type(path) {
            ListType::Map { keys } => {
                for item in a {
                    let Some(pe) = item_key_element(item, &keys) else {
                        *t = a.clone();
                        return;
                    };
                    match t
                        .iter_mut()
                        .find(|x| item_key_element(x, &keys).as_ref() == Some(&pe))
                    {
                        Some(slot) => merge_applied(slot, item, path, schema),
                        None => t.push(item.clone()),
                    }
                }
            }
            ListType::Set => {
                for item in a {
                    if !t.contains(item) {
                        t.push(item.clone());
                    }
                }
            }
            ListType::Atomic => *t = a.clone(),
        },
        (t, a) => *t = a.clone(),
    }
}

/// Remove the value at `path` (a field, a keyed item or a set value).
fn remove_path(v: &mut Value, path: &[PathElement]) {
    let Some((last, parent)) = path.split_last() else {
        return;
    };
    let mut cur = v;
    for pe in parent {
        let next = match (pe, cur) {
            (PathElement::Field(f), Value::Object(m)) => m.get_mut(f),
            (
                pe @ (PathElement::Key(_) | PathElement::Value(_) | PathElement::Index(_)),
                Value::Array(items),
            ) => {
                let idx = items
                    .iter()
                    .position(|i| pe.lookup(&Value::Array(vec![i.clone()])).is_some());
                match (pe, idx) {
                    (PathElement::Index(n), _) => items.get_mut(*n),
                    (_, Some(i)) => items.get_mut(i),
                    _ => None,
                }
            }
            _ => None,
        };
        match next {
            Some(n) => cur = n,
            None => return,
        }
    }
    match (last, cur) {
        (PathElement::Field(f), Value::Object(m)) => {
            m.shift_remove(f);
        }
        (PathElement::Index(n), Value::Array(items)) if *n < items.len() => {
            items.remove(*n);
        }
        (pe, Value::Array(items)) => {
            items.retain(|i| pe.lookup(&Value::Array(vec![i.clone()])).is_none())
        }
        _ => {}
    }
}

/// Record a non-apply write (create/update/patch): `ctx.manager` (operation `Update`)
/// takes ownership of every field whose value it changed; other managers lose those
/// fields, and everyone loses fields that no longer exist. Managed fields sent by the
/// client are honoured as Kubernetes does: a changed non-empty list is taken as the new
/// base, `[{}]` resets tracking, an empty or missing list keeps the old entries.
pub fn track_update(
    old: Option<&Value>,
    new: &Value,
    ctx: WriteContext<'_>,
) -> Result<Value, ApplyError> {
    if !new.is_object() {
        return Err(ApplyError::Invalid(
            "the object must be a JSON object".into(),
        ));
    }
    let schema = ctx.schema;
    let old_entries = match old {
        Some(o) => read_managed_fields(o).unwrap_or_default(),
        None => Vec::new(),
    };
    let sent = new.pointer("/metadata/managedFields");
    let mut entries = match sent {
        Some(Value::Array(items))
            if items.len() == 1 && items[0].as_object().is_some_and(Map::is_empty) =>
        {
            Vec::new()
        }
        Some(Value::Array(items))
            if !items.is_empty()
                && Some(sent) != old.map(|o| o.pointer("/metadata/managedFields")) =>
        {
            read_managed_fields(new)?
        }
        _ => old_entries,
    };
    let scope = Scope::for_subresource(ctx.subresource);
    let changed = match old {
        Some(o) => changed_fields(o, new, schema, scope),
        None => fields_in_scope(new, schema, scope),
    };
    let present = fields_in_scope(new, schema, Scope::All);
    let me = ManagedFieldsEntry {
        manager: ctx.manager.to_string(),
        operation: "Update".into(),
        api_version: api_version(new),
        time: Some(ctx.now.to_string()),
        subresource: ctx.subresource.map(str::to_string),
        fields: FieldSet::default(),
    };
    let mut found = false;
    for e in entries.iter_mut() {
        if e.same_identity(&me) {
            found = true;
            let before = e.fields.clone();
            e.fields = e.fields.union(&changed).intersection(&present);
            if e.fields != before {
                e.time = me.time.clone();
            }
        } else {
            e.fields = e.fields.difference(&changed).intersection(&present);
        }
    }
    if !found && !changed.is_empty() {
        entries.push(ManagedFieldsEntry {
            fields: changed.intersection(&present),
            ..me
        });
    }
    entries.retain(|e| !e.fields.is_empty());
    sort_entries(&mut entries);
    let mut out = new.clone();
    write_managed_fields(&mut out, &entries);
    Ok(out)
}

/// The fields whose value differs between `old` and `new` (added or changed, within scope).
pub fn changed_fields(
    old: &Value,
    new: &Value,
    schema: &dyn MergeSchema,
    scope: Scope,
) -> FieldSet {
    let mut out = FieldSet::default();
    let mut path_names = Vec::new();
    let mut path = Vec::new();
    if let (Value::Object(o), Value::Object(n)) = (old, new) {
        diff_maps(o, n, &mut path_names, &mut path, schema, scope, &mut out);
    }
    out
}

fn diff_maps<'a>(
    old: &Map<String, Value>,
    new: &'a Map<String, Value>,
    names: &mut Vec<&'a str>,
    path: &mut Vec<PathElement>,
    schema: &dyn MergeSchema,
    scope: Scope,
    out: &mut FieldSet,
) {
    for (k, nv) in new {
        names.push(k.as_str());
        if !excluded(names, scope, schema) {
            path.push(PathElement::Field(k.clone()));
            diff_values(old.get(k), nv, names, path, schema, scope, out);
            path.pop();
        }
        names.pop();
    }
}

#[allow(clippy::too_many_arguments)]
fn diff_values<'a>(
    old: Option<&Value>,
    new: &'a Value,
    names: &mut Vec<&'a str>,
    path: &mut Vec<PathElement>,
    schema: &dyn MergeSchema,
    scope: Scope,
    out: &mut FieldSet,
) {
    if old == Some(new) {
        return;
    }
    // A value that changed type is new as a whole.
    let same_kind = |o: &&Value| {
        matches!(
            (o, new),
            (Value::Object(_), Value::Object(_)) | (Value::Array(_), Value::Array(_))
        )
    };
    let old = old.filter(|o| same_kind(o) || !(new.is_object() || new.is_array()));
    match (old, new) {
        (Some(Value::Object(o)), Value::Object(n))
            if !n.is_empty() && !schema.is_atomic_map(names) =>
        {
            diff_maps(o, n, names, path, schema, scope, out);
        }
        (Some(Value::Array(o)), Value::Array(n)) if !n.is_empty() => {
            match schema.list_type(names) {
                ListType::Map { keys } => {
                    let elems: Option<Vec<PathElement>> =
                        n.iter().map(|i| item_key_element(i, &keys)).collect();
                    let Some(elems) = elems else {
                        out.insert(path);
                        return;
                    };
                    for (item, pe) in n.iter().zip(elems) {
                        let before = o
                            .iter()
                            .find(|x| item_key_element(x, &keys).as_ref() == Some(&pe));
                        path.push(pe);
                        if before.is_none() {
                            out.insert(path);
                        }
                        diff_values(
                            before.or(Some(&Value::Object(Map::new()))),
                            item,
                            names,
                            path,
                            schema,
                            scope,
                            out,
                        );
                        path.pop();
                    }
                }
                ListType::Set if n.iter().all(|i| !i.is_object() && !i.is_array()) => {
                    for item in n {
                        if !o.contains(item) {
                            path.push(PathElement::value(item));
                            out.insert(path);
                            path.pop();
                        }
                    }
                }
                _ => out.insert(path),
            }
        }
        (None, Value::Object(n)) if !n.is_empty() && !schema.is_atomic_map(names) => {
            let sub = Map::new();
            diff_maps(&sub, n, names, path, schema, scope, out);
        }
        (None, Value::Array(_)) => {
            // A new list: everything in it is new.
            diff_values(
                Some(&Value::Array(Vec::new())),
                new,
                names,
                path,
                schema,
                scope,
                out,
            );
            if new.as_array().is_some_and(Vec::is_empty)
                || matches!(schema.list_type(names), ListType::Atomic)
            {
                out.insert(path);
            }
        }
        _ => out.insert(path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::managed_fields::read_managed_fields;
    use crate::merge_schema::BuiltinMergeSchema;
    use serde_json::json;

    const T1: &str = "2026-01-01T00:00:00Z";
    const T2: &str = "2026-01-02T00:00:00Z";

    fn schema() -> BuiltinMergeSchema {
        BuiltinMergeSchema::new("apps", "Deployment")
    }

    fn ctx<'a>(manager: &'a str, now: &'a str, schema: &'a BuiltinMergeSchema) -> WriteContext<'a> {
        WriteContext {
            manager,
            subresource: None,
            now,
            schema,
        }
    }

    fn deploy(replicas: i64, image: &str) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "app", "image": image}]}}}
        })
    }

    fn managers(obj: &Value) -> Vec<(String, String)> {
        read_managed_fields(obj)
            .unwrap()
            .into_iter()
            .map(|e| (e.manager, e.operation))
            .collect()
    }

    #[test]
    fn apply_creates_and_records_ownership() {
        let s = schema();
        let out =
            server_side_apply(None, &deploy(2, "a:1"), false, ctx("kubectl", T1, &s)).unwrap();
        assert_eq!(out["spec"]["replicas"], 2);
        let mf = &out["metadata"]["managedFields"][0];
        assert_eq!(mf["manager"], "kubectl");
        assert_eq!(mf["operation"], "Apply");
        assert_eq!(mf["apiVersion"], "apps/v1");
        assert_eq!(mf["time"], T1);
        assert_eq!(mf["fieldsType"], "FieldsV1");
        assert_eq!(mf["fieldsV1"]["f:spec"]["f:replicas"], json!({}));
        assert!(mf.get("subresource").is_none());
    }

    #[test]
    fn applying_the_same_config_twice_changes_nothing() {
        let s = schema();
        let first =
            server_side_apply(None, &deploy(2, "a:1"), false, ctx("kubectl", T1, &s)).unwrap();
        let second = server_side_apply(
            Some(&first),
            &deploy(2, "a:1"),
            false,
            ctx("kubectl", T2, &s),
        )
        .unwrap();
        assert_eq!(first, second);
    }

    #[test]
    fn dropped_fields_are_removed_unless_co_owned() {
        let s = schema();
        let mut cfg = deploy(2, "a:1");
        cfg["metadata"]["labels"]["tier"] = json!("front");
        cfg["spec"]["template"]["spec"]["containers"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "side", "image": "s:1"}));
        let live = server_side_apply(None, &cfg, false, ctx("kubectl", T1, &s)).unwrap();
        let out = server_side_apply(
            Some(&live),
            &deploy(2, "a:1"),
            false,
            ctx("kubectl", T2, &s),
        )
        .unwrap();
        assert_eq!(out["metadata"]["labels"], json!({"app": "web"}));
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"],
            json!([{"name": "app", "image": "a:1"}])
        );

        // Another manager also owns the label with the same value: it survives.
        let other = server_side_apply(
            Some(&live),
            &json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "labels": {"tier": "front"}}}),
            false,
            ctx("helm", T1, &s),
        )
        .unwrap();
        let out = server_side_apply(
            Some(&other),
            &deploy(2, "a:1"),
            false,
            ctx("kubectl", T2, &s),
        )
        .unwrap();
        assert_eq!(
            out["metadata"]["labels"],
            json!({"app": "web", "tier": "front"})
        );
    }

    #[test]
    fn conflict_between_appliers_and_force() {
        let s = schema();
        let live = server_side_apply(None, &deploy(2, "a:1"), false, ctx("alice", T1, &s)).unwrap();
        let err = server_side_apply(Some(&live), &deploy(3, "a:1"), false, ctx("bob", T2, &s))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "Apply failed with 1 conflict: conflict with \"alice\": .spec.replicas"
        );
        let ApplyError::Conflicts(cs) = &err else {
            panic!("{err:?}")
        };
        assert_eq!(cs[0].field, ".spec.replicas");
        assert_eq!(cause_message(&cs[0]), "conflict with \"alice\"");

        let forced =
            server_side_apply(Some(&live), &deploy(3, "a:1"), true, ctx("bob", T2, &s)).unwrap();
        assert_eq!(forced["spec"]["replicas"], 3);
        let entries = read_managed_fields(&forced).unwrap();
        let alice = entries.iter().find(|e| e.manager == "alice").unwrap();
        let bob = entries.iter().find(|e| e.manager == "bob").unwrap();
        let replicas = [
            PathElement::Field("spec".into()),
            PathElement::Field("replicas".into()),
        ];
        assert!(!alice.fields.contains(&replicas));
        assert!(bob.fields.contains(&replicas));
        // Same value elsewhere: shared, not conflicting.
        let image = FieldPath(vec![
            PathElement::Field("spec".into()),
            PathElement::Field("template".into()),
            PathElement::Field("spec".into()),
            PathElement::Field("containers".into()),
            PathElement::decode("k:{\"name\":\"app\"}").unwrap(),
            PathElement::Field("image".into()),
        ]);
        assert!(alice.fields.contains(&image.0) && bob.fields.contains(&image.0));
    }

    #[test]
    fn client_side_apply_then_server_side_apply_conflicts_like_kubernetes() {
        let s = schema();
        // `kubectl apply` (client-side) creates with fieldManager=kubectl-client-side-apply.
        let mut created = deploy(2, "a:1");
        created["metadata"]["annotations"] =
            json!({"kubectl.kubernetes.io/last-applied-configuration": "{}"});
        let live = track_update(None, &created, ctx("kubectl-client-side-apply", T1, &s)).unwrap();
        assert_eq!(
            managers(&live),
            vec![("kubectl-client-side-apply".into(), "Update".into())]
        );

        // Unchanged config: no conflict, shared ownership.
        assert!(
            server_side_apply(
                Some(&live),
                &deploy(2, "a:1"),
                false,
                ctx("kubectl", T2, &s)
            )
            .is_ok()
        );

        // Edited replicas and image: conflicts, grouped by manager.
        let err = server_side_apply(
            Some(&live),
            &deploy(3, "a:1"),
            false,
            ctx("kubectl", T2, &s),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using apps/v1: .spec.replicas"
        );
        let err = server_side_apply(
            Some(&live),
            &deploy(3, "a:2"),
            false,
            ctx("kubectl", T2, &s),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "Apply failed with 2 conflicts: conflicts with \"kubectl-client-side-apply\" using apps/v1:\n- .spec.replicas\n- .spec.template.spec.containers[name=\"app\"].image"
        );

        // --force-conflicts takes ownership.
        let out = server_side_apply(Some(&live), &deploy(3, "a:2"), true, ctx("kubectl", T2, &s))
            .unwrap();
        assert_eq!(out["spec"]["replicas"], 3);
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"][0]["image"],
            "a:2"
        );
        assert_eq!(
            out["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"],
            "{}"
        );
        // And the next apply of the same config is clean.
        let again = server_side_apply(Some(&out), &deploy(3, "a:2"), false, ctx("kubectl", T2, &s))
            .unwrap();
        assert_eq!(again, out);
    }

    #[test]
    fn update_takes_ownership_from_applier() {
        let s = schema();
        let live =
            server_side_apply(None, &deploy(2, "a:1"), false, ctx("kubectl", T1, &s)).unwrap();
        let mut edited = live.clone();
        edited["spec"]["replicas"] = json!(5);
        let updated = track_update(Some(&live), &edited, ctx("kubectl-scale", T2, &s)).unwrap();
        let entries = read_managed_fields(&updated).unwrap();
        assert_eq!(entries.len(), 2);
        let scale = entries
            .iter()
            .find(|e| e.manager == "kubectl-scale")
            .unwrap();
        assert_eq!(
            scale.fields.to_fields_v1(),
            json!({"f:spec": {"f:replicas": {}}})
        );
        assert_eq!(scale.time.as_deref(), Some(T2));
        let applier = entries.iter().find(|e| e.manager == "kubectl").unwrap();
        assert!(!applier.fields.contains(&[
            PathElement::Field("spec".into()),
            PathElement::Field("replicas".into())
        ]));
        // Applying the old value again now conflicts with the updater.
        let err = server_side_apply(
            Some(&updated),
            &deploy(2, "a:1"),
            false,
            ctx("kubectl", T2, &s),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "Apply failed with 1 conflict: conflict with \"kubectl-scale\" using apps/v1: .spec.replicas"
        );
    }

    #[test]
    fn noop_update_keeps_managed_fields() {
        let s = schema();
        let live = track_update(None, &deploy(2, "a:1"), ctx("m", T1, &s)).unwrap();
        let again = track_update(Some(&live), &live, ctx("m", T2, &s)).unwrap();
        assert_eq!(again, live);
        let other = track_update(Some(&live), &live, ctx("other", T2, &s)).unwrap();
        assert_eq!(other, live);
    }

    #[test]
    fn removed_fields_lose_their_owners() {
        let s = schema();
        let live = track_update(None, &deploy(2, "a:1"), ctx("m", T1, &s)).unwrap();
        let mut edited = live.clone();
        edited["metadata"]["labels"]
            .as_object_mut()
            .unwrap()
            .remove("app");
        let out = track_update(Some(&live), &edited, ctx("other", T2, &s)).unwrap();
        let entries = read_managed_fields(&out).unwrap();
        let m = entries.iter().find(|e| e.manager == "m").unwrap();
        assert!(!m.fields.has_prefix(&[
            PathElement::Field("metadata".into()),
            PathElement::Field("labels".into())
        ]));
        assert!(m.fields.has_prefix(&[PathElement::Field("spec".into())]));
    }

    #[test]
    fn client_managed_fields_are_honoured_or_reset() {
        let s = schema();
        let live = track_update(None, &deploy(2, "a:1"), ctx("m", T1, &s)).unwrap();
        let mut reset = live.clone();
        reset["metadata"]["managedFields"] = json!([{}]);
        let out = track_update(Some(&live), &reset, ctx("m", T2, &s)).unwrap();
        assert!(out["metadata"].get("managedFields").is_none());
        let mut given = live.clone();
        given["metadata"]["managedFields"] = json!([{"manager": "x", "operation": "Apply", "apiVersion": "apps/v1", "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:replicas": {}}}}]);
        let out = track_update(Some(&live), &given, ctx("m", T2, &s)).unwrap();
        assert_eq!(managers(&out), vec![("x".into(), "Apply".into())]);
        let mut emptied = live.clone();
        emptied["metadata"]["managedFields"] = json!([]);
        assert_eq!(
            track_update(Some(&live), &emptied, ctx("m", T2, &s)).unwrap(),
            live
        );
    }

    #[test]
    fn status_is_ignored_on_the_main_resource() {
        let s = schema();
        let mut live =
            server_side_apply(None, &deploy(2, "a:1"), false, ctx("kubectl", T1, &s)).unwrap();
        live["status"] = json!({"replicas": 2});
        let mut cfg = deploy(2, "a:1");
        cfg["status"] = json!({"replicas": 99});
        let out = server_side_apply(Some(&live), &cfg, false, ctx("kubectl", T2, &s)).unwrap();
        assert_eq!(out["status"], json!({"replicas": 2}));
        let sub = WriteContext {
            subresource: Some("status"),
            ..ctx("controller", T2, &s)
        };
        let out = server_side_apply(Some(&live), &cfg, false, sub).unwrap();
        assert_eq!(out["status"], json!({"replicas": 99}));
        assert_eq!(out["spec"], live["spec"]);
        let e = read_managed_fields(&out)
            .unwrap()
            .into_iter()
            .find(|e| e.manager == "controller")
            .unwrap();
        assert_eq!(e.subresource.as_deref(), Some("status"));
        assert_eq!(
            e.fields.to_fields_v1(),
            json!({"f:status": {"f:replicas": {}}})
        );
    }

    #[test]
    fn objects_without_managed_fields_belong_to_before_first_apply() {
        let s = schema();
        let live = deploy(2, "a:1");
        let err = server_side_apply(
            Some(&live),
            &deploy(4, "a:1"),
            false,
            ctx("kubectl", T1, &s),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "Apply failed with 1 conflict: conflict with \"before-first-apply\" using apps/v1: .spec.replicas"
        );
    }

    #[test]
    fn set_lists_merge_and_keyed_items_co_owned_survive() {
        let s = schema();
        let mut a = deploy(1, "a:1");
        a["metadata"]["finalizers"] = json!(["a.example/x"]);
        let live = server_side_apply(None, &a, false, ctx("one", T1, &s)).unwrap();
        let b = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "finalizers": ["b.example/y"]}});
        let out = server_side_apply(Some(&live), &b, false, ctx("two", T1, &s)).unwrap();
        assert_eq!(
            out["metadata"]["finalizers"],
            json!(["a.example/x", "b.example/y"])
        );
        let dropped =
            server_side_apply(Some(&out), &deploy(1, "a:1"), false, ctx("one", T2, &s)).unwrap();
        assert_eq!(dropped["metadata"]["finalizers"], json!(["b.example/y"]));
    }

    #[test]
    fn invalid_inputs_are_errors() {
        let s = schema();
        for bad in [
            json!(1),
            json!({"kind": "Deployment"}),
            json!({"apiVersion": "apps/v1", "kind": ""}),
        ] {
            assert!(
                matches!(
                    server_side_apply(None, &bad, false, ctx("m", T1, &s)),
                    Err(ApplyError::Invalid(_))
                ),
                "{bad}"
            );
        }
        let mut with_mf = deploy(1, "a");
        with_mf["metadata"]["managedFields"] = json!([]);
        assert_eq!(
            server_side_apply(None, &with_mf, false, ctx("m", T1, &s))
                .unwrap_err()
                .to_string(),
            "metadata.managedFields must be nil"
        );
        assert!(
            server_side_apply(Some(&json!([])), &deploy(1, "a"), false, ctx("m", T1, &s)).is_err()
        );
        assert!(track_update(None, &json!("x"), ctx("m", T1, &s)).is_err());
    }
}
