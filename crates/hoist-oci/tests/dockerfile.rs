//! Dockerfile builds with the real buildah and podman (vfs storage of the test's own, no
//! daemons: see support/builder.rs), pushed to a real registry and read back by skopeo.
//! Each test runs for both builders.

mod support;

use hoist_oci::Reference;
use hoist_oci::client::{ClientOptions, RegistryClient};
use hoist_oci::copy::{CopyOptions, Location, copy};
use hoist_oci::dockerfile::{Builder, DockerfileSpec, build_to_layout};
use support::builder;
use support::registry::{Registry, skopeo_config, unpacked, write_file};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buildah_builds_from_scratch_and_we_push() {
    builds_from_scratch_and_we_push(Builder::Buildah).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn podman_builds_from_scratch_and_we_push() {
    builds_from_scratch_and_we_push(Builder::Podman).await;
}

/// The manifest digest of the only image in the OCI layout `dir`.
fn layout_digest(dir: &std::path::Path) -> String {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

/// A build with a `RUN` step, pushed; the same inputs again give the same digest; a
/// broken Dockerfile fails with the builder's own error; the builder's storage keeps
/// neither working containers nor the build's image.
async fn builds_from_scratch_and_we_push(b: Builder) {
    builder::require(b);
    let reg = Registry::start(false);
    let tmp = tempfile::tempdir().unwrap();
    let ctx = tmp.path().join("ctx");
    write_file(
        &ctx.join("busybox"),
        &std::fs::read("/bin/busybox").unwrap(),
        0o755,
    );
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"sh\", \"-c\", \"echo built > /built; /bin/busybox ip -o link > /links\"]\nENV GREETING=hi\nCMD [\"/bin/busybox\", \"true\"]\n",
    )
    .unwrap();
    let spec = DockerfileSpec {
        context: ctx.clone(),
        ..Default::default()
    };
    // Separate storage per test run, so nothing leaks into the machine's store.
    let storage = tmp.path().join("storage");
    let opts = builder::options(b, &storage);
    let out = tmp.path().join("out");
    let loc = build_to_layout(b, &spec, &opts, &out, "svc").await.unwrap();
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
    assert_eq!(cfg["created"], "2000-01-01T00:00:00Z", "{cfg}");
    assert!(rep.blobs_copied >= 2);
    // What was pushed, as skopeo copies it back from the registry and umoci unpacks it:
    // the copied file and what the RUN step wrote.
    let pulled = tmp.path().join("pulled");
    let copied = std::process::Command::new("skopeo")
        .args(["copy", "--src-tls-verify=false"])
        .arg(format!("docker://{target}"))
        .arg(format!("oci:{}:x", pulled.display()))
        .output()
        .unwrap();
    assert!(copied.status.success(), "{copied:?}");
    let bundle = tmp.path().join("bundle");
    let files = unpacked(&format!("{}:x", pulled.display()), &bundle);
    for f in [("bin/busybox", "f755"), ("built", "f644")] {
        assert!(
            files.contains(&(f.0.to_string(), f.1.to_string())),
            "{f:?} missing: {files:?}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(bundle.join("rootfs/built")).unwrap(),
        "built\n"
    );
    if opts.network.as_deref() == Some("none") {
        // The RUN step had no network: loopback only.
        let links = std::fs::read_to_string(bundle.join("rootfs/links")).unwrap();
        assert_eq!(links.lines().count(), 1, "{links}");
        assert!(links.starts_with("1: lo:"), "{links}");
    }

    // The same inputs give the same image.
    let again = tmp.path().join("again");
    build_to_layout(b, &spec, &opts, &again, "svc")
        .await
        .unwrap();
    assert_eq!(
        layout_digest(&again),
        layout_digest(&out),
        "not reproducible"
    );

    // A broken Dockerfile: the builder's own error comes back, naming the file.
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch\nCOPY does-not-exist /x\n",
    )
    .unwrap();
    let e = build_to_layout(b, &spec, &opts, &tmp.path().join("out2"), "svc")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&format!("{} failed", b.name()))
            && e.contains("Dockerfile")
            && e.contains("does-not-exist"),
        "{e}"
    );
    builder::assert_clean(b, &storage);
    assert_eq!(
        builder::images(b, &storage),
        Vec::<String>::new(),
        "a FROM scratch build leaves no image at all"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buildah_parallel_builds_do_not_mix_up_their_images() {
    parallel_builds_do_not_mix_up_their_images(Builder::Buildah).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn podman_parallel_builds_do_not_mix_up_their_images() {
    parallel_builds_do_not_mix_up_their_images(Builder::Podman).await;
}

/// Two Dockerfile builds at once in one process (the engine builds services in
/// parallel, each under the same layout name), on one storage: each layout gets its own
/// image.
async fn parallel_builds_do_not_mix_up_their_images(b: Builder) {
    builder::require(b);
    let tmp = tempfile::tempdir().unwrap();
    let storage = tmp.path().join("storage");
    let opts = builder::options(b, &storage);
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
            build_to_layout(b, &spec, &opts, &out, "image")
                .await
                .unwrap();
            out
        }
    };
    let (one, two) = tokio::join!(build(1), build(2));
    for (n, out) in [(1, one), (2, two)] {
        let cfg = skopeo_config(&format!("oci:{}:image", out.display()));
        assert_eq!(
            cfg["config"]["Cmd"],
            serde_json::json!([format!("/service-{n}")]),
            "layout {n} holds another build's image"
        );
    }
    builder::assert_clean(b, &storage);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buildah_gets_the_ca_and_the_credentials() {
    gets_the_ca_and_the_credentials(Builder::Buildah).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn podman_gets_the_ca_and_the_credentials() {
    gets_the_ca_and_the_credentials(Builder::Podman).await;
}

/// A registry with its own CA and a password: the builder pulls `FROM` it with hoist's
/// settings, the CA (`--cert-dir`) and the Docker config hoist reads (`--authfile`);
/// without them the same build fails on the certificate.
async fn gets_the_ca_and_the_credentials(b: Builder) {
    use hoist_oci::auth::Credential;
    use hoist_oci::build::{BuildOptions, BuildSpec, build_and_push};
    use hoist_oci::dockerfile::RegistryAccess;
    use support::registry::{PASS, USER};

    builder::require(b);
    let reg = Registry::start_with(true, true);
    let tmp = tempfile::tempdir().unwrap();
    let c = RegistryClient::new(ClientOptions {
        tls_loopback: vec![reg.addr.clone()],
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
    let base = Reference::parse(&reg.reference("private/bb:1")).unwrap();
    let spec = BuildSpec {
        base: "scratch".into(),
        layers: vec![hoist_oci::LayerSpec {
            from: "/bin/busybox".into(),
            to: "/bin/busybox".into(),
            ..Default::default()
        }],
        ..Default::default()
    };
    build_and_push(&c, &spec, &base, &BuildOptions::default())
        .await
        .unwrap();
    let docker = tmp.path().join("docker");
    std::fs::create_dir_all(&docker).unwrap();
    let auth = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!("{USER}:{PASS}"),
    );
    std::fs::write(
        docker.join("config.json"),
        format!(
            "{{\"auths\": {{\"{}\": {{\"auth\": \"{auth}\"}}}}}}",
            reg.addr
        ),
    )
    .unwrap();

    let ctx = tmp.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        format!("FROM {base}\nRUN [\"/bin/busybox\", \"sh\", \"-c\", \"echo ok > /ok\"]\n"),
    )
    .unwrap();
    let spec = DockerfileSpec {
        context: ctx.clone(),
        ..Default::default()
    };
    let storage = tmp.path().join("storage");
    let with = |registries: RegistryAccess| hoist_oci::dockerfile::BuilderOptions {
        registries,
        ..builder::options(b, &storage)
    };
    let no_ca = RegistryAccess {
        tls_loopback: vec![reg.addr.clone()],
        authfile: Some(docker.join("config.json")),
        ..Default::default()
    };
    let e = build_to_layout(
        b,
        &spec,
        &with(no_ca.clone()),
        &tmp.path().join("out0"),
        "image",
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(e.contains("certificate"), "{e}");
    assert!(
        e.contains("hint: give the registry's CA with --ca-file"),
        "{e}"
    );
    let no_auth = RegistryAccess {
        ca_file: Some(reg.ca_file()),
        authfile: None,
        ..no_ca.clone()
    };
    let e = build_to_layout(b, &spec, &with(no_auth), &tmp.path().join("out1"), "image")
        .await
        .unwrap_err()
        .to_string();
    assert!(e.to_lowercase().contains("unauthorized"), "{e}");
    let all = RegistryAccess {
        ca_file: Some(reg.ca_file()),
        ..no_ca
    };
    let out = tmp.path().join("out");
    build_to_layout(b, &spec, &with(all), &out, "image")
        .await
        .unwrap();
    let cfg = skopeo_config(&format!("oci:{}:image", out.display()));
    assert_eq!(
        cfg["rootfs"]["diff_ids"].as_array().unwrap().len(),
        2,
        "{cfg}"
    );
    assert!(layout_files(&out).iter().any(|f| f == "ok"));
    // The pulled base stays in the builder's storage (its cache, as for any pull).
    builder::assert_clean(b, &storage);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buildah_reads_the_ignore_file_the_content_tag_reads() {
    reads_the_ignore_file_the_content_tag_reads(Builder::Buildah).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn podman_reads_the_ignore_file_the_content_tag_reads() {
    reads_the_ignore_file_the_content_tag_reads(Builder::Podman).await;
}

/// `<Dockerfile>.dockerignore` beside the Dockerfile wins over the context's
/// `.dockerignore` (BuildKit's rule, which the content tag follows), and a
/// `.containerignore` (which buildah and podman alone would read first) does not count:
/// the builder is handed the file with `--ignorefile`, so the image leaves out exactly
/// what the tag does not hash.
async fn reads_the_ignore_file_the_content_tag_reads(b: Builder) {
    builder::require(b);
    let tmp = tempfile::tempdir().unwrap();
    let ctx = tmp.path().join("ctx");
    for f in ["app.txt", "notes.md", "secret.txt"] {
        write_file(&ctx.join(f), f.as_bytes(), 0o644);
    }
    std::fs::write(ctx.join(".dockerignore"), "*.md\n").unwrap();
    std::fs::write(ctx.join(".containerignore"), "app.txt\n").unwrap();
    std::fs::write(ctx.join("Dockerfile"), "FROM scratch\nCOPY . /app/\n").unwrap();
    let storage = tmp.path().join("storage");
    let opts = builder::options(b, &storage);
    let spec = DockerfileSpec {
        context: ctx.clone(),
        ..Default::default()
    };
    let build = |out: &'static str| {
        let (spec, opts, dir) = (spec.clone(), opts.clone(), tmp.path().join(out));
        async move {
            build_to_layout(b, &spec, &opts, &dir, "svc").await.unwrap();
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
    builder::assert_clean(b, &storage);
}
