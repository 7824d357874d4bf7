//! `hoist image build` from the project model, end to end: the real binary builds
//! examples/shop's images and pushes them to a real registry (or the local store).

#[path = "../../hoist-oci/tests/support/registry.rs"]
mod registry;

use std::path::{Path, PathBuf};
use std::process::Command as Std;

use assert_cmd::Command;
use registry::{Registry, skopeo_config};

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), &dest).unwrap();
        }
    }
}

/// A copy of examples/shop whose developer settings point at `registry`.
fn shop(registry: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("shop");
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/shop");
    copy_dir(&example, &root);
    std::fs::write(
        root.join("hoist-settings.yaml"),
        format!("registry: {registry}\n"),
    )
    .unwrap();
    (tmp, root)
}

fn hoist(root: &Path, home: &Path) -> Command {
    let mut c = Command::cargo_bin("hoist").unwrap();
    c.arg("-C")
        .arg(root)
        .env("DOCKER_CONFIG", home.join("docker"))
        .env("HOME", home)
        .env("HOIST_CACHE_DIR", home.join("cache"))
        .env_remove("HOIST_INSECURE_REGISTRIES")
        .env_remove("HOIST_CA_FILE");
    c
}

fn json(out: &[u8]) -> Vec<serde_json::Value> {
    serde_json::from_slice(out).unwrap_or_else(|e| {
        panic!("not JSON ({e}): {}", String::from_utf8_lossy(out));
    })
}

fn by_service<'a>(built: &'a [serde_json::Value], name: &str) -> &'a serde_json::Value {
    built
        .iter()
        .find(|b| b["service"] == name)
        .unwrap_or_else(|| panic!("{name} not built: {built:?}"))
}

#[test]
fn builds_pushes_and_rebuilds_only_what_changed() {
    let reg = Registry::start(false);
    let (tmp, root) = shop(&reg.addr);
    let out = hoist(&root, tmp.path())
        .args(["image", "build", "-o", "json"])
        .assert()
        .success();
    let first = json(&out.get_output().stdout);
    let names: Vec<&str> = first
        .iter()
        .map(|b| b["service"].as_str().unwrap())
        .collect();
    for svc in ["api", "stats", "web"] {
        assert!(names.contains(&svc), "{svc} missing from {names:?}");
    }

    // An outside client reads what was pushed, with the config from service.yaml.
    let web = by_service(&first, "web");
    let web_ref = web["reference"].as_str().unwrap();
    let cfg = skopeo_config(&format!("docker://{web_ref}"));
    assert_eq!(
        cfg["config"]["Entrypoint"],
        serde_json::json!(["/bin/busybox", "httpd"])
    );
    assert_eq!(cfg["config"]["User"], "65534");
    assert_eq!(cfg["config"]["WorkingDir"], "/www");
    // scratch + busybox layer + public layer
    assert_eq!(cfg["rootfs"]["diff_ids"].as_array().unwrap().len(), 2);

    // The same inputs again: same tags, same digests, nothing uploaded.
    let out = hoist(&root, tmp.path())
        .args(["image", "build", "-o", "json"])
        .assert()
        .success();
    let again = json(&out.get_output().stdout);
    for b in &again {
        let prev = by_service(&first, b["service"].as_str().unwrap());
        assert_eq!(b["reference"], prev["reference"]);
        assert_eq!(b["digest"], prev["digest"]);
        assert_eq!(b["uploaded_bytes"], 0, "{b}");
    }

    // One page edited: web gets a new tag; it uploads its small page layer and
    // config, never the busybox layer again; api is untouched.
    std::fs::write(
        root.join("services/web/public/index.html"),
        "<h1>changed</h1>\n",
    )
    .unwrap();
    let out = hoist(&root, tmp.path())
        .args(["image", "build", "web", "-o", "json"])
        .assert()
        .success();
    let changed = json(&out.get_output().stdout);
    assert_eq!(changed.len(), 1);
    assert_ne!(changed[0]["reference"], web["reference"]);
    let uploaded = changed[0]["uploaded_bytes"].as_u64().unwrap();
    assert!(
        uploaded > 0 && uploaded < 64 * 1024,
        "uploaded {uploaded} bytes"
    );
}

