//! Content-derived image tags: same inputs, same tag; any input change, new tag.

use std::path::Path;

use hoist_config::{Project, content_tags, image_refs};

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn tags(root: &Path) -> std::collections::BTreeMap<String, String> {
    content_tags(&Project::load(root).unwrap(), None).unwrap()
}

#[test]
fn dockerfile_tags_follow_dockerfile_and_context_but_not_git() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    write(root, "hoist.yaml", "name: t\nregistry: r.local:5000\n");
    write(
        root,
        "services/d/service.yaml",
        "name: d\nimage:\n  dockerfile: Dockerfile\n  context: ctx\n  args: {V: '1'}\n",
    );
    write(root, "services/d/Dockerfile", "FROM scratch\nCOPY . /\n");
    write(root, "services/d/ctx/app.txt", "v1");
    write(root, "services/d/ctx/.git/HEAD", "ref: a");
    let t0 = tags(root)["d"].clone();
    assert!(t0.starts_with("h-") && t0.len() == 14, "{t0}");
    assert_eq!(tags(root)["d"], t0, "stable");
    write(root, "services/d/ctx/.git/HEAD", "ref: b");
    assert_eq!(tags(root)["d"], t0, ".git is not an input");
    write(root, "services/d/ctx/app.txt", "v2");
    let t1 = tags(root)["d"].clone();
    assert_ne!(t1, t0);
    write(
        root,
        "services/d/Dockerfile",
        "FROM scratch\nCOPY . /app/\n",
    );
    let t2 = tags(root)["d"].clone();
    assert_ne!(t2, t1);
    write(
        root,
        "services/d/service.yaml",
        "name: d\nimage:\n  dockerfile: Dockerfile\n  context: ctx\n  args: {V: '2'}\n",
    );
    assert_ne!(tags(root)["d"], t2, "build args are inputs");
    let p = Project::load(root).unwrap();
    // A platform asked for is an input; the same one gives the same tag.
    let arm = content_tags(&p, Some("linux/arm64")).unwrap()["d"].clone();
    assert_ne!(arm, tags(root)["d"]);
    assert_eq!(content_tags(&p, Some("linux/arm64")).unwrap()["d"], arm);
    assert_ne!(content_tags(&p, Some("linux/amd64")).unwrap()["d"], arm);
    let refs = image_refs(&p, Some("dev"), None).unwrap();
    assert_eq!(refs["d"], "r.local:5000/d:dev");
    // A bad --tag is named as the tag, not as part of a reference it was glued into.
    let e = image_refs(&p, Some("Bad:Tag"), None).unwrap_err();
    assert_eq!(e.len(), 1);
    assert!(
        e[0].to_string().contains("--tag: invalid tag \"Bad:Tag\""),
        "{}",
        e[0]
    );
}

#[test]
fn an_image_built_on_another_service_changes_with_it() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    write(root, "hoist.yaml", "name: t\n");
    write(
        root,
        "services/base/service.yaml",
        "name: base\nimage:\n  layers:\n    - {from: ./bin, to: /bin}\n",
    );
    write(root, "services/base/bin/tool", "v1");
    write(
        root,
        "services/app/service.yaml",
        "name: app\nimage:\n  base: base\n  layers:\n    - {from: ./src, to: /src, exclude: ['*.log']}\n",
    );
    write(root, "services/app/src/main", "m");
    let a = tags(root);
    write(root, "services/app/src/debug.log", "noise");
    assert_eq!(tags(root), a, "excluded files are not inputs");
    write(root, "services/base/bin/tool", "v2");
    let b = tags(root);
    assert_ne!(a["base"], b["base"]);
    assert_ne!(a["app"], b["app"], "app is built on base");
    let p = Project::load(root).unwrap();
    assert_eq!(
        p.base_service(p.service("app").unwrap()).unwrap().name,
        "base"
    );
    assert!(p.validate().is_empty(), "{:?}", p.validate());
}

#[test]
fn executable_bit_is_an_input() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    write(root, "hoist.yaml", "name: t\n");
    write(
        root,
        "services/s/service.yaml",
        "name: s\nimage:\n  layers:\n    - {from: ./run.sh, to: /run.sh}\n",
    );
    write(root, "services/s/run.sh", "echo hi");
    let a = tags(root);
    let f = root.join("services/s/run.sh");
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert_ne!(tags(root), a);
}

