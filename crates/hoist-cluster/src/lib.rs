//! The embedded Kubernetes-API-compatible dev cluster: an HTTPS API server that real
//! `kubectl` and kube-rs use, backed by SQLite.
//!
//! Layout: [`tls`] (PKI), [`storage`] (SQLite + resourceVersion + change feed),
//! [`registry`] (the table of kinds), [`routes`] → [`handlers`] (one module per verb
//! family, watch included), [`discovery`], [`openapi`], [`tables`], [`controllers`]
//! (garbage collection, namespace lifecycle), [`machinery`] (calls into
//! `hoist-apimachinery`), [`server`] (listener), [`daemon`] + [`kubeconfig`] (CLI support).

pub mod app;
pub mod clock;
pub mod controllers;
pub mod cron;
pub mod daemon;
pub mod discovery;
mod handlers;
pub mod http;
pub mod kubeconfig;
pub mod kubelet;
pub mod machinery;
pub mod objects;
pub mod openapi;
mod protobuf;
pub mod registry;
pub mod routes;
pub mod server;
pub mod service_alloc;
pub mod service_links;
pub mod status;
pub mod storage;
pub mod tables;
pub mod tls;
mod versions;
mod workload_spec;
pub mod workloads;

pub use handlers::decode_body;
pub use protobuf::decode as decode_protobuf;
pub use server::{RunningServer, ServerConfig, ServerError, start};
