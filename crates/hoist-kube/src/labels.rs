//! The labels hoist puts on every object it applies; teardown and prune select by them.

pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY_VALUE: &str = "hoist";
pub const PROJECT: &str = "hoist.dev/project";
pub const SERVICE: &str = "hoist.dev/service";
pub const DEVELOPER: &str = "hoist.dev/developer";
/// Marks hoist's inventory ConfigMap (which deliberately lacks `managed-by`).
pub const ROLE: &str = "hoist.dev/role";

/// Whose objects: the pair every selection is scoped to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub project: String,
    pub developer: String,
}

impl Owner {
    /// `managed-by=hoist,project=P,developer=D` (+ `service in (...)` when given).
    pub fn selector(&self, services: Option<&[String]>) -> String {
        let mut s = format!(
            "{MANAGED_BY}={MANAGED_BY_VALUE},{PROJECT}={},{DEVELOPER}={}",
            self.project, self.developer
        );
        if let Some(services) = services {
            s.push_str(&format!(",{SERVICE} in ({})", services.join(",")));
        }
        s
    }

    /// Puts the ownership labels (and the service's) into `metadata.labels`.
    pub fn stamp(&self, obj: &mut serde_json::Value, service: &str) {
        let meta = &mut obj["metadata"];
        if !meta["labels"].is_object() {
            meta["labels"] = serde_json::json!({});
        }
        let labels = meta["labels"].as_object_mut().expect("just made an object");
        for (k, v) in [
            (MANAGED_BY, MANAGED_BY_VALUE),
            (PROJECT, self.project.as_str()),
            (DEVELOPER, self.developer.as_str()),
            (SERVICE, service),
        ] {
            labels.insert(k.into(), v.into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stamps_and_selects() {
        let o = Owner {
            project: "shop".into(),
            developer: "ann".into(),
        };
        let mut obj = json!({"metadata": {"name": "x", "labels": {"app": "x"}}});
        o.stamp(&mut obj, "web");
        assert_eq!(
            obj["metadata"]["labels"],
            json!({"app": "x", MANAGED_BY: "hoist", PROJECT: "shop", DEVELOPER: "ann", SERVICE: "web"})
        );
        assert_eq!(
            o.selector(Some(&["a".into(), "b".into()])),
            "app.kubernetes.io/managed-by=hoist,hoist.dev/project=shop,hoist.dev/developer=ann,hoist.dev/service in (a,b)"
        );
    }
}
