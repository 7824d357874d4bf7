//! The watcher on real inotify, in tempdirs.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hoist_watch::{Batch, WatchError, WatchOptions, Watcher};

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

/// A watcher with a wide window: on a loaded machine the test itself may pause
/// inside one logical change (open, write, close) longer than the default 30 ms.
fn start(root: &Path) -> Watcher {
    let opts = WatchOptions {
        debounce: Duration::from_millis(100),
        ..WatchOptions::default()
    };
    Watcher::start(root, opts).unwrap()
}

/// The next batch within `wait`, or None.
async fn next(w: &mut Watcher, wait: Duration) -> Option<Batch> {
    match tokio::time::timeout(wait, w.next()).await {
        Ok(Some(Ok(b))) => Some(b),
        Ok(Some(Err(e))) => panic!("watch error: {e}"),
        Ok(None) => panic!("watcher stopped"),
        Err(_) => None,
    }
}

/// Batches merged until `done` holds (bounded by 5 s).
async fn until(w: &mut Watcher, done: impl Fn(&Batch) -> bool) -> Batch {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut all = Batch {
        changed: vec![],
        deleted: vec![],
        rescan: false,
        first_event: Instant::now(),
    };
    while !done(&all) {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "timed out; got so far: {all:?}");
        if let Some(b) = next(w, left).await {
            all.changed.extend(b.changed);
            all.deleted.extend(b.deleted);
            all.rescan |= b.rescan;
        }
    }
    all.changed.sort();
    all.changed.dedup();
    all.deleted.sort();
    all.deleted.dedup();
    all
}

/// No batch arrives within a quiet period (what was written is ignored).
async fn quiet(w: &mut Watcher) {
    if let Some(b) = next(w, Duration::from_millis(300)).await {
        panic!("expected nothing, got {b:?}");
    }
}

fn paths(root: &Path, rels: &[&str]) -> Vec<PathBuf> {
    rels.iter().map(|r| root.join(r)).collect()
}

#[tokio::test]
async fn create_modify_delete_rename() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    write(root, "a.txt", "1");
    let mut w = start(root);

    write(root, "b.txt", "new");
    let b = until(&mut w, |b| !b.changed.is_empty()).await;
    assert_eq!(b.changed, paths(root, &["b.txt"]));
    assert!(b.deleted.is_empty());

    write(root, "a.txt", "2");
    let b = until(&mut w, |b| !b.changed.is_empty()).await;
    assert_eq!(b.changed, paths(root, &["a.txt"]));

    std::fs::remove_file(root.join("b.txt")).unwrap();
    let b = until(&mut w, |b| !b.deleted.is_empty()).await;
    assert_eq!(b.deleted, paths(root, &["b.txt"]));
    assert!(b.changed.is_empty());

    std::fs::rename(root.join("a.txt"), root.join("c.txt")).unwrap();
    let b = until(&mut w, |b| !b.deleted.is_empty() && !b.changed.is_empty()).await;
    assert_eq!(b.deleted, paths(root, &["a.txt"]));
    assert_eq!(b.changed, paths(root, &["c.txt"]));
    w.stop();
}

#[tokio::test]
async fn atomic_save_is_one_change_of_the_real_file() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    write(root, "svc/index.html", "old");
    // A wide window: on a loaded machine the test itself may pause between its
    // write and rename longer than the default 30 ms (an editor does not).
    let opts = WatchOptions {
        debounce: Duration::from_millis(150),
        ..WatchOptions::default()
    };
    let mut w = Watcher::start(root, opts).unwrap();
    // What editors do: write a temp file next to it, rename it over the original.
    for temp in ["svc/.index.html.tmp.1234", "svc/index.html.new", "svc/4913"] {
        write(root, temp, "new");
        if temp.ends_with("4913") {
            std::fs::remove_file(root.join(temp)).unwrap(); // vim's probe file
        } else {
            std::fs::rename(root.join(temp), root.join("svc/index.html")).unwrap();
        }
    }
    let b = until(&mut w, |b| !b.changed.is_empty()).await;
    assert_eq!(b.changed, paths(root, &["svc/index.html"]));
    assert!(b.deleted.is_empty(), "temp files never show: {b:?}");
    quiet(&mut w).await;
}

