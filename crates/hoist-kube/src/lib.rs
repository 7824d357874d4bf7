//! Talking to any Kubernetes cluster through kube-rs: which cluster and namespace
//! ([`ClusterTarget`]), server-side apply with prune ([`ApplySet`]), readiness as
//! `kubectl rollout status` judges it ([`readiness`]) and teardown ([`teardown`]).

pub mod apply;
pub mod discovery;
pub mod error;
pub mod inventory;
pub mod labels;
pub mod object;
pub mod readiness;
pub mod target;
pub mod teardown;

pub use apply::{Applied, ApplyReport, ApplySet, Desired, FIELD_MANAGER, PruneScope};
pub use error::{KubeError, Result};
pub use labels::Owner;
pub use object::ObjectKey;
pub use target::{ClusterTarget, Locality, TargetOptions};
