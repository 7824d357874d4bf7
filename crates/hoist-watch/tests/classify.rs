//! Classification tables on a copy of examples/shop.

mod common;

use std::path::{Path, PathBuf};
use std::time::Instant;

use common::{shop_copy, write};
use hoist_config::Project;
use hoist_watch::{Action, Batch, Classifier, Plan, RebuildReason, SyncCopy};

fn batch(root: &Path, changed: &[&str], deleted: &[&str]) -> Batch {
    Batch {
        changed: changed.iter().map(|r| root.join(r)).collect(),
        deleted: deleted.iter().map(|r| root.join(r)).collect(),
        rescan: false,
        first_event: Instant::now(),
    }
}

fn classify(root: &Path, changed: &[&str], deleted: &[&str]) -> Plan {
    let project = Project::load(root).unwrap();
    assert!(project.validate().is_empty(), "{:?}", project.validate());
    Classifier::new(&project, &[]).classify(&batch(root, changed, deleted))
}

/// `service:action` for every service with a plan, and whether a reload is needed.
fn summary(plan: &Plan) -> (Vec<String>, bool) {
    (
        plan.services
            .iter()
            .map(|(n, p)| format!("{n}:{:?}", p.action).to_lowercase())
            .collect(),
        plan.needs_reload(),
    )
}

/// (changed, deleted, expected `service:action`s, reload needed)
type Row = (
    &'static [&'static str],
    &'static [&'static str],
    &'static [&'static str],
    bool,
);

#[test]
fn table_on_the_shop() {
    let tmp = shop_copy();
    let root = tmp.path();
    // (changed, deleted) → (service:action…, reload?)
    let table: &[Row] = &[
        (
            &["services/api/data/products.json"],
            &[],
            &["api:sync"],
            false,
        ),
        (
            &["services/web/public/index.html"],
            &[],
            &["web:sync"],
            false,
        ),
        (&["services/web/public/logo.png"], &[], &["web:sync"], false),
        (
            &[],
            &["services/api/data/products.json"],
            &["api:sync"],
            false,
        ),
        (
            &["services/stats/bin/stats.sh"],
            &[],
            &["stats:rebuild"],
            false,
        ),
        (
            &["services/worker/work.sh"],
            &[],
            &["worker:rebuild"],
            false,
        ),
        (
            &["services/worker/k8s/deployment.yaml"],
            &[],
            &["worker:rerender"],
            true,
        ),
        (
            &["services/worker/k8s/new.yaml"],
            &[],
            &["worker:rerender"],
            true,
        ),
        (&["services/worker/k8s/notes.txt"], &[], &[], false),
        (
            &["services/stats/deploy/overlays/dev/kustomization.yaml"],
            &[],
            &["stats:rerender"],
            true,
        ),
        (
            &["services/stats/deploy/base/deployment.yaml"],
            &[],
            &["stats:rerender"],
            true,
        ),
        (&["services/api/service.yaml"], &[], &["api:rerender"], true),
        (
            &["molds/web/deployment.yaml"],
            &[],
            &["api:rerender", "web:rerender"],
            true,
        ),
        (&["hoist.yaml"], &[], &[], true),
        (&["hoist-settings.yaml"], &[], &[], true),
        (&["services/new/service.yaml"], &[], &[], true),
        (&[], &["services/worker"], &[], true),
        (&["README.md", "services/web/notes.txt"], &[], &[], false),
        (
            &[
                "services/web/public/index.html",
                "services/stats/bin/stats.sh",
            ],
            &[],
            &["stats:rebuild", "web:sync"],
            false,
        ),
        (
            &[
                "services/api/data/products.json",
                "services/api/service.yaml",
            ],
            &[],
            &["api:rerender"],
            true,
        ),
        (&[], &["services/stats/bin"], &["stats:rebuild"], false),
        // The sync source itself removed: a rebuild (which will say the source is missing).
        (&[], &["services/web/public"], &["web:rebuild"], false),
        (&[], &["services/web/public/sub"], &["web:sync"], false),
    ];
    let project = Project::load(root).unwrap();
    assert!(project.validate().is_empty(), "{:?}", project.validate());
    let classifier = Classifier::new(&project, &[]);
    for (changed, deleted, want, reload) in table {
        let plan = classifier.classify(&batch(root, changed, deleted));
        let want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
        assert_eq!(
            summary(&plan),
            (want, *reload),
            "changed {changed:?} deleted {deleted:?}: {plan:#?}"
        );
    }
}

