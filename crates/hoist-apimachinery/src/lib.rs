//! Kubernetes API machinery without I/O.
//!
//! Everything here works on `serde_json::Value` objects (with `preserve_order`) and
//! never touches the network or disk, so the API server (`hoist-cluster`) can call it
//! from request handlers and the tests run in seconds.
//!
//! - [`names`]: object name validation (`metadata.name`), label keys/values, `generateName`.
//! - [`field_error`]: Kubernetes-style field errors (`spec.x: Required value`) and 422 Status bodies.
//! - [`selector`]: label selectors (string syntax and `LabelSelector` JSON) and field selectors.
//! - [`merge_schema`]: which lists are maps/sets/atomic, per built-in kind and for CRDs.
//! - [`patch`]: JSON merge patch (RFC 7386), JSON patch (RFC 6902), strategic merge patch.
//! - [`managed_fields`]: field sets and their `FieldsV1` encoding, `managedFields` entries.
//! - [`apply`]: server-side apply, ownership tracking for ordinary writes, 409 conflict Status.
//! - [`schema_validation`]: OpenAPI v3 validation and pruning for custom resources.
//! - [`semantics`]: generation bumps and no-op detection.
//!
//! # How a server uses it
//!
//! ```text
//! schema = BuiltinMergeSchema::for_object(&obj)            // built-in kinds
//!        | CrdMergeSchema { schema: Some(openAPIV3Schema), status_subresource }  // CRs
//! ctx    = WriteContext { manager: fieldManager or default_manager(user_agent),
//!                         subresource: None | Some("status"), now: RFC 3339, schema: &schema }
//!
//! POST   validate_object_name(name, name_rule_for(group, kind)) -> 422 via invalid_status
//!        generate_name(prefix) when metadata.generateName
//!        CRs: schema_validation::prune + validate -> 422
//!        obj = track_update(None, &obj, ctx)?; generation = next_generation(None, &obj)
//! PUT    new = track_update(Some(&old), &new, ctx)?
//! PATCH  merge-patch+json:            json_merge_patch(&mut obj, &patch)
//!        json-patch+json:             json_patch(&obj, &ops)?           (TestFailed -> 422)
//!        strategic-merge-patch+json:  strategic_merge_patch(&obj, &patch, &schema)?
//!                                     (built-in kinds only: answer 415 for custom resources)
//!        then new = track_update(Some(&old), &patched, ctx)?
//! APPLY  new = server_side_apply(live.as_ref(), &applied, force, ctx)
//!        Err(e) -> e.status()  (409 Conflict with FieldManagerConflict causes, or 400)
//! every write: if is_noop_update(&old, &new) { return old unchanged, no RV bump, no event }
//!              generation = next_generation(Some(&old), &new)
//! LIST/WATCH   LabelSelector::parse(q)?.matches_object(&obj)
//!              FieldSelector::parse(q)? + .validate_for(group, kind, &crd_selectable_fields)?
//!              (400 "field label not supported: x") + .matches(&obj)
//! ```

pub mod apply;
pub mod field_error;
pub mod managed_fields;
pub mod merge_schema;
pub mod names;
pub mod patch;
pub mod schema_validation;
pub mod selector;
pub mod semantics;
