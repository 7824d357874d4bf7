//! Errors of this crate: each says what failed and, where there is one, how to fix it.

use crate::object::ObjectKey;

#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    #[error("cannot read the kubeconfig: {0}")]
    Kubeconfig(String),

    #[error(
        "kubeconfig context `{name}` does not exist (known contexts: {known}); check `--context`, the `cluster:` setting or `kubectl config get-contexts`"
    )]
    UnknownContext { name: String, known: String },

    #[error(
        "the kubeconfig has no `hoist` context: the embedded cluster was never started with this kubeconfig; start it with `hoist cluster up`"
    )]
    NoEmbeddedContext,

    #[error(
        "no kubeconfig context chosen: the kubeconfig has no current context; pass `--context NAME` or set `cluster: NAME` in hoist.yaml"
    )]
    NoContext,

    #[error(
        "refusing to deploy to kubeconfig context `{context}` (server {server}): it looks remote and is not listed in `allowed_contexts`.\nIf this cluster is meant for development, allow it by adding this to hoist.yaml:\n\n  allowed_contexts:\n    - {context}\n"
    )]
    RemoteContextRefused { context: String, server: String },

    #[error(
        "invalid namespace `{0}`: a namespace must be a DNS-1123 label (lowercase letters, digits and `-`, at most 63 characters)"
    )]
    InvalidNamespace(String),

    #[error("object #{index} cannot be applied: {reason}")]
    InvalidObject { index: usize, reason: String },

    #[error(
        "the cluster does not serve {api_version} {kind} (object {object}); is its CRD installed?"
    )]
    UnknownKind {
        api_version: String,
        kind: String,
        object: String,
    },

    #[error("{action} {object}: {source}")]
    Api {
        action: &'static str,
        object: String,
        #[source]
        source: kube::Error,
    },

    #[error("the inventory ConfigMap {0} is corrupt: {1}; delete it and run `hoist deploy` again")]
    CorruptInventory(String, String),

    #[error("timed out after {} waiting for {what}", humane(*.waited))]
    Timeout {
        waited: std::time::Duration,
        what: String,
    },
}

impl KubeError {
    pub(crate) fn api(
        action: &'static str,
        object: impl std::fmt::Display,
        source: kube::Error,
    ) -> Self {
        KubeError::Api {
            action,
            object: object.to_string(),
            source,
        }
    }

    pub(crate) fn api_key(action: &'static str, key: &ObjectKey, source: kube::Error) -> Self {
        Self::api(action, key, source)
    }
}

pub type Result<T, E = KubeError> = std::result::Result<T, E>;

/// `500ms`, `3s`, `2.5s`.
fn humane(d: std::time::Duration) -> String {
    if d.as_secs() == 0 {
        format!("{}ms", d.as_millis())
    } else if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}
