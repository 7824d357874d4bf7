//! The content tag of a service's image hashes the entries `hoist_config::layer_entries`
//! lists; the image holds what `hoist_oci`'s layer builder writes. Both take them from one
//! walk in hoist-fileset, and this test, which sees both crates, holds them to it for a
//! tree full of traps: the same entries, and for every rule set and every change to the
//! tree, a new tag exactly when the layer changes. A layer that changes under an unchanged
//! tag ships under a stale name (a cluster that has the tag keeps the old image).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Mutex;

/// Tests here read `SOURCE_DATE_EPOCH` (the layer mtime) and one sets it: one at a time.
static ENV: Mutex<()> = Mutex::new(());

fn write(root: &Path, rel: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, rel).unwrap();
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

/// The entries in a built layer, relative to `to` (`""` for `to` itself, no trailing
/// `/`), in tar order (`tar` reads it).
fn layer_entries(spec: &hoist_oci::LayerSpec, to: &str) -> Vec<String> {
    let mut b = hoist_oci::LayerBuilder::new();
    b.add(spec).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let layer = b.build_in(dir.path()).unwrap();
    let out = std::process::Command::new("tar")
        .arg("-tzf")
        .arg(layer.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let prefix = format!("{}/", to.trim_matches('/'));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|n| n.strip_prefix(&prefix).unwrap_or(n).trim_end_matches('/'))
        .map(str::to_string)
        .collect()
}

/// A service directory with a layer source full of traps: nested excluded files, ignore
/// files with take-backs, a symlink, a symlinked source.
fn tree() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let svc = tmp.path();
    let public = svc.join("public");
    for f in [
        "index.html",
        "x.tmp",
        "sub/s.html",
        "sub/y.tmp",
        "sub/deeper/d.html",
        "sub/deeper/d.tmp",
        "app.log",
        "sub/app.log",
        "keep.log",
        "node_modules/x/a.js",
        "web/node_modules/b.js",
        "src/main.rs",
        "lib/src/other.rs",
        "build/out.bin",
        "build/keep.txt",
    ] {
        write(&public, f);
    }
    // Docker's meaning: `*.log` is top-level only; `.hoistignore` (read second) takes one back.
    std::fs::write(
        public.join(".dockerignore"),
        "*.log\nbuild/\n!build/keep.txt\n",
    )
    .unwrap();
    std::fs::write(public.join(".hoistignore"), "!keep.log\n").unwrap();
    std::os::unix::fs::symlink("index.html", public.join("sub/link.html")).unwrap();
    // A source that is a symlink stands for its target, in both.
    std::os::unix::fs::symlink("public", svc.join("dist")).unwrap();
    tmp
}

/// (from, include, exclude)
type Rules = (
    &'static str,
    &'static [&'static str],
    &'static [&'static str],
);

const RULES: &[Rules] = &[
    ("public", &[], &[]),
    ("public", &[], &["*.tmp"]),
    ("public", &["*.html"], &[]),
    ("public", &["s.html"], &[]),
    ("public", &[], &["node_modules", "src/*.rs"]),
    ("public", &["sub"], &["deeper"]),
    ("public", &[], &["*.html", "!d.html"]),
    ("public", &[], &["node_modules", "!node_modules/x"]),
    ("public", &["./src"], &[]),
    ("public", &[], &["./sub/deeper"]),
    ("dist", &["*.js"], &[]),
    ("public/sub/y.tmp", &[], &[]),
    ("public/sub/y.tmp", &[], &["*.tmp"]),
];

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn config_spec((from, include, exclude): &Rules) -> hoist_config::manifest::LayerSpec {
    hoist_config::manifest::LayerSpec {
        from: from.to_string(),
        to: "/www".into(),
        include: strings(include),
        exclude: strings(exclude),
    }
}

fn oci_spec(svc: &Path, (from, include, exclude): &Rules) -> hoist_oci::LayerSpec {
    hoist_oci::LayerSpec {
        from: svc.join(from),
        to: "/www".into(),
        include: strings(include),
        exclude: strings(exclude),
        origin: None,
    }
}

