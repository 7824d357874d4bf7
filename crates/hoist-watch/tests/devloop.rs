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
    // Started from a service directory: the project is found above it.
    let (mut input, first) = DevLoopInput::start(&root.join("services/api"), vec![], opts)
        .await
        .unwrap();
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

    // A config edit that changes nothing rendered, with a synced file in the same batch:
    // the reload is a no-op and the synced file is still synced.
    let svc = std::fs::read_to_string(root.join("services/api/service.yaml")).unwrap();
    write(root, "services/api/service.yaml", &format!("# note\n{svc}"));
    write(root, "services/api/data/more.json", "{}");
    let u = until(&mut input, |u| u.plan.services.contains_key("api")).await;
    // (Both files land in one batch unless this test paused 100 ms between them.)
    if let Some(reload) = &u.reload {
        assert!(reload.as_ref().unwrap().is_noop());
    }
    let api = &u.plan.services["api"];
    assert_eq!(api.action, Action::Sync, "{api:?}");
    assert_eq!(api.copies[0].container, "/data/more.json");

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
    write(
        root,
        "services/web/public/index.html",
        "<p>still synced</p>",
    );
    let u = until(&mut input, |u| {
        u.reload.as_ref().is_some_and(|r| r.is_err())
    })
    .await;
    // (Unless the test paused 100 ms between the two writes, web's edit is in this batch.)
    if let Some(web) = u.plan.services.get("web") {
        assert_eq!(web.action, Action::Sync, "live updates go on: {web:?}");
        assert_eq!(web.copies[0].container, "/www/index.html");
    }
    let err = u.reload.unwrap().unwrap_err();
    assert!(err.to_string().contains("hoist.yaml"), "{err}");
    assert_eq!(input.project().services.len(), 4);
}

#[tokio::test]
async fn next_is_cancel_safe_while_a_reload_runs() {
    let tmp = shop_copy();
    let root = tmp.path();
    let (mut input, _) = DevLoopInput::start(root, vec![], WatchOptions::default())
        .await
        .unwrap();
    // hoist.yaml values reach every service: the reload renders all four again,
    // kustomize included (~100+ ms), far longer than the 2 ms polls below.
    let file = root.join("hoist.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, text.replace("log_level: info", "log_level: debug")).unwrap();
    // Poll with tiny timeouts: futures dropped mid-reload must not lose it.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut cancelled = 0;
    let update = loop {
        assert!(Instant::now() < deadline, "no update");
        match tokio::time::timeout(Duration::from_millis(2), input.next()).await {
            Ok(u) => break u.unwrap().unwrap(),
            Err(_) => cancelled += 1,
        }
    };
    assert!(cancelled > 0);
    let o = update.reload.expect("the reload").unwrap();
    assert_eq!(o.rendered.len(), 4);
    let changed: Vec<&str> = o.changed.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        changed,
        ["api", "web"],
        "the mold users log at the new level"
    );
    assert!(input.project().service("api").unwrap().values["log_level"] == "debug");
}

/// A layer source that is a symlink to a build directory outside the project: edits there
/// rebuild the service (from the moment `start` returns), and pointing the link at another
/// directory moves the watch there.
#[tokio::test]
async fn a_layer_source_linked_outside_the_project_is_watched() {
    use hoist_watch::RebuildReason;
    let tmp = shop_copy();
    let root = tmp.path();
    let elsewhere = tempfile::tempdir().unwrap();
    let (one, two) = (elsewhere.path().join("one"), elsewhere.path().join("two"));
    write(&one, "app.js", "1");
    write(&two, "app.js", "1");
    write(
        root,
        "services/site/service.yaml",
        "name: site\nimage:\n  base: scratch\n  layers: [{from: ./dist, to: /app}]\n",
    );
    std::os::unix::fs::symlink(&one, root.join("services/site/dist")).unwrap();
    let opts = WatchOptions {
        debounce: Duration::from_millis(100),
        ..WatchOptions::default()
    };
    let (mut input, _) = DevLoopInput::start(root, vec![], opts).await.unwrap();
    let rebuilt = |file: std::path::PathBuf| {
        move |u: &Update| {
            u.plan.services.get("site").is_some_and(|p| {
                p.rebuild.contains(&RebuildReason::LayerInput {
                    file: file.clone(),
                    layer: 0,
                })
            })
        }
    };
    write(&one, "app.js", "2");
    until(&mut input, rebuilt(one.join("app.js"))).await;

    // `ln -sfn ../two dist`: a new link renamed over the old one.
    std::os::unix::fs::symlink(&two, root.join("services/site/dist.new")).unwrap();
    std::fs::rename(
        root.join("services/site/dist.new"),
        root.join("services/site/dist"),
    )
    .unwrap();
    let u = until(&mut input, |u| u.reload.is_some()).await;
    assert_eq!(u.plan.services["site"].action, Action::Rebuild, "{u:?}");
    write(&two, "app.js", "2");
    until(&mut input, rebuilt(two.join("app.js"))).await;
    // The old target no longer matters (nor is it watched).
    write(&one, "app.js", "3");
    write(&two, "app.js", "3");
    let u = until(&mut input, |u| u.plan.services.contains_key("site")).await;
    assert!(
        u.batch.changed.iter().all(|p| !p.starts_with(&one)),
        "{:?}",
        u.batch
    );
}

/// The first run with a bundler: `dist` links to a build directory outside the project that
/// does not exist yet, so the service is invalid at start. Making the directory later is
/// its fix: the project reloads and the service is added.
#[tokio::test]
async fn an_invalid_service_comes_up_when_its_outside_source_is_made() {
    let tmp = shop_copy();
    let root = tmp.path();
    let elsewhere = tempfile::tempdir().unwrap();
    let out = elsewhere.path().join("web/build/dist");
    write(
        root,
        "services/site/service.yaml",
        "name: site\nimage:\n  base: scratch\n  layers: [{from: ./dist, to: /app}]\n",
    );
    std::os::unix::fs::symlink(&out, root.join("services/site/dist")).unwrap();
    let opts = WatchOptions {
        debounce: Duration::from_millis(100),
        ..WatchOptions::default()
    };
    let (mut input, first) = DevLoopInput::start(root, vec![], opts).await.unwrap();
    assert!(first.invalid.iter().any(|i| i.name == "site"), "{first:?}");
    assert!(!first.added.contains(&"site".to_string()));
    write(&out, "app.js", "1");
    let u = until(&mut input, |u| {
        u.reload.as_ref().is_some_and(|r| {
            r.as_ref()
                .is_ok_and(|o| o.added.contains(&"site".to_string()))
        })
    })
    .await;
    assert!(u.reload.unwrap().unwrap().invalid.is_empty());
}
