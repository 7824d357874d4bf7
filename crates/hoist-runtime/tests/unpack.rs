//! The image cache: one unpack per image even under concurrency, atomic, faithful.

mod support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use hoist_runtime::{ImageUnpacker, RootfsMode};

#[test]
fn concurrent_unpacks_share_one_atomic_cache_entry() {
    if !support::runnable("concurrent_unpacks_share_one_atomic_cache_entry") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (store, reference) = support::busybox_store(dir.path());
    let unpacker = ImageUnpacker::new(dir.path().join("cache")).unwrap();
    let results: Vec<_> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..4)
            .map(|_| s.spawn(|| unpacker.unpack(&store, &reference).unwrap()))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(results.windows(2).all(|w| w[0].rootfs == w[1].rootfs));
    let img = &results[0];
    let entries: Vec<_> = std::fs::read_dir(unpacker.cache_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        entries,
        vec![img.manifest_digest.hex().to_string()],
        "no temp dirs left"
    );

    let root = &img.rootfs;
    assert_eq!(
        std::fs::read_link(root.join("bin/sh")).unwrap(),
        std::path::Path::new("busybox")
    );
    let bb = std::fs::metadata(root.join("bin/busybox")).unwrap();
    assert_eq!(bb.permissions().mode() & 0o777, 0o755);
    assert_eq!(bb.len(), std::fs::metadata("/bin/busybox").unwrap().len());
    assert_eq!((bb.uid(), bb.gid()), (0, 0));
    assert_eq!(
        std::fs::read_to_string(root.join("www/index.html")).unwrap(),
        support::PAGE
    );
    assert_eq!(
        img.config.config.as_ref().unwrap().cmd,
        Some(vec!["sh".into()])
    );

    // The same image through the OCI layout API, by ref name, hits the cache.
    let again = unpacker
        .unpack_layout(store.layout(), Some(&reference.to_string()))
        .unwrap();
    assert_eq!(again.rootfs, img.rootfs);
    assert!(unpacker.cached(&img.manifest_digest).is_some());

    // Both rootfs modes give the container the image's files; its writes stay its own.
    for mode in [RootfsMode::Overlay, RootfsMode::Copy] {
        let u = ImageUnpacker::new(unpacker.cache_dir())
            .unwrap()
            .with_mode(mode);
        let cdir = dir.path().join(format!("c-{mode:?}"));
        struct Release<'a>(&'a std::path::Path);
        impl Drop for Release<'_> {
            fn drop(&mut self) {
                let _ = ImageUnpacker::release_rootfs(self.0);
            }
        }
        let _guard = Release(&cdir);
        let r = u.prepare_rootfs(img, &cdir).unwrap();
        assert_eq!(r.mode, mode);
        std::fs::write(r.path.join("www/index.html"), "changed").unwrap();
        assert_eq!(
            std::fs::read_to_string(root.join("www/index.html")).unwrap(),
            support::PAGE,
            "{mode:?} wrote through to the shared cache"
        );
        ImageUnpacker::release_rootfs(&cdir).unwrap();
        assert!(!cdir.join("rootfs").exists());
    }

    unpacker.remove(&img.manifest_digest).unwrap();
    assert!(unpacker.cached(&img.manifest_digest).is_none());
}

#[test]
fn missing_image_and_missing_layer_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (store, reference) = support::busybox_store(dir.path());
    let unpacker = ImageUnpacker::new(dir.path().join("cache")).unwrap();
    let other = hoist_oci::Reference::parse("hoist.test/nope:1").unwrap();
    let err = unpacker.unpack(&store, &other).unwrap_err().to_string();
    assert!(err.contains("hoist.test/nope:1"), "{err}");

    let img = store.resolve(&reference).unwrap();
    std::fs::remove_file(store.blob_path(&img.manifest.layers[0].digest)).unwrap();
    let err = unpacker.unpack(&store, &reference).unwrap_err().to_string();
    assert!(
        err.contains("missing") && err.contains(&img.manifest.layers[0].digest.to_string()),
        "{err}"
    );
    assert_eq!(
        std::fs::read_dir(unpacker.cache_dir()).unwrap().count(),
        0,
        "a failed unpack leaves nothing"
    );
}

/// A short layer (a full disk, a copy that broke off) fails inside the tar reader first:
/// the error is still the corrupt blob with its hint, not a tar or "already failed" error.
#[test]
fn a_truncated_layer_of_the_store_is_reported_as_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let (store, reference) = support::busybox_store(dir.path());
    let unpacker = ImageUnpacker::new(dir.path().join("cache")).unwrap();
    let layer = &store.resolve(&reference).unwrap().manifest.layers[0];
    let path = store.blob_path(&layer.digest);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let err = unpacker.unpack(&store, &reference).unwrap_err().to_string();
    assert!(
        err.contains(&format!(
            "blob {} is corrupt ({}): it is {} bytes, its descriptor says {}",
            layer.digest,
            path.display(),
            bytes.len() / 2,
            layer.size
        )) && err.contains("removed from hoist's image store")
            && err.contains(&format!("`hoist image pull {reference}`")),
        "{err}"
    );
    assert!(!path.exists(), "the corrupt blob is removed from the store");
    assert_eq!(std::fs::read_dir(unpacker.cache_dir()).unwrap().count(), 0);
}

/// A layer blob of hoist's store with one byte flipped (its size kept) fails the unpack with
/// an error naming the blob and saying it was removed; the store no longer has it, so a
/// pull fetches it again. The same blob in a user's own layout is reported and kept.
#[test]
fn a_corrupt_layer_of_the_store_is_removed_and_a_users_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (store, reference) = support::busybox_store(dir.path());
    let unpacker = ImageUnpacker::new(dir.path().join("cache")).unwrap();
    let img = store.resolve(&reference).unwrap();
    let layer = &img.manifest.layers[0];
    let path = store.blob_path(&layer.digest);
    // The same image in a layout that is not hoist's store (a copy of the directory).
    let user = dir.path().join("user-layout");
    let copied = std::process::Command::new("cp")
        .args(["-a"])
        .arg(store.layout().root())
        .arg(&user)
        .status()
        .unwrap();
    assert!(copied.success());
    let flip = |p: &std::path::Path| {
        let mut bytes = std::fs::read(p).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x01;
        std::fs::write(p, bytes).unwrap();
    };
    flip(&path);
    let err = unpacker.unpack(&store, &reference).unwrap_err().to_string();
    assert!(
        err.contains(&format!(
            "blob {} is corrupt ({})",
            layer.digest,
            path.display()
        )) && err.contains("removed from hoist's image store")
            && err.contains(&format!("`hoist image pull {reference}`")),
        "{err}"
    );
    assert!(!path.exists(), "the corrupt blob is removed from the store");
    assert!(!store.layout().has_blob_of_size(&layer.digest, layer.size));
    assert_eq!(std::fs::read_dir(unpacker.cache_dir()).unwrap().count(), 0);

    let user = hoist_oci::OciLayout::open(&user).unwrap();
    let user_blob = user.blob_path(&layer.digest);
    flip(&user_blob);
    let err = unpacker
        .unpack_layout(&user, Some(&reference.to_string()))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("is corrupt") && err.contains("left in place"),
        "{err}"
    );
    assert!(
        user_blob.exists(),
        "a user's layout is never changed by a read"
    );
}