#[tokio::test]
async fn default_ignored_dirs_cost_no_watches_and_report_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    for d in [
        ".git/objects/ab",
        "target/debug/deps",
        "svc/node_modules/x/lib",
    ] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    write(root, "svc/app.js", "");
    let mut w = start(root);
    assert_eq!(w.watch_count(), 2, "root and svc only");
    write(root, ".git/index", "x");
    write(root, "target/debug/deps/libx.rlib", "x");
    write(root, "svc/node_modules/x/lib/i.js", "x");
    write(root, "svc/target/new/file", "x"); // a new ignored dir: not watched either
    write(root, "svc/.app.js.swp", "x");
    quiet(&mut w).await;
    assert_eq!(w.watch_count(), 2);
    write(root, "svc/app.js", "1");
    let b = until(&mut w, |b| !b.changed.is_empty()).await;
    assert_eq!(b.changed, paths(root, &["svc/app.js"]));
}

#[tokio::test]
async fn ignore_files_are_honoured_and_reloaded() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    write(root, ".gitignore", "*.log\n/build/\n");
    write(root, "svc/.dockerignore", "*.md\n");
    write(root, "svc/.hoistignore", "cache/\n");
    std::fs::create_dir_all(root.join("build")).unwrap();
    std::fs::create_dir_all(root.join("svc/cache")).unwrap();
    let mut w = start(root);
    write(root, "x.log", "");
    write(root, "svc/deep/y.log", "");
    write(root, "build/out", "");
    write(root, "svc/notes.md", "");
    write(root, "svc/cache/blob", "");
    // Only the directory `svc/deep` is new and not ignored, and it holds only a .log.
    quiet(&mut w).await;
    // .dockerignore is anchored: a .md deeper down is not ignored by svc/.dockerignore.
    write(root, "svc/deep/readme.md", "");
    let b = until(&mut w, |b| !b.changed.is_empty()).await;
    assert_eq!(b.changed, paths(root, &["svc/deep/readme.md"]));
    // Editing an ignore file changes what is seen (the file itself is reported too).
    write(root, ".gitignore", "/build/\n");
    let b = until(&mut w, |b| !b.changed.is_empty()).await;
    assert_eq!(b.changed, paths(root, &[".gitignore"]));
    write(root, "x.log", "again");
    let b = until(&mut w, |b| !b.changed.is_empty()).await;
    assert_eq!(b.changed, paths(root, &["x.log"]));
    // Un-ignoring a directory starts watching it.
    write(root, "svc/.hoistignore", "");
    until(&mut w, |b| !b.changed.is_empty()).await;
    write(root, "svc/cache/blob", "2");
    let b = until(&mut w, |b| !b.changed.is_empty()).await;
    assert_eq!(b.changed, paths(root, &["svc/cache/blob"]));
}

#[tokio::test]
async fn config_files_are_seen_even_when_an_ignore_file_lists_them() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    write(root, "svc/.dockerignore", "service.yaml\nk8s\n");
    write(root, "svc/k8s/d.yaml", "");
    let opts = WatchOptions {
        protected: vec![root.join("svc/k8s")],
        ..WatchOptions::default()
    };
    let mut w = Watcher::start(root, opts).unwrap();
    write(root, "svc/service.yaml", "name: svc\n");
    write(root, "svc/k8s/d.yaml", "x");
    let b = until(&mut w, |b| b.changed.len() == 2).await;
    assert_eq!(
        b.changed,
        paths(root, &["svc/k8s/d.yaml", "svc/service.yaml"])
    );
}

