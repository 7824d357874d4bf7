//! DevLoopInput end to end on a copy of examples/shop: real inotify, real reloads.

mod common;

use std::time::{Duration, Instant};

use common::{shop_copy, write};
use hoist_watch::{Action, DevLoopInput, Update, WatchOptions};

/// Updates until `done` holds for one of them (bounded by 10 s); returns that one.
async fn until(input: &mut DevLoopInput, done: impl Fn(&Update) -> bool) -> Update {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let u = tokio::time::timeout(left, input.next())
            .await
            .expect("timed out waiting for an update")
            .expect("input ended")
            .expect("no watch error");
        if done(&u) {
            return u;
        }
    }
}

#[tokio::test]
async fn edits_new_services_and_broken_ones_flow_through_one_stream() {
    let tmp = shop_copy();
    let root = tmp.path();
    // A wide window so the test's own write + rename stay in one batch under load.
    let opts = WatchOptions {
        debounce: Duration::from_millis(100),
        ..WatchOptions::default()
    };
    let (mut input, first) = DevLoopInput::start(root, vec![], opts).await.unwrap();
    assert_eq!(first.added, ["api", "stats", "web", "worker"]);

    // A synced file, saved atomically.
    write(root, "services/api/data/.products.json.tmp", "[]");
    std::fs::rename(
        root.join("services/api/data/.products.json.tmp"),
        root.join("services/api/data/products.json"),
    )
    .unwrap();
    let u = until(&mut input, |u| u.plan.services.contains_key("api")).await;
    assert!(u.reload.is_none());
    let api = &u.plan.services["api"];
    assert_eq!(api.action, Action::Sync);
    assert_eq!(api.copies.len(), 1);
    assert_eq!(api.copies[0].container, "/data/products.json");
    assert_eq!(api.runs, [0]);

    // An image input outside any sync rule.
    write(root, "services/stats/bin/stats.sh", "echo 2\n");
    let u = until(&mut input, |u| u.plan.services.contains_key("stats")).await;
    assert_eq!(u.plan.services["stats"].action, Action::Rebuild);

    // A new service directory.
    write(
        root,
        "services/extra/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: extra}\n",
    );
    write(
        root,
        "services/extra/service.yaml",
        "name: extra\nk8s: [cm.yaml]\n",
    );
    let u = until(&mut input, |u| {
        u.reload
            .as_ref()
            .is_some_and(|r| r.as_ref().is_ok_and(|o| !o.added.is_empty()))
    })
    .await;
    let o = u.reload.unwrap().unwrap();
    assert_eq!(o.added, ["extra"]);
    assert!(
        u.plan.services.is_empty(),
        "an added service is deployed whole"
    );
    assert!(input.project().service("extra").is_some());

    // A broken service.yaml: reported, nobody else touched.
    let good = std::fs::read_to_string(root.join("services/worker/service.yaml")).unwrap();
    write(
        root,
        "services/worker/service.yaml",
        "name: worker\nimage: [\n",
    );
    let u = until(&mut input, |u| {
        u.reload
            .as_ref()
            .is_some_and(|r| r.as_ref().is_ok_and(|o| !o.invalid.is_empty()))
    })
    .await;
    let o = u.reload.unwrap().unwrap();
    assert!(o.is_noop(), "{o:?}");
    assert_eq!(o.invalid[0].name, "worker");
    assert!(o.invalid[0].errors[0].location.is_some());
    // Fixed: valid again, nothing to redo.
    write(root, "services/worker/service.yaml", &good);
    let u = until(&mut input, |u| {
        u.reload
            .as_ref()
            .is_some_and(|r| r.as_ref().is_ok_and(|o| o.invalid.is_empty()))
    })
    .await;
    assert!(u.reload.unwrap().unwrap().is_noop());

    // The new service goes away.
    std::fs::remove_dir_all(root.join("services/extra")).unwrap();
    let u = until(&mut input, |u| {
        u.reload
            .as_ref()
            .is_some_and(|r| r.as_ref().is_ok_and(|o| !o.removed.is_empty()))
    })
    .await;
    assert_eq!(u.reload.unwrap().unwrap().removed, ["extra"]);

    // hoist.yaml broken: the reload fails with its location, the old project stays.
    let hoist = std::fs::read_to_string(root.join("hoist.yaml")).unwrap();
    write(root, "hoist.yaml", &format!("{hoist}\nbogus: 1\n"));
    let u = until(&mut input, |u| {
        u.reload.as_ref().is_some_and(|r| r.is_err())
    })
    .await;
    let err = u.reload.unwrap().unwrap_err();
    assert!(err.to_string().contains("hoist.yaml"), "{err}");
    assert_eq!(input.project().services.len(), 4);
}
