//! The record of which kinds (and namespaces) hoist applied for a project and developer,
//! kept in a ConfigMap so prune and teardown find everything after a restart or a crash
//! (like kubectl's ApplySet parent object).

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::error::{KubeError, Result};
use crate::labels::{self, Owner};
use crate::target::sanitize_dns1123;

const DATA_KEY: &str = "kinds.json";

/// One kind in one namespace (`None`: cluster-scoped).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Entry {
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// The inventory ConfigMap's name for an owner.
pub fn name(owner: &Owner) -> String {
    format!(
        "hoist-inventory-{}-{}",
        sanitize_dns1123(&owner.project, 100),
        sanitize_dns1123(&owner.developer, 100)
    )
}

pub async fn read(client: &Client, namespace: &str, owner: &Owner) -> Result<BTreeSet<Entry>> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let name = name(owner);
    let what = format!("ConfigMap/{name} in namespace {namespace}");
    let Some(cm) = api
        .get_opt(&name)
        .await
        .map_err(|e| KubeError::api("read inventory", &what, e))?
    else {
        return Ok(BTreeSet::new());
    };
    let Some(text) = cm.data.as_ref().and_then(|d| d.get(DATA_KEY)) else {
        return Ok(BTreeSet::new());
    };
    serde_json::from_str(text).map_err(|e| KubeError::CorruptInventory(what, e.to_string()))
}

pub async fn write(
    client: &Client,
    namespace: &str,
    owner: &Owner,
    entries: &BTreeSet<Entry>,
) -> Result<()> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let name = name(owner);
    let cm = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {
                labels::ROLE: "inventory",
                labels::PROJECT: owner.project,
                labels::DEVELOPER: owner.developer,
            },
        },
        "data": { DATA_KEY: serde_json::to_string(entries).expect("entries serialise") },
    });
    api.patch(
        &name,
        &PatchParams::apply("hoist").force(),
        &Patch::Apply(&cm),
    )
    .await
    .map_err(|e| KubeError::api("write inventory", format!("ConfigMap/{name}"), e))?;
    Ok(())
}

pub async fn delete(client: &Client, namespace: &str, owner: &Owner) -> Result<()> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let name = name(owner);
    match api.delete(&name, &Default::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(KubeError::api(
            "delete inventory",
            format!("ConfigMap/{name}"),
            e,
        )),
    }
}