#[tokio::test]
async fn protected_layer_sources_are_watched_despite_ignore_rules() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    write(root, ".gitignore", "dist/\n*.log\n");
    write(root, "svc/dist/app.js", "");
    write(root, "svc/dist/.dockerignore", "*.map\n");
    write(root, "svc/target/release/app", "");
    let opts = WatchOptions {
        protected: vec![root.join("svc/dist"), root.join("svc/target/release/app")],
        ..WatchOptions::default()
    };
    let mut w = Watcher::start(root, opts).unwrap();
    write(root, "other/dist/x.js", ""); // not protected: ignored as .gitignore says
    write(root, "svc/dist/app.js.map", ""); // the .dockerignore inside still applies
    write(root, "svc/dist/debug.log", ""); // so does *.log from the root .gitignore
    write(root, "svc/target/release/app.d", ""); // target/ is ignored but for the app
    write(root, "svc/target/debug/app", "");
    quiet(&mut w).await;
    write(root, "svc/dist/app.js", "built");
    write(root, "svc/target/release/app", "built");
    let b = until(&mut w, |b| b.changed.len() == 2).await;
    assert_eq!(
        b.changed,
        paths(root, &["svc/dist/app.js", "svc/target/release/app"])
    );
}

#[tokio::test]
async fn new_directories_are_watched_with_files_made_before_the_watch() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let mut w = start(root);
    let before = w.watch_count();
    write(root, "services/new/deep/er/f.txt", "1");
    write(root, "services/new/service.yaml", "name: new\n");
    let b = until(&mut w, |b| b.changed.len() == 2).await;
    assert_eq!(
        b.changed,
        paths(
            root,
            &["services/new/deep/er/f.txt", "services/new/service.yaml"]
        )
    );
    assert_eq!(w.watch_count(), before + 4);
    write(root, "services/new/deep/er/g.txt", "2");
    let b = until(&mut w, |b| !b.changed.is_empty()).await;
    assert_eq!(b.changed, paths(root, &["services/new/deep/er/g.txt"]));

    // A directory moved in from outside the project.
    let outside = tempfile::tempdir().unwrap();
    write(outside.path(), "moved/a/b.txt", "");
    std::fs::rename(outside.path().join("moved"), root.join("moved")).unwrap();
    let b = until(&mut w, |b| !b.changed.is_empty()).await;
    assert_eq!(b.changed, paths(root, &["moved/a/b.txt"]));

    // A deleted directory is reported, its watches dropped; recreated, it works again.
    std::fs::remove_dir_all(root.join("services/new")).unwrap();
    let b = until(&mut w, |b| b.deleted.contains(&root.join("services/new"))).await;
    assert!(b.deleted.contains(&root.join("services/new/service.yaml")));
    assert_eq!(
        w.watch_count(),
        before + 3,
        "services/, moved/ and moved/a remain"
    );
    write(root, "services/new/service.yaml", "name: new\n");
    let b = until(&mut w, |b| !b.changed.is_empty()).await;
    assert_eq!(b.changed, paths(root, &["services/new/service.yaml"]));
}

#[tokio::test]
async fn a_directory_moved_away_is_deleted_and_forgotten() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    write(root, "svc/public/a.html", "");
    let mut w = start(root);
    let outside = tempfile::tempdir().unwrap();
    std::fs::rename(root.join("svc/public"), outside.path().join("public")).unwrap();
    let b = until(&mut w, |b| !b.deleted.is_empty()).await;
    assert_eq!(b.deleted, paths(root, &["svc/public"]));
    // Writes in its new place outside the project are not reported.
    write(outside.path(), "public/a.html", "x");
    quiet(&mut w).await;
}

#[tokio::test]
async fn a_directory_renamed_inside_the_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    write(root, "svc/old/sub/a.txt", "");
    let mut w = start(root);
    let before = w.watch_count();
    std::fs::rename(root.join("svc/old"), root.join("svc/new")).unwrap();
    let b = until(&mut w, |b| !b.deleted.is_empty() && !b.changed.is_empty()).await;
    assert_eq!(b.deleted, paths(root, &["svc/old"]));
    assert_eq!(b.changed, paths(root, &["svc/new/sub/a.txt"]));
    assert_eq!(
        w.watch_count(),
        before,
        "old watches dropped, new ones added"
    );
    // Events under the new name carry the new paths.
    write(root, "svc/new/sub/a.txt", "x");
    let b = until(&mut w, |b| !b.changed.is_empty()).await;
    assert_eq!(b.changed, paths(root, &["svc/new/sub/a.txt"]));
}