#[test]
fn builds_into_the_local_store() {
    let reg = Registry::start(false);
    let (tmp, root) = shop(&reg.addr);
    let out = hoist(&root, tmp.path())
        .args([
            "image", "build", "api", "--store", "--tag", "dev", "-o", "json",
        ])
        .assert()
        .success();
    let built = json(&out.get_output().stdout);
    assert_eq!(built[0]["destination"], "store");
    // Nothing went to the registry.
    assert!(!reg.log().contains("PUT /v2/"), "registry saw a push");
    // The store is an OCI layout an outside tool reads.
    let layout = tmp.path().join("cache/images");
    skopeo_config(&format!(
        "oci:{}:{}",
        layout.display(),
        built[0]["reference"].as_str().unwrap()
    ));
}

/// An image built on another service's image, into the local store: the base service is
/// built first (not asked for), and the child's manifest starts with the base's layers,
/// read from the store itself (no registry is touched).
#[test]
fn builds_images_on_other_services_into_the_local_store() {
    let reg = Registry::start(false);
    let (tmp, root) = shop(&reg.addr);
    let child = root.join("services/child");
    std::fs::create_dir_all(child.join("files")).unwrap();
    std::fs::write(child.join("files/extra.txt"), "child").unwrap();
    std::fs::write(
        child.join("service.yaml"),
        "name: child\nimage:\n  name: shop/child\n  base: api\n  layers: [{from: ./files, to: /child}]\n",
    )
    .unwrap();
    let out = hoist(&root, tmp.path())
        .args(["image", "build", "child", "--store", "-o", "json"])
        .assert()
        .success();
    let built = json(&out.get_output().stdout);
    let names: Vec<&str> = built
        .iter()
        .map(|b| b["service"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["api", "child"]);
    assert!(!reg.log().contains("/v2/shop/"), "the registry was asked");
    let layout = tmp.path().join("cache/images");
    let manifest = |name: &str| {
        let r = by_service(&built, name)["reference"].as_str().unwrap();
        let out = Std::new("skopeo")
            .args(["inspect", "--raw"])
            .arg(format!("oci:{}:{r}", layout.display()))
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let (api, child) = (manifest("api"), manifest("child"));
    let layers = |m: &serde_json::Value| m["layers"].as_array().unwrap().clone();
    assert_eq!(layers(&child).len(), layers(&api).len() + 1);
    assert_eq!(layers(&child)[..layers(&api).len()], layers(&api)[..]);
    // The child's own files are there, on top of the base's.
    let unpacked = tmp.path().join("unpacked");
    let r = by_service(&built, "child")["reference"].as_str().unwrap();
    let ok = Std::new("umoci")
        .args(["unpack", "--rootless", "--image"])
        .arg(format!("{}:{r}", layout.display()))
        .arg(&unpacked)
        .output()
        .unwrap();
    assert!(ok.status.success(), "{ok:?}");
    let rootfs = unpacked.join("rootfs");
    assert_eq!(
        std::fs::read_to_string(rootfs.join("child/extra.txt")).unwrap(),
        "child"
    );
    assert!(rootfs.join("bin/busybox").is_file());
}

/// A `dockerfile:` service with `--store`: buildah (vfs, chroot, a storage root of
/// its own) builds it, and it lands in the local store without any registry.
#[test]
fn builds_dockerfile_services_into_the_local_store() {
    assert!(
        Std::new("buildah").arg("--version").output().is_ok(),
        "buildah is required for this test (scripts/install-deps)"
    );
    let reg = Registry::start(false);
    let (tmp, root) = shop(&reg.addr);
    let svc = root.join("services/df");
    std::fs::create_dir_all(&svc).unwrap();
    std::fs::write(
        svc.join("service.yaml"),
        "name: df\nimage:\n  name: shop/df\n  dockerfile: Dockerfile\n",
    )
    .unwrap();
    std::fs::write(
        svc.join("Dockerfile"),
        "FROM scratch\nCOPY busybox /bin/busybox\nCMD [\"/bin/busybox\", \"echo\", \"from a Dockerfile\"]\n",
    )
    .unwrap();
    std::fs::copy("/bin/busybox", svc.join("busybox")).unwrap();
    let out = hoist(&root, tmp.path())
        .args(["image", "build", "df", "--store", "-o", "json"])
        .env("HOIST_BUILDER", "buildah")
        .env("HOIST_BUILDAH_STORAGE_DRIVER", "vfs")
        .env("HOIST_BUILDAH_ISOLATION", "chroot")
        .env("HOIST_BUILDAH_ROOT", tmp.path().join("buildah"))
        .assert()
        .success();
    let built = json(&out.get_output().stdout);
    let df = by_service(&built, "df");
    assert_eq!(df["destination"], "store");
    assert!(!reg.log().contains("PUT /v2/"), "registry saw a push");
    let cfg = skopeo_config(&format!(
        "oci:{}:{}",
        tmp.path().join("cache/images").display(),
        df["reference"].as_str().unwrap()
    ));
    assert_eq!(
        cfg["config"]["Cmd"],
        serde_json::json!(["/bin/busybox", "echo", "from a Dockerfile"])
    );
}

#[test]
fn names_what_is_wrong() {
    let reg = Registry::start(false);
    let (tmp, root) = shop(&reg.addr);
    let a = hoist(&root, tmp.path())
        .args(["image", "build", "nope"])
        .assert()
        .failure();
    let e = String::from_utf8_lossy(&a.get_output().stderr).to_string();
    assert!(
        e.contains("no service named `nope`") && e.contains("web"),
        "{e}"
    );

    // A layer source that is gone is reported with the file before anything is pushed.
    std::fs::remove_dir_all(root.join("services/api/data")).unwrap();
    let a = hoist(&root, tmp.path())
        .args(["image", "build", "api"])
        .assert()
        .failure();
    let e = String::from_utf8_lossy(&a.get_output().stderr).to_string();
    assert!(e.contains("service.yaml") && e.contains("data"), "{e}");
    assert!(!reg.log().contains("PUT /v2/"), "registry saw a push");
    // service.yaml says `from: ./data`: shown as meant, `services/api/data`.
    assert!(
        e.contains("services/api/data does not exist") && !e.contains("/./"),
        "{e}"
    );
}

/// `--platform` given to `image build`: a base that exists for another platform only is
/// refused (as `append` refuses it), `base: scratch` gets the platform asked for, and a
/// Dockerfile service is built for it by the builder (a `FROM scratch` build needs no
/// emulation, so buildah makes an arm64 image here). The platform is part of the content
/// tag: an arm64 build never takes the tag the default build gives the same files.
#[test]
fn build_holds_to_the_platform_asked() {
    assert!(
        Std::new("buildah").arg("--version").output().is_ok(),
        "buildah is required for this test (scripts/install-deps)"
    );
    let reg = Registry::start(false);
    let (tmp, root) = shop(&reg.addr);
    // An amd64-only base in the registry.
    let base = reg.reference("bases/amd:1");
    hoist(&root, tmp.path())
        .args(["image", "append", "--base", "scratch", "--tag", &base])
        .args(["--layer", "/bin/busybox:/bin/busybox"])
        .assert()
        .success();
    let svc = root.join("services/onbase");
    std::fs::create_dir_all(&svc).unwrap();
    std::fs::write(
        svc.join("service.yaml"),
        format!("name: onbase\nimage:\n  name: shop/onbase\n  base: {base}\n  layers: [{{from: ./f, to: /f}}]\n"),
    )
    .unwrap();
    std::fs::write(svc.join("f"), "x").unwrap();
    let a = hoist(&root, tmp.path())
        .args(["image", "build", "onbase", "--platform", "linux/arm64"])
        .assert()
        .failure();
    let e = String::from_utf8_lossy(&a.get_output().stderr).to_string();
    assert!(
        e.contains("linux/amd64") && e.contains("linux/arm64"),
        "{e}"
    );
    assert!(!reg.log().contains("PUT /v2/shop/onbase"), "pushed anyway");
    // Not asked: built on as it is.
    hoist(&root, tmp.path())
        .args(["image", "build", "onbase"])
        .assert()
        .success();

    let df = root.join("services/df");
    std::fs::create_dir_all(&df).unwrap();
    std::fs::write(
        df.join("service.yaml"),
        "name: df\nimage:\n  name: shop/df\n  dockerfile: Dockerfile\n",
    )
    .unwrap();
    std::fs::write(df.join("Dockerfile"), "FROM scratch\nCOPY f /f\n").unwrap();
    std::fs::write(df.join("f"), "x").unwrap();
    let out = hoist(&root, tmp.path())
        .args(["image", "build", "df", "api", "--platform", "linux/arm64"])
        .args(["-o", "json"])
        .env("HOIST_BUILDER", "buildah")
        .env("HOIST_BUILDAH_STORAGE_DRIVER", "vfs")
        .env("HOIST_BUILDAH_ISOLATION", "chroot")
        .env("HOIST_BUILDAH_ROOT", tmp.path().join("buildah"))
        .assert()
        .success();
    let built = json(&out.get_output().stdout);
    let default = hoist(&root, tmp.path())
        .args(["image", "build", "api", "-o", "json"])
        .assert()
        .success();
    let default = json(&default.get_output().stdout);
    let arm = by_service(&built, "api")["reference"].as_str().unwrap();
    let amd = by_service(&default, "api")["reference"].as_str().unwrap();
    assert!(arm.contains(":h-") && amd.contains(":h-"), "{arm} {amd}");
    assert_ne!(arm, amd);
    // The default written out is the default: the tag render and up compute.
    let explicit = hoist(&root, tmp.path())
        .args([
            "image",
            "build",
            "api",
            "--platform",
            "linux/amd64",
            "-o",
            "json",
        ])
        .assert()
        .success();
    let explicit = json(&explicit.get_output().stdout);
    assert_eq!(by_service(&explicit, "api")["reference"], amd);
    assert_eq!(
        skopeo_config(&format!("docker://{amd}"))["architecture"],
        "amd64"
    );
    for name in ["df", "api"] {
        let reference = by_service(&built, name)["reference"].as_str().unwrap();
        let cfg = skopeo_config(&format!("docker://{reference}"));
        assert_eq!(cfg["architecture"], "arm64", "{name}: {cfg}");
        assert_eq!(cfg["os"], "linux", "{name}: {cfg}");
    }
}

/// A project without a registry holding service `app` (`services/app/files/a`), whose image
/// section is `base: scratch` plus `image` (indented YAML lines).
fn one_service(image: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("p");
    std::fs::create_dir_all(root.join("services/app/files")).unwrap();
    std::fs::write(
        root.join("hoist.yaml"),
        "name: p\nservices: [\"services/*\"]\n",
    )
    .unwrap();
    std::fs::write(root.join("services/app/files/a"), "a").unwrap();
    std::fs::write(
        root.join("services/app/service.yaml"),
        format!("name: app\nimage:\n  base: scratch\n{image}"),
    )
    .unwrap();
    (tmp, root)
}

/// No `registry:` anywhere: a bare image name would mean Docker Hub, so `image build` refuses
/// before anything is built or sent, and says the ways out; `--store` needs no registry.
#[test]
fn no_registry_is_not_docker_hub() {
    let (tmp, root) = one_service("  name: myorg/app\n  layers: [{from: ./files, to: /f}]\n");
    let two = root.join("services/two");
    std::fs::create_dir_all(&two).unwrap();
    std::fs::write(
        two.join("service.yaml"),
        "name: two\nimage:\n  base: scratch\n  layers: [{from: ../app/files, to: /f}]\n",
    )
    .unwrap();
    let a = hoist(&root, tmp.path())
        .args(["image", "build"])
        .timeout(std::time::Duration::from_secs(30))
        .assert()
        .failure();
    let e = String::from_utf8_lossy(&a.get_output().stderr).to_string();
    assert!(
        e.contains("names no registry") && e.contains("Docker Hub") && e.contains("--store"),
        "{e}"
    );
    // Every such service is named at once.
    assert!(
        e.contains("`app` (docker.io/myorg/app:h-")
            && e.contains("`two` (docker.io/library/two:h-"),
        "{e}"
    );
    assert!(!e.contains("cannot reach"), "it tried the network: {e}");
    // With -o json a script gets the outcome of every service on stdout, as for any other
    // failure of the command, and the same non-zero exit.
    let a = hoist(&root, tmp.path())
        .args(["image", "build", "-o", "json"])
        .timeout(std::time::Duration::from_secs(30))
        .assert()
        .failure();
    let outcomes = json(&a.get_output().stdout);
    assert_eq!(outcomes.len(), 2, "{outcomes:?}");
    // `reference` as the project names it (as for other failures); the error says where
    // that would have gone.
    for (name, reference, hub) in [
        ("app", "myorg/app:h-", "docker.io/myorg/app:h-"),
        ("two", "two:h-", "docker.io/library/two:h-"),
    ] {
        let o = by_service(&outcomes, name);
        assert!(
            o["reference"].as_str().unwrap().starts_with(reference),
            "{o}"
        );
        assert!(o.get("digest").is_none(), "{o}");
        let error = o["error"].as_str().unwrap();
        assert!(
            error.contains("not built")
                && error.contains(&format!("so {hub}"))
                && error.contains("Docker Hub")
                && error.contains("--store"),
            "{o}"
        );
    }
    let e = String::from_utf8_lossy(&a.get_output().stderr).to_string();
    assert!(e.contains("names no registry"), "{e}");
    hoist(&root, tmp.path())
        .args(["image", "build", "--store"])
        .assert()
        .success();
    // The cache hoist made holds the developer's files: owner-only directories.
    for d in ["cache", "cache/images"] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(tmp.path().join(d))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700, "{d}");
    }
    let v = hoist(&root, tmp.path()).arg("validate").assert().success();
    let out = String::from_utf8_lossy(&v.get_output().stdout).to_string();
    assert!(out.contains("2 services, no problems"), "{out}");
}