#[test]
fn sync_details_paths_deletes_and_run_triggers() {
    let tmp = shop_copy();
    let root = tmp.path();
    let plan = classify(
        root,
        &[
            "services/api/data/products.json",
            "services/api/data/sub/x.txt",
        ],
        &["services/api/data/old.json"],
    );
    let api = &plan.services["api"];
    assert_eq!(api.action, Action::Sync);
    assert_eq!(
        api.copies,
        [
            SyncCopy {
                local: root.join("services/api/data/products.json"),
                container: "/data/products.json".into()
            },
            SyncCopy {
                local: root.join("services/api/data/sub/x.txt"),
                container: "/data/sub/x.txt".into()
            },
        ]
    );
    assert_eq!(api.deletes, ["/data/old.json"]);
    assert_eq!(api.runs, [0], "the *.json trigger matches");
    assert!(!api.restart);
    // A change the trigger does not match runs nothing.
    let plan = classify(root, &["services/api/data/readme.txt"], &[]);
    assert!(plan.services["api"].runs.is_empty());
    assert!(plan.ignored.is_empty());
    let plan = classify(root, &["README.md"], &[]);
    assert_eq!(plan.ignored, [root.join("README.md")]);
}

#[test]
fn rebuild_names_the_file_and_layer() {
    let tmp = shop_copy();
    let root = tmp.path();
    let plan = classify(root, &["services/stats/bin/stats.sh"], &[]);
    let r = &plan.services["stats"].rebuild;
    assert_eq!(
        r,
        &[RebuildReason::LayerInput {
            file: root.join("services/stats/bin/stats.sh"),
            layer: 1
        }]
    );
    let text = r[0].to_string();
    assert!(
        text.contains("stats.sh is copied into the image (layer 2)"),
        "{text}"
    );
}

/// A layer source that is a symlink (`dist -> build/out`): the build copies the target, so
/// a change under the target is a change of the layer.
#[test]
fn a_symlinked_layer_source_counts_changes_under_its_target() {
    let tmp = shop_copy();
    let root = tmp.path();
    write(
        root,
        "services/site/service.yaml",
        "name: site\nimage:\n  base: scratch\n  layers: [{from: ./dist, to: /www}]\n",
    );
    write(root, "services/site/build/out/index.html", "hi");
    std::os::unix::fs::symlink("build/out", root.join("services/site/dist")).unwrap();
    let plan = classify(root, &["services/site/build/out/index.html"], &[]);
    assert_eq!(
        plan.services["site"].rebuild,
        [RebuildReason::LayerInput {
            file: root.join("services/site/build/out/index.html"),
            layer: 0
        }]
    );
    let plan = classify(root, &[], &["services/site/build/out"]);
    assert!(
        matches!(
            plan.services["site"].rebuild[..],
            [RebuildReason::LayerSourceRemoved { layer: 0, .. }]
        ),
        "{:?}",
        plan.services["site"].rebuild
    );
}

