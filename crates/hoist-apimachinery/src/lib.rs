//! Kubernetes API machinery without I/O.
//!
//! Everything here works on `serde_json::Value` objects (with `preserve_order`) and
//! never touches the network or disk, so the API server (`hoist-cluster`) can call it
//! from request handlers and the tests run in milliseconds.
//!
//! - [`names`]: object name validation (`metadata.name`) and `generateName`.
//! - [`field_error`]: Kubernetes-style field errors (`spec.x: Required value`).
//! - [`selector`]: label selectors (string syntax and `LabelSelector` JSON) and field selectors.
//! - [`merge_schema`]: which lists are maps/sets/atomic, per built-in kind and for CRDs.
//! - [`patch`]: JSON merge patch (RFC 7386), JSON patch (RFC 6902), strategic merge patch.
//! - [`managed_fields`]: field sets and their `FieldsV1` encoding.
//! - [`apply`]: server-side apply and ownership tracking for ordinary writes.
//! - [`schema_validation`]: OpenAPI v3 validation and pruning for custom resources.
//! - [`semantics`]: generation bumps and no-op detection.

pub mod apply;
pub mod field_error;
pub mod managed_fields;
pub mod merge_schema;
pub mod names;
pub mod patch;
pub mod schema_validation;
pub mod selector;
pub mod semantics;