/// File capabilities go into the layer, so they are in the tag: `setcap` on a layer file
/// gives a new tag, `setcap -r` the old one back.
#[test]
fn file_capabilities_are_an_input() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    write(root, "hoist.yaml", "name: t\nregistry: r.local:5000\n");
    write(
        root,
        "services/s/service.yaml",
        "name: s\nimage:\n  base: scratch\n  layers: [{from: ./bin, to: /bin}]\n",
    );
    write(root, "services/s/bin/server", "#!/bin/sh\n");
    let server = root.join("services/s/bin/server");
    let before = tags(root)["s"].clone();
    let setcap = |args: &[&str]| {
        let out = std::process::Command::new("setcap")
            .args(args)
            .arg(&server)
            .output()
            .expect("setcap is installed (libcap2-bin, scripts/install-deps)");
        assert!(out.status.success(), "setcap: {out:?} (needs root)");
    };
    setcap(&["cap_net_bind_service=+ep"]);
    let capped = tags(root)["s"].clone();
    assert_ne!(capped, before);
    setcap(&["-r"]);
    assert_eq!(tags(root)["s"], before);
}

/// Two services naming one image: fine with content tags (different inputs, different
/// tags), refused with one --tag for all, where the second push would replace the first.
#[test]
fn one_tag_for_two_services_with_one_image_name_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    write(root, "hoist.yaml", "name: t\nregistry: r.local:5000\n");
    for (svc, text) in [("a", "1"), ("b", "2")] {
        write(
            root,
            &format!("services/{svc}/service.yaml"),
            &format!(
                "name: {svc}\nimage:\n  name: team/app\n  base: scratch\n  layers: [{{from: ./f, to: /f}}]\n"
            ),
        );
        write(root, &format!("services/{svc}/f"), text);
    }
    let p = Project::load(root).unwrap();
    assert!(p.validate().is_empty(), "{:?}", p.validate());
    let refs = image_refs(&p, None, None).unwrap();
    assert_ne!(refs["a"], refs["b"]);
    let e = image_refs(&p, Some("v1"), None).unwrap_err();
    assert_eq!(e.len(), 1);
    let msg = e[0].to_string();
    assert!(
        msg.contains("`a` and `b`") && msg.contains("r.local:5000/team/app"),
        "{msg}"
    );
    let at = e[0].location.as_ref().expect("a location");
    assert!(at.file.ends_with("services/b/service.yaml"), "{at:?}");
}

fn chmod(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Everything the layer writes of a directory source is in the tag: a directory (empty, or
/// holding only excluded files), a directory's mode, a file's full mode. Undoing a change
/// gives the old tag back; an excluded file's edits never move it.
#[test]
fn directories_and_full_modes_are_inputs() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    write(root, "hoist.yaml", "name: t\nregistry: r.local:5000\n");
    write(
        root,
        "services/s/service.yaml",
        "name: s\nimage:\n  base: scratch\n  layers:\n    - {from: ./data, to: /data, exclude: ['*.tmp']}\n",
    );
    let data = root.join("services/s/data");
    write(&data, "a.json", "{}");
    write(&data, "d/b.json", "{}");
    write(&data, "x.tmp", "1");
    for d in [&data, &data.join("d")] {
        chmod(d, 0o755);
    }
    chmod(&data.join("a.json"), 0o644);
    let t0 = tags(root)["s"].clone();
    let moved = |what: &str, change: &dyn Fn(), undo: &dyn Fn()| {
        change();
        let t = tags(root)["s"].clone();
        assert_ne!(t, t0, "{what} kept the tag");
        undo();
        assert_eq!(tags(root)["s"], t0, "undoing {what}");
    };
    moved(
        "an empty directory",
        &|| std::fs::create_dir(data.join("empty")).unwrap(),
        &|| std::fs::remove_dir(data.join("empty")).unwrap(),
    );
    moved(
        "a directory holding only excluded files (it is in the layer, empty)",
        &|| write(&data, "sub/b.tmp", "1"),
        &|| std::fs::remove_dir_all(data.join("sub")).unwrap(),
    );
    moved(
        "chmod 700 on a directory",
        &|| chmod(&data.join("d"), 0o700),
        &|| chmod(&data.join("d"), 0o755),
    );
    moved(
        "chmod 700 on the source directory",
        &|| chmod(&data, 0o700),
        &|| chmod(&data, 0o755),
    );
    moved(
        "chmod 600 on a file",
        &|| chmod(&data.join("a.json"), 0o600),
        &|| chmod(&data.join("a.json"), 0o644),
    );
    // Excluded files are not in the layer, whatever happens to them.
    write(&data, "x.tmp", "2");
    chmod(&data.join("x.tmp"), 0o600);
    write(&data, "d/y.tmp", "new");
    assert_eq!(tags(root)["s"], t0, "excluded files are no input");
}

/// A FIFO in a layer source fails the tag at once (it is never opened: reading it would
/// wait for a writer for ever), naming the file, its kind, a hint and the layer's line.
#[test]
fn a_fifo_in_a_layer_source_fails_fast_with_its_location() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    write(root, "hoist.yaml", "name: t\nregistry: r.local:5000\n");
    write(
        root,
        "services/s/service.yaml",
        "name: s\nimage:\n  base: scratch\n  layers:\n    - {from: /bin/busybox, to: /bin/busybox}\n    - {from: ./data, to: /data}\n",
    );
    write(root, "services/s/data/a.json", "{}");
    let fifo = root.join("services/s/data/pipe");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let p = Project::load(root).unwrap();
    let e = content_tags(&p, None).unwrap_err();
    assert_eq!(e.len(), 1);
    let shown = e[0].to_string();
    for want in [
        "service `s`",
        "pipe is a named pipe (FIFO)",
        "exclude it",
        "service.yaml:6",
    ] {
        assert!(shown.contains(want), "{want:?} not in {shown}");
    }
    // validate says so too, at the same place.
    let problems = p.validate();
    let shown: Vec<String> = (problems.iter()).map(|e| e.to_string()).collect();
    assert!(
        shown
            .iter()
            .any(|s| s.contains("named pipe (FIFO)") && s.contains("service.yaml:6")),
        "{shown:?}"
    );
    // Excluded, it is not looked at.
    write(
        root,
        "services/s/service.yaml",
        "name: s\nimage:\n  base: scratch\n  layers:\n    - {from: ./data, to: /data, exclude: [pipe]}\n",
    );
    let p = Project::load(root).unwrap();
    assert!(content_tags(&p, None).is_ok());
    assert!(p.validate().is_empty(), "{:?}", p.validate());
}