/// Sources outside the project: a layer `from: ../../../shared` and a sync source that is a
/// symlink to a directory elsewhere. Both are watched (`outside_paths`), and changes under
/// them are classified like changes under the declared paths. A source pointed elsewhere
/// asks for a reload, so the new target is watched instead.
#[test]
fn sources_outside_the_project_and_their_link_targets() {
    let tmp = shop_copy();
    let root = tmp.path();
    let elsewhere = tempfile::tempdir().unwrap();
    let out = elsewhere.path();
    write(out, "build/index.html", "hi");
    write(out, "shared/lib.txt", "lib");
    // Relative from the service directory, up to `/` and down again.
    let up = root.join("services/site").components().count() - 1;
    let rel_shared = format!("{}{}/shared", "../".repeat(up), out.display());
    write(
        root,
        "services/site/service.yaml",
        &format!(
            "name: site\nimage:\n  base: scratch\n  layers:\n  - {{from: ./dist, to: /www}}\n  - {{from: {rel_shared}, to: /lib}}\nlive_update:\n  sync: [{{from: ./dist, to: /www}}]\n  run: [{{cmd: \"true\", trigger: [\"dist/**\"]}}]\n"
        ),
    );
    std::os::unix::fs::symlink(out.join("build"), root.join("services/site/dist")).unwrap();
    // A Dockerfile kept outside: it and the ignore file beside it are watched.
    write(out, "df/api.Dockerfile", "FROM scratch\nCOPY . /\n");
    write(
        root,
        "services/dfo/service.yaml",
        &format!(
            "name: dfo\nimage:\n  dockerfile: {}{}/df/api.Dockerfile\n",
            "../".repeat(up),
            out.display()
        ),
    );
    let project = Project::load(root).unwrap();
    assert!(project.validate().is_empty(), "{:?}", project.validate());
    let c = Classifier::new(&project, &[]);
    let outside = c.outside_paths();
    assert!(outside.contains(&out.join("build")), "{outside:?}");
    assert!(outside.contains(&out.join("shared")), "{outside:?}");
    assert!(
        outside.contains(&out.join("df/api.Dockerfile")),
        "{outside:?}"
    );
    assert!(
        outside.contains(&out.join("df/api.Dockerfile.dockerignore")),
        "{outside:?}"
    );
    assert!(outside.iter().all(|p| !p.starts_with(root)), "{outside:?}");

    let changed = |paths: &[PathBuf]| Batch {
        changed: paths.to_vec(),
        deleted: vec![],
        rescan: false,
        first_event: Instant::now(),
    };
    // Under the link's target: synced to the declared destination, the run step's
    // trigger matched against the declared path.
    let plan = c.classify(&changed(&[out.join("build/index.html")]));
    let site = &plan.services["site"];
    assert_eq!(site.action, Action::Sync, "{site:?}");
    assert_eq!(
        site.copies,
        [SyncCopy {
            local: out.join("build/index.html"),
            container: "/www/index.html".into()
        }]
    );
    assert_eq!(site.runs, [0]);
    // Under the `../` source: a layer input.
    let plan = c.classify(&changed(&[out.join("shared/lib.txt")]));
    assert_eq!(
        plan.services["site"].rebuild,
        [RebuildReason::LayerInput {
            file: out.join("shared/lib.txt"),
            layer: 1
        }]
    );
    // Pointed elsewhere: reload (and the old rules still sync the event's files).
    std::fs::remove_file(root.join("services/site/dist")).unwrap();
    std::os::unix::fs::symlink(out.join("shared"), root.join("services/site/dist")).unwrap();
    let plan = c.classify(&changed(&[root.join("services/site/dist")]));
    assert!(plan.needs_reload(), "{plan:?}");
    let c2 = Classifier::new(&Project::load(root).unwrap(), &[]);
    assert!(!c2.outside_paths().contains(&out.join("build")));
    assert!(
        !c2.classify(&changed(&[root.join("services/site/dist")]))
            .needs_reload()
    );
}

/// An ignore file at the top of a layer source changes what the layer takes: the project
/// is reloaded, so the next classifier reads the new rules.
#[test]
fn an_ignore_file_of_a_layer_source_reloads_the_project() {
    let tmp = shop_copy();
    let root = tmp.path();
    write(root, "services/web/public/.dockerignore", "*.tmp\n");
    let plan = classify(root, &["services/web/public/.dockerignore"], &[]);
    assert!(plan.needs_reload(), "{:?}", plan.reload);
    // The file itself is delivered as any file of the layer (web live-updates /www).
    assert!(plan.services.contains_key("web"), "{:?}", plan.services);
    // Deeper down it is an ordinary file of the layer: no reload.
    write(root, "services/web/public/sub/.dockerignore", "x\n");
    let plan = classify(root, &["services/web/public/sub/.dockerignore"], &[]);
    assert!(!plan.needs_reload(), "{:?}", plan.reload);
}

#[test]
fn images_built_on_a_changed_image_are_rebuilt() {
    let tmp = shop_copy();
    let root = tmp.path();
    write(
        root,
        "services/api2/service.yaml",
        "name: api2\nimage:\n  base: api\n  layers: [{from: ./x, to: /x}]\n",
    );
    write(root, "services/api2/x", "x");
    let plan = classify(root, &["services/api/data/products.json"], &[]);
    // Synced into api's container, but api2 needs api's image with it: api is built too.
    let api = &plan.services["api"];
    assert_eq!(api.action, Action::Rebuild, "{api:?}");
    assert_eq!(
        api.rebuild,
        [RebuildReason::BaseOf {
            service: "api2".into(),
            file: root.join("services/api/data/products.json")
        }]
    );
    let api2 = &plan.services["api2"];
    assert_eq!(api2.action, Action::Rebuild);
    assert_eq!(
        api2.rebuild,
        [RebuildReason::BaseImage {
            service: "api".into(),
            file: root.join("services/api/data/products.json")
        }]
    );
}