#[test]
fn the_tag_hashes_exactly_the_entries_the_image_holds() {
    let _env = ENV.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tree();
    let svc = tmp.path();
    for rules in RULES {
        let hashed: Vec<String> = hoist_config::layer_entries(svc, &config_spec(rules))
            .unwrap()
            .into_iter()
            .map(|f| f.rel)
            .collect();
        let image = layer_entries(&oci_spec(svc, rules), "www");
        // A single-file source lands as /www itself: compare its name.
        let image: Vec<String> = if image == ["www"] {
            vec!["y.tmp".into()]
        } else {
            image
        };
        assert_eq!(hashed, image, "rules {rules:?}");
    }

    // The reviewer's case, spelled out: `exclude: ["*.tmp"]` leaves out nested files too.
    let hashed: Vec<String> = hoist_config::layer_entries(svc, &config_spec(&RULES[1]))
        .unwrap()
        .into_iter()
        .map(|f| f.rel)
        .collect();
    assert!(!hashed.iter().any(|f| f.ends_with(".tmp")), "{hashed:?}");
    assert!(hashed.contains(&"sub/app.log".to_string()), "{hashed:?}");
    assert!(hashed.contains(&"keep.log".to_string()), "{hashed:?}");
    assert!(!hashed.contains(&"app.log".to_string()), "{hashed:?}");
}

/// The service's content tag and its one layer's digest, for the rules `rules`.
fn tag_and_digest(root: &Path, rules: &Rules) -> (String, String) {
    let (from, include, exclude) = rules;
    let list = |v: &[&str]| format!("{v:?}");
    std::fs::write(
        root.join("services/s/service.yaml"),
        format!(
            "name: s\nimage:\n  base: scratch\n  layers:\n    - {{from: {from}, to: /www, include: {}, exclude: {}}}\n",
            list(include),
            list(exclude)
        ),
    )
    .unwrap();
    let project = hoist_config::Project::load(root).unwrap();
    let tag = hoist_config::content_tags(&project, None).unwrap()["s"].clone();
    let mut b = hoist_oci::LayerBuilder::new();
    b.add(&oci_spec(&root.join("services/s"), rules)).unwrap();
    let (_, digest, ..) = b.write_to(std::io::sink()).unwrap();
    (tag, digest.to_string())
}

/// A change to the tree (or the environment) and its undoing.
struct Mutation {
    name: &'static str,
    apply: fn(&Path),
    undo: fn(&Path),
    /// It moves the image config too (`created` is the epoch): a new image even when the
    /// layer is empty.
    config: bool,
}

fn set_epoch(value: Option<&str>) {
    // SAFETY: every test in this binary holds `ENV` while it reads or writes the
    // environment, and none starts threads that read it.
    unsafe {
        match value {
            Some(v) => std::env::set_var("SOURCE_DATE_EPOCH", v),
            None => std::env::remove_var("SOURCE_DATE_EPOCH"),
        }
    }
}

