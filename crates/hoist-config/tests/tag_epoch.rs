//! `SOURCE_DATE_EPOCH` is every layer entry's mtime and the config's `created` time, so it
//! is a tag input; a bad value is an error naming it. Its own test binary: it sets the
//! variable, which every content tag reads.

use std::path::Path;

use hoist_config::{Project, content_tags};

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn set(value: Option<&str>) {
    // SAFETY: the only test in this binary; nothing else reads the environment meanwhile.
    unsafe {
        match value {
            Some(v) => std::env::set_var("SOURCE_DATE_EPOCH", v),
            None => std::env::remove_var("SOURCE_DATE_EPOCH"),
        }
    }
}

#[test]
fn the_epoch_is_an_input_and_a_bad_one_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    write(root, "hoist.yaml", "name: t\nregistry: r.local:5000\n");
    write(
        root,
        "services/s/service.yaml",
        "name: s\nimage:\n  base: scratch\n  layers: [{from: ./data, to: /data}]\n",
    );
    write(root, "services/s/data/a.json", "{}");
    let p = Project::load(root).unwrap();
    let tag = || content_tags(&p, None).map(|t| t["s"].clone());
    set(None);
    let unset = tag().unwrap();
    set(Some("1700000000"));
    let set_one = tag().unwrap();
    assert_ne!(set_one, unset);
    set(Some("1700000001"));
    assert_ne!(tag().unwrap(), set_one);
    // The default epoch written out builds the image unset builds: the same tag.
    set(Some(&hoist_fileset::DEFAULT_EPOCH.to_string()));
    assert_eq!(tag().unwrap(), unset);
    set(Some(""));
    assert_eq!(tag().unwrap(), unset, "empty counts as unset");
    for bad in ["garbage", "-5"] {
        set(Some(bad));
        let e = tag().unwrap_err();
        let shown = e[0].to_string();
        assert!(
            shown.contains(&format!("SOURCE_DATE_EPOCH={bad:?}")),
            "{shown}"
        );
    }
    set(None);
    assert_eq!(tag().unwrap(), unset);
}
