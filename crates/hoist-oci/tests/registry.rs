//! Against a real registry: appended images are valid for skopeo/umoci, pushes send only
//! what is missing, mounts skip base bytes, copies preserve digests, and bad input fails clearly.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use hoist_oci::auth::Credential;
use hoist_oci::build::{BuildOptions, BuildSpec, build_and_push, build_to_layout};
use hoist_oci::client::{ClientOptions, RegistryClient};
use hoist_oci::copy::{CopyOptions, Location, copy};
use hoist_oci::manifest::{Descriptor, ImageIndex, ImageManifest, Platform, RawManifest, media};
use hoist_oci::{Digest, Error, LayerSpec, LocalStore, Reference};
use support::registry::{
    PASS, Registry, USER, pseudo_random, skopeo, skopeo_config, unpacked, write_file,
};

fn client() -> RegistryClient {
    RegistryClient::new(ClientOptions::default()).unwrap()
}

fn layer(from: &Path, to: &str) -> LayerSpec {
    LayerSpec {
        from: from.into(),
        to: to.into(),
        ..Default::default()
    }
}

fn r(s: &str) -> Reference {
    Reference::parse(s).unwrap()
}

/// The bytes of an image's blobs: its config and layers.
fn image_bytes(m: &ImageManifest) -> u64 {
    m.config.size + m.layers.iter().map(|l| l.size).sum::<u64>()
}

/// Every layer is in the store, and its file hashes to its digest.
fn assert_layers_stored(store: &LocalStore, layers: &[Descriptor]) {
    for l in layers {
        let bytes = std::fs::read(store.blob_path(&l.digest)).unwrap();
        assert_eq!(Digest::of(&bytes), l.digest);
    }
}

