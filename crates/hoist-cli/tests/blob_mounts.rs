//! `hoist image copy` and `append` mount blobs from where an earlier hoist command put
//! them on the same registry (the memory under `$HOIST_CACHE_DIR/blob-locations`), even
//! when the image comes from another registry: the real binary against real registries.

#[path = "../../hoist-oci/tests/support/registry.rs"]
mod registry;

use std::path::Path;

use assert_cmd::Command;
use hoist_oci::blob_locations::BlobLocations;
use registry::{Registry, skopeo, write_file};

/// `hoist` with its cache (and so its memory of blob locations) in `cache`.
fn hoist(home: &Path, cache: &Path) -> Command {
    let mut c = Command::cargo_bin("hoist").unwrap();
    c.env("DOCKER_CONFIG", home.join("docker"))
        .env("HOME", home)
        .env("HOIST_CACHE_DIR", cache)
        .env_remove("HOIST_INSECURE_REGISTRIES")
        .env_remove("HOIST_CA_FILE");
    c
}

fn run(c: &mut Command) -> String {
    let a = c.assert().success();
    String::from_utf8(a.get_output().stdout.clone()).unwrap()
}

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("{e}: {s}"))
}

/// The config and layer digests of `image` (plain HTTP), as skopeo reads its manifest.
fn blobs(image: &str) -> Vec<String> {
    let m = json(&skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{image}"),
    ]));
    registry::blob_digests(&m)
}

fn skopeo_digest(image: &str) -> String {
    let v = json(&skopeo(&[
        "inspect",
        "--tls-verify=false",
        &format!("docker://{image}"),
    ]));
    v["Digest"].as_str().unwrap().to_string()
}