#[test]
fn dockerfile_services_rebuild_on_context_changes() {
    let tmp = shop_copy();
    let root = tmp.path();
    write(
        root,
        "services/py/service.yaml",
        "name: py\nimage: {dockerfile: Dockerfile, context: app}\nlive_update:\n  sync: [{from: app/static, to: /srv/static}]\n",
    );
    write(root, "services/py/Dockerfile", "FROM scratch\n");
    write(root, "services/py/app/main.py", "");
    write(root, "services/py/app/static/a.css", "");
    let plan = classify(
        root,
        &["services/py/Dockerfile", "services/py/app/main.py"],
        &[],
    );
    let py = &plan.services["py"];
    assert_eq!(py.action, Action::Rebuild);
    assert_eq!(py.rebuild.len(), 2);
    let plan = classify(root, &["services/py/app/static/a.css"], &[]);
    assert_eq!(plan.services["py"].action, Action::Sync);
    assert_eq!(plan.services["py"].copies[0].container, "/srv/static/a.css");
    let plan = classify(root, &["services/py/app/.git/HEAD"], &[]);
    assert!(plan.services.is_empty());
}

/// What a Docker context's `.dockerignore` leaves out cannot change the image (nor its
/// content tag): no rebuild. A file a `!` takes back is an input; the ignore file itself
/// (and `<Dockerfile>.dockerignore`, which the builder reads first) reloads the project.
#[test]
fn dockerfile_contexts_ignore_what_dockerignore_leaves_out() {
    let tmp = shop_copy();
    let root = tmp.path();
    write(
        root,
        "services/py/service.yaml",
        "name: py\nimage: {dockerfile: Dockerfile, context: app}\n",
    );
    write(
        root,
        "services/py/Dockerfile",
        "FROM scratch\nCOPY . /app\n",
    );
    write(root, "services/py/app/main.py", "");
    write(root, "services/py/app/notes.md", "");
    write(root, "services/py/app/docs/a.md", "");
    write(
        root,
        "services/py/app/.dockerignore",
        "*.md\ndocs\n!docs/keep.md\n",
    );
    let plan = classify(root, &["services/py/app/notes.md"], &[]);
    assert!(plan.services.is_empty(), "{:?}", plan.services);
    let plan = classify(root, &["services/py/app/docs/a.md"], &[]);
    assert!(plan.services.is_empty(), "{:?}", plan.services);
    for kept in ["services/py/app/main.py", "services/py/app/docs/keep.md"] {
        let plan = classify(root, &[kept], &[]);
        assert_eq!(plan.services["py"].action, Action::Rebuild, "{kept}");
        assert_eq!(
            plan.services["py"].rebuild,
            [RebuildReason::BuildContext {
                file: root.join(kept)
            }]
        );
    }
    // A deleted excluded directory may have held a file taken back.
    let plan = classify(root, &[], &["services/py/app/docs"]);
    assert_eq!(plan.services["py"].action, Action::Rebuild);
    for ignore in [
        "services/py/app/.dockerignore",
        "services/py/Dockerfile.dockerignore",
    ] {
        write(root, ignore, "*.md\n");
        let plan = classify(root, &[ignore], &[]);
        assert!(plan.needs_reload(), "{ignore}: {:?}", plan.reload);
    }
    // `.hoistignore` is not Docker's: what it lists still goes in.
    std::fs::remove_file(root.join("services/py/Dockerfile.dockerignore")).unwrap();
    write(root, "services/py/app/.hoistignore", "main.py\n");
    let plan = classify(root, &["services/py/app/main.py"], &[]);
    assert_eq!(plan.services["py"].action, Action::Rebuild);
}

