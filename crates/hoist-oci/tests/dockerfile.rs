//! Dockerfile builds with the real buildah (vfs storage, chroot isolation: works as root
//! without daemons), pushed to a real registry and read back by skopeo.

mod support;

use hoist_oci::Reference;
use hoist_oci::client::{ClientOptions, RegistryClient};
use hoist_oci::copy::{CopyOptions, Location, copy};
use hoist_oci::dockerfile::{Builder, BuilderOptions, DockerfileSpec, build_to_layout};
use support::registry::{Registry, skopeo_config, write_file};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buildah_builds_from_scratch_and_we_push() {
    if std::process::Command::new("buildah")
        .arg("--version")
        .output()
        .is_err()
    {
        panic!("buildah is required for this test (apt-get install buildah)");
    }
    let reg = Registry::start(false);
    let tmp = tempfile::tempdir().unwrap();
    let ctx = tmp.path().join("ctx");
    write_file(
        &ctx.join("busybox"),
        &std::fs::read("/bin/busybox").unwrap(),
        0o755,
    );
    std::fs::write(ctx.join("Dockerfile"), "FROM scratch\nCOPY busybox /bin/busybox\nENV GREETING=hi\nCMD [\"/bin/busybox\", \"true\"]\n").unwrap();
    let spec = DockerfileSpec {
        context: ctx.clone(),
        ..Default::default()
    };
    // Separate buildah storage per test run, so nothing leaks into the machine's store.
    let opts = BuilderOptions {
        storage_driver: Some("vfs".into()),
        isolation: Some("chroot".into()),
        root: Some(tmp.path().join("storage")),
    };
    let loc = build_to_layout(
        Builder::Buildah,
        &spec,
        &opts,
        &tmp.path().join("out"),
        "svc",
    )
    .await
    .unwrap();
    let c = RegistryClient::new(ClientOptions::default()).unwrap();
    let target = Reference::parse(&reg.reference("df/svc:1")).unwrap();
    let rep = copy(
        &c,
        &loc,
        &Location::Registry(target.clone()),
        &CopyOptions::default(),
    )
    .await
    .unwrap();
    let cfg = skopeo_config(&format!("docker://{target}"));
    assert_eq!(
        cfg["config"]["Cmd"],
        serde_json::json!(["/bin/busybox", "true"])
    );
    assert!(
        cfg["config"]["Env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e == "GREETING=hi")
    );
    assert!(rep.blobs_copied >= 2);

    // A broken Dockerfile: the builder's own error comes back, naming the file.
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch\nCOPY does-not-exist /x\n",
    )
    .unwrap();
    let e = build_to_layout(
        Builder::Buildah,
        &spec,
        &opts,
        &tmp.path().join("out2"),
        "svc",
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("buildah failed") && e.contains("Dockerfile"),
        "{e}"
    );
}

/// Two Dockerfile builds at once in one process (the engine builds services in
/// parallel, each under the same layout name): each layout gets its own image.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_builds_do_not_mix_up_their_images() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = BuilderOptions {
        storage_driver: Some("vfs".into()),
        isolation: Some("chroot".into()),
        root: Some(tmp.path().join("storage")),
    };
    let build = |n: usize| {
        let ctx = tmp.path().join(format!("ctx{n}"));
        std::fs::create_dir_all(&ctx).unwrap();
        std::fs::write(ctx.join("file"), format!("content {n}\n")).unwrap();
        std::fs::write(
            ctx.join("Dockerfile"),
            format!("FROM scratch\nCOPY file /file\nCMD [\"/service-{n}\"]\n"),
        )
        .unwrap();
        let spec = DockerfileSpec {
            context: ctx,
            ..Default::default()
        };
        let out = tmp.path().join(format!("out{n}"));
        let opts = opts.clone();
        async move {
            build_to_layout(Builder::Buildah, &spec, &opts, &out, "image")
                .await
                .unwrap();
            out
        }
    };
    let (a, b) = tokio::join!(build(1), build(2));
    for (n, out) in [(1, a), (2, b)] {
        let cfg = skopeo_config(&format!("oci:{}:image", out.display()));
        assert_eq!(
            cfg["config"]["Cmd"],
            serde_json::json!([format!("/service-{n}")]),
            "layout {n} holds another build's image"
        );
    }
}

/// Every file in every layer of the image `name` in the OCI layout `dir` (GNU tar reads
/// the layers, whatever their compression).
fn layout_files(dir: &std::path::Path) -> Vec<String> {
    let blob = |digest: &str| {
        dir.join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    };
    let json = |p: std::path::PathBuf| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
    };
    let index = json(dir.join("index.json"));
    let manifest = json(blob(index["manifests"][0]["digest"].as_str().unwrap()));
    let mut files = vec![];
    for layer in manifest["layers"].as_array().unwrap() {
        let out = std::process::Command::new("tar")
            .arg("-tf")
            .arg(blob(layer["digest"].as_str().unwrap()))
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        files.extend(
            String::from_utf8(out.stdout)
                .unwrap()
                .lines()
                .map(String::from),
        );
    }
    files
}

/// `<Dockerfile>.dockerignore` beside the Dockerfile wins over the context's
/// `.dockerignore` (BuildKit's rule, which the content tag follows), and a
/// `.containerignore` (which buildah alone would read first) does not count: buildah is
/// handed the file with `--ignorefile`, so the image leaves out exactly what the tag does
/// not hash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buildah_reads_the_ignore_file_the_content_tag_reads() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = tmp.path().join("ctx");
    for f in ["app.txt", "notes.md", "secret.txt"] {
        write_file(&ctx.join(f), f.as_bytes(), 0o644);
    }
    std::fs::write(ctx.join(".dockerignore"), "*.md\n").unwrap();
    std::fs::write(ctx.join(".containerignore"), "app.txt\n").unwrap();
    std::fs::write(ctx.join("Dockerfile"), "FROM scratch\nCOPY . /app/\n").unwrap();
    let opts = BuilderOptions {
        storage_driver: Some("vfs".into()),
        isolation: Some("chroot".into()),
        root: Some(tmp.path().join("storage")),
    };
    let spec = DockerfileSpec {
        context: ctx.clone(),
        ..Default::default()
    };
    let build = |out: &'static str| {
        let (spec, opts, dir) = (spec.clone(), opts.clone(), tmp.path().join(out));
        async move {
            build_to_layout(Builder::Buildah, &spec, &opts, &dir, "svc")
                .await
                .unwrap();
            let mut files = layout_files(&dir);
            files.retain(|f| f.contains("app/") && !f.ends_with('/'));
            files.sort();
            files
        }
    };
    assert_eq!(
        build("one").await,
        [
            "app/.containerignore",
            "app/.dockerignore",
            "app/Dockerfile",
            "app/app.txt",
            "app/secret.txt"
        ]
    );
    std::fs::write(ctx.join("Dockerfile.dockerignore"), "secret.txt\n").unwrap();
    assert_eq!(
        build("two").await,
        [
            "app/.containerignore",
            "app/.dockerignore",
            "app/Dockerfile",
            "app/Dockerfile.dockerignore",
            "app/app.txt",
            "app/notes.md"
        ]
    );
}