#[test]
fn copies_to_other_repositories_mount_what_an_earlier_copy_sent() {
    let (a, b) = (Registry::start(false), Registry::start(false));
    let tmp = tempfile::tempdir().unwrap();
    let (home, cache) = (tmp.path(), tmp.path().join("cache"));
    for (dir, seed) in [("one", 1u64), ("two", 2)] {
        let data = registry::pseudo_random(seed, 300_000);
        write_file(&tmp.path().join(dir).join("data.bin"), &data, 0o644);
    }
    let src = a.reference("app:1");
    run(hoist(home, &cache)
        .args(["image", "append", "--base", "scratch"])
        .args([
            "--layer",
            &format!("{}:/one", tmp.path().join("one").display()),
            "--layer",
            &format!("{}:/two", tmp.path().join("two").display()),
            "--tag",
            &src,
        ]));

    let copy = |cache: &Path, to: &str, json_out: bool| {
        let mut c = hoist(home, cache);
        c.args(["image", "copy", &src, &b.reference(to)]);
        if json_out {
            c.args(["-o", "json"]);
        }
        run(&mut c)
    };
    // The first copy to B sends every blob.
    let one = json(&copy(&cache, "x/one:1", true));
    assert_eq!(
        (&one["blobs_copied"], &one["blobs_mounted"]),
        (&3.into(), &0.into()),
        "{one}"
    );

    // The second, to another repository of B, mounts them all from x/one.
    let two = json(&copy(&cache, "x/two:1", true));
    assert_eq!(
        (
            &two["blobs_copied"],
            &two["blobs_mounted"],
            &two["bytes_copied"]
        ),
        (&0.into(), &3.into(), &0.into()),
        "{two}"
    );
    assert_eq!(
        (&two["transfer"]["mounts"], &two["transfer"]["upload_bytes"]),
        (&3.into(), &0.into()),
        "{two}"
    );
    assert_eq!(b.blob_writes("x/two"), 0, "no blob byte went to x/two");
    assert_eq!(two["digest"], one["digest"]);
    assert_eq!(skopeo_digest(&b.reference("x/two:1")), two["digest"]);
    let inspected = json(&run(hoist(home, &cache).args([
        "image",
        "inspect",
        &b.reference("x/two:1"),
        "-o",
        "json",
    ])));
    assert_eq!(inspected["digest"], two["digest"]);
    // Every blob reads back from x/two: the mounts made a whole image.
    let pulled = tmp.path().join("pulled");
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{}", b.reference("x/two:1")),
        &format!("oci:{}:t", pulled.display()),
    ]);

    // In words: the copy says the blobs were mounted.
    let said = copy(&cache, "x/three:1", false);
    assert!(
        said.contains(": 0 blobs copied (0 B), 3 mounted, 0 already present"),
        "{said}"
    );

    // Without the memory (a fresh cache), the same copy sends every blob again.
    let fresh = json(&copy(&tmp.path().join("cache-fresh"), "x/four:1", true));
    assert_eq!(
        (&fresh["blobs_copied"], &fresh["blobs_mounted"]),
        (&3.into(), &0.into()),
        "{fresh}"
    );
    assert_eq!(b.blob_writes("x/four"), 3);

    // A memory naming a repository that does not hold the blobs (written by hand): a HEAD
    // per blob asks the target first, the mount opens the upload, and the blobs go up.
    let stale = tmp.path().join("cache-stale");
    let memory = BlobLocations::new(stale.join("blob-locations"));
    let digest = |d: &str| hoist_oci::Digest::parse(d).unwrap();
    for d in blobs(&src) {
        let file = memory.path(&b.addr, &digest(&d));
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, "x/nothere\n").unwrap();
    }
    let five = json(&copy(&stale, "x/five:1", true));
    assert_eq!(
        (&five["blobs_copied"], &five["blobs_mounted"]),
        (&3.into(), &0.into()),
        "{five}"
    );
    assert_eq!(
        five["transfer"]["requests"].as_u64().unwrap(),
        fresh["transfer"]["requests"].as_u64().unwrap() + 3,
        "a HEAD per blob more than without the memory: {five} vs {fresh}"
    );
    assert_eq!(five["transfer"]["mounts_declined"], 3, "{five}");
    assert_eq!(b.log().matches("&from=x/nothere HTTP/").count(), 3);
    // x/five is remembered first now, x/nothere kept behind it.
    assert_eq!(
        memory.repositories(&b.addr, &digest(&blobs(&src)[1])),
        ["x/five", "x/nothere"]
    );
}

/// `hoist image append` onto scratch, pushed to one repository and then to another of the
/// same registry: the second push mounts the layer the first one sent.
#[test]
fn a_push_to_another_repository_mounts_the_layers_sent_before() {
    let reg = Registry::start(false);
    let tmp = tempfile::tempdir().unwrap();
    let (home, cache) = (tmp.path(), tmp.path().join("cache"));
    let src = tmp.path().join("src");
    write_file(
        &src.join("data.bin"),
        &registry::pseudo_random(7, 200_000),
        0o644,
    );
    let append = |tag: &str, json_out: bool| {
        let mut c = hoist(home, &cache);
        c.args(["image", "append", "--base", "scratch", "--layer"])
            .arg(format!("{}:/app", src.display()))
            .args(["--tag", &reg.reference(tag)]);
        if json_out {
            c.args(["-o", "json"]);
        }
        run(&mut c)
    };
    let first = json(&append("team/a:1", true));
    assert_eq!(first["layers_uploaded"], 1, "{first}");
    let second = json(&append("team/b:1", true));
    assert_eq!(
        (&second["layers_uploaded"], &second["layers_mounted"]),
        (&0.into(), &1.into()),
        "{second}"
    );
    assert!(
        second["transfer"]["upload_bytes"].as_u64().unwrap() < 10_000,
        "at most the config went up: {second}"
    );
    let said = append("team/c:1", false);
    assert!(
        said.contains(": 0 layers uploaded, 1 mounted, 0 already present ("),
        "{said}"
    );
}