/// Warnings read as the errors do (`warning: …`), without log times or module paths;
/// `-v` keeps the full log format.
#[test]
fn warnings_are_plain_lines() {
    // The second layer is the empty one: the warning names it by its own line.
    let (tmp, root) = one_service(
        "  layers:\n    - {from: ./files, to: /a}\n    - from: ./files\n      to: /f\n      exclude: [\"*\"]\n",
    );
    let run = |verbose: bool| {
        let mut c = hoist(&root, tmp.path());
        // Each run builds: a content-tagged image already in the store is not built again.
        let tag = if verbose { "v" } else { "plain" };
        c.args(["image", "build", "--store", "--tag", tag])
            .env_remove("HOIST_LOG");
        if verbose {
            c.arg("-v");
        }
        let a = c.assert().success();
        String::from_utf8_lossy(&a.get_output().stderr).to_string()
    };
    let plain = run(false);
    let line = plain
        .lines()
        .find(|l| l.contains("leave no files"))
        .unwrap_or_else(|| panic!("{plain}"));
    // It names the service and where its layer is declared: a project builds many.
    let manifest = root.join("services/app/service.yaml");
    assert_eq!(
        line,
        format!(
            "warning: service `app`, layer from ./files ({}:6) -> /f: include/exclude leave \
             no files to copy",
            manifest.display()
        ),
        "{plain}"
    );
    assert!(!plain.contains("hoist_oci"), "{plain}");
    let v = hoist(&root, tmp.path()).arg("validate").assert().success();
    let out = String::from_utf8_lossy(&v.get_output().stdout).to_string();
    assert!(out.contains("1 service, no problems"), "{out}");
    let full = run(true);
    assert!(
        full.lines()
            .any(|l| l.contains("WARN") && l.contains("hoist_oci") && l.contains("leave no files")),
        "{full}"
    );
}

