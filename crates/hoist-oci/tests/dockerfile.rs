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
        ..Default::default()
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
        ..Default::default()
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

/// A registry with its own CA and a password: buildah pulls `FROM` it with hoist's
/// settings, the CA (`--cert-dir`) and the Docker config hoist reads (`--authfile`);
/// without them the same build fails on the certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buildah_gets_the_ca_and_the_credentials() {
    use hoist_oci::auth::Credential;
    use hoist_oci::build::{BuildOptions, BuildSpec, build_and_push};
    use hoist_oci::dockerfile::RegistryAccess;
    use support::registry::{PASS, USER};

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
    let with = |registries: RegistryAccess| BuilderOptions {
        storage_driver: Some("vfs".into()),
        isolation: Some("chroot".into()),
        root: Some(tmp.path().join("storage")),
        registries,
    };
    let no_ca = RegistryAccess {
        tls_loopback: vec![reg.addr.clone()],
        authfile: Some(docker.join("config.json")),
        ..Default::default()
    };
    let e = build_to_layout(
        Builder::Buildah,
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
    let e = build_to_layout(
        Builder::Buildah,
        &spec,
        &with(no_auth),
        &tmp.path().join("out1"),
        "image",
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(e.to_lowercase().contains("unauthorized"), "{e}");
    let all = RegistryAccess {
        ca_file: Some(reg.ca_file()),
        ..no_ca
    };
    let out = tmp.path().join("out");
    build_to_layout(Builder::Buildah, &spec, &with(all), &out, "image")
        .await
        .unwrap();
    let cfg = skopeo_config(&format!("oci:{}:image", out.display()));
    assert_eq!(
        cfg["rootfs"]["diff_ids"].as_array().unwrap().len(),
        2,
        "{cfg}"
    );
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
        ..Default::default()
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
