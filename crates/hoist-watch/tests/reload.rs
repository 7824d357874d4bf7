//! Project reload on a copy of examples/shop: added, removed, changed, invalid.

mod common;

use common::{shop_copy, write};
use hoist_config::ErrorKind;
use hoist_watch::{Reloader, ServiceChange};

fn edit(root: &std::path::Path, rel: &str, from: &str, to: &str) {
    let p = root.join(rel);
    let text = std::fs::read_to_string(&p).unwrap();
    assert!(text.contains(from), "{rel} has no {from:?}");
    std::fs::write(p, text.replacen(from, to, 1)).unwrap();
}

#[test]
fn first_load_adds_every_enabled_service_then_nothing_changes() {
    let tmp = shop_copy();
    let mut r = Reloader::new(tmp.path(), vec![]);
    let o = r.reload().unwrap();
    assert_eq!(o.added, ["api", "stats", "web", "worker"]);
    assert!(o.removed.is_empty() && o.changed.is_empty() && o.invalid.is_empty());
    let o = r.reload().unwrap();
    assert!(o.is_noop(), "{o:?}");
}

#[test]
fn changes_are_told_apart_render_vs_image() {
    let tmp = shop_copy();
    let root = tmp.path();
    let mut r = Reloader::new(root, vec![]);
    r.reload().unwrap();
    // A comment changes nothing rendered.
    edit(
        root,
        "services/api/service.yaml",
        "name: api\n",
        "name: api # hi\n",
    );
    assert!(r.reload().unwrap().is_noop());
    edit(
        root,
        "services/api/service.yaml",
        "replicas: 1",
        "replicas: 3",
    );
    let o = r.reload().unwrap();
    assert_eq!(
        o.changed,
        [ServiceChange {
            name: "api".into(),
            render: true,
            image: false
        }]
    );
    edit(
        root,
        "services/web/service.yaml",
        "\"8080\", \"-h\"",
        "\"8081\", \"-h\"",
    );
    let o = r.reload().unwrap();
    assert_eq!(
        o.changed,
        [ServiceChange {
            name: "web".into(),
            render: false,
            image: true
        }]
    );
    // A mold change re-renders both of its users, nobody else.
    edit(
        root,
        "molds/web/deployment.yaml",
        "kind: Deployment",
        "kind: Deployment\n# x",
    );
    edit(
        root,
        "molds/web/svc.yaml",
        "spec:",
        "spec:\n  sessionAffinity: None",
    );
    let o = r.reload().unwrap();
    let names: Vec<&str> = o.changed.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["api", "web"]);
    // hoist.yaml values reach every mold user.
    edit(root, "hoist.yaml", "log_level: info", "log_level: debug");
    let o = r.reload().unwrap();
    let names: Vec<&str> = o.changed.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["api", "web"]);
}

#[test]
fn services_appear_disappear_and_are_disabled() {
    let tmp = shop_copy();
    let root = tmp.path();
    let mut r = Reloader::new(root, vec![]);
    r.reload().unwrap();
    write(
        root,
        "services/extra/service.yaml",
        "name: extra\nk8s: [cm.yaml]\n",
    );
    write(
        root,
        "services/extra/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: extra}\n",
    );
    let o = r.reload().unwrap();
    assert_eq!(o.added, ["extra"]);
    assert!(o.project.service("extra").is_some());
    std::fs::remove_dir_all(root.join("services/extra")).unwrap();
    let o = r.reload().unwrap();
    assert_eq!(o.removed, ["extra"]);
    write(root, "hoist-settings.yaml", "disabled: [stats]\n");
    let o = r.reload().unwrap();
    assert_eq!(o.removed, ["stats"]);
    assert!(o.added.is_empty() && o.changed.is_empty());
}

#[test]
fn a_broken_service_is_reported_and_nothing_else_is_disturbed() {
    let tmp = shop_copy();
    let root = tmp.path();
    let mut r = Reloader::new(root, vec![]);
    r.reload().unwrap();
    let good = std::fs::read_to_string(root.join("services/worker/service.yaml")).unwrap();
    write(
        root,
        "services/worker/service.yaml",
        &good.replace("depends_on: [api]", "depends_on: [api]\nreplicsa: 2"),
    );
    let o = r.reload().unwrap();
    assert!(o.is_noop(), "others untouched, worker not removed: {o:?}");
    assert_eq!(o.invalid.len(), 1);
    let bad = &o.invalid[0];
    assert_eq!(bad.name, "worker");
    assert_eq!(bad.dir, root.join("services/worker"));
    let e = &bad.errors[0];
    assert_eq!(e.kind, ErrorKind::UnknownField);
    let loc = e.location.as_ref().unwrap();
    assert_eq!(loc.file, root.join("services/worker/service.yaml"));
    assert_eq!(loc.line, good.lines().count() + 1);
    let names: Vec<&str> = o.project.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["api", "stats", "web"]);
    hoist_config::render(&o.project, &Default::default()).unwrap();
    // Fixed as it was: no change at all.
    write(root, "services/worker/service.yaml", &good);
    let o = r.reload().unwrap();
    assert!(o.is_noop() && o.invalid.is_empty(), "{o:?}");
    // Broken and then fixed differently: a change.
    write(
        root,
        "services/worker/service.yaml",
        "name: worker\nk8s: [nope/*.yaml]\n",
    );
    let o = r.reload().unwrap();
    assert_eq!(o.invalid[0].errors[0].kind, ErrorKind::MissingFile);
    write(
        root,
        "services/worker/service.yaml",
        &good.replace("depends_on: [api]", "depends_on: []"),
    );
    let o = r.reload().unwrap();
    assert!(o.invalid.is_empty());
    assert_eq!(o.changed.len(), 0, "depends_on is not rendered: {o:?}");
}

#[test]
fn a_broken_hoist_yaml_fails_the_reload_with_its_location() {
    let tmp = shop_copy();
    let root = tmp.path();
    let mut r = Reloader::new(root, vec![]);
    r.reload().unwrap();
    edit(root, "hoist.yaml", "molds: molds", "molds: [molds");
    let err = r.reload().unwrap_err();
    let loc = err.0[0].location.as_ref().expect("located");
    assert_eq!(loc.file, root.join("hoist.yaml"));
    // Fixed: the reload sees the same services as before (nothing to do).
    edit(root, "hoist.yaml", "molds: [molds", "molds: molds");
    assert!(r.reload().unwrap().is_noop());
}