#[test]
fn disabled_services_get_no_plan_and_include_filters_apply() {
    let tmp = shop_copy();
    let root = tmp.path();
    write(root, "hoist-settings.yaml", "disabled: [stats]\n");
    let plan = classify(root, &["services/stats/bin/stats.sh"], &[]);
    assert!(plan.services.is_empty(), "{plan:#?}");
    // web's layer takes only *.html and *.css; without its sync rule a .png is nobody's.
    write(
        root,
        "services/web/service.yaml",
        &std::fs::read_to_string(root.join("services/web/service.yaml"))
            .unwrap()
            .replace(
                "live_update:\n  sync:\n    - from: ./public\n      to: /www\n",
                "",
            ),
    );
    let plan = classify(root, &["services/web/public/logo.png"], &[]);
    assert!(plan.services.is_empty(), "{plan:#?}");
    let plan = classify(root, &["services/web/public/site.css"], &[]);
    // The file itself is delivered as any file of the layer (web live-updates /www).
    assert!(plan.services.contains_key("web"), "{:?}", plan.services);
}

#[test]
fn rescan_rebuilds_everything_and_reloads() {
    let tmp = shop_copy();
    let root = tmp.path();
    let project = Project::load(root).unwrap();
    let mut b = batch(root, &[], &[]);
    b.rescan = true;
    let plan = Classifier::new(&project, &[]).classify(&b);
    assert!(plan.needs_reload());
    assert_eq!(plan.services.len(), 4);
    assert!(plan.services.values().all(|p| p.action == Action::Rebuild));
}

#[test]
fn config_inputs_cover_what_ignore_files_must_not_hide() {
    let tmp = shop_copy();
    let root = tmp.path();
    let project = Project::load(root).unwrap();
    let inputs = Classifier::new(&project, &[root.join("services/broken")]).config_inputs();
    for p in [
        "hoist.yaml",
        "hoist-settings.yaml",
        "molds",
        "services/api/service.yaml",
        "services/stats/deploy/overlays/dev",
        "services/stats/deploy/base",
        "services/broken",
    ] {
        assert!(inputs.contains(&root.join(p)), "{p}: {inputs:#?}");
    }
    let _: Vec<PathBuf> = inputs;
    let protected = Classifier::new(&project, &[]).protected_paths();
    for p in [
        "services/api/data",
        "services/web/public",
        "services/worker/work.sh",
    ] {
        assert!(protected.contains(&root.join(p)), "{p}: {protected:#?}");
    }
    assert!(
        !protected.contains(&PathBuf::from("/bin/busybox")),
        "outside the project"
    );
}

#[test]
fn helm_restart_and_path_triggers() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    write(root, "hoist.yaml", "name: p\n");
    write(
        root,
        "services/h/service.yaml",
        "name: h\nhelm: {chart: ./chart, values_files: [values-dev.yaml]}\n\
         image: {base: scratch, layers: [{from: ./src, to: /app}]}\n\
         live_update:\n  sync: [{from: ./src, to: /app}]\n  run:\n    - {cmd: make, trigger: [\"src/gen/*.proto\"]}\n    - {cmd: always}\n    - {cmd: css, trigger: [\"*.css\"]}\n  restart: true\n",
    );
    write(root, "services/h/chart/Chart.yaml", "name: h\n");
    write(root, "services/h/values-dev.yaml", "");
    write(root, "services/h/src/gen/a.proto", "");
    // helm is not installed here: the project loads (render would say so), classification works.
    let project = Project::load(root).unwrap();
    let c = Classifier::new(&project, &[]);
    let plan = c.classify(&batch(root, &["services/h/chart/templates/d.yaml"], &[]));
    assert_eq!(plan.services["h"].action, Action::Rerender);
    let plan = c.classify(&batch(root, &["services/h/values-dev.yaml"], &[]));
    assert_eq!(plan.services["h"].action, Action::Rerender);
    let plan = c.classify(&batch(root, &["services/h/src/gen/a.proto"], &[]));
    let h = &plan.services["h"];
    assert_eq!(
        (h.action, h.runs.clone(), h.restart),
        (Action::Sync, vec![0, 1], true)
    );
    assert_eq!(h.copies[0].container, "/app/gen/a.proto");
    let plan = c.classify(&batch(root, &["services/h/src/a.proto"], &[]));
    assert_eq!(
        plan.services["h"].runs,
        [1],
        "the path trigger is relative to the service"
    );
}