/// A Docker build context is hashed as the builder sends it: without what its
/// `.dockerignore` leaves out (Docker's rules, `!` takes back), and with what
/// `.hoistignore` lists (Docker does not read it). `<Dockerfile>.dockerignore` beside the
/// Dockerfile wins, as with BuildKit.
#[test]
fn dockerfile_contexts_honour_dockerignore() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    write(root, "hoist.yaml", "name: t\nregistry: r.local:5000\n");
    write(
        root,
        "services/d/service.yaml",
        "name: d\nimage: {dockerfile: Dockerfile}\n",
    );
    write(root, "services/d/Dockerfile", "FROM scratch\nCOPY . /\n");
    write(root, "services/d/app.txt", "v1");
    write(root, "services/d/notes.md", "doc");
    write(root, "services/d/keep.md", "keep");
    write(root, "services/d/.dockerignore", "*.md\n!keep.md\n");
    let t0 = tags(root)["d"].clone();
    write(root, "services/d/notes.md", "doc2");
    assert_eq!(tags(root)["d"], t0, "an ignored file is no input");
    write(root, "services/d/keep.md", "keep2");
    let t1 = tags(root)["d"].clone();
    assert_ne!(t1, t0, "a file taken back is an input");
    write(root, "services/d/app.txt", "v2");
    let t2 = tags(root)["d"].clone();
    assert_ne!(t2, t1);
    write(root, "services/d/.hoistignore", "app.txt\n");
    write(root, "services/d/app.txt", "v3");
    assert_ne!(tags(root)["d"], t2, "Docker does not read .hoistignore");
    // Beside the Dockerfile, it wins: notes.md is an input again, app.txt is not.
    write(root, "services/d/Dockerfile.dockerignore", "app.txt\n");
    let t3 = tags(root)["d"].clone();
    write(root, "services/d/app.txt", "v4");
    assert_eq!(tags(root)["d"], t3);
    write(root, "services/d/notes.md", "doc3");
    assert_ne!(tags(root)["d"], t3);
}

/// A relative `to:` lands under the working directory, so the source directory's own entry
/// (and mode) is in the layer: its chmod moves the tag, as `to: /app` would.
#[test]
fn a_relative_destination_hashes_the_source_directory_itself() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    write(root, "hoist.yaml", "name: t\nregistry: r.local:5000\n");
    for to in [".", "www"] {
        write(
            root,
            "services/s/service.yaml",
            &format!(
                "name: s\nimage:\n  base: scratch\n  workdir: /app\n  layers: [{{from: ./src, to: \"{to}\"}}]\n"
            ),
        );
        write(root, "services/s/src/f", "f");
        let src = root.join("services/s/src");
        std::fs::set_permissions(&src, std::fs::Permissions::from_mode(0o755)).unwrap();
        let before = tags(root)["s"].clone();
        std::fs::set_permissions(&src, std::fs::Permissions::from_mode(0o700)).unwrap();
        assert_ne!(tags(root)["s"], before, "to: {to}");
        std::fs::set_permissions(&src, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(tags(root)["s"], before, "to: {to}");
    }
}