/// A FIFO in a layer source used to hang `render` and `image build` for ever (the content
/// tag read it, waiting for a writer) while `validate` saw nothing. Now all three name the
/// file, its kind and the layer's line at once; the timeout bounds a regression.
#[test]
fn a_fifo_in_a_layer_source_fails_fast_everywhere() {
    let (tmp, root) =
        one_service("  layers:\n    - {from: ./files, to: /data, exclude: ['*.tmp']}\n");
    let fifo = root.join("services/app/files/pipe");
    assert!(Std::new("mkfifo").arg(&fifo).status().unwrap().success());
    for args in [
        &["validate"][..],
        &["render"],
        &["image", "build", "--store", "app"],
    ] {
        let a = hoist(&root, tmp.path())
            .args(args)
            .timeout(std::time::Duration::from_secs(30))
            .assert()
            .failure();
        let out = a.get_output();
        let e = String::from_utf8_lossy(&out.stderr).to_string()
            + &String::from_utf8_lossy(&out.stdout);
        for want in [
            "files/pipe is a named pipe (FIFO)",
            "exclude it",
            "service.yaml:5",
        ] {
            assert!(e.contains(want), "hoist {args:?}: {want:?} not in {e}");
        }
    }
}

/// An invalid `SOURCE_DATE_EPOCH` used to be ignored silently (another mtime than asked
/// for, under a tag that did not say so); now the tag (render) and the build (also with
/// `--tag`, which computes no content tag) name the variable and its value.
#[test]
fn an_invalid_source_date_epoch_is_an_error() {
    let (tmp, root) = one_service("  layers: [{from: ./files, to: /data}]\n");
    for args in [
        &["render"][..],
        &["image", "build", "--store", "app"],
        &["image", "build", "--store", "--tag", "dev", "app"],
    ] {
        for bad in ["garbage", "-5"] {
            let a = hoist(&root, tmp.path())
                .env("SOURCE_DATE_EPOCH", bad)
                .args(args)
                .assert()
                .failure();
            let e = String::from_utf8_lossy(&a.get_output().stderr).to_string();
            assert!(
                e.contains(&format!("SOURCE_DATE_EPOCH=\"{bad}\" is not a time")),
                "hoist {args:?} with {bad}: {e}"
            );
        }
    }
    hoist(&root, tmp.path())
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .args(["image", "build", "--store", "app"])
        .assert()
        .success();
}

