//! The content tag of a service's image hashes the files `hoist_config::layer_files`
//! lists; the image holds what `hoist_oci`'s layer builder takes. Both ask hoist-fileset,
//! and this test, which sees both crates, holds them to the same files for a tree full of
//! traps: a file in the image that the tag did not hash would ship under a stale tag.

use std::path::Path;

fn write(root: &Path, rel: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, rel).unwrap();
}

/// The files and symlinks in a built layer, relative to `to`, sorted (`tar` reads it).
fn layer_entries(spec: &hoist_oci::LayerSpec, to: &str) -> Vec<String> {
    let mut b = hoist_oci::LayerBuilder::new();
    b.add(spec).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let layer = b.build_in(dir.path()).unwrap();
    let out = std::process::Command::new("tar")
        .arg("-tvzf")
        .arg(layer.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let prefix = format!("{}/", to.trim_matches('/'));
    let mut names: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('d'))
        // `-rw-r--r-- 0/0 5 2000-01-01 00:00 www/a/b.txt`, a link with ` -> target`.
        .map(|l| l.split_whitespace().nth(5).unwrap().to_string())
        .map(|n| n.strip_prefix(&prefix).unwrap_or(&n).to_string())
        .collect();
    names.sort();
    names
}

#[test]
fn the_tag_hashes_exactly_the_files_the_image_holds() {
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

    let cases: &[(&str, &[&str], &[&str])] = &[
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
    for (from, include, exclude) in cases {
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let config = hoist_config::manifest::LayerSpec {
            from: from.to_string(),
            to: "/www".into(),
            include: strings(include),
            exclude: strings(exclude),
        };
        let hashed: Vec<String> = hoist_config::layer_files(svc, &config)
            .unwrap()
            .into_iter()
            .map(|f| f.rel)
            .collect();
        let image = layer_entries(
            &hoist_oci::LayerSpec {
                from: svc.join(from),
                to: "/www".into(),
                include: strings(include),
                exclude: strings(exclude),
            },
            "www",
        );
        // A single-file source lands as /www itself: compare its name.
        let image: Vec<String> = if image == ["www"] {
            vec!["y.tmp".into()]
        } else {
            image
        };
        assert_eq!(
            hashed, image,
            "from {from}, include {include:?}, exclude {exclude:?}"
        );
    }

    // The reviewer's case, spelled out: `exclude: ["*.tmp"]` leaves out nested files too.
    let config = hoist_config::manifest::LayerSpec {
        from: "public".into(),
        to: "/www".into(),
        include: vec![],
        exclude: vec!["*.tmp".into()],
    };
    let hashed: Vec<String> = (hoist_config::layer_files(svc, &config).unwrap().into_iter())
        .map(|f| f.rel)
        .collect();
    assert!(!hashed.iter().any(|f| f.ends_with(".tmp")), "{hashed:?}");
    assert!(hashed.contains(&"sub/app.log".to_string()), "{hashed:?}");
    assert!(hashed.contains(&"keep.log".to_string()), "{hashed:?}");
    assert!(!hashed.contains(&"app.log".to_string()), "{hashed:?}");
}
