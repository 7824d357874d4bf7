//! Talking to any Kubernetes cluster through kube-rs: which cluster and namespace
//! ([`ClusterTarget`]), server-side apply with prune ([`ApplySet`]), readiness as
//! `kubectl rollout status` judges it ([`readiness`]; for many services at once, on
//! watches they share: [`shared_watch`]) and teardown ([`teardown`]); for the
//! dev loop: port-forwards that follow pod replacements ([`portforward`]), log streams of
//! every pod behind a selector ([`logs`]) and live update — copy files in, run steps,
//! restart — over `pods/exec` or, on hoist's embedded cluster, straight into the
//! container's filesystem ([`live_update`]).
//!
//! Independent of the project model: objects are plain `serde_json::Value`s tagged
//! with the service they belong to.
//!
//! ```no_run
//! # async fn demo(objects: Vec<serde_json::Value>) -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use hoist_kube::{ApplySet, ClusterTarget, Desired, PruneScope, TargetOptions};
//! use hoist_kube::readiness::{WaitTarget, wait_ready};
//!
//! let target = ClusterTarget::from_options(
//!     &TargetOptions { project: "shop".into(), allowed_contexts: vec![], ..Default::default() }
//!         .with_cluster_setting("auto"),
//! )?; // refuses a remote context that is not allowed
//! let client = target.client().await?;
//! let mut set = ApplySet::new(client.clone(), &target);
//! let desired = objects.into_iter().map(|object| Desired { service: "web".into(), object }).collect();
//! let report = set.apply(desired, PruneScope::All).await?; // SSA + prune
//! let targets: Vec<WaitTarget> = report.applied.iter().map(WaitTarget::from).collect();
//! if let Err(not_ready) = wait_ready(&client, &targets, Duration::from_secs(60)).await {
//!     eprintln!("{not_ready}"); // each object, why, conditions, events, container exit codes
//! }
//! hoist_kube::teardown::teardown(&mut set, &Default::default()).await?; // `hoist down`
//! # Ok(()) }
//! ```

pub mod apply;
pub mod discovery;
pub mod error;
pub mod exec;
pub mod inventory;
pub mod labels;
pub mod live_update;
pub mod logs;
pub mod object;
pub mod portforward;
pub mod readiness;
pub mod shared_watch;
pub mod target;
pub mod teardown;

pub use apply::{Applied, ApplyReport, ApplySet, Desired, FIELD_MANAGER, PruneScope};
pub use error::{KubeError, Result};
pub use labels::Owner;
pub use object::ObjectKey;
pub use target::{ClusterTarget, Locality, TargetOptions};