#[tokio::test]
async fn a_burst_of_writes_is_one_batch() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let window = Duration::from_millis(100);
    let opts = WatchOptions {
        debounce: window,
        ..WatchOptions::default()
    };
    let mut w = Watcher::start(root, opts).unwrap();
    let mut last = Instant::now();
    let mut max_gap = Duration::ZERO;
    for i in 0..20 {
        write(root, &format!("f{:02}.txt", i % 10), &i.to_string());
        max_gap = max_gap.max(last.elapsed());
        last = Instant::now();
        std::thread::sleep(Duration::from_millis(2));
    }
    let b = next(&mut w, Duration::from_secs(5)).await.expect("a batch");
    // It is not delivered before the quiet period has passed.
    assert!(b.first_event.elapsed() >= window);
    if max_gap < window / 2 {
        assert_eq!(b.changed.len(), 10, "{b:?}");
        quiet(&mut w).await;
    } else {
        // The machine paused this test longer than the window: the burst may be split.
        eprintln!("writes paused {max_gap:?}; checking the union only");
        let rest = until(&mut w, |r| r.changed.len() + b.changed.len() >= 10).await;
        assert!(rest.changed.len() + b.changed.len() >= 10);
    }
}

#[tokio::test]
async fn a_busy_consumer_gets_one_merged_batch() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let mut w = Watcher::start(root, WatchOptions::default()).unwrap();
    write(root, "first", "");
    tokio::time::sleep(Duration::from_millis(150)).await;
    // The first batch waits in the channel; these merge into a second one.
    for i in 0..5 {
        write(root, &format!("later{i}"), "");
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    let b1 = next(&mut w, Duration::from_secs(5)).await.unwrap();
    assert_eq!(b1.changed, paths(root, &["first"]));
    let b2 = until(&mut w, |b| b.changed.len() == 5).await;
    assert_eq!(b2.changed.len(), 5);
}

#[tokio::test]
async fn lost_events_are_a_rescan_batch_and_watching_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let mut w = start(root);
    std::fs::create_dir_all(root.join("lost/dir")).unwrap();
    // Injected: the overflow event notify forwards from the kernel (IN_Q_OVERFLOW).
    w.inject_event(
        notify::Event::new(notify::EventKind::Other).set_flag(notify::event::Flag::Rescan),
    );
    let b = until(&mut w, |b| b.rescan).await;
    assert!(b.rescan);
    write(root, "lost/dir/f.txt", "");
    let b = until(&mut w, |b| !b.changed.is_empty()).await;
    assert_eq!(b.changed, paths(root, &["lost/dir/f.txt"]));
}

#[test]
fn watch_limit_at_start_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    for d in ["a/b", "c"] {
        std::fs::create_dir_all(tmp.path().join(d)).unwrap();
    }
    // Injected ENOSPC (the real limit is system-wide and must not be lowered here).
    let opts = WatchOptions {
        inject_watch_limit_after: Some(2),
        ..WatchOptions::default()
    };
    let err = Watcher::start(tmp.path(), opts).err().expect("limit error");
    assert!(matches!(err, WatchError::WatchLimit { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("fs.inotify.max_user_watches = "), "{msg}");
    assert!(
        msg.contains("sudo sysctl fs.inotify.max_user_watches="),
        "{msg}"
    );
}

#[tokio::test]
async fn watch_limit_for_a_new_directory_is_reported_and_watching_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let opts = WatchOptions {
        inject_watch_limit_after: Some(1),
        ..WatchOptions::default()
    };
    let mut w = Watcher::start(root, opts).unwrap();
    std::fs::create_dir(root.join("new")).unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), w.next())
        .await
        .unwrap()
        .unwrap();
    let err = got.expect_err("the injected limit");
    assert!(err.is_limit());
    assert!(
        err.to_string()
            .contains(&root.join("new").display().to_string())
    );
    write(root, "still.txt", "");
    let b = until(&mut w, |b| b.changed.contains(&root.join("still.txt"))).await;
    assert!(b.changed.contains(&root.join("still.txt")));
}

