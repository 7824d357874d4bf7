//! Golden tests of `render` on examples/shop (the snapshots are committed; a
//! change in output fails the test until the snapshot is reviewed).

use std::path::{Path, PathBuf};

use hoist_config::{Project, RenderOptions, render, to_json, to_yaml};

fn shop() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/shop")
}

/// A copy of the shop in a tempdir (so tests can add settings or edit files).
fn shop_copy() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&shop(), tmp.path());
    // A developer's real settings file in the checkout must not leak in.
    let _ = std::fs::remove_file(tmp.path().join("hoist-settings.yaml"));
    tmp
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), &dest).unwrap();
        }
    }
}

fn tagged(tag: &str) -> RenderOptions {
    RenderOptions {
        services: vec![],
        tag: Some(tag.into()),
    }
}

#[test]
fn shop_is_valid() {
    let tmp = shop_copy();
    let p = Project::load(tmp.path()).unwrap();
    assert!(p.validate().is_empty(), "{:#?}", p.validate());
    let names: Vec<&str> = p.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["api", "stats", "web", "worker"]);
}

#[test]
fn shop_render_yaml() {
    let tmp = shop_copy();
    let p = Project::load(tmp.path()).unwrap();
    let objs = render(&p, &tagged("dev")).unwrap();
    insta::assert_snapshot!("shop_render", to_yaml(&objs));
}

#[test]
fn shop_render_with_example_settings_and_set() {
    let tmp = shop_copy();
    std::fs::copy(
        tmp.path().join("hoist-settings.example.yaml"),
        tmp.path().join("hoist-settings.yaml"),
    )
    .unwrap();
    let sets = ["services.api.replicas=3".parse().unwrap()];
    let p = Project::load_with(tmp.path(), &sets).unwrap();
    assert!(p.validate().is_empty(), "{:#?}", p.validate());
    let objs = render(&p, &tagged("dev")).unwrap();
    // stats is disabled by the settings file; web has 2 replicas, api 3 (--set).
    assert!(objs.iter().all(|o| o.service != "stats"));
    insta::assert_snapshot!("shop_render_settings", to_yaml(&objs));
}

#[test]
fn shop_render_one_service_as_json() {
    let tmp = shop_copy();
    let p = Project::load(tmp.path()).unwrap();
    let opts = RenderOptions {
        services: vec!["worker".into()],
        tag: Some("v1".into()),
    };
    let objs = render(&p, &opts).unwrap();
    insta::assert_snapshot!("shop_render_worker_json", to_json(&objs));
}

#[test]
fn render_twice_is_byte_identical_and_tags_follow_content() {
    let tmp = shop_copy();
    let once = || {
        let p = Project::load(tmp.path()).unwrap();
        to_yaml(&render(&p, &RenderOptions::default()).unwrap())
    };
    let a = once();
    let b = once();
    assert_eq!(a, b);
    let tag_of = |yaml: &str, repo: &str| -> String {
        let line = yaml
            .lines()
            .find(|l| l.contains(&format!("localhost:5000/{repo}:")))
            .unwrap_or_else(|| panic!("{repo} not in output"));
        line.rsplit(':').next().unwrap().to_string()
    };
    assert!(tag_of(&a, "shop/web").starts_with("h-"));
    // Changing a file in web's layer changes web's tag and nothing else.
    std::fs::write(tmp.path().join("services/web/public/index.html"), "changed").unwrap();
    let c = once();
    assert_ne!(tag_of(&a, "shop/web"), tag_of(&c, "shop/web"));
    assert_eq!(tag_of(&a, "shop/api"), tag_of(&c, "shop/api"));
    // An excluded file does not change the tag.
    std::fs::write(tmp.path().join("services/api/data/scratch.tmp"), "x").unwrap();
    assert_eq!(tag_of(&c, "shop/api"), tag_of(&once(), "shop/api"));
}

#[test]
fn discovery_from_a_service_subdirectory() {
    let p = Project::discover(&shop().join("services/web/public")).unwrap();
    assert_eq!(p.config.name, "shop");
}