/// Push a base image (scratch + `n` layers of incompressible data) and return its reference.
async fn push_base(
    c: &RegistryClient,
    reg: &Registry,
    repo_tag: &str,
    n: usize,
    size: usize,
    tmp: &Path,
) -> Reference {
    let mut layers = vec![];
    for i in 0..n {
        let d = tmp.join(format!("base{i}"));
        write_file(
            &d.join(format!("data{i}.bin")),
            &pseudo_random(i as u64 + 1, size),
            0o644,
        );
        layers.push(layer(&d, &format!("/base{i}")));
    }
    let target = r(&reg.reference(repo_tag));
    let spec = BuildSpec {
        base: "scratch".into(),
        layers,
        cmd: Some(vec!["/bin/sh".into()]),
        env: vec![("PATH".into(), "/bin".into())],
        ..Default::default()
    };
    build_and_push(c, &spec, &target, &BuildOptions::default())
        .await
        .unwrap();
    target
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appended_image_is_valid_for_skopeo_and_umoci() {
    let reg = Registry::start(false);
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    write_file(
        &src.join("bin/busybox"),
        &std::fs::read("/bin/busybox").unwrap(),
        0o755,
    );
    write_file(&src.join("etc/app.conf"), b"x=1\n", 0o640);
    write_file(&src.join("secret.log"), b"no", 0o644);
    std::fs::write(src.join(".hoistignore"), "*.log\n").unwrap();
    std::os::unix::fs::symlink("busybox", src.join("bin/sh")).unwrap();
    let c = client();
    let base = push_base(&c, &reg, "base/os:1", 1, 1000, tmp.path()).await;
    let target = r(&reg.reference("app/web:v1"));
    let spec = BuildSpec {
        base: base.to_string(),
        layers: vec![layer(&src, "/")],
        entrypoint: Some(vec!["/bin/busybox".into()]),
        cmd: Some(vec!["sh".into()]),
        env: vec![("MODE".into(), "dev".into())],
        workdir: Some("/etc".into()),
        user: Some("1000:1000".into()),
        labels: BTreeMap::from([("org.example".into(), "yes".into())]),
    };
    let rep = build_and_push(&c, &spec, &target, &BuildOptions::default())
        .await
        .unwrap();
    let inspect: serde_json::Value = serde_json::from_str(&skopeo(&[
        "inspect",
        "--tls-verify=false",
        &format!("docker://{target}"),
    ]))
    .unwrap();
    assert_eq!(inspect["Digest"], rep.digest.to_string());
    assert_eq!(inspect["Layers"].as_array().unwrap().len(), 2);
    assert_eq!(inspect["Labels"]["org.example"], "yes");
    assert_eq!(inspect["Env"], serde_json::json!(["PATH=/bin", "MODE=dev"]));
    let cfg = skopeo_config(&format!("docker://{target}"));
    assert_eq!(
        cfg["config"]["Entrypoint"],
        serde_json::json!(["/bin/busybox"])
    );
    assert_eq!(cfg["config"]["Cmd"], serde_json::json!(["sh"]));
    assert_eq!(cfg["config"]["WorkingDir"], "/etc");
    assert_eq!(cfg["config"]["User"], "1000:1000");
    assert_eq!(cfg["rootfs"]["diff_ids"].as_array().unwrap().len(), 2);
    assert_eq!(cfg["history"].as_array().unwrap().len(), 2);

    let oci = tmp.path().join("oci");
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{target}"),
        &format!("oci:{}:v1", oci.display()),
    ]);
    let bundle = tmp.path().join("bundle");
    let found = unpacked(&format!("{}:v1", oci.display()), &bundle);
    let expected: Vec<(String, String)> = [
        ("base0", "d755"),
        ("base0/data0.bin", "f644"),
        ("bin", "d755"),
        ("bin/busybox", "f755"),
        ("bin/sh", "l->busybox"),
        ("etc", "d755"),
        ("etc/app.conf", "f640"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    // The source root's own mode and the .hoistignore file itself are part of the layer too.
    let found: Vec<_> = found
        .into_iter()
        .filter(|(p, _)| p != ".hoistignore")
        .collect();
    assert_eq!(found, expected);
    let bb = Command::new(bundle.join("rootfs/bin/busybox"))
        .arg("true")
        .status()
        .unwrap();
    assert!(bb.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_file_change_uploads_one_layer_config_and_manifest() {
    let reg = Registry::start(false);
    let tmp = tempfile::tempdir().unwrap();
    let c = client();
    let base = push_base(&c, &reg, "app/svc:base", 2, 50_000, tmp.path()).await;
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    write_file(&a.join("lib.txt"), b"lib", 0o644);
    write_file(&b.join("main.txt"), b"v1", 0o644);
    let spec = BuildSpec {
        base: base.to_string(),
        layers: vec![layer(&a, "/lib"), layer(&b, "/app")],
        ..Default::default()
    };
    let target = r(&reg.reference("app/svc:dev"));
    let first = build_and_push(&c, &spec, &target, &BuildOptions::default())
        .await
        .unwrap();
    assert_eq!(first.layers_uploaded, 2);
    // Same input: nothing but the manifest is sent, and the digest is identical.
    let again = build_and_push(&c, &spec, &target, &BuildOptions::default())
        .await
        .unwrap();
    assert_eq!(again.digest, first.digest);
    assert_eq!(again.transfer.blob_uploads, 0);
    write_file(&b.join("main.txt"), b"v2", 0o644);
    let before_log = reg.log().matches("PUT /v2/app/svc/blobs/uploads").count();
    let rep = build_and_push(&c, &spec, &target, &BuildOptions::default())
        .await
        .unwrap();
    assert_ne!(rep.digest, first.digest);
    assert_eq!(rep.layers_uploaded, 1, "{rep:?}");
    assert_eq!(rep.transfer.blob_uploads, 2, "one layer + config: {rep:?}");
    assert_eq!(rep.transfer.manifest_puts, 1);
    assert_eq!(rep.transfer.mounts, 0);
    // The registry's own access log agrees: exactly two blob upload completions.
    let after_log = reg.log().matches("PUT /v2/app/svc/blobs/uploads").count();
    assert_eq!(after_log - before_log, 2, "registry access log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn base_in_another_repo_is_mounted_not_uploaded() {
    let reg = Registry::start(false);
    let tmp = tempfile::tempdir().unwrap();
    let c = client();
    let base = push_base(&c, &reg, "platform/base:1", 3, 200_000, tmp.path()).await;
    let src = tmp.path().join("app");
    write_file(&src.join("app.bin"), b"app", 0o755);
    let target = r(&reg.reference("team/app:1"));
    let spec = BuildSpec {
        base: base.to_string(),
        layers: vec![layer(&src, "/app")],
        ..Default::default()
    };
    let bar = hoist_oci::indicatif::ProgressBar::hidden();
    c.set_progress(Some(bar.clone()));
    let rep = build_and_push(&c, &spec, &target, &BuildOptions::default())
        .await
        .unwrap();
    assert_eq!(rep.layers_mounted, 3, "{rep:?}");
    assert_eq!(rep.transfer.mounts, 3);
    assert_eq!(rep.transfer.blob_uploads, 2, "new layer + config only");
    // The progress bar planned the mounted layers too, then took them off: it ends full,
    // at what was sent.
    assert_eq!(
        (bar.position(), bar.length()),
        (rep.transfer.upload_bytes, Some(rep.transfer.upload_bytes))
    );
    assert!(
        rep.transfer.upload_bytes < 10_000,
        "no base bytes uploaded: {rep:?}"
    );
    // Only the base config was downloaded, never a base layer.
    assert_eq!(rep.transfer.blob_downloads, 1);
    assert!(rep.transfer.download_bytes < 5_000);
    skopeo(&[
        "inspect",
        "--tls-verify=false",
        &format!("docker://{target}"),
    ]);
}

/// A base from a registry into a layout, from a layout into another, from a layout up to a
/// registry: the base layers travel once each, verified, and the bar ends full at exactly
/// the bytes that moved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layouts_as_base_or_target_move_each_base_layer_once() {
    let reg = Registry::start(false);
    let tmp = tempfile::tempdir().unwrap();
    let c = client();
    let base = push_base(&c, &reg, "platform/base:1", 3, 200_000, tmp.path()).await;
    let base_manifest = c.get_manifest(&base).await.unwrap().image().unwrap();
    let base_layer_bytes: u64 = base_manifest.layers.iter().map(|l| l.size).sum();
    let src = tmp.path().join("app");
    write_file(&src.join("app.bin"), b"app", 0o755);
    let spec = |base: String| BuildSpec {
        base,
        layers: vec![layer(&src, "/app")],
        ..Default::default()
    };
    let bar = || {
        let bar = hoist_oci::indicatif::ProgressBar::hidden();
        c.set_progress(Some(bar.clone()));
        bar
    };
    let opts = BuildOptions::default();

    let (one, two) = (tmp.path().join("one"), tmp.path().join("two"));
    let b = bar();
    let rep = build_to_layout(&c, &spec(base.to_string()), &one, Some("a"), &opts)
        .await
        .unwrap();
    assert_eq!((rep.layers_uploaded, rep.layers_present), (4, 0), "{rep:?}");
    // The base layers and the base config came down; each was stored under its digest.
    assert_eq!(rep.transfer.blob_downloads, 4, "{rep:?}");
    assert_eq!(b.position(), base_layer_bytes);
    assert_eq!(b.length(), Some(base_layer_bytes));
    let layout = hoist_oci::OciLayout::open(&one).unwrap();
    let (m, _) = layout
        .resolve_image(Some("a"), &Platform::linux_amd64())
        .unwrap();
    let m = m.image().unwrap();
    assert_eq!(m.layers[..3], base_manifest.layers[..]);
    for d in std::iter::once(&m.config).chain(&m.layers) {
        assert_eq!(layout.read_blob(&d.digest).unwrap().len() as u64, d.size);
    }

    let b = bar();
    let from_one = format!("oci:{}:a", one.display());
    let rep2 = build_to_layout(&c, &spec(from_one), &two, None, &opts)
        .await
        .unwrap();
    // Four base layers; the new one is the base's `/app` again (same bytes, same digest).
    assert_eq!(
        (rep2.layers_uploaded, rep2.layers_present),
        (4, 0),
        "{rep2:?}"
    );
    assert_eq!(rep2.transfer.requests, 0, "no registry involved: {rep2:?}");
    assert_eq!(b.position(), image_bytes(&m) - m.config.size);
    assert_eq!(b.length(), Some(b.position()));

    let b = bar();
    let target = r(&reg.reference("team/app:1"));
    let from_two = format!("oci:{}", two.display());
    let rep3 = build_and_push(&c, &spec(from_two), &target, &opts)
        .await
        .unwrap();
    // The base holds `/app` twice and this build adds it a third time: the image has six
    // layers, four distinct, each sent once.
    assert_eq!(rep3.layers_uploaded, 4, "{rep3:?}");
    assert_eq!(rep3.transfer.blob_downloads, 0, "{rep3:?}");
    assert_eq!(b.position(), rep3.transfer.upload_bytes);
    assert_eq!(b.length(), Some(b.position()));
    let pushed = c.get_manifest(&target).await.unwrap().image().unwrap();
    assert_eq!(pushed.layers.len(), 6);
    assert_eq!(pushed.layers[..4], m.layers[..]);
    skopeo(&[
        "inspect",
        "--tls-verify=false",
        &format!("docker://{target}"),
    ]);
}

#[tokio::test]
async fn mount_probe_finds_linked_blobs_or_opens_an_upload() {
    let reg = Registry::start(false);
    let tmp = tempfile::tempdir().unwrap();
    let c = client();
    let base = push_base(&c, &reg, "a/img:1", 1, 10_000, tmp.path()).await;
    let d = c.get_manifest(&base).await.unwrap().image().unwrap().layers[0]
        .digest
        .clone();
    let a = r(&reg.reference("a/img"));
    let b = r(&reg.reference("b/img"));
    let posts = |reg: &Registry| reg.requests().get("POST").copied().unwrap_or(0);
    let (before, log_before) = (posts(&reg), reg.log().len());
    // Linked in `a`: found, as HEAD would.
    assert_eq!(c.probe_upload(&a, &d).await.unwrap(), None);
    // On the registry but not linked in `b`: an upload opens and nothing is linked.
    let loc = c.probe_upload(&b, &d).await.unwrap();
    assert!(loc.is_some());
    assert!(!c.has_blob(&b, &d).await.unwrap());
    assert_eq!(posts(&reg) - before, 2);
    let log = reg.log()[log_before..].to_string();
    for repo in ["a/img", "b/img"] {
        let probe = format!("\"POST /v2/{repo}/blobs/uploads/?mount={d}&from={repo} ");
        assert_eq!(log.matches(&probe).count(), 1, "{log}");
    }
}

/// `max_concurrency` bounds blob transfers over the whole client: two copies running at
/// once share its slots, as do the parallel downloads of a local-store pull, and every
/// blob still arrives intact. The source registry's own log is the outside witness.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfers_are_bounded_over_the_whole_client() {
    let open = Registry::start(false);
    let (d1, d2) = (Registry::start(false), Registry::start(false));
    let tmp = tempfile::tempdir().unwrap();
    let src = push_base(&client(), &open, "lib/five:1", 5, 6_000_000, tmp.path()).await;
    let c = RegistryClient::new(ClientOptions {
        max_concurrency: 2,
        ..Default::default()
    })
    .unwrap();
    let from = Location::Registry(src.clone());
    let (to1, to2) = (
        Location::Registry(r(&d1.reference("x/five:1"))),
        Location::Registry(r(&d2.reference("y/five:1"))),
    );
    let opts = CopyOptions::default();
    let (a, b) = tokio::join!(copy(&c, &from, &to1, &opts), copy(&c, &from, &to2, &opts));
    let (a, b) = (a.unwrap(), b.unwrap());
    // 5 layers + the config, each uploaded to both registries.
    assert_eq!((a.blobs_copied, b.blobs_copied), (6, 6));
    assert_eq!(a.digest, b.digest);
    assert_eq!(
        c.peak_transfers(),
        2,
        "12 blob transfers through a client allowing 2 at once"
    );
    let gets = open.max_concurrent("GET", "/blobs/sha256:");
    assert!(
        (1..=2).contains(&gets),
        "the source served {gets} blob GETs at once"
    );
    for (d, repo) in [(&d1, "x/five:1"), (&d2, "y/five:1")] {
        let dst = format!("docker://{}", d.reference(repo));
        let inspect = skopeo(&["inspect", "--tls-verify=false", &dst]);
        assert!(inspect.contains(&a.digest.to_string()), "{inspect}");
    }

    // A pull into the local store downloads in parallel, within the same bound.
    let puller = RegistryClient::new(ClientOptions {
        max_concurrency: 2,
        ..Default::default()
    })
    .unwrap();
    let bar = hoist_oci::indicatif::ProgressBar::hidden();
    puller.set_progress(Some(bar.clone()));
    let store = LocalStore::open(tmp.path().join("store")).unwrap();
    let img = store
        .pull(&puller, &src, &Platform::linux_amd64())
        .await
        .unwrap();
    assert_eq!(img.manifest.layers.len(), 5);
    let m = &img.manifest;
    let image_bytes = image_bytes(m);
    assert_eq!(
        (bar.position(), bar.length()),
        (image_bytes, Some(image_bytes))
    );
    assert_layers_stored(&store, &img.manifest.layers);
    assert_eq!(puller.peak_transfers(), 2, "6 downloads, 2 at once");
    let gets = open.max_concurrent("GET", "/blobs/sha256:");
    assert!((1..=2).contains(&gets), "{gets} blob GETs at once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_between_registries_and_layouts_keeps_digests() {
    let open = Registry::start(false);
    let authed = Registry::start(true);
    let tmp = tempfile::tempdir().unwrap();
    let c = RegistryClient::new(ClientOptions {
        chunk_size: Some(64 * 1024),
        ..Default::default()
    })
    .unwrap();
    c.set_credential(
        &authed.addr,
        Credential::Basic {
            username: USER.into(),
            password: PASS.into(),
        },
    );
    let src = push_base(&c, &open, "lib/img:1", 3, 150_000, tmp.path()).await;
    // Layers above the 64 KiB chunk size went up in PATCH chunks.
    assert!(
        open.log()
            .matches("\"PATCH /v2/lib/img/blobs/uploads/")
            .count()
            >= 6,
        "chunked upload expected"
    );
    let dst = r(&authed.reference("mirror/img:1"));
    // The progress bar: the planned bytes are the copied ones, and they all went by.
    let bar = hoist_oci::indicatif::ProgressBar::hidden();
    c.set_progress(Some(bar.clone()));
    let rep = copy(
        &c,
        &Location::Registry(src.clone()),
        &Location::Registry(dst.clone()),
        &CopyOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(rep.blobs_copied, 4);
    let m = c.get_manifest(&src).await.unwrap().image().unwrap();
    let image_bytes = image_bytes(&m);
    assert_eq!(rep.bytes_copied, image_bytes);
    assert_eq!(
        (bar.position(), bar.length()),
        (image_bytes, Some(image_bytes))
    );
    // The parallel transfers waited for the first request to learn that the destination
    // wants credentials: one 401, not one per blob.
    let refused = authed
        .log()
        .lines()
        .filter(|l| l.contains(" HTTP/1.1\" 401 "))
        .count();
    assert_eq!(refused, 1, "{}", authed.log());
    let src_digest = c.get_manifest(&src).await.unwrap().digest;
    assert_eq!(rep.digest, src_digest);
    assert_eq!(c.get_manifest(&dst).await.unwrap().digest, src_digest);
    // Again: every blob is skipped.
    let rep = copy(
        &c,
        &Location::Registry(src.clone()),
        &Location::Registry(dst.clone()),
        &CopyOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!((rep.blobs_copied, rep.blobs_skipped), (0, 4));
    assert_eq!(rep.bytes_copied, 0);
    // Planned, found there, taken off the plan again.
    assert_eq!(
        (bar.position(), bar.length()),
        (image_bytes, Some(image_bytes))
    );
    c.set_progress(None);
    // Through an OCI layout and back, and skopeo agrees on the digest.
    let dir = tmp.path().join("layout");
    let lay = Location::Layout {
        dir: dir.clone(),
        name: Some("v1".into()),
    };
    copy(
        &c,
        &Location::Registry(dst.clone()),
        &lay,
        &CopyOptions::default(),
    )
    .await
    .unwrap();
    let sk: serde_json::Value =
        serde_json::from_str(&skopeo(&["inspect", &format!("oci:{}:v1", dir.display())])).unwrap();
    assert_eq!(sk["Digest"], src_digest.to_string());
    let back = r(&open.reference("from/layout:1"));
    let rep = copy(
        &c,
        &lay,
        &Location::Registry(back.clone()),
        &CopyOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(rep.digest, src_digest);
    // Same registry, other repo: mounted.
    let m = copy(
        &c,
        &Location::Registry(src.clone()),
        &Location::Registry(r(&open.reference("other/img:1"))),
        &CopyOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(m.blobs_mounted, 4, "{m:?}");
    assert_eq!((m.transfer.upload_bytes, m.bytes_copied), (0, 0));

    // A blob corrupted at the source is rejected while streaming, and never lands.
    let bad = push_base(&c, &open, "lib/bad:1", 1, 40_000, &tmp.path().join("bad")).await;
    let layer = c.get_manifest(&bad).await.unwrap().image().unwrap().layers[0]
        .digest
        .clone();
    let file = open.blob_file(layer.hex());
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[100] ^= 0x55;
    std::fs::write(&file, bytes).unwrap();
    let dst = r(&authed.reference("mirror/bad:1"));
    let e = copy(
        &c,
        &Location::Registry(bad.clone()),
        &Location::Registry(dst.clone()),
        &CopyOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, Error::DigestMismatch { .. }), "{e}");
    assert!(!c.has_blob(&dst, &layer).await.unwrap());
    assert!(c.get_manifest(&dst).await.is_err());
    // Into a layout: the bad layer and the manifest do not land, the config may have (it is
    // fetched alongside), and the message says just that (it said "nothing was stored").
    let dir = tmp.path().join("bad-layout");
    let e = copy(
        &c,
        &Location::Registry(bad.clone()),
        &Location::Layout {
            dir: dir.clone(),
            name: Some("bad".into()),
        },
        &CopyOptions::default(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("; it was not stored, nor was the image's manifest (blobs that verified before it are kept)"),
        "{e}"
    );
    let layout = hoist_oci::OciLayout::open(&dir).unwrap();
    assert!(!layout.has_blob(&layer));
    assert!(layout.index().unwrap().manifests.is_empty());
    // What is left verified: the config at most, under its digest, no temp file.
    for f in std::fs::read_dir(layout.blob_dir()).unwrap() {
        let path = f.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(Digest::of(&std::fs::read(&path).unwrap()).hex(), name);
    }

    // A blob cut short at the source: a size mismatch, not retried as a dropped connection.
    let short = push_base(&c, &open, "lib/short:1", 1, 40_000, &tmp.path().join("s")).await;
    let layer = c
        .get_manifest(&short)
        .await
        .unwrap()
        .image()
        .unwrap()
        .layers[0]
        .digest
        .clone();
    let file = open.blob_file(layer.hex());
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
    let dst = r(&authed.reference("mirror/short:1"));
    let e = copy(
        &c,
        &Location::Registry(short),
        &Location::Registry(dst.clone()),
        &CopyOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, Error::SizeMismatch { .. }), "{e}");
    assert!(!c.has_blob(&dst, &layer).await.unwrap());
}

/// OCI layout → registry and layout → layout stream blobs from their files, verified on the
/// way, chunked or monolithic; a corrupted layout blob never lands anywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layout_blobs_stream_verified() {
    let reg = Registry::start(false);
    let tmp = tempfile::tempdir().unwrap();
    let c = client();
    let src = push_base(&c, &reg, "lib/img:1", 2, 300_000, tmp.path()).await;
    let dir = tmp.path().join("layout");
    let lay = Location::Layout {
        dir: dir.clone(),
        name: Some("v1".into()),
    };
    copy(
        &c,
        &Location::Registry(src.clone()),
        &lay,
        &CopyOptions::default(),
    )
    .await
    .unwrap();
    let digest = c.get_manifest(&src).await.unwrap().digest;
    let chunked = RegistryClient::new(ClientOptions {
        chunk_size: Some(64 * 1024),
        ..Default::default()
    })
    .unwrap();
    for (client, repo) in [(&c, "whole/img:1"), (&chunked, "chunked/img:1")] {
        let to = r(&reg.reference(repo));
        let rep = copy(
            client,
            &lay,
            &Location::Registry(to.clone()),
            &CopyOptions::default(),
        )
        .await
        .unwrap();
        assert_eq!((rep.digest.clone(), rep.blobs_copied), (digest.clone(), 3));
        assert_eq!(client.get_manifest(&to).await.unwrap().digest, digest);
    }
    assert!(
        reg.log()
            .matches("\"PATCH /v2/chunked/img/blobs/uploads/")
            .count()
            >= 8,
        "300 kB layers in 64 KiB chunks expected"
    );
    // Layout to layout: file copies, within the client's transfer slots (`--jobs`) too.
    let one_at_a_time = RegistryClient::new(ClientOptions {
        max_concurrency: 1,
        ..Default::default()
    })
    .unwrap();
    let copy_dir = tmp.path().join("layout2");
    let rep = copy(
        &one_at_a_time,
        &lay,
        &Location::Layout {
            dir: copy_dir.clone(),
            name: None,
        },
        &CopyOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!((rep.digest, rep.blobs_copied), (digest.clone(), 3));
    // No registry moved these bytes, yet the report counts them.
    let m = c.get_manifest(&src).await.unwrap().image().unwrap();
    let image_bytes = image_bytes(&m);
    assert_eq!(rep.bytes_copied, image_bytes);
    assert_eq!(one_at_a_time.peak_transfers(), 1, "file copies take slots");
    let sk: serde_json::Value = serde_json::from_str(&skopeo(&[
        "inspect",
        &format!("oci:{}", copy_dir.display()),
    ]))
    .unwrap();
    assert_eq!(sk["Digest"], digest.to_string());

    // Corrupt one layer blob in the layout: every destination refuses it.
    let bad = m.layers[0].digest.clone();
    let file = dir.join("blobs/sha256").join(bad.hex());
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[1000] ^= 0x55;
    std::fs::write(&file, bytes).unwrap();
    for (client, repo) in [(&c, "whole/bad:1"), (&chunked, "chunked/bad:1")] {
        let to = r(&reg.reference(repo));
        let e = copy(
            client,
            &lay,
            &Location::Registry(to.clone()),
            &CopyOptions::default(),
        )
        .await
        .unwrap_err();
        // The source is a user's layout: the blob is named and left there.
        assert!(
            matches!(
                e,
                Error::CorruptBlob {
                    fate: hoist_oci::CorruptFate::LeftInUserLayout,
                    ..
                }
            ),
            "{repo}: {e}"
        );
        assert!(file.exists(), "{repo}");
        assert!(!client.has_blob(&to, &bad).await.unwrap(), "{repo}");
        assert!(client.get_manifest(&to).await.is_err(), "{repo}");
    }
    let bad_dir = tmp.path().join("layout3");
    let e = copy(
        &c,
        &lay,
        &Location::Layout {
            dir: bad_dir.clone(),
            name: None,
        },
        &CopyOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            e,
            Error::CorruptBlob {
                fate: hoist_oci::CorruptFate::LeftInUserLayout,
                ..
            }
        ),
        "{e}"
    );
    assert!(!bad_dir.join("blobs/sha256").join(bad.hex()).exists());
    assert!(file.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_platform_index_copy_all_and_platform_selection() {
    let reg = Registry::start(false);
    let tmp = tempfile::tempdir().unwrap();
    let c = client();
    let f = tmp.path().join("f");
    write_file(&f.join("x"), b"x", 0o644);
    let mut descs = vec![];
    for p in ["linux/amd64", "linux/arm64/v8"] {
        let plat: Platform = p.parse().unwrap();
        let t = r(&reg.reference(&format!("multi/img:{}", p.replace('/', "-"))));
        let spec = BuildSpec {
            base: "scratch".into(),
            // A layer both platforms share, and one of each's own.
            layers: vec![
                layer(&f, "/common"),
                layer(&f, &format!("/{}", p.replace('/', "_"))),
            ],
            ..Default::default()
        };
        let rep = build_and_push(
            &c,
            &spec,
            &t,
            &BuildOptions {
                platform: plat.clone(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let raw = c.get_manifest(&t).await.unwrap();
        let mut d = Descriptor::new(
            media::OCI_MANIFEST,
            rep.digest.clone(),
            raw.bytes.len() as u64,
        );
        d.platform = Some(plat);
        descs.push(d);
    }
    let idx = ImageIndex {
        schema_version: 2,
        media_type: Some(media::OCI_INDEX.into()),
        manifests: descs.clone(),
        annotations: None,
    };
    let raw = RawManifest::new(serde_json::to_vec(&idx).unwrap(), None).unwrap();
    let top = r(&reg.reference("multi/img:latest"));
    c.put_manifest(&top, &raw).await.unwrap();
    // Platform selection picks the right child.
    let (img, from) = c
        .resolve_image(&top, &"linux/arm64".parse().unwrap())
        .await
        .unwrap();
    assert_eq!(img.digest, descs[1].digest);
    assert_eq!(from.unwrap().digest, raw.digest);
    let e = c
        .resolve_image(&top, &"linux/s390x".parse().unwrap())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("linux/s390x") && e.contains("linux/amd64"),
        "{e}"
    );
    // --all keeps the index digest; the default copies linux/amd64 only.
    let every_platform = CopyOptions {
        all_platforms: true,
        ..Default::default()
    };
    let all = copy(
        &c,
        &Location::Registry(top.clone()),
        &Location::Registry(r(&reg.reference("copy/all:1"))),
        &every_platform,
    )
    .await
    .unwrap();
    assert_eq!(all.digest, raw.digest);
    // Into a layout: every platform's blobs in one go, the shared layer once, and the bar
    // planned for all of them at the start ends full.
    let bar = hoist_oci::indicatif::ProgressBar::hidden();
    c.set_progress(Some(bar.clone()));
    let dir = tmp.path().join("all");
    let layout_dst = Location::Layout {
        dir: dir.clone(),
        name: Some("all".into()),
    };
    let all = copy(
        &c,
        &Location::Registry(top.clone()),
        &layout_dst,
        &every_platform,
    )
    .await
    .unwrap();
    c.set_progress(None);
    assert_eq!(all.digest, raw.digest);
    // Two configs, the shared layer, two platform layers.
    assert_eq!((all.blobs_copied, all.blobs_skipped), (5, 0), "{all:?}");
    assert_eq!(all.transfer.blob_downloads, 5, "{all:?}");
    assert_eq!(bar.position(), all.bytes_copied);
    assert_eq!(bar.length(), Some(all.bytes_copied));
    let layout = hoist_oci::OciLayout::open(&dir).unwrap();
    let (arm, _) = layout
        .resolve_image(Some("all"), &"linux/arm64".parse().unwrap())
        .unwrap();
    assert_eq!(arm.digest, descs[1].digest);
    // index.json lists the index alone, as skopeo writes it: its images are blobs it points
    // to, so the layout is not ambiguous without a name, and goes back whole.
    let entries = |l: &hoist_oci::OciLayout| {
        let index = l.index().unwrap();
        let names = index.manifests.iter().map(hoist_oci::layout::ref_name);
        let names = names.map(|n| n.map(String::from)).collect::<Vec<_>>();
        (index.manifests.len(), names)
    };
    assert_eq!(entries(&layout), (1, vec![Some("all".to_string())]));
    assert_eq!(layout.get_manifest(None).unwrap().digest, raw.digest);
    let unnamed = Location::Layout {
        dir: dir.clone(),
        name: None,
    };
    let back = copy(
        &c,
        &unnamed,
        &Location::Registry(r(&reg.reference("copy/back:1"))),
        &every_platform,
    )
    .await
    .unwrap();
    assert_eq!(back.digest, raw.digest);
    let sk = skopeo(&["inspect", "--raw", &format!("oci:{}", dir.display())]);
    assert_eq!(Digest::of(sk.trim_end().as_bytes()), raw.digest);
    // Retagged: the index that had the name leaves index.json (its blobs stay).
    let one_img = copy(
        &c,
        &Location::Registry(r(&reg.reference("multi/img:linux-amd64"))),
        &layout_dst,
        &CopyOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(entries(&layout), (1, vec![Some("all".to_string())]));
    assert_eq!(layout.get_manifest(None).unwrap().digest, one_img.digest);
    assert!(layout.has_blob(&raw.digest));
    let one = copy(
        &c,
        &Location::Registry(top.clone()),
        &Location::Registry(r(&reg.reference("copy/one:1"))),
        &CopyOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(one.digest, descs[0].digest);
    // Pinned to the index's own digest without --all: the hint says what would do it.
    let e = copy(
        &c,
        &Location::Registry(top.clone()),
        &Location::Registry(r(&reg.reference(&format!("copy/pin@{}", raw.digest)))),
        &CopyOptions::default(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(e.contains("--all copies it whole"), "{e}");
    // A layout destination named like a digest could never be found by that name.
    let e = copy(
        &c,
        &Location::Registry(top.clone()),
        &format!("oci:{}:{}", tmp.path().join("d").display(), raw.digest)
            .parse()
            .unwrap(),
        &CopyOptions::default(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(e.contains("not a digest"), "{e}");
    assert!(
        !tmp.path().join("d").exists(),
        "refused before anything is written"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_store_pulls_verified_and_rejects_corrupt_blobs() {
    let reg = Registry::start(false);
    let tmp = tempfile::tempdir().unwrap();
    let c = client();
    let good = push_base(&c, &reg, "store/good:1", 2, 20_000, tmp.path()).await;
    let store = LocalStore::open(tmp.path().join("store")).unwrap();
    let img = store
        .pull(&c, &good, &Platform::linux_amd64())
        .await
        .unwrap();
    assert_eq!(img.manifest.layers.len(), 2);
    assert_layers_stored(&store, &img.manifest.layers);
    let again = store.resolve(&good).unwrap();
    assert_eq!(again.manifest_digest, img.manifest_digest);
    assert!(
        store
            .resolve(&good.with_digest(img.manifest_digest.clone()))
            .is_ok()
    );

    // Corrupt one layer inside the registry's storage: the registry serves the bad bytes.
    let bad_dir = tmp.path().join("bad");
    write_file(&bad_dir.join("only.bin"), &pseudo_random(99, 30_000), 0o644);
    let bad = r(&reg.reference("store/bad:1"));
    build_and_push(
        &c,
        &BuildSpec {
            base: "scratch".into(),
            layers: vec![layer(&bad_dir, "/x")],
            ..Default::default()
        },
        &bad,
        &BuildOptions::default(),
    )
    .await
    .unwrap();
    let m = c.get_manifest(&bad).await.unwrap().image().unwrap();
    let layer_digest = m.layers[0].digest.clone();
    let file = reg.blob_file(layer_digest.hex());
    let mut bytes = std::fs::read(&file).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0xff;
    std::fs::write(&file, bytes).unwrap();
    let err = store
        .pull(&c, &bad, &Platform::linux_amd64())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
    assert!(err.to_string().contains(&layer_digest.to_string()), "{err}");
    assert!(
        !store.blob_path(&layer_digest).exists(),
        "nothing written for a mismatching blob"
    );
    assert!(matches!(store.resolve(&bad), Err(Error::NotInStore { .. })));
    // No temp file left behind either: every file in the store is named by its own digest.
    for e in std::fs::read_dir(store.layout().root().join("blobs/sha256")).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_str().unwrap().to_string();
        assert_eq!(
            Digest::of(&std::fs::read(&p).unwrap()).hex(),
            name,
            "stray file {}",
            p.display()
        );
    }
}

/// The process's umask, from /proc (reading it with umask(2) would change it meanwhile).
fn umask() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("Umask:")).unwrap();
    u32::from_str_radix(line["Umask:".len()..].trim(), 8).unwrap()
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// A blob cut short in the store (a crash, a full disk) is not "already stored": the next
/// pull fetches it again and umoci reads the image. The same for an OCI layout that a
/// copy writes into. Store files are readable by all, as skopeo and umoci write them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_stored_blob_is_fetched_again() {
    let reg = Registry::start(false);
    let tmp = tempfile::tempdir().unwrap();
    let img = push_base(&client(), &reg, "store/cut:1", 2, 30_000, tmp.path()).await;
    let store = LocalStore::open(tmp.path().join("store")).unwrap();
    let pulled = store
        .pull(&client(), &img, &Platform::linux_amd64())
        .await
        .unwrap();
    let (file, dir) = (0o644 & !umask(), 0o755 & !umask());
    let root = store.layout().root();
    assert_eq!(mode(&root.join("index.json")), file, "index.json");
    assert_eq!(mode(&root.join("oci-layout")), file, "oci-layout");
    assert_eq!(mode(&root.join("blobs/sha256")), dir, "blobs/sha256");
    for e in std::fs::read_dir(root.join("blobs/sha256")).unwrap() {
        let p = e.unwrap().path();
        assert_eq!(mode(&p), file, "{}", p.display());
    }

    let cut = &pulled.manifest.layers[1];
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(store.blob_path(&cut.digest))
        .unwrap();
    f.set_len(100).unwrap();
    drop(f);
    let c = client();
    store
        .pull(&c, &img, &Platform::linux_amd64())
        .await
        .unwrap();
    assert_eq!(
        (c.counters().blob_downloads, c.counters().download_bytes),
        (1, cut.size),
        "only the cut blob is fetched again"
    );
    assert_layers_stored(&store, &pulled.manifest.layers);
    let files = unpacked(
        &format!("{}:{img}", root.display()),
        &tmp.path().join("bundle"),
    );
    assert!(
        files.iter().any(|(p, _)| p == "base1/data1.bin"),
        "{files:?}"
    );

    // An OCI layout as a copy's destination: the same.
    let dir = tmp.path().join("layout");
    let lay = Location::Layout {
        dir: dir.clone(),
        name: Some("v1".into()),
    };
    let src = Location::Registry(img.clone());
    copy(&client(), &src, &lay, &CopyOptions::default())
        .await
        .unwrap();
    std::fs::write(dir.join("blobs/sha256").join(cut.digest.hex()), b"cut").unwrap();
    let rep = copy(&client(), &src, &lay, &CopyOptions::default())
        .await
        .unwrap();
    assert_eq!(rep.blobs_copied, 1, "{rep:?}");
    skopeo(&[
        "copy",
        &format!("oci:{}:v1", dir.display()),
        &format!("oci:{}:v1", tmp.path().join("check").display()),
    ]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_clear_errors() {
    let reg = Registry::start(false);
    let authed = Registry::start(true);
    let tmp = tempfile::tempdir().unwrap();
    let c = client();
    let e = Reference::parse("127.0.0.1:5000/Bad Name:tag")
        .unwrap_err()
        .to_string();
    assert!(e.contains("invalid image reference"), "{e}");

    // Missing base tag: names repository and tag.
    push_base(&c, &reg, "exists/repo:1", 1, 100, tmp.path()).await;
    let spec = BuildSpec {
        base: reg.reference("exists/repo:nope"),
        ..Default::default()
    };
    let e = build_and_push(
        &c,
        &spec,
        &r(&reg.reference("t/t:1")),
        &BuildOptions::default(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("\"exists/repo\"") && e.contains("\"nope\""),
        "{e}"
    );

    // 401: says where credentials were looked up. DOCKER_CONFIG is not set in this process
    // to avoid races between tests; the default path is named.
    let target = r(&authed.reference("x/y:1"));
    let spec = BuildSpec {
        base: "scratch".into(),
        ..Default::default()
    };
    let e = build_and_push(&c, &spec, &target, &BuildOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Unauthorized { .. }), "{e}");
    let e = e.to_string();
    assert!(
        e.contains("requires credentials (HTTP 401")
            && e.contains("config.json")
            && e.contains("hoist registry login"),
        "{e}"
    );
    // Wrong password: same, and says credentials came from where they did.
    let c2 = client();
    c2.set_credential(
        &authed.addr,
        Credential::Basic {
            username: USER.into(),
            password: "wrong".into(),
        },
    );
    let e = c2.ping(&target).await.unwrap_err().to_string();
    assert!(
        e.contains("refused the credentials (HTTP 401")
            && e.contains("credentials given on the command line"),
        "{e}"
    );

    // Layer source missing, destination escaping.
    let missing = tmp.path().join("does-not-exist");
    let spec = BuildSpec {
        base: "scratch".into(),
        layers: vec![layer(&missing, "/app")],
        ..Default::default()
    };
    let e = build_and_push(
        &c,
        &spec,
        &r(&reg.reference("t/t:1")),
        &BuildOptions::default(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        e.contains(&missing.display().to_string()) && e.contains("does not exist"),
        "{e}"
    );
    let spec = BuildSpec {
        base: "scratch".into(),
        layers: vec![layer(tmp.path(), "../../etc")],
        ..Default::default()
    };
    let e = build_and_push(
        &c,
        &spec,
        &r(&reg.reference("t/t:1")),
        &BuildOptions::default(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(e.contains("escapes the image root"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn base_on_another_registry_is_streamed_across_and_store_builds_work() {
    let open = Registry::start(false);
    let authed = Registry::start(true);
    let tmp = tempfile::tempdir().unwrap();
    let c = client();
    c.set_credential(
        &authed.addr,
        Credential::Basic {
            username: USER.into(),
            password: PASS.into(),
        },
    );
    let base = push_base(&c, &open, "up/base:1", 2, 30_000, tmp.path()).await;
    let src = tmp.path().join("app");
    write_file(&src.join("x"), b"x", 0o644);
    let spec = BuildSpec {
        base: base.to_string(),
        layers: vec![layer(&src, "/app")],
        ..Default::default()
    };
    let target = r(&authed.reference("down/app:1"));
    let rep = build_and_push(&c, &spec, &target, &BuildOptions::default())
        .await
        .unwrap();
    assert_eq!(
        rep.layers_uploaded, 3,
        "2 base layers streamed across + 1 new: {rep:?}"
    );
    let again = build_and_push(&c, &spec, &target, &BuildOptions::default())
        .await
        .unwrap();
    assert_eq!(
        (again.transfer.blob_uploads, again.digest),
        (0, rep.digest.clone())
    );

    // The same spec built into the local store gives the same image digest, with no push.
    let store = LocalStore::open(tmp.path().join("store")).unwrap();
    let name = r("hoist.local/app:dev");
    let img = hoist_oci::build::build_to_store(&c, &spec, &store, &name, &BuildOptions::default())
        .await
        .unwrap();
    assert_eq!(img.manifest_digest, rep.digest);
    for l in &img.manifest.layers {
        assert!(store.blob_path(&l.digest).is_file());
    }
    assert_eq!(img.config.rootfs.diff_ids.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_schema2_base_gives_docker_media_types() {
    let reg = Registry::start(false);
    let tmp = tempfile::tempdir().unwrap();
    let c = client();
    let oci_base = push_base(&c, &reg, "conv/oci:1", 1, 1000, tmp.path()).await;
    let docker_base = reg.reference("conv/docker:1");
    support::registry::push_as_docker_schema2(&oci_base.to_string(), &docker_base);
    let src = tmp.path().join("app");
    write_file(&src.join("x"), b"x", 0o644);
    let target = r(&reg.reference("conv/app:1"));
    let spec = BuildSpec {
        base: docker_base.clone(),
        layers: vec![layer(&src, "/app")],
        ..Default::default()
    };
    build_and_push(&c, &spec, &target, &BuildOptions::default())
        .await
        .unwrap();
    let m = c.get_manifest(&target).await.unwrap();
    assert_eq!(m.media_type, media::DOCKER_MANIFEST);
    let m = m.image().unwrap();
    assert_eq!(m.config.media_type, media::DOCKER_CONFIG);
    assert!(
        m.layers
            .iter()
            .all(|l| l.media_type == media::DOCKER_LAYER_GZIP),
        "{m:?}"
    );
    // OCI base stays OCI.
    let spec = BuildSpec {
        base: oci_base.to_string(),
        layers: vec![layer(&src, "/app")],
        ..Default::default()
    };
    build_and_push(&c, &spec, &target, &BuildOptions::default())
        .await
        .unwrap();
    assert_eq!(
        c.get_manifest(&target).await.unwrap().media_type,
        media::OCI_MANIFEST
    );
    skopeo(&[
        "inspect",
        "--tls-verify=false",
        &format!("docker://{target}"),
    ]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_registry_with_custom_ca() {
    let reg = Registry::start_with(true, true);
    let tmp = tempfile::tempdir().unwrap();
    let target = r(&reg.reference("tls/app:1"));
    let src = tmp.path().join("a");
    write_file(&src.join("x"), b"x", 0o644);
    let spec = BuildSpec {
        base: "scratch".into(),
        layers: vec![layer(&src, "/a")],
        ..Default::default()
    };
    // Without the CA: the certificate is rejected.
    let no_ca = RegistryClient::new(ClientOptions {
        tls_loopback: vec![reg.addr.clone()],
        ..Default::default()
    })
    .unwrap();
    no_ca.set_credential(
        &reg.addr,
        Credential::Basic {
            username: USER.into(),
            password: PASS.into(),
        },
    );
    let e = build_and_push(&no_ca, &spec, &target, &BuildOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Transport { .. }), "{e}");
    assert!(e.to_string().contains("UnknownIssuer"), "{e}");
    assert!(e.to_string().contains("--ca-file FILE"), "{e}");
    // Not told that this loopback registry speaks TLS: plain HTTP first, its answer says
    // so, and the client goes on over HTTPS (once: the rest of the push is HTTPS only).
    let c = RegistryClient::new(ClientOptions {
        ca_file: Some(reg.ca_file()),
        ..Default::default()
    })
    .unwrap();
    c.set_credential(
        &reg.addr,
        Credential::Basic {
            username: USER.into(),
            password: PASS.into(),
        },
    );
    let rep = build_and_push(&c, &spec, &target, &BuildOptions::default())
        .await
        .unwrap();
    assert_eq!(c.get_manifest(&target).await.unwrap().digest, rep.digest);
    // A first request that is a HEAD (the answer has no body to tell from): the 400 makes
    // the client try HTTPS once, and it stays there.
    let head_first = RegistryClient::new(ClientOptions {
        ca_file: Some(reg.ca_file()),
        ..Default::default()
    })
    .unwrap();
    head_first.set_credential(
        &reg.addr,
        Credential::Basic {
            username: USER.into(),
            password: PASS.into(),
        },
    );
    assert_eq!(
        head_first.manifest_digest(&target).await.unwrap(),
        Some(rep.digest.clone())
    );
    assert_eq!(
        head_first.get_manifest(&target).await.unwrap().digest,
        rep.digest
    );
    // The same push to a plain HTTP registry takes one request less: the first plain HTTP
    // one, which told the client to switch; after it, HTTPS only.
    let plain_authed = Registry::start(true);
    let p = client();
    p.set_credential(
        &plain_authed.addr,
        Credential::Basic {
            username: USER.into(),
            password: PASS.into(),
        },
    );
    let plain_target = r(&plain_authed.reference("tls/app:1"));
    build_and_push(&p, &spec, &plain_target, &BuildOptions::default())
        .await
        .unwrap();
    p.get_manifest(&plain_target).await.unwrap();
    assert_eq!(c.counters().requests, p.counters().requests + 1);
    // Without the CA, found the same way: the unknown issuer is named, with the hint.
    let e = RegistryClient::new(ClientOptions::default())
        .unwrap()
        .get_manifest(&target)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("https://") && e.contains("UnknownIssuer"), "{e}");
    assert!(e.contains("hint:") && e.contains("--ca-file FILE"), "{e}");

    // HTTPS asked of a registry that speaks plain HTTP: the hint says to name it insecure.
    let plain = Registry::start(false);
    let e = RegistryClient::new(ClientOptions {
        tls_loopback: vec![plain.addr.clone()],
        ..Default::default()
    })
    .unwrap()
    .get_manifest(&r(&plain.reference("x/y:1")))
    .await
    .unwrap_err()
    .to_string();
    assert!(
        e.contains(&format!("--insecure-registry {}", plain.addr)),
        "{e}"
    );
    let e = RegistryClient::new(ClientOptions {
        ca_file: Some(tmp.path().join("missing.pem")),
        ..Default::default()
    })
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("missing.pem"), "{e}");
}

/// A loopback address that closes plain HTTP connections and passes TLS ones on to
/// `tls_to` (as TLS servers that do not answer plain HTTP with a 400 do), or that closes
/// every connection when `tls_to` is None. Counts the connections it closed.
async fn tls_only_front(
    tls_to: Option<String>,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let closed = std::sync::Arc::new(AtomicUsize::new(0));
    let count = closed.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let (tls_to, count) = (tls_to.clone(), count.clone());
            tokio::spawn(async move {
                let mut first = [0u8; 1];
                let n = sock.peek(&mut first).await.unwrap_or(0);
                // 0x16: a TLS handshake record.
                match tls_to {
                    Some(to) if n == 1 && first[0] == 0x16 => {
                        let mut up = tokio::net::TcpStream::connect(to).await.unwrap();
                        let _ = tokio::io::copy_bidirectional(&mut sock, &mut up).await;
                    }
                    _ => {
                        count.fetch_add(1, Ordering::SeqCst);
                    }
                }
            });
        }
    });
    (addr, closed)
}

/// A loopback TLS registry that closes a plain HTTP connection instead of answering it:
/// the client tries HTTPS once, and it answers, so HTTPS it is from then on (one plain
/// connection for the whole push). Where HTTPS fails too, the plain failure is the error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_registry_that_closes_plain_connections() {
    use std::sync::atomic::Ordering;
    let reg = Registry::start_with(false, true);
    let (front, closed) = tls_only_front(Some(reg.addr.clone())).await;
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("a");
    write_file(&src.join("x"), b"x", 0o644);
    let spec = BuildSpec {
        base: "scratch".into(),
        layers: vec![layer(&src, "/a")],
        ..Default::default()
    };
    let c = RegistryClient::new(ClientOptions {
        ca_file: Some(reg.ca_file()),
        ..Default::default()
    })
    .unwrap();
    let target = r(&format!("{front}/tls/app:1"));
    let rep = build_and_push(&c, &spec, &target, &BuildOptions::default())
        .await
        .unwrap();
    assert_eq!(c.get_manifest(&target).await.unwrap().digest, rep.digest);
    assert_eq!(
        closed.load(Ordering::SeqCst),
        1,
        "one plain HTTP connection"
    );

    let (nothing, _) = tls_only_front(None).await;
    let e = client()
        .get_manifest(&r(&format!("{nothing}/x/y:1")))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains(&format!("http://{nothing}/v2/")), "{e}");
}

/// The same layer twice in one image: both places in the manifest, one upload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_layer_repeated_in_an_image_is_sent_once() {
    let reg = Registry::start(false);
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("app");
    write_file(&src.join("app.bin"), b"app", 0o755);
    let c = client();
    let spec = BuildSpec {
        base: "scratch".into(),
        layers: vec![layer(&src, "/app"), layer(&src, "/app")],
        ..Default::default()
    };
    let target = r(&reg.reference("team/dup:1"));
    let rep = build_and_push(&c, &spec, &target, &BuildOptions::default())
        .await
        .unwrap();
    assert_eq!(rep.layers_uploaded, 1, "{rep:?}");
    assert_eq!(
        rep.transfer.blob_uploads, 2,
        "the layer once, and the config"
    );
    let m = c.get_manifest(&target).await.unwrap().image().unwrap();
    assert_eq!(m.layers.len(), 2);
    assert_eq!(m.layers[0].digest, m.layers[1].digest);
}

/// An OCI artifact (here shaped like a Helm chart) is copied as it is, but building on it
/// or pulling it into the store is refused up front, naming what it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn artifacts_are_refused_as_bases_and_in_the_store() {
    let reg = Registry::start(false);
    let tmp = tempfile::tempdir().unwrap();
    let c = client();
    let chart = r(&reg.reference("charts/web:1.0.0"));
    let config = br#"{"name":"web","version":"1.0.0"}"#.to_vec();
    let layer = b"not really a chart tarball".to_vec();
    let helm_config = "application/vnd.cncf.helm.config.v1+json";
    let mut descriptors = vec![];
    for (data, media_type) in [
        (&config, helm_config),
        (
            &layer,
            "application/vnd.cncf.helm.chart.content.v1.tar+gzip",
        ),
    ] {
        let d = Digest::of(data);
        c.upload_blob(&chart, &d, data.clone().into(), None)
            .await
            .unwrap();
        descriptors.push(Descriptor::new(media_type, d, data.len() as u64));
    }
    let m = ImageManifest {
        schema_version: 2,
        media_type: Some(media::OCI_MANIFEST.into()),
        config: descriptors[0].clone(),
        layers: vec![descriptors[1].clone()],
        annotations: None,
    };
    let raw = RawManifest::new(serde_json::to_vec(&m).unwrap(), Some(media::OCI_MANIFEST)).unwrap();
    c.put_manifest(&chart, &raw).await.unwrap();

    let spec = BuildSpec {
        base: chart.to_string(),
        ..Default::default()
    };
    let target = r(&reg.reference("app/x:1"));
    let e = build_and_push(&c, &spec, &target, &BuildOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::NotAnImage { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains(&format!("base {chart} is not a container image"))
            && msg.contains(helm_config),
        "{msg}"
    );
    let store = LocalStore::open(tmp.path().join("store")).unwrap();
    let e = store
        .pull(&c, &chart, &Platform::linux_amd64())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::NotAnImage { .. }), "{e}");
    assert!(
        !store.layout().has_blob(&descriptors[1].digest),
        "refused before downloading"
    );
    // Copying it is fine: byte for byte.
    let copied = copy(
        &c,
        &Location::Registry(chart.clone()),
        &Location::Registry(r(&reg.reference("mirror/web:1.0.0"))),
        &CopyOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(copied.digest, raw.digest);
}

/// A base that is one image (no index) for another platform: refused when a platform was
/// asked for, built on as it is otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_platform_base_for_another_platform() {
    let reg = Registry::start(false);
    let tmp = tempfile::tempdir().unwrap();
    let c = client();
    let base = push_base(&c, &reg, "base/amd:1", 1, 1000, tmp.path()).await;
    let spec = BuildSpec {
        base: base.to_string(),
        ..Default::default()
    };
    let target = r(&reg.reference("app/arm:1"));
    let arm64 = BuildOptions {
        platform: "linux/arm64".parse().unwrap(),
        require_platform: true,
        ..Default::default()
    };
    let e = build_and_push(&c, &spec, &target, &arm64)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&format!(
            "base {base} is an image for linux/amd64 only, not linux/arm64"
        )),
        "{e}"
    );
    let lenient = BuildOptions {
        require_platform: false,
        ..arm64
    };
    build_and_push(&c, &spec, &target, &lenient).await.unwrap();
    let cfg = skopeo_config(&format!("docker://{target}"));
    assert_eq!(
        (cfg["os"].as_str(), cfg["architecture"].as_str()),
        (Some("linux"), Some("amd64"))
    );
}

/// A destination pinned to a digest takes only that manifest: the wrong one is refused
/// before any blob moves, the right one is copied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_pinned_to_another_digest_is_refused_up_front() {
    let reg = Registry::start(false);
    let other = Registry::start(false);
    let tmp = tempfile::tempdir().unwrap();
    let c = client();
    let src = push_base(&c, &reg, "pin/src:1", 2, 50_000, tmp.path()).await;
    let digest = c.get_manifest(&src).await.unwrap().digest;
    let wrong = Digest::of(b"something else");
    let before = c.counters();
    let e = copy(
        &c,
        &Location::Registry(src.clone()),
        &Location::Registry(r(&other.reference(&format!("pin/dst@{wrong}")))),
        &CopyOptions::default(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        e.contains(&format!(
            "is pinned to {wrong}, but the image copied is {digest}"
        )),
        "{e}"
    );
    let after = c.counters();
    assert_eq!(
        (after.blob_uploads, after.blob_downloads),
        (before.blob_uploads, before.blob_downloads),
        "no blob moved"
    );
    let rep = copy(
        &c,
        &Location::Registry(src),
        &Location::Registry(r(&other.reference(&format!("pin/dst@{digest}")))),
        &CopyOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(rep.digest, digest);
}

/// A blob's probe (POST) and its upload (PUT) share a connection: the client keeps one
/// connection pool per registry, so a copy opens about one connection per blob in flight,
/// not two (each a TLS handshake against a remote registry).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_reuses_its_connections() {
    let reg = Registry::start(false);
    let other = Registry::start(false);
    let tmp = tempfile::tempdir().unwrap();
    let src = push_base(&client(), &reg, "conn/src:1", 3, 100_000, tmp.path()).await;
    let c = client();
    let rep = copy(
        &c,
        &Location::Registry(src),
        &Location::Registry(r(&other.reference("conn/dst:1"))),
        &CopyOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(rep.blobs_copied, 4, "{rep:?}");
    let connections = other.connections();
    assert!(
        connections <= rep.blobs_copied + 1,
        "{connections} connections for {} blobs",
        rep.blobs_copied
    );
}

/// A manifest whose layer size is off by one (distribution only checks that the blob
/// exists) is refused at pull time: the blob is not stored, where every later read would
/// fail it, nor is the image.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_with_a_wrong_layer_size_is_refused_at_pull() {
    let reg = Registry::start(false);
    let tmp = tempfile::tempdir().unwrap();
    let c = client();
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#
            .to_vec();
    let layer = pseudo_random(7, 4096);
    let store = LocalStore::open(tmp.path().join("store")).unwrap();
    let layer_digest = Digest::of(&layer);
    for (tag, size, real) in [
        ("longer", 4097, "the blob is 4096 bytes"),
        ("shorter", 4095, "the registry sent more than that"),
    ] {
        let image = r(&reg.reference(&format!("bad/size:{tag}")));
        for data in [&config, &layer] {
            c.upload_blob(&image, &Digest::of(data), data.clone().into(), None)
                .await
                .unwrap();
        }
        let m = ImageManifest {
            schema_version: 2,
            media_type: Some(media::OCI_MANIFEST.into()),
            config: Descriptor::new(media::OCI_CONFIG, Digest::of(&config), config.len() as u64),
            layers: vec![Descriptor::new(
                media::OCI_LAYER_GZIP,
                layer_digest.clone(),
                size,
            )],
            annotations: None,
        };
        let raw =
            RawManifest::new(serde_json::to_vec(&m).unwrap(), Some(media::OCI_MANIFEST)).unwrap();
        c.put_manifest(&image, &raw).await.unwrap();
        let e = store
            .pull(&c, &image, &Platform::linux_amd64())
            .await
            .unwrap_err();
        assert!(
            matches!(&e, Error::ManifestSizeWrong { descriptor, .. } if *descriptor == size),
            "{tag}: {e}"
        );
        let msg = e.to_string();
        assert!(
            msg.contains(&format!(
                "the manifest of {image} gives size {size} for blob {layer_digest}, but {real}"
            )),
            "{msg}"
        );
        assert!(
            !store.layout().has_blob(&layer_digest),
            "{tag}: nothing lands"
        );
        assert!(
            store.resolve(&image).is_err(),
            "{tag}: the image is not stored"
        );
    }
}