const MUTATIONS: &[Mutation] = &[
    Mutation {
        name: "edit a file",
        apply: |p| std::fs::write(p.join("index.html"), "changed").unwrap(),
        undo: |p| std::fs::write(p.join("index.html"), "index.html").unwrap(),
        config: false,
    },
    Mutation {
        name: "edit a nested .tmp file",
        apply: |p| std::fs::write(p.join("sub/y.tmp"), "changed").unwrap(),
        undo: |p| std::fs::write(p.join("sub/y.tmp"), "sub/y.tmp").unwrap(),
        config: false,
    },
    Mutation {
        name: "edit a file .dockerignore leaves out",
        apply: |p| std::fs::write(p.join("app.log"), "changed").unwrap(),
        undo: |p| std::fs::write(p.join("app.log"), "app.log").unwrap(),
        config: false,
    },
    Mutation {
        name: "add a file under node_modules",
        apply: |p| std::fs::write(p.join("node_modules/x/new.js"), "n").unwrap(),
        undo: |p| std::fs::remove_file(p.join("node_modules/x/new.js")).unwrap(),
        config: false,
    },
    Mutation {
        name: "add a file deep down",
        apply: |p| std::fs::write(p.join("sub/deeper/new.html"), "n").unwrap(),
        undo: |p| std::fs::remove_file(p.join("sub/deeper/new.html")).unwrap(),
        config: false,
    },
    Mutation {
        name: "add an empty directory",
        apply: |p| std::fs::create_dir(p.join("empty")).unwrap(),
        undo: |p| std::fs::remove_dir(p.join("empty")).unwrap(),
        config: false,
    },
    Mutation {
        name: "add a directory holding only a .tmp file",
        apply: |p| write(p, "tmp-only/b.tmp"),
        undo: |p| std::fs::remove_dir_all(p.join("tmp-only")).unwrap(),
        config: false,
    },
    Mutation {
        name: "chmod 700 a directory",
        apply: |p| chmod(&p.join("sub"), 0o700),
        undo: |p| chmod(&p.join("sub"), 0o755),
        config: false,
    },
    Mutation {
        name: "chmod 700 the source directory",
        apply: |p| chmod(p, 0o700),
        undo: |p| chmod(p, 0o755),
        config: false,
    },
    Mutation {
        name: "chmod 700 an excluded directory",
        apply: |p| chmod(&p.join("node_modules"), 0o700),
        undo: |p| chmod(&p.join("node_modules"), 0o755),
        config: false,
    },
    Mutation {
        name: "chmod 600 a file",
        apply: |p| chmod(&p.join("index.html"), 0o600),
        undo: |p| chmod(&p.join("index.html"), 0o644),
        config: false,
    },
    Mutation {
        name: "chmod 600 a nested .tmp file",
        apply: |p| chmod(&p.join("sub/y.tmp"), 0o600),
        undo: |p| chmod(&p.join("sub/y.tmp"), 0o644),
        config: false,
    },
    Mutation {
        name: "setgid on a file",
        apply: |p| chmod(&p.join("sub/s.html"), 0o2644),
        undo: |p| chmod(&p.join("sub/s.html"), 0o644),
        config: false,
    },
    Mutation {
        name: "retarget a symlink",
        apply: |p| {
            std::fs::remove_file(p.join("sub/link.html")).unwrap();
            std::os::unix::fs::symlink("s.html", p.join("sub/link.html")).unwrap();
        },
        undo: |p| {
            std::fs::remove_file(p.join("sub/link.html")).unwrap();
            std::os::unix::fs::symlink("index.html", p.join("sub/link.html")).unwrap();
        },
        config: false,
    },
    Mutation {
        name: "set SOURCE_DATE_EPOCH",
        apply: |_| set_epoch(Some("1700000000")),
        undo: |_| set_epoch(None),
        config: true,
    },
];

#[test]
fn the_tag_changes_exactly_when_the_layer_does() {
    let _env = ENV.lock().unwrap_or_else(|e| e.into_inner());
    set_epoch(None);
    let tmp = tree();
    let root = tmp.path();
    let public = root.join("services/s/public");
    std::fs::create_dir_all(root.join("services/s")).unwrap();
    std::fs::rename(tmp.path().join("public"), &public).unwrap();
    std::fs::rename(tmp.path().join("dist"), root.join("services/s/dist")).unwrap();
    std::fs::write(
        root.join("hoist.yaml"),
        "name: t\nregistry: r.local:5000\nservices: [\"services/*\"]\n",
    )
    .unwrap();
    // The modes the mutations restore, whatever the umask.
    for d in ["", "sub", "node_modules"] {
        chmod(&public.join(d), 0o755);
    }
    for f in ["index.html", "sub/y.tmp", "sub/s.html"] {
        chmod(&public.join(f), 0o644);
    }
    let mut changed = 0;
    let mut kept = 0;
    for rules in RULES {
        let before = tag_and_digest(root, rules);
        for m in MUTATIONS {
            (m.apply)(&public);
            let after = tag_and_digest(root, rules);
            (m.undo)(&public);
            let tag_moved = after.0 != before.0;
            let layer_moved = after.1 != before.1;
            assert_eq!(
                tag_moved,
                layer_moved || m.config,
                "{}, rules {rules:?}: tag {} → {}, layer {} → {}",
                m.name,
                before.0,
                after.0,
                before.1,
                after.1
            );
            if tag_moved {
                changed += 1;
            } else {
                kept += 1;
            }
            assert_eq!(
                tag_and_digest(root, rules),
                before,
                "undoing {}, rules {rules:?}",
                m.name
            );
        }
    }
    // Not vacuous: both outcomes occur, and under no rules at all every change but the
    // ignored file's and the excluded-by-nothing ones moves both.
    assert!(changed > 40 && kept > 40, "changed {changed}, kept {kept}");
    let all = &RULES[0];
    let before = tag_and_digest(root, all);
    for m in MUTATIONS
        .iter()
        .filter(|m| !m.name.contains(".dockerignore"))
    {
        (m.apply)(&public);
        let after = tag_and_digest(root, all);
        (m.undo)(&public);
        assert!(
            after.0 != before.0,
            "{} kept the tag under no rules",
            m.name
        );
    }
    assert_eq!(mode(&public), 0o755);
}
