//! A blob of hoist's own image store that went bad on disk (one byte flipped, its size
//! kept) is removed by the first read that checks it, with an error saying so; the next
//! pull fetches exactly that blob and the image is whole again. A user's own layout is
//! never changed: its corrupt blob is only reported.

#[path = "../../hoist-oci/tests/support/registry.rs"]
mod registry;

use assert_cmd::Command;
use hoist_oci::{Digest, OciLayout, Reference};
use registry::{Registry, write_file};

fn stdout(a: &assert_cmd::assert::Assert) -> String {
    String::from_utf8(a.get_output().stdout.clone()).unwrap()
}

fn stderr(a: &assert_cmd::assert::Assert) -> String {
    String::from_utf8(a.get_output().stderr.clone()).unwrap()
}

/// Flip one byte in the middle of the file, keeping its size.
fn flip_a_byte(p: &std::path::Path) {
    let mut bytes = std::fs::read(p).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x20;
    std::fs::write(p, bytes).unwrap();
}

#[test]
fn a_corrupt_store_blob_is_removed_on_read_and_pulled_again() {
    let reg = Registry::start(false);
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let cache = t.join("cache");
    let hoist = || {
        let mut c = Command::cargo_bin("hoist").unwrap();
        c.env("HOME", t)
            .env("DOCKER_CONFIG", t)
            .env("HOIST_CACHE_DIR", &cache)
            .env_remove("HOIST_INSECURE_REGISTRIES");
        c
    };
    // An image of two layers, pushed by hoist.
    write_file(&t.join("one/etc/one.txt"), b"first layer\n", 0o644);
    write_file(
        &t.join("two/app/two.txt"),
        &registry::pseudo_random(3, 64 << 10),
        0o644,
    );
    let image = reg.reference("corrupt/app:1");
    hoist()
        .args(["image", "append", "--base", "scratch", "--layer"])
        .arg(format!("{}:/", t.join("one").display()))
        .arg("--layer")
        .arg(format!("{}:/", t.join("two").display()))
        .args(["--tag", &image])
        .assert()
        .success();
    let pull = || {
        let a = hoist()
            .args(["image", "pull", &image, "-o", "json"])
            .assert()
            .success();
        serde_json::from_str::<serde_json::Value>(&stdout(&a)).unwrap()
    };
    assert_eq!(pull()["blobs_downloaded"], 3, "config and two layers");

    let store_dir = cache.join("images");
    let store = OciLayout::open(&store_dir).unwrap();
    let m = store
        .get_manifest(Some(&Reference::parse(&image).unwrap().to_string()))
        .unwrap()
        .image()
        .unwrap();
    assert_eq!(m.layers.len(), 2);
    let layer: &Digest = &m.layers[1].digest;
    let blob = store.blob_path(layer);
    let from_store = format!("oci:{}:{image}", store_dir.display());

    // Before the fix a pull kept the bad file as "already stored", for ever.
    let corrupt_and_read = |args: &[&str]| {
        flip_a_byte(&blob);
        let err = stderr(&hoist().args(args).assert().failure());
        assert!(
            err.contains(&format!("blob {layer} is corrupt ({})", blob.display()))
                && err.contains("removed from hoist's image store")
                && err.contains(&format!("`hoist image pull {image}`")),
            "{args:?}: {err}"
        );
        assert!(
            !blob.exists(),
            "{args:?} left the corrupt blob in the store"
        );
        let again = pull();
        assert_eq!(
            again["blobs_downloaded"], 1,
            "exactly the removed blob: {again}"
        );
        assert_eq!(Digest::of(&std::fs::read(&blob).unwrap()), *layer);
    };
    // Read by a copy into a registry (streamed upload) and into a layout (file copy). The
    // registry is another one: on `reg` hoist remembers the blobs in corrupt/app and would
    // mount them from there, reading nothing.
    let other = Registry::start(false);
    let pushed = other.reference("corrupt/copy:1");
    corrupt_and_read(&["image", "copy", &from_store, &pushed]);
    let out = t.join("out");
    let to_layout = format!("oci:{}:app", out.display());
    corrupt_and_read(&["image", "copy", &from_store, &to_layout]);
    assert!(
        !out.join("blobs/sha256").join(layer.hex()).exists(),
        "the corrupt blob was copied out"
    );

    // Whole again: the copy succeeds and an outside tool reads every file of it.
    hoist()
        .args(["image", "copy", &from_store, &to_layout])
        .assert()
        .success();
    let files = registry::unpacked(&format!("{}:app", out.display()), &t.join("bundle"));
    let names: Vec<&str> = files.iter().map(|(p, _)| p.as_str()).collect();
    assert!(
        names.contains(&"etc/one.txt") && names.contains(&"app/two.txt"),
        "{names:?}"
    );
    assert_eq!(
        std::fs::read(t.join("bundle/rootfs/app/two.txt")).unwrap(),
        registry::pseudo_random(3, 64 << 10)
    );

    // The same corruption in the user's own layout is reported, and the file kept.
    let user_blob = out.join("blobs/sha256").join(layer.hex());
    flip_a_byte(&user_blob);
    let err = stderr(
        &hoist()
            .args([
                "image",
                "copy",
                &to_layout,
                &other.reference("corrupt/user:1"),
            ])
            .assert()
            .failure(),
    );
    assert!(
        err.contains("is corrupt") && err.contains("left in place"),
        "{err}"
    );
    assert!(
        user_blob.exists(),
        "a user's layout is never changed by a read"
    );
}
