//! The `kube` crate (kube-rs) against the in-process cluster: typed and dynamic CRUD,
//! server-side apply with force, and a watcher that survives a cluster restart.

mod common;

use std::time::Duration;

use common::TestCluster;
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::discovery::ApiResource;
use kube::runtime::watcher;
use kube::{Client, Config};
use serde_json::json;

async fn client(c: &TestCluster) -> Client {
    let kc = Kubeconfig::read_from(&c.kubeconfig).unwrap();
    let cfg = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap();
    Client::try_from(cfg).unwrap()
}

fn cm(name: &str, v: &str) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name}, "data": {"k": v}})).unwrap()
}

#[test]
fn typed_dynamic_crud_and_ssa() {
    let c = TestCluster::start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = client(&c).await;
        let info = client.apiserver_version().await.unwrap();
        assert_eq!(info.major, "1");
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
        let created = cms.create(&PostParams::default(), &cm("typed", "1")).await.unwrap();
        assert!(created.metadata.uid.is_some());
        let mut got = cms.get("typed").await.unwrap();
        got.data.as_mut().unwrap().insert("k".into(), "2".into());
        let replaced = cms.replace("typed", &PostParams::default(), &got).await.unwrap();
        assert_eq!(replaced.data.unwrap()["k"], "2");
        // A stale replace is a 409.
        let err = cms.replace("typed", &PostParams::default(), &got).await.unwrap_err();
        assert!(matches!(err, kube::Error::Api(ref s) if s.code == 409), "{err:?}");
        let list = cms.list(&ListParams::default().labels("!nothing")).await.unwrap();
        assert!(list.items.iter().any(|i| i.metadata.name.as_deref() == Some("typed")));

        // Server-side apply: create, then a conflicting manager needs force.
        let pp = PatchParams::apply("manager-a");
        let applied = cms.patch("ssa", &pp, &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": {"k": "a"}}))).await.unwrap();
        assert_eq!(applied.data.unwrap()["k"], "a");
        let other = PatchParams::apply("manager-b");
        let b = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": {"k": "b"}});
        let err = cms.patch("ssa", &other, &Patch::Apply(b.clone())).await.unwrap_err();
        assert!(matches!(err, kube::Error::Api(ref s) if s.code == 409), "{err:?}");
        let forced = cms.patch("ssa", &other.force(), &Patch::Apply(b)).await.unwrap();
        assert_eq!(forced.data.unwrap()["k"], "b");

        // Dynamic API on the same objects.
        let ar = ApiResource::erase::<ConfigMap>(&());
        let dyn_api: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &ar);
        let d = dyn_api.get("ssa").await.unwrap();
        assert_eq!(d.data["data"]["k"], "b");
        dyn_api.delete("ssa", &DeleteParams::default()).await.unwrap();
        assert!(dyn_api.get_opt("ssa").await.unwrap().is_none());
        cms.delete("typed", &DeleteParams::default()).await.unwrap();
    });
}

#[test]
fn watcher_survives_a_restart() {
    let mut c = TestCluster::start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // The watcher runs on its own runtime thread; it must see objects created before and
    // after the server restarts (it relists on 410 / reconnects on errors).
    let kubeconfig = c.kubeconfig.clone();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let watcher_thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
            loop {
                // Re-read the kubeconfig on each (re)connection: the port changes on restart.
                let kc = Kubeconfig::read_from(&kubeconfig).unwrap();
                let cfg = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                    .await
                    .unwrap();
                let client = Client::try_from(cfg).unwrap();
                let cms: Api<ConfigMap> = Api::namespaced(client, "default");
                let mut stream = watcher(cms, watcher::Config::default()).boxed();
                loop {
                    let next = tokio::select! {
                        n = tokio::time::timeout_at(deadline, stream.next()) => n,
                        _ = tx.closed() => return,
                    };
                    match next {
                        Err(_) => return,
                        Ok(None) => break,
                        Ok(Some(Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)))) => {
                            if tx.send(o.metadata.name.unwrap_or_default()).is_err() {
                                return;
                            }
                        }
                        Ok(Some(Ok(_))) => {}
                        // Connection refused after the restart: reconnect with a fresh config.
                        Ok(Some(Err(_))) => break,
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    });
    let wait_for = |rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>, name: &str| {
        rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(20), async {
                while let Some(n) = rx.recv().await {
                    if n == name {
                        return;
                    }
                }
                panic!("watcher ended before seeing {name}");
            })
            .await
            .unwrap_or_else(|_| panic!("watcher never saw {name}"))
        })
    };
    rt.block_on(async {
        let cms: Api<ConfigMap> = Api::namespaced(client(&c).await, "default");
        cms.create(&PostParams::default(), &cm("before", "1"))
            .await
            .unwrap();
    });
    wait_for(&mut rx, "before");
    c.restart();
    rt.block_on(async {
        let cms: Api<ConfigMap> = Api::namespaced(client(&c).await, "default");
        cms.create(&PostParams::default(), &cm("after", "1"))
            .await
            .unwrap();
    });
    wait_for(&mut rx, "after");
    drop(rx);
    watcher_thread.join().unwrap();
}