/// Paths outside the root (a layer source `../shared`, a symlink's target) are watched
/// when asked: changes below them, the directory emptied and made again as a build does,
/// a single file saved atomically. Their siblings are not reported, the default patterns
/// still hide `node_modules/`, and taking the paths back removes their watches.
#[tokio::test]
async fn paths_outside_the_root_are_watched_when_asked() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, out) = (tmp.path().join("project"), tmp.path().join("elsewhere"));
    write(&root, "a.txt", "1");
    write(&out, "build/app.js", "1");
    write(&out, "conf.yaml", "a: 1");
    write(&out, "sibling.txt", "x");
    let mut w = start(&root);
    let alone = w.watch_count();
    w.set_outside(vec![
        out.join("build"),
        out.join("conf.yaml"),
        // Inside the root, or holding it: left out.
        root.join("a.txt"),
        tmp.path().to_path_buf(),
    ]);
    w.settled().await;
    // build/ and the parent both hold: elsewhere/ and elsewhere/build/.
    assert_eq!(w.watch_count(), alone + 2);

    write(&out, "build/app.js", "2");
    let b = until(&mut w, |b| !b.changed.is_empty()).await;
    assert_eq!(b.changed, [out.join("build/app.js")]);

    write(&out, "sibling.txt", "y");
    write(&out, "build/node_modules/x/index.js", "y");
    quiet(&mut w).await;

    // A build that removes its output directory and writes it again.
    std::fs::remove_dir_all(out.join("build")).unwrap();
    let b = until(&mut w, |b| !b.deleted.is_empty()).await;
    assert!(b.deleted.contains(&out.join("build")), "{b:?}");
    write(&out, "build/sub/app.js", "3");
    let b = until(&mut w, |b| {
        b.changed.contains(&out.join("build/sub/app.js"))
    })
    .await;
    assert!(b.deleted.is_empty(), "{b:?}");

    // A single file, saved atomically.
    write(&out, "conf.yaml.tmp", "a: 2");
    std::fs::rename(out.join("conf.yaml.tmp"), out.join("conf.yaml")).unwrap();
    let b = until(&mut w, |b| !b.changed.is_empty()).await;
    assert_eq!(b.changed, [out.join("conf.yaml")]);

    w.set_outside(vec![]);
    w.settled().await;
    assert_eq!(w.watch_count(), alone);
    write(&out, "build/sub/app.js", "4");
    write(&out, "conf.yaml", "a: 3");
    quiet(&mut w).await;
    write(&root, "a.txt", "2");
    let b = until(&mut w, |b| !b.changed.is_empty()).await;
    assert_eq!(b.changed, [root.join("a.txt")]);
    w.stop();
}

/// An outside path whose directories do not exist yet (a build output before the first
/// build): the nearest directory above it is watched, and when the path's directories
/// appear, what is written in them is reported.
#[tokio::test]
async fn an_outside_path_not_made_yet_is_watched_once_it_appears() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, out) = (tmp.path().join("project"), tmp.path().join("elsewhere"));
    write(&root, "a.txt", "1");
    std::fs::create_dir_all(&out).unwrap();
    let build = out.join("web/build/dist");
    let mut w = start(&root);
    let alone = w.watch_count();
    w.set_outside(vec![build.clone()]);
    w.settled().await;
    assert_eq!(w.watch_count(), alone + 1, "elsewhere/ is watched");
    write(&out, "unrelated.txt", "x");
    quiet(&mut w).await;
    // The first build: all of it at once, as `mkdir -p` and a bundler do.
    write(&build, "app.js", "1");
    let b = until(&mut w, |b| b.changed.contains(&build.join("app.js"))).await;
    assert!(b.changed.iter().all(|p| p.starts_with(&build)), "{b:?}");
    // Then an edit in it, seen by its own watch.
    write(&build, "app.js", "2");
    let b = until(&mut w, |b| !b.changed.is_empty()).await;
    assert_eq!(b.changed, [build.join("app.js")]);
    w.stop();
}
