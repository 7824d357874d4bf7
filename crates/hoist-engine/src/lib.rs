//! The dev loop behind `hoist up` and `hoist ci`.
//!
//! - [`state`]: the one state model of a session ([`State`]), changed only by
//!   [`Event`]s that a [`Session`] applies and broadcasts (views, `-o json`, a future
//!   dashboard and snapshots all read the same truth).
//! - [`pipeline`]: [`Engine::up`] — services in dependency order, builds in parallel
//!   (bounded), images delivered into the embedded cluster's store or a registry
//!   ([`image`], KEP-1755 aware), server-side apply + prune per service, readiness
//!   with explanations (conditions, events, exit codes, last log lines).
//! - [`ci`]: test steps with port-forward addresses in the environment, and the summary.

pub mod attach;
pub mod ci;
pub mod devloop;
pub mod diagnose;
pub mod error;
pub mod image;
pub mod pipeline;
pub mod plan;
pub mod state;
pub mod view;

pub use error::EngineError;
pub use pipeline::{Engine, EngineOptions, Outcome, UpReport};
pub use state::{Event, Session, Stamped, State};