/// A service that fails does not hide what was built: `-o json` lists the images built
/// and the services that failed (with why, and those built on them as not built), and the
/// command still fails, naming the service.
#[test]
fn a_failed_service_is_named_and_the_others_reported() {
    let reg = Registry::start(false);
    let (tmp, root) = shop(&reg.addr);
    let web = root.join("services/web/service.yaml");
    let yaml = std::fs::read_to_string(&web).unwrap().replace(
        "base: scratch",
        &format!("base: {}", reg.reference("nosuch:v1")),
    );
    std::fs::write(&web, yaml).unwrap();
    let child = root.join("services/child");
    std::fs::create_dir_all(&child).unwrap();
    std::fs::write(
        child.join("service.yaml"),
        "name: child\nimage:\n  name: shop/child\n  base: web\n  layers: [{from: ./f, to: /f}]\n",
    )
    .unwrap();
    std::fs::write(child.join("f"), "x").unwrap();

    let a = hoist(&root, tmp.path())
        .args(["image", "build", "-o", "json"])
        .assert()
        .failure();
    let report = json(&a.get_output().stdout);
    for svc in ["api", "stats"] {
        let b = by_service(&report, svc);
        assert!(b["digest"].as_str().unwrap().starts_with("sha256:"), "{b}");
        assert!(b.get("error").is_none(), "{b}");
    }
    let w = by_service(&report, "web");
    assert!(w["error"].as_str().unwrap().contains("nosuch"), "{w}");
    assert!(w.get("digest").is_none(), "{w}");
    let c = by_service(&report, "child");
    assert!(
        c["error"]
            .as_str()
            .unwrap()
            .contains("service `web`, failed"),
        "{c}"
    );
    let e = String::from_utf8_lossy(&a.get_output().stderr).to_string();
    assert!(e.contains("building service `web`"), "{e}");

    let a = hoist(&root, tmp.path())
        .args(["image", "build", "web"])
        .assert()
        .failure();
    let e = String::from_utf8_lossy(&a.get_output().stderr).to_string();
    assert!(
        e.contains("building service `web`") && e.contains("manifest unknown"),
        "{e}"
    );
}

/// No service with an `image:` section: said so, and `[]` for scripts.
#[test]
fn nothing_to_build_is_said() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("p");
    std::fs::create_dir_all(root.join("services/s")).unwrap();
    std::fs::write(
        root.join("hoist.yaml"),
        "name: p\nregistry: 127.0.0.1:5000\nservices: [\"services/*\"]\n",
    )
    .unwrap();
    std::fs::write(root.join("services/s/service.yaml"), "name: s\n").unwrap();
    let a = hoist(&root, tmp.path())
        .args(["image", "build"])
        .assert()
        .success();
    let out = String::from_utf8_lossy(&a.get_output().stdout).to_string();
    assert!(out.contains("nothing to build"), "{out}");
    let a = hoist(&root, tmp.path())
        .args(["image", "build", "-o", "json"])
        .assert()
        .success();
    assert!(json(&a.get_output().stdout).is_empty());
}
