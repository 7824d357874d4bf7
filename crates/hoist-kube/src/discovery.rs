//! GVK → API resource, cached; re-queried (with a deadline) for kinds whose CRD was
//! just applied and is not served yet.

use std::collections::HashMap;
use std::time::Duration;

use kube::Client;
use kube::core::GroupVersionKind;
use kube::discovery::{ApiCapabilities, ApiResource, Scope, pinned_kind};

/// A resolved kind: where its objects live and whether they are namespaced.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub resource: ApiResource,
    pub namespaced: bool,
}

#[derive(Default)]
pub struct Resolver {
    cache: HashMap<GroupVersionKind, Resolved>,
}

impl Resolver {
    /// One discovery request per group/version the first time a kind is seen.
    pub async fn resolve(&mut self, client: &Client, gvk: &GroupVersionKind) -> Option<Resolved> {
        if let Some(r) = self.cache.get(gvk) {
            return Some(r.clone());
        }
        match pinned_kind(client, gvk).await {
            Ok((resource, caps)) => {
                let r = Resolved {
                    resource,
                    namespaced: is_namespaced(&caps),
                };
                self.cache.insert(gvk.clone(), r.clone());
                Some(r)
            }
            Err(e) => {
                tracing::debug!(?gvk, error = %e, "kind not served");
                None
            }
        }
    }

    /// Polls discovery until the kind is served (a CRD just applied) or `wait` passes.
    pub async fn resolve_waiting(
        &mut self,
        client: &Client,
        gvk: &GroupVersionKind,
        wait: Duration,
    ) -> Option<Resolved> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(r) = self.resolve(client, gvk).await {
                return Some(r);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn is_namespaced(caps: &ApiCapabilities) -> bool {
    matches!(caps.scope, Scope::Namespaced)
}
