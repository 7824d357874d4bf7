//! `hoist image` and `hoist registry` end to end: the real binary against real registries.

#[path = "../../hoist-oci/tests/support/registry.rs"]
mod registry;

#[path = "../../hoist-oci/tests/support/fault_proxy.rs"]
mod fault_proxy;

#[path = "../../hoist-oci/tests/support/token_issuer.rs"]
mod token_issuer;

use assert_cmd::Command;
use registry::{PASS, Registry, USER, blob_digests, skopeo, write_file};

fn hoist(docker_config: &std::path::Path) -> Command {
    let mut c = Command::cargo_bin("hoist").unwrap();
    c.env("DOCKER_CONFIG", docker_config)
        .env("HOME", docker_config)
        // The cache (image store, blob locations) under this HOME, not the developer's.
        .env_remove("XDG_CACHE_HOME")
        .env_remove("HOIST_CACHE_DIR")
        .env_remove("HOIST_INSECURE_REGISTRIES")
        .env_remove("HOIST_CA_FILE");
    c
}

fn stdout(a: &assert_cmd::assert::Assert) -> String {
    String::from_utf8(a.get_output().stdout.clone()).unwrap()
}

fn stderr(a: &assert_cmd::assert::Assert) -> String {
    String::from_utf8(a.get_output().stderr.clone()).unwrap()
}

#[test]
fn login_append_inspect_copy_logout() {
    let authed = Registry::start(true);
    let open = Registry::start(false);
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("docker");
    let src = tmp.path().join("src");
    write_file(&src.join("run.sh"), b"#!/bin/sh\necho hi\n", 0o755);
    let target = authed.reference("team/app:v1");

    // Without credentials: 401 that says where we looked.
    let a = hoist(&cfg)
        .args(["image", "append", "--base", "scratch", "--layer"])
        .arg(format!("{}:/app", src.display()))
        .args(["--tag", &target])
        .assert()
        .failure();
    let e = stderr(&a);
    assert!(
        e.contains("401") && e.contains(&cfg.join("config.json").display().to_string()),
        "{e}"
    );

    // Wrong password: refused, nothing stored.
    let a = hoist(&cfg)
        .args([
            "registry",
            "login",
            &authed.addr,
            "-u",
            USER,
            "--password-stdin",
        ])
        .write_stdin("nope\n")
        .assert()
        .failure();
    assert!(
        stderr(&a).contains("login to")
            && stderr(&a).contains(&format!("refused user \"{USER}\""))
            && stderr(&a).contains("check the username and the password"),
        "{}",
        stderr(&a)
    );
    assert!(!cfg.join("config.json").exists());
    hoist(&cfg)
        .args([
            "registry",
            "login",
            &authed.addr,
            "-u",
            USER,
            "--password-stdin",
        ])
        .write_stdin(format!("{PASS}\n"))
        .assert()
        .success();
    let stored: serde_json::Value =
        serde_json::from_slice(&std::fs::read(cfg.join("config.json")).unwrap()).unwrap();
    assert!(
        stored["auths"][&authed.addr]["auth"].is_string(),
        "{stored}"
    );

    let a = hoist(&cfg)
        .args(["image", "append", "--base", "scratch", "--layer"])
        .arg(format!("{}:/app", src.display()))
        .args([
            "--entrypoint",
            r#"["/app/run.sh"]"#,
            "--env",
            "A=1",
            "--label",
            "team=x",
            "--workdir",
            "/app",
            "--tag",
            &target,
            "-o",
            "json",
        ])
        .assert()
        .success();
    let rep: serde_json::Value = serde_json::from_str(&stdout(&a)).unwrap();
    assert_eq!(rep["layers_uploaded"], 1);
    // The transfer counters have one set of names in every command's JSON (pull below).
    let transfer_keys = |doc: &serde_json::Value| -> Vec<String> {
        let t = doc["transfer"].as_object();
        let t = t.unwrap_or_else(|| panic!("no transfer object: {doc}"));
        t.keys().cloned().collect()
    };
    assert_eq!(rep["transfer"]["retries"], 0, "{rep}");
    assert_eq!(rep["transfer"]["resent_bytes"], 0, "{rep}");

    let a = hoist(&cfg)
        .args(["image", "inspect", &target, "-o", "json"])
        .assert()
        .success();
    let v: serde_json::Value = serde_json::from_str(&stdout(&a)).unwrap();
    assert_eq!(v["digest"], rep["digest"]);
    assert_eq!(v["layers"].as_array().unwrap().len(), 1);
    assert_eq!(
        v["config"]["config"]["Entrypoint"],
        serde_json::json!(["/app/run.sh"])
    );
    assert_eq!(v["config"]["config"]["Labels"]["team"], "x");
    let a = hoist(&cfg)
        .args(["image", "inspect", &target])
        .assert()
        .success();
    assert!(
        stdout(&a).contains("Entrypoint:  [\"/app/run.sh\"]"),
        "{}",
        stdout(&a)
    );
    assert!(
        stdout(&a).contains("Layers:      1 (") && stdout(&a).contains(" B compressed)"),
        "{}",
        stdout(&a)
    );

    // Copy to the other registry keeps the digest, one blob at a time too.
    let dst = open.reference("mirror/app:v1");
    let a = hoist(&cfg)
        .args(["image", "copy", &target, &dst, "-o", "json", "--jobs", "1"])
        .assert()
        .success();
    let c: serde_json::Value = serde_json::from_str(&stdout(&a)).unwrap();
    assert_eq!(c["digest"], rep["digest"]);
    assert_eq!(transfer_keys(&c), transfer_keys(&rep), "{c}");
    // The layer and the config.
    assert!(c["bytes_copied"].as_u64().unwrap() > v["size"].as_u64().unwrap());
    // People get sizes and counts in words. (A fresh cache: with the one above, hoist
    // would remember the blobs in mirror/app and mount them; tests/blob_mounts.rs.)
    let a = hoist(&cfg)
        .env("HOIST_CACHE_DIR", tmp.path().join("fresh-cache"))
        .args(["image", "copy", &target, &open.reference("mirror2/app:v1")])
        .assert()
        .success();
    let said = stdout(&a);
    assert!(
        said.contains(": 2 blobs copied (") && said.contains("), 0 mounted, 0 already present"),
        "{said}"
    );
    let a = hoist(&cfg)
        .args(["image", "copy", &target, &dst, "-j", "0"])
        .assert()
        .code(2);
    assert!(
        String::from_utf8_lossy(&a.get_output().stderr).contains("0 is not in 1..=64"),
        "{:?}",
        a.get_output()
    );

    // Pull into the local store.
    let store = tmp.path().join("cache");
    let pull = || {
        let a = hoist(&cfg)
            .env("HOIST_CACHE_DIR", &store)
            .args(["image", "pull", &dst, "-o", "json"])
            .assert()
            .success();
        serde_json::from_str::<serde_json::Value>(&stdout(&a)).unwrap()
    };
    let first = pull();
    assert_eq!(
        first["blobs_downloaded"], 2,
        "the layer and the config: {first}"
    );
    assert!(store.join("images/index.json").is_file());
    let again = pull();
    assert_eq!(
        (&again["blobs_downloaded"], &again["bytes_downloaded"]),
        (&serde_json::json!(0), &serde_json::json!(0)),
        "{again}"
    );
    assert_eq!(transfer_keys(&first), transfer_keys(&rep), "{first}");
    assert_eq!(
        (
            &first["transfer"]["retries"],
            &first["transfer"]["resent_bytes"]
        ),
        (&serde_json::json!(0), &serde_json::json!(0)),
        "{first}"
    );
    assert_eq!(
        first["transfer"]["blob_downloads"],
        first["blobs_downloaded"]
    );
    // No second, differently named copy of the retry counters at the top level.
    assert!(first.get("bytes_resent").is_none() && first.get("retries").is_none());

    hoist(&cfg)
        .args(["registry", "logout", &authed.addr])
        .assert()
        .success();
    hoist(&cfg)
        .args(["image", "inspect", &target])
        .assert()
        .failure();
}

/// A registry with token auth (the real docker-registry verifying tokens from the test's
/// issuer): `hoist registry login` through the token server, append, inspect, copy to a
/// Basic-auth registry and back, a push the policy denies, and a stored password the
/// token server refuses.
#[test]
fn token_auth_login_append_inspect_copy_and_refusals() {
    use token_issuer::{SERVICE, TokenIssuer, grant};
    let issuer = TokenIssuer::start(
        &[("dev", "dev-secret")],
        vec![
            grant(Some("dev"), "team/*", &["pull", "push"]),
            grant(Some("dev"), "base/*", &["pull"]),
        ],
    );
    let tok = Registry::start_token(
        &issuer.realm(),
        SERVICE,
        token_issuer::ISSUER,
        &issuer.cert_file,
    );
    let basic = Registry::start(true);
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("docker");
    let src = tmp.path().join("src");
    write_file(&src.join("run.sh"), b"#!/bin/sh\necho hi\n", 0o755);
    let login = |reg: &str, user: &str, pass: &str| {
        hoist(&cfg)
            .args(["registry", "login", reg, "-u", user, "--password-stdin"])
            .write_stdin(format!("{pass}\n"))
            .assert()
    };

    // The token server refuses the password: login fails, nothing is stored.
    let e = stderr(&login(&tok.addr, "dev", "nope").failure());
    assert!(
        e.contains(&format!("login to {} failed", tok.addr)) && e.contains("refused user \"dev\""),
        "{e}"
    );
    assert!(!cfg.join("config.json").exists());
    login(&tok.addr, "dev", "dev-secret").success();
    login(&basic.addr, USER, PASS).success();
    // hoist asked the token server for the registry's service, as user dev.
    let q = issuer.queries();
    assert!(
        q.iter().all(|q| q.service.as_deref() == Some(SERVICE)),
        "{q:#?}"
    );
    assert_eq!(q.last().unwrap().user.as_deref(), Some("dev"), "{q:#?}");

    let target = tok.reference("team/app:v1");
    let a = hoist(&cfg)
        .args(["image", "append", "--base", "scratch", "--layer"])
        .arg(format!("{}:/app", src.display()))
        .args(["--tag", &target, "-o", "json"])
        .assert()
        .success();
    let rep: serde_json::Value = serde_json::from_str(&stdout(&a)).unwrap();
    assert_eq!(rep["layers_uploaded"], 1, "{rep}");
    let a = hoist(&cfg)
        .args(["image", "inspect", &target, "-o", "json"])
        .assert()
        .success();
    let v: serde_json::Value = serde_json::from_str(&stdout(&a)).unwrap();
    assert_eq!(v["digest"], rep["digest"]);

    // Token registry to Basic-auth registry, and back to another repository.
    let mirror = basic.reference("mirror/app:v1");
    let back = tok.reference("team/back:v1");
    for (from, to) in [(&target, &mirror), (&mirror, &back)] {
        let a = hoist(&cfg)
            .args(["image", "copy", from, to, "-o", "json"])
            .assert()
            .success();
        let c: serde_json::Value = serde_json::from_str(&stdout(&a)).unwrap();
        assert_eq!(c["digest"], rep["digest"], "{from} -> {to}: {c}");
    }
    let a = hoist(&cfg)
        .args(["image", "inspect", &back, "-o", "json"])
        .assert()
        .success();
    let v: serde_json::Value = serde_json::from_str(&stdout(&a)).unwrap();
    assert_eq!(v["digest"], rep["digest"]);
    let scopes: Vec<String> = (issuer.queries().iter())
        .flat_map(|q| q.scopes.clone())
        .collect();
    for s in [
        "repository:team/app:pull,push",
        "repository:team/app:pull",
        "repository:team/back:pull,push",
    ] {
        assert!(scopes.iter().any(|x| x == s), "{s} not asked: {scopes:?}");
    }

    // A push the policy denies: says what was denied, and does not say to log in.
    let e = fails(
        &cfg,
        &["image", "copy", &target, &tok.reference("base/app:v1")],
    );
    // Which blob's request is refused first varies: a mount from team/app also needs pull
    // there ("it needs pull access to repository team/app and pull,push access to …").
    assert!(
        e.contains(&format!("{} denied the request: it needs ", tok.addr))
            && e.contains("pull,push access to repository base/app")
            && !e.contains("hoist registry login"),
        "{e}"
    );

    // A stored password the token server refuses: the error names the token server and
    // where the credentials came from.
    let config = cfg.join("config.json");
    let mut stored: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    use base64::Engine as _;
    stored["auths"][&tok.addr]["auth"] = base64::engine::general_purpose::STANDARD
        .encode("dev:stale")
        .into();
    std::fs::write(&config, stored.to_string()).unwrap();
    let e = fails(&cfg, &["image", "inspect", &target]);
    assert!(
        e.contains(&format!(
            "the token server of {} refused the credentials",
            tok.addr
        )) && e.contains(&issuer.realm())
            && e.contains(&format!(
                "credentials from auths[\"{}\"] in {}",
                tok.addr,
                config.display()
            )),
        "{e}"
    );
}

/// Runs hoist with `args`, which must fail; its stderr.
fn fails(docker_config: &std::path::Path, args: &[&str]) -> String {
    stderr(&hoist(docker_config).args(args).assert().failure())
}

#[test]
fn bad_input_is_reported_not_panicked() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let err = fails(t, &["image", "inspect", "Not A Ref"]);
    assert!(err.contains("invalid image reference"), "{err}");
    let append = |extra: &[&str], tag: &str| {
        let mut args = vec!["image", "append", "--base", "scratch"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--tag", tag]);
        fails(t, &args)
    };
    let err = append(&["--layer", "nocolon"], "127.0.0.1:1/x:y");
    assert!(err.contains("expected SRC:DEST"), "{err}");
    let err = append(&["--env", "NOEQ"], "127.0.0.1:1/x:y");
    assert!(err.contains("expected KEY=VALUE"), "{err}");
    let err = append(&["--env", "BAD KEY=1"], "127.0.0.1:1/x:y");
    assert!(err.contains("the name \"BAD KEY\" has a space"), "{err}");
    let err = append(&["--cmd", r#"echo "hello world""#], "127.0.0.1:1/x:y");
    assert!(
        err.contains("quotes are not parsed in the words form; give a JSON array"),
        "{err}"
    );
    let err = append(&["--workdir", "rel/dir"], "127.0.0.1:1/x:y");
    assert!(err.contains("must be an absolute path"), "{err}");
    let copy = ["image", "copy", "127.0.0.1:1/x:y", "oci:/tmp/x"];
    let err = fails(t, &[&copy[..], &["--platform", "linux"]].concat());
    assert!(err.contains("invalid platform"), "{err}");
    // A registry setting that is not what it takes is refused before anything is asked
    // (it used to be dropped for the default without a word).
    for (var, value, says) in [
        (
            "HOIST_REGISTRY_RETRIES",
            "abc",
            "is not a whole number of retries from 0 to 100",
        ),
        (
            "HOIST_REGISTRY_RETRIES",
            "1000",
            "is not a whole number of retries from 0 to 100",
        ),
        (
            "HOIST_REGISTRY_TIMEOUT",
            "-5",
            "is not a positive number of seconds",
        ),
    ] {
        let a = hoist(t)
            .env(var, value)
            .args(["image", "inspect", "127.0.0.1:1/x:y"])
            .assert()
            .failure();
        let err = stderr(&a);
        assert!(
            err.contains(&format!("{var}=\"{value}\" {says}"))
                && err.contains("unset it to use the default")
                && !err.contains("retrying"),
            "{err}"
        );
    }
    // Nothing listens: the reason, once, without the HTTP client's layers around it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // Retried (two retries here, not the default five, to keep the test short), each
    // retry said on stderr, and the error says how often and how long it tried.
    let started = std::time::Instant::now();
    let a = hoist(t)
        .env("HOIST_REGISTRY_RETRIES", "2")
        // Set but empty is unset: the default timeout, not an error.
        .env("HOIST_REGISTRY_TIMEOUT", "")
        .args(["image", "inspect", &format!("127.0.0.1:{port}/x:y")])
        .assert()
        .failure();
    let took = started.elapsed();
    let all = stderr(&a);
    let (warnings, err) = all.split_once("  × ").expect("an error");
    assert_eq!(
        warnings.matches("warning: registry 127.0.0.1:").count(),
        2,
        "{all}"
    );
    assert!(
        warnings
            .contains("Connection refused (os error 111) (GET /v2/x/manifests/y); retrying in 0.")
            && warnings.contains(" s (2/3)\n"),
        "{all}"
    );
    assert!(
        err.contains(&format!("cannot reach registry 127.0.0.1:{port}")),
        "{err}"
    );
    assert!(err.contains("cannot connect"), "{err}");
    assert_eq!(err.matches("Connection refused").count(), 1, "{err}");
    assert!(!err.contains("error sending request"), "{err}");
    assert!(
        err.contains("gave up on GET /v2/x/manifests/y after 3 requests over 0."),
        "{err}"
    );
    assert!(err.contains("hint: is the registry running?"), "{err}");
    assert!(took < std::time::Duration::from_secs(3), "{took:?}");

    // A layout whose manifest claims absurd layer sizes: refused, never an overflow.
    use hoist_oci::manifest::{Descriptor, ImageManifest, RawManifest, media};
    use hoist_oci::{Digest, OciLayout};
    let dir = t.join("bogus");
    let layout = OciLayout::create(&dir).unwrap();
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let config_digest = Digest::of(config);
    layout.put_blob(&config_digest, config).unwrap();
    let layers = [b"one".as_slice(), b"two"].map(|l| {
        let d = Digest::of(l);
        layout.put_blob(&d, l).unwrap();
        Descriptor::new(media::OCI_LAYER_GZIP, d, 1 << 63)
    });
    let m = ImageManifest {
        schema_version: 2,
        media_type: Some(media::OCI_MANIFEST.into()),
        config: Descriptor::new(media::OCI_CONFIG, config_digest, config.len() as u64),
        layers: layers.to_vec(),
        annotations: None,
    };
    let raw = RawManifest::new(serde_json::to_vec(&m).unwrap(), Some(media::OCI_MANIFEST)).unwrap();
    layout.put_manifest(&raw, Some("v1")).unwrap();
    let src = format!("oci:{}:v1", dir.display());
    let dst = format!("oci:{}:v1", t.join("copy").display());
    let err = fails(t, &["image", "copy", &src, &dst]);
    assert!(!err.contains("panicked"), "{err}");
    let inspect = hoist(t).args(["image", "inspect", &src]).assert();
    let out = inspect.get_output();
    assert!(
        out.status.code() != Some(101) && !stderr(&inspect).contains("panicked"),
        "{out:?}"
    );
}

/// A registry that accepts the connection and never answers: `HOIST_REGISTRY_TIMEOUT`
/// bounds the wait, and the error says who was silent, where, and how often it was asked.
#[test]
fn silent_registry_times_out() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    // Accept and hold the connections, never answering.
    std::thread::spawn(move || {
        let mut held = vec![];
        for s in l.incoming() {
            held.push(s);
        }
    });
    let tmp = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let a = hoist(tmp.path())
        .env("HOIST_REGISTRY_TIMEOUT", "1")
        .args(["image", "inspect", &format!("{addr}/t/bb:v1")])
        .timeout(std::time::Duration::from_secs(30))
        .assert()
        .failure();
    let e = stderr(&a);
    assert!(
        e.contains(&format!("the registry at {addr} did not answer within 1 s")),
        "{e}"
    );
    assert!(e.contains("asked 2 times"), "{e}");
    // The wait is said while it goes on (a CI log shows no hang), once per attempt here.
    assert!(
        e.contains(&format!(
            "warning: registry {addr}: still waiting for an answer to GET /v2/t/bb/manifests/v1 (0."
        )) && e.contains(" s so far; HOIST_REGISTRY_TIMEOUT=SECONDS sets how long hoist waits)"),
        "{e}"
    );
    assert!(
        e.contains(&format!("warning: registry {addr}: no answer within 1 s (GET /v2/t/bb/manifests/v1); retrying in 0.")) && e.contains(" s (2/2)\n"),
        "{e}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(15));
}

/// Credentials from `credHelpers` and `credsStore` run `docker-credential-NAME get`.
#[test]
fn credential_helpers_are_used() {
    use std::os::unix::fs::PermissionsExt;
    let authed = Registry::start(true);
    let open = Registry::start(false);
    let tmp = tempfile::tempdir().unwrap();
    let bin = tmp.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let log = tmp.path().join("helper.log");
    // A stand-in credential helper (a shell script speaking the helper protocol).
    let script = format!(
        "#!/bin/sh\nread server\necho \"$0 $1 $server\" >> {}\nprintf '{{\"ServerURL\":\"%s\",\"Username\":\"{USER}\",\"Secret\":\"{PASS}\"}}' \"$server\"\n",
        log.display()
    );
    for name in ["docker-credential-hoisttest", "docker-credential-storetest"] {
        std::fs::write(bin.join(name), &script).unwrap();
        std::fs::set_permissions(bin.join(name), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let cfg = tmp.path().join("docker");
    std::fs::create_dir_all(&cfg).unwrap();
    let src = tmp.path().join("src");
    write_file(&src.join("a"), b"a", 0o644);
    hoist(&cfg)
        .args(["image", "append", "--base", "scratch", "--layer"])
        .arg(format!("{}:/a", src.display()))
        .args(["--tag", &open.reference("h/img:1")])
        .assert()
        .success();
    for (conf, helper) in [
        (
            serde_json::json!({"credHelpers": {authed.addr.clone(): "hoisttest"}}),
            "docker-credential-hoisttest",
        ),
        (
            serde_json::json!({"credsStore": "storetest"}),
            "docker-credential-storetest",
        ),
    ] {
        std::fs::write(cfg.join("config.json"), conf.to_string()).unwrap();
        let _ = std::fs::remove_file(&log);
        hoist(&cfg)
            .env("PATH", &path)
            .args([
                "image",
                "copy",
                &open.reference("h/img:1"),
                &authed.reference("h/img:1"),
            ])
            .assert()
            .success();
        let calls = std::fs::read_to_string(&log).unwrap();
        assert!(
            calls.contains(&format!("{helper} get {}", authed.addr)),
            "{calls}"
        );
    }
    // A helper that is configured but missing: the error names it.
    std::fs::write(
        cfg.join("config.json"),
        serde_json::json!({"credHelpers": {authed.addr.clone(): "absent"}}).to_string(),
    )
    .unwrap();
    let a = hoist(&cfg)
        .args(["image", "inspect", &authed.reference("h/img:1")])
        .assert()
        .failure();
    assert!(
        stderr(&a).contains("docker-credential-absent"),
        "{}",
        stderr(&a)
    );
    // A helper that fails without reading its input: what it said and its exit status.
    std::fs::write(
        bin.join("docker-credential-broken"),
        "#!/bin/sh\nexec 0<&-\necho 'helper exploded' >&2\nexit 3\n",
    )
    .unwrap();
    std::fs::set_permissions(
        bin.join("docker-credential-broken"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::fs::write(
        cfg.join("config.json"),
        serde_json::json!({"credHelpers": {authed.addr.clone(): "broken"}}).to_string(),
    )
    .unwrap();
    let a = hoist(&cfg)
        .env("PATH", &path)
        .args(["image", "inspect", &authed.reference("h/img:1")])
        .assert()
        .failure();
    let e = stderr(&a);
    assert!(
        e.contains("exit status: 3") && e.contains("helper exploded") && !e.contains("Broken pipe"),
        "{e}"
    );
}

/// `-o yaml` prints the document `-o json` prints, as YAML (it used to print the text).
#[test]
fn yaml_output_is_the_json_document() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    write_file(&t.join("app/run.sh"), b"#!/bin/sh\n", 0o755);
    let image = format!("oci:{}:v1", t.join("lay").display());
    let run = |args: &[&str]| stdout(&hoist(t).args(args).assert().success());
    let append = [
        "image",
        "append",
        "--base",
        "scratch",
        "--cmd",
        "/app/run.sh",
    ];
    let layer = format!("{}:/app", t.join("app").display());
    let yaml = run(&[
        &append[..],
        &["--layer", &layer, "--tag", &image, "-o", "yaml"],
    ]
    .concat());
    let rep: serde_json::Value = serde_norway::from_str(&yaml).unwrap();
    assert!(
        rep["digest"].as_str().unwrap().starts_with("sha256:"),
        "{yaml}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&run(&["image", "inspect", &image, "-o", "json"])).unwrap();
    let yaml = run(&["image", "inspect", &image, "-o", "yaml"]);
    assert_eq!(
        serde_norway::from_str::<serde_json::Value>(&yaml).unwrap(),
        json,
        "{yaml}"
    );
    assert_eq!(json["digest"], rep["digest"]);
}

/// The names of the files in `dir` that start with `prefix` (none if `dir` is missing).
fn files_starting(dir: &std::path::Path, prefix: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default()
}

/// Spawns `cmd` and returns once `temp_files` lists a file (within 30 s).
fn spawn_until_temp_file(
    mut cmd: std::process::Command,
    temp_files: impl Fn() -> Vec<String>,
) -> std::process::Child {
    use std::time::{Duration, Instant};
    let mut child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while temp_files().is_empty() {
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            panic!(
                "hoist ended ({status}) before writing a temp file: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        if start.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("no temp file appeared in 30 s");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    child
}

/// The stop signals hoist handles, as `kill` names them, with the exit status each gives.
const STOP_SIGNALS: [(&str, i32); 2] = [("INT", 130), ("TERM", 143)];

/// Runs `cmd`, sends it `signal` (a `kill` name: INT is Ctrl-C, TERM what `timeout`, CI
/// runners and systemd send) as soon as `temp_files` lists a file, and returns how it
/// ended and its stderr.
fn interrupt_mid_write(
    cmd: std::process::Command,
    signal: &str,
    temp_files: impl Fn() -> Vec<String>,
) -> (std::process::ExitStatus, String) {
    let child = spawn_until_temp_file(cmd, temp_files);
    let kill = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let out = child.wait_with_output().unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Ctrl-C or SIGTERM during `hoist image append` stops the layer build, removes its temp
/// file under `$HOIST_CACHE_DIR/tmp` and says it was interrupted (the file would otherwise
/// stay behind), ending with 130 or 143.
#[test]
fn ctrl_c_or_sigterm_during_append_leaves_no_temp_file() {
    let reg = Registry::start(false);
    let tmp = tempfile::tempdir().unwrap();
    let big = tmp.path().join("model.bin");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&big).unwrap();
        for i in 0..64u64 {
            f.write_all(&registry::pseudo_random(i + 1, 1 << 20))
                .unwrap();
        }
    }
    let cache = tmp.path().join("cache");
    let layer_tmp = cache.join("tmp");
    for (signal, code) in STOP_SIGNALS {
        let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("hoist"));
        cmd.args(["image", "append", "--base", "scratch", "--layer"])
            .arg(format!("{}:/models/model.bin", big.display()))
            .args(["--tag", &reg.reference("big/model:1")])
            .env("HOIST_CACHE_DIR", &cache)
            .env("HOME", tmp.path());
        let (status, err) = interrupt_mid_write(cmd, signal, || files_starting(&layer_tmp, ""));
        assert_eq!(status.code(), Some(code), "SIG{signal}: {err}");
        assert!(
            err.contains("interrupted: appending to scratch was cancelled"),
            "SIG{signal}: {err}"
        );
        assert_eq!(
            files_starting(&layer_tmp, ""),
            Vec::<String>::new(),
            "SIG{signal}"
        );
    }
}

/// Pushes an image of four 24 MiB layers (random, so nothing shrinks them) to `reg` with
/// hoist, from an OCI layout made under `t`; returns its reference.
fn push_big_image(reg: &Registry, t: &std::path::Path) -> String {
    use hoist_oci::manifest::{Descriptor, ImageManifest, RawManifest, media};
    use hoist_oci::{Digest, OciLayout};
    let src = OciLayout::create(t.join("src")).unwrap();
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let config_digest = Digest::of(config);
    src.put_blob(&config_digest, config).unwrap();
    let layers = (0..4u64)
        .map(|i| {
            let data = registry::pseudo_random(i + 7, 24 << 20);
            let d = Digest::of(&data);
            src.put_blob(&d, &data).unwrap();
            Descriptor::new(media::OCI_LAYER_GZIP, d, data.len() as u64)
        })
        .collect();
    let m = ImageManifest {
        schema_version: 2,
        media_type: Some(media::OCI_MANIFEST.into()),
        config: Descriptor::new(media::OCI_CONFIG, config_digest, config.len() as u64),
        layers,
        annotations: None,
    };
    let raw = RawManifest::new(serde_json::to_vec(&m).unwrap(), Some(media::OCI_MANIFEST)).unwrap();
    src.put_manifest(&raw, Some("big")).unwrap();
    let image = reg.reference("big/img:1");
    hoist(t)
        .args([
            "image",
            "copy",
            &format!("oci:{}:big", t.join("src").display()),
            &image,
        ])
        .assert()
        .success();

    image
}

/// Ctrl-C or SIGTERM during `hoist image copy` into an OCI layout and during `hoist image
/// pull` cancels the downloads under way: no partial `.tmp…` file stays in the blobs
/// directory, nothing is listed in index.json, and hoist ends as `append` does (130 or
/// 143, "interrupted: …").
#[test]
fn ctrl_c_or_sigterm_during_copy_or_pull_leaves_no_temp_file() {
    use hoist_oci::OciLayout;
    let reg = Registry::start(false);
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let image = push_big_image(&reg, t);

    let hoist_cmd = |args: &[&str]| {
        let mut c = std::process::Command::new(assert_cmd::cargo::cargo_bin("hoist"));
        c.args(args).env("HOME", t).env("DOCKER_CONFIG", t);
        c
    };
    for (signal, code) in STOP_SIGNALS {
        // A fresh layout and store each time: what an earlier run left is not the test.
        let dst = t.join(format!("dst-{signal}"));
        let blobs = dst.join("blobs/sha256");
        let to = format!("oci:{}:big", dst.display());
        let (status, err) = interrupt_mid_write(
            hoist_cmd(&["image", "copy", "--jobs", "2", &image, &to]),
            signal,
            || files_starting(&blobs, ".tmp"),
        );
        assert_eq!(status.code(), Some(code), "SIG{signal}: {err}");
        assert!(
            err.contains(&format!(
                "interrupted: copying {image} to {to} was cancelled"
            )),
            "SIG{signal}: {err}"
        );
        assert_eq!(
            files_starting(&blobs, ".tmp"),
            Vec::<String>::new(),
            "SIG{signal}"
        );
        let index = OciLayout::open(&dst).unwrap().index().unwrap();
        assert!(
            index.manifests.is_empty(),
            "SIG{signal}: {:?}",
            index.manifests
        );

        let store = t.join(format!("store-{signal}"));
        let blobs = store.join("blobs/sha256");
        let (status, err) = interrupt_mid_write(
            hoist_cmd(&[
                "image",
                "pull",
                "-j",
                "2",
                "--store",
                &store.display().to_string(),
                &image,
            ]),
            signal,
            || files_starting(&blobs, ".tmp"),
        );
        assert_eq!(status.code(), Some(code), "SIG{signal}: {err}");
        assert!(
            err.contains(&format!("interrupted: pulling {image} was cancelled")),
            "SIG{signal}: {err}"
        );
        assert_eq!(
            files_starting(&blobs, ".tmp"),
            Vec::<String>::new(),
            "SIG{signal}"
        );
    }
}

/// Kills (SIGKILL) and reaps a child hoist when dropped, so a failing test leaves none.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Sends `signal` (a `kill` name) to `child`.
fn signal(child: &std::process::Child, signal: &str) {
    let kill = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
}

/// Temp files of a hoist killed by SIGKILL (no handler runs) go at the next hoist's
/// sweep, however young, while those of a live hoist stay however long it takes: each temp
/// file is locked by its owner, and a lock ends with its process. Here for `append`'s
/// layer temp files under `$HOIST_CACHE_DIR/tmp` and for `pull`'s downloads in the
/// store's `blobs/sha256`. The live hoist is frozen by SIGSTOP, so it cannot finish (and
/// remove its files) while the other one sweeps.
#[test]
fn temp_files_of_a_killed_hoist_are_swept_and_a_live_ones_kept() {
    let reg = Registry::start(false);
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let cache = t.join("cache");
    let small = t.join("small");
    write_file(&small.join("hello.txt"), b"hello\n", 0o644);
    let hoist_cmd = |args: &[&str]| {
        let mut c = std::process::Command::new(assert_cmd::cargo::cargo_bin("hoist"));
        c.args(args)
            .env("HOME", t)
            .env("DOCKER_CONFIG", t)
            .env("HOIST_CACHE_DIR", &cache);
        c
    };
    let run_ok = |args: &[&str]| {
        let out = hoist_cmd(args).output().unwrap();
        assert!(
            out.status.success(),
            "hoist {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let small_layer = format!("{}:/small", small.display());
    let small_image = reg.reference("small/img:1");
    let append_small = [
        "image",
        "append",
        "--base",
        "scratch",
        "--layer",
        &small_layer,
        "--tag",
        &small_image,
    ];

    // append: a 64 MiB layer being built, then frozen.
    let big = t.join("model.bin");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&big).unwrap();
        for i in 0..64u64 {
            f.write_all(&registry::pseudo_random(i + 1, 1 << 20))
                .unwrap();
        }
    }
    let layer_tmp = cache.join("tmp");
    let layer_temps = || files_starting(&layer_tmp, ".hoist-layer-");
    let big_layer = format!("{}:/models/model.bin", big.display());
    let big_image = reg.reference("big/model:1");
    let mut live = KillOnDrop(spawn_until_temp_file(
        hoist_cmd(&[
            "image", "append", "--base", "scratch", "--layer", &big_layer, "--tag", &big_image,
        ]),
        layer_temps,
    ));
    signal(&live.0, "STOP");
    let held = layer_temps();
    assert!(!held.is_empty());
    run_ok(&append_small);
    assert_eq!(
        layer_temps(),
        held,
        "a live hoist's layer temp file was swept"
    );
    live.0.kill().unwrap();
    live.0.wait().unwrap();
    // SIGKILL ran no clean-up: the file is still there until the next hoist sweeps it.
    assert_eq!(layer_temps(), held);
    run_ok(&append_small);
    assert_eq!(layer_temps(), Vec::<String>::new());

    // pull into the store, and copy into an OCI layout: downloads of a big image under
    // way, then frozen.
    let image = push_big_image(&reg, t);
    let store = t.join("store").display().to_string();
    let layout = t.join("layout");
    let (to_big, to_small) = (
        format!("oci:{}:big", layout.display()),
        format!("oci:{}:small", layout.display()),
    );
    let cases = [
        (
            t.join("store/blobs/sha256"),
            vec!["image", "pull", "-j", "2", "--store", &store, &image],
            vec!["image", "pull", "--store", &store, &small_image],
        ),
        (
            layout.join("blobs/sha256"),
            vec!["image", "copy", "--jobs", "2", &image, &to_big],
            vec!["image", "copy", &small_image, &to_small],
        ),
    ];
    for (blobs, big, small) in cases {
        let downloads = || files_starting(&blobs, ".tmp");
        // A layer's download well under way (the config's is over at once).
        let big_download = || {
            let mut big = downloads();
            big.retain(|f| std::fs::metadata(blobs.join(f)).is_ok_and(|m| m.len() > 1 << 20));
            big
        };
        let mut live = KillOnDrop(spawn_until_temp_file(hoist_cmd(&big), big_download));
        signal(&live.0, "STOP");
        // (A download that finished just before the stop has landed: whichever are left.)
        let held = downloads();
        assert!(
            !held.is_empty(),
            "{big:?}: every download finished before SIGSTOP"
        );
        run_ok(&small);
        let left = downloads();
        assert!(
            held.iter().all(|f| left.contains(f)),
            "{small:?} swept a live hoist's downloads: had {held:?}, left {left:?}"
        );
        live.0.kill().unwrap();
        live.0.wait().unwrap();
        assert!(held.iter().all(|f| blobs.join(f).exists()));
        // Opening the store or layout again (for what it already has) sweeps them.
        run_ok(&small);
        assert_eq!(downloads(), Vec::<String>::new(), "{small:?}");
    }
}

/// `umoci unpack` of `image` (DIR:NAME): `path mode` per rootfs entry, sorted.
fn unpacked(image: &str, bundle: &std::path::Path) -> Vec<String> {
    (registry::unpacked(image, bundle).into_iter())
        .map(|(path, mode)| format!("{path} {mode}"))
        .collect()
}

/// `append --base oci:DIR[:NAME]` builds on an image another tool saved as an OCI layout,
/// and `--tag oci:DIR[:NAME]` stores the result in one: with a registry on either side or on
/// neither, and the same digest whichever way the same base arrives.
#[test]
fn append_reads_and_writes_oci_layouts() {
    let reg = Registry::start(false);
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    write_file(&t.join("os/etc/os-release"), b"ID=test\n", 0o644);
    write_file(&t.join("app/run.sh"), b"#!/bin/sh\necho hi\n", 0o755);
    let app_layer = format!("{}:/app", t.join("app").display());
    let base = reg.reference("base/os:1");
    hoist(t)
        .args(["image", "append", "--base", "scratch", "--layer"])
        .arg(format!("{}:/", t.join("os").display()))
        .args(["--env", "PATH=/bin", "--tag", &base])
        .assert()
        .success();
    // The production image, saved as a layout by another tool.
    let prod = t.join("prod");
    let out = std::process::Command::new("skopeo")
        .args([
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{base}"),
        ])
        .arg(format!("oci:{}:v1", prod.display()))
        .output()
        .expect("skopeo is installed");
    assert!(out.status.success(), "{out:?}");
    let gets = |r: &Registry| r.requests().get("GET").copied().unwrap_or(0);
    let gets_before = gets(&reg);

    // Layout base, registry target: the base layer goes up from the layout's file. (A
    // fresh cache: hoist would otherwise remember pushing it to base/os, and mount it.)
    let pushed = reg.reference("app/web:v1");
    let a = hoist(t)
        .env("HOIST_CACHE_DIR", t.join("fresh-cache"))
        .args(["image", "append", "--base"])
        .arg(format!("oci:{}:v1", prod.display()))
        .args(["--layer", &app_layer, "--cmd", "/app/run.sh"])
        .args(["--tag", &pushed, "-o", "json"])
        .assert()
        .success();
    let rep: serde_json::Value = serde_json::from_str(&stdout(&a)).unwrap();
    assert_eq!(rep["layers_uploaded"], 2, "{rep}");
    assert_eq!(gets(&reg), gets_before, "nothing is read from the registry");
    let cfg = registry::skopeo_config(&format!("docker://{pushed}"));
    assert_eq!(cfg["config"]["Env"], serde_json::json!(["PATH=/bin"]));
    assert_eq!(cfg["config"]["Cmd"], serde_json::json!(["/app/run.sh"]));
    assert_eq!(cfg["rootfs"]["diff_ids"].as_array().unwrap().len(), 2);

    // Registry base, layout target: an image umoci unpacks, the same digest as above.
    let out_dir = t.join("out");
    let a = hoist(t)
        .args(["image", "append", "--base", &base])
        .args(["--layer", &app_layer, "--cmd", "/app/run.sh", "--tag"])
        .arg(format!("oci:{}:dev", out_dir.display()))
        .assert()
        .success();
    let line = stdout(&a);
    assert!(
        line.starts_with(&format!(
            "stored oci:{}:dev ({})",
            out_dir.display(),
            rep["digest"].as_str().unwrap()
        )) && line.contains(": 2 layers written, 0 already there"),
        "{line}"
    );
    let files = unpacked(&format!("{}:dev", out_dir.display()), &t.join("b1"));
    assert_eq!(
        files,
        [
            "app d755",
            "app/run.sh f755",
            "etc d755",
            "etc/os-release f644",
        ]
    );

    // Layout to layout, with no registry at all: the new image beside the base.
    drop(reg);
    let into_prod = format!("oci:{}:app", prod.display());
    let append_offline = || {
        let a = hoist(t)
            .args(["image", "append", "--base"])
            .arg(format!("oci:{}:v1", prod.display()))
            .args(["--layer", &app_layer, "--cmd", "/app/run.sh"])
            .args(["--tag", &into_prod, "-o", "json"])
            .assert()
            .success();
        serde_json::from_str::<serde_json::Value>(&stdout(&a)).unwrap()
    };
    let first = append_offline();
    assert_eq!(first["digest"], rep["digest"]);
    assert_eq!(
        (&first["layers_uploaded"], &first["layers_present"]),
        (&1.into(), &1.into()),
        "the base layer is in this layout already: {first}"
    );
    let again = append_offline();
    assert_eq!(
        (&again["layers_uploaded"], &again["layers_present"]),
        (&0.into(), &2.into()),
        "{again}"
    );
    assert_eq!(
        unpacked(&format!("{}:app", prod.display()), &t.join("b2")),
        files
    );
    // The base is still there under its own name.
    assert_eq!(
        unpacked(&format!("{}:v1", prod.display()), &t.join("b3")),
        ["etc d755", "etc/os-release f644"]
    );

    // Bad layouts name what is wrong with them.
    let err = fails(
        t,
        &[
            "image",
            "append",
            "--base",
            &format!("oci:{}", prod.display()),
            "--tag",
            &into_prod,
        ],
    );
    assert!(
        err.contains("2 images in index.json: name one with oci:DIR:NAME (names: v1, app)"),
        "{err}"
    );
    let missing = t.join("nope");
    let err = fails(
        t,
        &[
            "image",
            "append",
            "--base",
            &format!("oci:{}", missing.display()),
            "--tag",
            &into_prod,
        ],
    );
    assert!(
        err.contains(&missing.display().to_string()) && err.contains("cannot read oci-layout"),
        "{err}"
    );
    let err = fails(
        t,
        &["image", "append", "--base", "scratch", "--tag", "oci:"],
    );
    assert!(err.contains("expected oci:DIR[:NAME]"), "{err}");
}

/// `--platform` given: an image for another platform only is an error (inspect, append);
/// not given, it is shown or built on as it is. An index lists its platforms; an OCI
/// artifact is shown as one, not as a broken image.
#[test]
fn platforms_indexes_and_artifacts_in_inspect() {
    use hoist_oci::manifest::{Descriptor, ImageIndex, ImageManifest, RawManifest, media};
    use hoist_oci::{Digest, RegistryClient, block_on};
    let reg = Registry::start(false);
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    write_file(&t.join("f.txt"), b"f", 0o644);
    let layer = format!("{}:/f.txt", t.join("f.txt").display());
    let append = |platform: Option<&str>, base: &str, tag: &str| {
        let mut c = hoist(t);
        c.args([
            "image", "append", "--base", base, "--layer", &layer, "--tag", tag,
        ]);
        if let Some(p) = platform {
            c.args(["--platform", p]);
        }
        c.args(["-o", "json"]).assert()
    };
    let amd = reg.reference("p/img:amd64");
    let arm = reg.reference("p/img:arm64");
    append(None, "scratch", &amd).success();
    append(Some("linux/arm64"), "scratch", &arm).success();

    let mismatch = "is an image for linux/amd64 only, not linux/arm64";
    let err = fails(t, &["image", "inspect", "--platform", "linux/arm64", &amd]);
    assert!(err.contains(mismatch), "{err}");
    let err = stderr(&append(Some("linux/arm64"), &amd, &reg.reference("p/x:1")).failure());
    assert!(err.contains(&format!("base {amd} {mismatch}")), "{err}");
    append(None, &amd, &reg.reference("p/x:1")).success();
    let a = hoist(t).args(["image", "inspect", &arm]).assert().success();
    assert!(
        stdout(&a).contains("Platform:    linux/arm64"),
        "{}",
        stdout(&a)
    );

    // An index of the two.
    let c = RegistryClient::new(Default::default()).unwrap();
    let manifests = [(&amd, "linux/amd64"), (&arm, "linux/arm64")].map(|(r, p)| {
        let raw = block_on(c.get_manifest(&r.parse().unwrap())).unwrap();
        let mut d = raw.descriptor();
        d.platform = Some(p.parse().unwrap());
        d
    });
    let index = ImageIndex {
        schema_version: 2,
        media_type: Some(media::OCI_INDEX.into()),
        manifests: manifests.to_vec(),
        annotations: None,
    };
    let index = RawManifest::new(serde_json::to_vec(&index).unwrap(), None).unwrap();
    let multi = reg.reference("p/img:multi");
    block_on(c.put_manifest(&multi.parse().unwrap(), &index)).unwrap();
    let a = hoist(t)
        .args(["image", "inspect", "--platform", "linux/arm64", &multi])
        .assert()
        .success();
    let out = stdout(&a);
    assert!(
        out.contains("Platforms:   linux/amd64, linux/arm64")
            && out.contains(&format!("Digest:      {}", manifests[1].digest)),
        "{out}"
    );
    let a = hoist(t)
        .args(["image", "inspect", &multi, "-o", "json"])
        .assert()
        .success();
    let v: serde_json::Value = serde_json::from_str(&stdout(&a)).unwrap();
    assert_eq!(
        v["index"]["platforms"],
        serde_json::json!(["linux/amd64", "linux/arm64"])
    );

    // pull holds --platform as inspect and append do: an image for another platform
    // only is refused before anything is stored, and pulled with a warning without it.
    let store = t.join("store");
    let pull = |args: &[&str]| {
        let mut c = hoist(t);
        c.args(["image", "pull", "--store"]).arg(&store).args(args);
        c.assert()
    };
    let err = stderr(&pull(&["--platform", "linux/arm64", &amd]).failure());
    assert!(err.contains(mismatch), "{err}");
    assert!(
        !std::fs::read_to_string(store.join("index.json"))
            .unwrap()
            .contains("p/img:amd64"),
        "nothing stored under the refused reference"
    );
    let a = pull(&[&arm]).success();
    let warned = "is an image for linux/arm64 only, not linux/amd64";
    assert!(stderr(&a).contains(warned), "{}", stderr(&a));
    // Pulled by the index's digest: the image is named by its own digest, once, and the
    // index it came through is said.
    let by_digest = format!("{}/p/img@{}", reg.addr, index.digest);
    let a = pull(&["--platform", "linux/arm64", &by_digest]).success();
    let out = stdout(&a);
    assert!(
        out.starts_with(&format!(
            "pulled {}/p/img@{} (the linux/arm64 image of index {})",
            reg.addr, manifests[1].digest, index.digest
        )),
        "{out}"
    );
    assert_eq!(out.matches("@sha256:").count(), 1, "{out}");
    let a = pull(&[&by_digest, "-o", "json"]).success();
    let v: serde_json::Value = serde_json::from_str(&stdout(&a)).unwrap();
    assert_eq!(v["reference"], by_digest);
    assert_eq!(
        v["image"],
        format!("{}/p/img@{}", reg.addr, manifests[0].digest)
    );
    assert_eq!(v["digest"], manifests[0].digest.to_string());
    assert_eq!(v["index_digest"], index.digest.to_string());

    // An artifact shaped like a Helm chart.
    let chart = reg.reference("charts/web:1.0.0");
    let chart_ref = chart.parse().unwrap();
    let helm = "application/vnd.cncf.helm.config.v1+json";
    let blobs = [(b"{}".as_slice(), helm), (b"chart", media::OCI_LAYER_GZIP)].map(|(data, mt)| {
        let d = Digest::of(data);
        block_on(c.upload_blob(&chart_ref, &d, data.to_vec().into(), None)).unwrap();
        Descriptor::new(mt, d, data.len() as u64)
    });
    let m = ImageManifest {
        schema_version: 2,
        media_type: Some(media::OCI_MANIFEST.into()),
        config: blobs[0].clone(),
        layers: vec![blobs[1].clone()],
        annotations: None,
    };
    let raw = RawManifest::new(serde_json::to_vec(&m).unwrap(), None).unwrap();
    block_on(c.put_manifest(&chart_ref, &raw)).unwrap();
    let a = hoist(t)
        .args(["image", "inspect", &chart])
        .assert()
        .success();
    assert!(
        stdout(&a).contains(&format!(
            "Config:      {helm} (an OCI artifact, not a container image)"
        )),
        "{}",
        stdout(&a)
    );
    let a = hoist(t)
        .args(["image", "inspect", &chart, "-o", "json"])
        .assert()
        .success();
    let v: serde_json::Value = serde_json::from_str(&stdout(&a)).unwrap();
    assert_eq!(
        (v["config"].is_null(), v["configMediaType"].as_str()),
        (true, Some(helm))
    );
    let err = stderr(&append(None, &chart, &reg.reference("p/y:1")).failure());
    assert!(err.contains("is not a container image"), "{err}");
}

/// A stand-in credential helper `docker-credential-NAME` in `bin` that keeps one credential
/// in `store` (a file) and logs every call (`ACTION INPUT`) to `log`: the real protocol.
fn fake_helper(bin: &std::path::Path, name: &str, store: &std::path::Path, log: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(bin).unwrap();
    let script = format!(
        r#"#!/bin/sh
input=$(cat)
echo "$1 $input" >> '{log}'
case "$1" in
  store) printf '%s' "$input" > '{store}' ;;
  get) if [ -f '{store}' ]; then cat '{store}'; else echo "credentials not found in native keychain"; exit 1; fi ;;
  erase) if [ -f '{store}' ]; then rm '{store}'; else echo "credentials not found in native keychain"; exit 1; fi ;;
esac
"#,
        log = log.display(),
        store = store.display()
    );
    let path = bin.join(format!("docker-credential-{name}"));
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// With `credHelpers[host]` or `credsStore` set, login stores through that helper (no
/// password in config.json, no `auths` entry to shadow the store) and logout erases there:
/// a stale helper credential no longer wins over a fresh login.
#[test]
fn login_and_logout_go_through_the_credential_helper() {
    let authed = Registry::start(true);
    let tmp = tempfile::tempdir().unwrap();
    let bin = tmp.path().join("bin");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let src = tmp.path().join("src");
    write_file(&src.join("a"), b"a", 0o644);
    assert_eq!(USER, "user");
    let stale_auth = "dXNlcjpzdGFsZQ=="; // base64("user:stale")
    for (n, helper_conf) in [
        serde_json::json!({"credHelpers": {authed.addr.clone(): "hoisttest"}}),
        serde_json::json!({"credsStore": "hoisttest"}),
    ]
    .into_iter()
    .enumerate()
    {
        let cfg = tmp.path().join(format!("docker{n}"));
        std::fs::create_dir_all(&cfg).unwrap();
        let (store, log) = (cfg.join("store.json"), cfg.join("helper.log"));
        fake_helper(&bin, "hoisttest", &store, &log);
        // A stale credential in the helper, and one in `auths` too.
        let stale =
            serde_json::json!({"ServerURL": authed.addr, "Username": USER, "Secret": "stale"});
        std::fs::write(&store, stale.to_string()).unwrap();
        let mut conf = helper_conf.clone();
        conf["auths"] = serde_json::json!({authed.addr.clone(): {"auth": stale_auth}});
        std::fs::write(cfg.join("config.json"), conf.to_string()).unwrap();
        let append = || {
            hoist(&cfg)
                .env("PATH", &path)
                .args(["image", "append", "--base", "scratch", "--layer"])
                .arg(format!("{}:/a", src.display()))
                .args(["--tag", &authed.reference(&format!("h/img{n}:1"))])
                .assert()
        };
        let e = stderr(&append().failure());
        assert!(e.contains("refused the credentials"), "{e}");

        let a = hoist(&cfg)
            .env("PATH", &path)
            .args(["registry", "login", &authed.addr, "-u", USER])
            .arg("--password-stdin")
            .write_stdin(format!("{PASS}\n"))
            .assert()
            .success();
        assert!(
            stdout(&a).contains("stored in docker-credential-hoisttest"),
            "{}",
            stdout(&a)
        );
        let calls = std::fs::read_to_string(&log).unwrap();
        let stored: serde_json::Value = serde_json::from_str(
            calls
                .lines()
                .last()
                .unwrap()
                .strip_prefix("store ")
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            stored,
            serde_json::json!({"ServerURL": authed.addr, "Username": USER, "Secret": PASS})
        );
        let conf_now = std::fs::read_to_string(cfg.join("config.json")).unwrap();
        let conf_now: serde_json::Value = serde_json::from_str(&conf_now).unwrap();
        assert_eq!(conf_now["auths"], serde_json::json!({}), "{conf_now}");
        assert_eq!(
            conf_now.as_object().unwrap().len(),
            2,
            "the helper setting is kept: {conf_now}"
        );

        // The new credential is the one used.
        append().success();

        let a = hoist(&cfg)
            .env("PATH", &path)
            .args(["registry", "logout", &authed.addr])
            .assert()
            .success();
        assert!(stdout(&a).contains("removed credentials"), "{}", stdout(&a));
        let calls = std::fs::read_to_string(&log).unwrap();
        assert_eq!(
            calls.lines().last().unwrap(),
            format!("erase {}", authed.addr)
        );
        assert!(!store.exists());
        let e = stderr(&append().failure());
        assert!(e.contains("none stored"), "{e}");
    }

    // A helper that fails: its exit status and what it said.
    let cfg = tmp.path().join("broken");
    std::fs::create_dir_all(&cfg).unwrap();
    let conf = serde_json::json!({"credsStore": "missing"});
    std::fs::write(cfg.join("config.json"), conf.to_string()).unwrap();
    let e = stderr(
        &hoist(&cfg)
            .args(["registry", "login", &authed.addr, "-u", USER, "-p", PASS])
            .assert()
            .failure(),
    );
    assert!(
        e.contains("cannot run docker-credential-missing store") && e.contains("on PATH"),
        "{e}"
    );
}

/// A registry with htpasswd auth, and a DOCKER_CONFIG directory for hoist to use.
struct ConfigFixture {
    authed: Registry,
    tmp: tempfile::TempDir,
    cfg: std::path::PathBuf,
    config: std::path::PathBuf,
}

fn config_fixture() -> ConfigFixture {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("docker");
    std::fs::create_dir_all(&cfg).unwrap();
    ConfigFixture {
        authed: Registry::start(true),
        config: cfg.join("config.json"),
        cfg,
        tmp,
    }
}

/// `hoist registry login REGISTRY` with the test registry's password.
fn login(cfg: &std::path::Path, registry: &str) -> assert_cmd::assert::Assert {
    hoist(cfg)
        .args([
            "registry",
            "login",
            registry,
            "-u",
            USER,
            "--password-stdin",
        ])
        .write_stdin(format!("{PASS}\n"))
        .assert()
}

#[test]
fn login_writes_through_a_symlinked_config_json() {
    use std::os::unix::fs::PermissionsExt;
    let f = config_fixture();
    let (authed, cfg, config, tmp) = (&f.authed, &f.cfg, &f.config, &f.tmp);
    let login = |r: &str| login(cfg, r);
    // Symlinked (dotfiles): the link stays, its target gets the entry and keeps its mode.
    let dotfiles = tmp.path().join("dotfiles/config.json");
    write_file(&dotfiles, br#"{"auths":{},"psFormat":"x"}"#, 0o640);
    std::os::unix::fs::symlink(&dotfiles, config).unwrap();
    login(&authed.addr).success();
    assert!(
        std::fs::symlink_metadata(config)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    let target: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&dotfiles).unwrap()).unwrap();
    assert!(
        target["auths"][&authed.addr]["auth"].is_string(),
        "{target}"
    );
    assert_eq!(target["psFormat"], "x");
    let mode = std::fs::metadata(&dotfiles).unwrap().permissions().mode();
    // Group or world bits go: the file now holds a password.
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn login_takes_a_registry_url() {
    let f = config_fixture();
    let (authed, cfg, config) = (&f.authed, &f.cfg, &f.config);
    let login = |r: &str| login(cfg, r);
    // A URL, as Docker takes it: stored under the host.
    login(&format!("http://{}/", authed.addr)).success();
    let stored: serde_json::Value =
        serde_json::from_slice(&std::fs::read(config).unwrap()).unwrap();
    assert!(
        stored["auths"][&authed.addr]["auth"].is_string(),
        "{stored}"
    );
    let e = stderr(&login("http://").failure());
    assert!(
        e.contains("invalid registry \"http://\"") && !e.contains("hoist-login-probe"),
        "{e}"
    );
}

#[test]
fn a_malformed_auths_entry_is_named() {
    let f = config_fixture();
    let (authed, cfg, config) = (&f.authed, &f.cfg, &f.config);
    // Malformed `auths` entries: which file, which key, what is wrong.
    let image = authed.reference("h/img:1");
    for (auth, wrong) in [
        ("!!notbase64", "is not valid base64"),
        ("aG9pc3RzZWNyZXQ=", "no ':'"),
    ] {
        let conf = serde_json::json!({"auths": {authed.addr.clone(): {"auth": auth}}});
        std::fs::write(config, conf.to_string()).unwrap();
        let e = fails(cfg, &["image", "inspect", &image]);
        assert!(
            e.contains(&format!(
                "auths[\"{}\"] in {} is malformed",
                authed.addr,
                config.display()
            )) && e.contains(wrong)
                && e.contains(&format!("hoist registry login {}", authed.addr)),
            "{e}"
        );
    }
}

#[test]
fn an_unreadable_config_json_is_a_warning_for_anonymous_access() {
    let f = config_fixture();
    let (authed, cfg, config) = (&f.authed, &f.cfg, &f.config);
    let image = authed.reference("h/img:1");
    // Not JSON: registries that need no login still work, with a warning (one that hands
    // out anonymous bearer tokens, like Docker Hub, asks for credentials first); one that
    // needs a login says why there were none; login does not overwrite the file.
    std::fs::write(config, "{bad json").unwrap();
    // Anyone gets a token that may pull anything; there is nothing in it (404s).
    let issuer =
        token_issuer::TokenIssuer::start(&[], vec![token_issuer::grant(None, "*", &["pull"])]);
    let anonymous = Registry::start_token(
        &issuer.realm(),
        token_issuer::SERVICE,
        token_issuer::ISSUER,
        &issuer.cert_file,
    );
    let a = hoist(cfg)
        .args(["image", "inspect", &anonymous.reference("h/img:1")])
        .assert()
        .failure();
    let said = stderr(&a);
    assert!(said.contains("manifest unknown"), "{said}");
    assert!(
        said.contains(&config.display().to_string())
            && said.contains("key must be a string")
            && said.contains("going on without credentials"),
        "{said}"
    );
    let e = fails(cfg, &["image", "inspect", &image]);
    assert!(
        e.contains("401")
            && e.contains(&config.display().to_string())
            && e.contains("key must be a string"),
        "{e}"
    );
    login(cfg, &authed.addr).failure();
    assert_eq!(std::fs::read_to_string(config).unwrap(), "{bad json");
}

/// A relative layer destination lands under the working directory, as Docker's COPY puts
/// it: `--workdir` when given, else the base's, else `/`. No registry: layouts only.
#[test]
fn relative_layer_destinations_follow_the_working_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    write_file(&t.join("f.txt"), b"f\n", 0o644);
    let f = t.join("f.txt").display().to_string();
    let lay = |name: &str| format!("oci:{}:{name}", t.join("lay").display());
    let append = |args: &[&str]| {
        hoist(t)
            .args(["image", "append"])
            .args(args)
            .assert()
            .success();
    };
    append(&[
        "--base",
        "scratch",
        "--workdir",
        "/app",
        "--layer",
        &format!("{f}:www/"),
        "--tag",
        &lay("one"),
    ]);
    // The base says /app; this append names none.
    append(&[
        "--base",
        &lay("one"),
        "--layer",
        &format!("{f}:rel.txt"),
        "--tag",
        &lay("two"),
    ]);
    // Its own workdir wins over the base's.
    append(&[
        "--base",
        &lay("one"),
        "--workdir",
        "/srv/",
        "--layer",
        &format!("{f}:x.txt"),
        "--tag",
        &lay("three"),
    ]);
    append(&[
        "--base",
        "scratch",
        "--layer",
        &format!("{f}:top.txt"),
        "--tag",
        &lay("four"),
    ]);
    for (name, want) in [
        ("one", "app/www/f.txt"),
        ("two", "app/rel.txt"),
        ("three", "srv/x.txt"),
        ("four", "top.txt"),
    ] {
        let image = format!("{}:{name}", t.join("lay").display());
        let files = unpacked(&image, &t.join(format!("b-{name}")));
        assert!(
            files.iter().any(|f| f.starts_with(&format!("{want} "))),
            "{name}: {files:?}"
        );
    }
}

/// A registry on a loopback address that speaks HTTPS (an SSH tunnel, a port-forward):
/// hoist tries plain HTTP first, hears that it speaks TLS, and goes on over HTTPS with
/// `--ca-file`. Without the CA, the error names the unknown issuer and the flag to use.
#[test]
fn a_loopback_registry_that_speaks_tls() {
    let reg = Registry::start_with(false, true);
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("docker");
    let src = tmp.path().join("src");
    write_file(&src.join("a.txt"), b"a\n", 0o644);
    let ca = reg.ca_file();
    let ca = ca.to_str().unwrap();
    let app = reg.reference("tls/app:v1");
    let a = hoist(&cfg)
        .args(["image", "append", "--base", "scratch", "--layer"])
        .arg(format!("{}:/app", src.display()))
        .args(["--tag", &app, "--ca-file", ca, "-o", "json"])
        .assert()
        .success();
    let pushed: serde_json::Value = serde_json::from_str(&stdout(&a)).unwrap();
    let copied = reg.reference("tls/copy:v1");
    hoist(&cfg)
        .args(["image", "copy", &app, &copied, "--ca-file", ca])
        .assert()
        .success();
    // HOIST_CA_FILE does what --ca-file does (for commands that have no such flag).
    let a = hoist(&cfg)
        .env("HOIST_CA_FILE", ca)
        .args(["image", "inspect", &copied, "-o", "json"])
        .assert()
        .success();
    let v: serde_json::Value = serde_json::from_str(&stdout(&a)).unwrap();
    assert_eq!(v["digest"], pushed["digest"]);
    let store = tmp.path().join("store");
    hoist(&cfg)
        .args(["image", "pull", &copied, "--ca-file", ca, "--store"])
        .arg(&store)
        .assert()
        .success();

    let e = fails(&cfg, &["image", "inspect", &copied]);
    assert!(
        e.contains(&format!("https://{}", reg.addr)) && e.contains("UnknownIssuer"),
        "{e}"
    );
    assert!(e.contains("--ca-file FILE"), "{e}");

    // An insecure registry may be given as an http:// URL, but not as an https:// one.
    hoist(&cfg)
        .env("HOIST_INSECURE_REGISTRIES", "http://reg.example:5000/")
        .args(["image", "inspect", &copied, "--ca-file", ca])
        .assert()
        .success();
    let a = hoist(&cfg)
        .args(["image", "inspect", &copied, "--ca-file", ca])
        .args(["--insecure-registry", "https://reg.example:5000"])
        .assert()
        .failure();
    let e = stderr(&a);
    assert!(
        e.contains("\"https://reg.example:5000\"") && e.contains("plain HTTP"),
        "{e}"
    );
}

/// A download cut in the middle (a registry restarting, a dropped connection) is retried,
/// said on stderr, and the result is whole: `image pull` into a store and `image copy` into
/// an OCI layout, checked by umoci; `-o json` stays one JSON document on stdout.
#[test]
fn pull_and_copy_to_a_layout_survive_a_cut_download() {
    use fault_proxy::{FaultProxy, Faults};
    let reg = Registry::start(false);
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let data = registry::pseudo_random(42, 3 << 20);
    write_file(&t.join("src/data.bin"), &data, 0o644);
    hoist(t)
        .args(["image", "append", "--base", "scratch", "--layer"])
        .arg(format!("{}:/data", t.join("src").display()))
        .args(["--tag", &reg.reference("cut/img:v1")])
        .assert()
        .success();
    let cut_once = || {
        FaultProxy::start(
            &reg.addr,
            Faults {
                cut_after: 1 << 20,
                cuts: 1,
                ..Default::default()
            },
        )
    };
    let check = |image: &str, bundle: &str| {
        let bundle = t.join(bundle);
        assert_eq!(
            unpacked(image, &bundle),
            vec!["data d755".to_string(), "data/data.bin f644".to_string()]
        );
        let got = std::fs::read(bundle.join("rootfs/data/data.bin")).unwrap();
        assert!(got == data, "the unpacked file differs from the pushed one");
    };

    let proxy = cut_once();
    let store = t.join("store");
    let a = hoist(t)
        .args(["image", "pull", "--store"])
        .arg(&store)
        .arg(format!("{}/cut/img:v1", proxy.addr))
        .assert()
        .success();
    assert_eq!(proxy.cuts_done(), 1);
    let err = stderr(&a);
    assert!(
        err.contains(&format!(
            "warning: registry {}: the connection broke during the transfer",
            proxy.addr
        )) && err.contains("(blob sha256:")
            && err.contains("retrying in 0."),
        "{err}"
    );
    // Resumed with a Range request: nothing came twice.
    assert!(
        stdout(&a).contains(" downloaded (3.00 MiB, after 1 retry)"),
        "{}",
        stdout(&a)
    );
    // The store is whole: umoci reads it, and every blob hashes to its name (sha256sum).
    let ls = std::process::Command::new("umoci")
        .args(["ls", "--layout"])
        .arg(&store)
        .output()
        .unwrap();
    let names = String::from_utf8_lossy(&ls.stdout);
    assert!(
        names.contains(&format!("{}/cut/img:v1", proxy.addr)),
        "{names}"
    );
    let blobs = store.join("blobs/sha256");
    let sums = std::process::Command::new("sha256sum")
        .args(
            std::fs::read_dir(&blobs)
                .unwrap()
                .map(|e| e.unwrap().path()),
        )
        .output()
        .unwrap();
    let sums = String::from_utf8(sums.stdout).unwrap();
    assert_eq!(sums.lines().count(), 3, "manifest, config, layer: {sums}");
    for line in sums.lines() {
        let (sum, path) = line.split_once("  ").unwrap();
        assert!(path.ends_with(&format!("/{sum}")), "{line}");
    }

    let proxy = cut_once();
    let layout = t.join("layout");
    let a = hoist(t)
        .args(["image", "copy", "-o", "json"])
        .arg(format!("{}/cut/img:v1", proxy.addr))
        .arg(format!("oci:{}:v1", layout.display()))
        .assert()
        .success();
    assert_eq!(proxy.cuts_done(), 1);
    let doc: serde_json::Value = serde_json::from_str(&stdout(&a)).expect("one JSON document");
    assert_eq!(doc["transfer"]["retries"], 1, "{doc}");
    assert!(stderr(&a).contains("retrying in"), "{}", stderr(&a));
    check(&format!("{}:v1", layout.display()), "b2");
}

/// A push through a registry answering 503 at first (restarting) and losing the answers to
/// two closing upload requests (committed, then the connection dropped) succeeds, says
/// each retry, and the image is whole for skopeo and umoci.
#[test]
fn push_survives_503s_and_lost_closing_answers() {
    use fault_proxy::{FaultProxy, Faults};
    let reg = Registry::start(false);
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let data = registry::pseudo_random(43, 1 << 20);
    write_file(&t.join("src/data.bin"), &data, 0o644);
    let proxy = FaultProxy::start(
        &reg.addr,
        Faults {
            unavailable: 2,
            lost_closing_answers: 2,
            ..Default::default()
        },
    );
    let started = std::time::Instant::now();
    let a = hoist(t)
        .args(["image", "append", "--base", "scratch", "--layer"])
        .arg(format!("{}:/data", t.join("src").display()))
        .args(["--tag", &format!("{}/push/img:v1", proxy.addr)])
        .assert()
        .success();
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert_eq!(proxy.unavailable_done(), 2);
    assert_eq!(proxy.lost_closing_answers_done(), 2);
    let err = stderr(&a);
    assert!(
        err.contains(&format!(
            "warning: registry {}: HTTP 503 Service Unavailable",
            proxy.addr
        )),
        "{err}"
    );
    let out = stdout(&a);
    assert!(out.contains("(1.00 MiB sent, "), "{out}");
    assert!(out.contains(" retries)"), "{out}");
    let layout = t.join("check");
    let copied = std::process::Command::new("skopeo")
        .args(["copy", "--src-tls-verify=false"])
        .arg(format!("docker://{}/push/img:v1", reg.addr))
        .arg(format!("oci:{}:v1", layout.display()))
        .output()
        .unwrap();
    assert!(
        copied.status.success(),
        "{}",
        String::from_utf8_lossy(&copied.stderr)
    );
    let bundle = t.join("bundle");
    unpacked(&format!("{}:v1", layout.display()), &bundle);
    let got = std::fs::read(bundle.join("rootfs/data/data.bin")).unwrap();
    assert!(got == data, "the pushed file differs");
}

/// On a terminal (`script` gives hoist one, so the progress bar is drawn), a retry is
/// said too (printed above the bar), and the summary says it.
#[test]
fn a_retry_is_said_above_the_progress_bar_on_a_terminal() {
    use fault_proxy::{FaultProxy, Faults};
    let reg = Registry::start(false);
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    write_file(
        &t.join("src/data.bin"),
        &registry::pseudo_random(44, 2 << 20),
        0o644,
    );
    hoist(t)
        .args(["image", "append", "--base", "scratch", "--layer"])
        .arg(format!("{}:/data", t.join("src").display()))
        .args(["--tag", &reg.reference("tty/img:v1")])
        .assert()
        .success();
    let proxy = FaultProxy::start(
        &reg.addr,
        Faults {
            cut_after: 1 << 20,
            cuts: 1,
            ..Default::default()
        },
    );
    let hoist_bin = assert_cmd::cargo::cargo_bin("hoist");
    let line = format!(
        "{} image pull --store {} {}/tty/img:v1",
        hoist_bin.display(),
        t.join("store").display(),
        proxy.addr
    );
    let out = std::process::Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .env("DOCKER_CONFIG", t)
        .env("HOME", t)
        .env_remove("HOIST_INSECURE_REGISTRIES")
        .output()
        .unwrap();
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{screen}");
    assert_eq!(proxy.cuts_done(), 1);
    assert!(
        screen.contains(&format!(
            "warning: registry {}: the connection broke during the transfer",
            proxy.addr
        )) && screen.contains("retrying in 0."),
        "{screen}"
    );
    assert!(screen.contains("after 1 retry), "), "{screen}");
}

/// A registry that loses its storage after it took every blob of a push, just before the
/// manifest: hoist says so as a warning, sends them again, and the push succeeds.
#[test]
fn a_push_to_a_registry_that_lost_its_blobs_sends_them_again_and_says_so() {
    let reg = Registry::start(false);
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    write_file(&t.join("app/run.sh"), b"#!/bin/sh\necho lost\n", 0o755);
    let storage = reg.storage();
    let hook = fault_proxy::Hook(std::sync::Arc::new(move |n| {
        if n == 0 {
            // As a restart with empty storage (emptyDir, tmpfs) leaves it.
            std::fs::remove_dir_all(&storage).unwrap();
        }
    }));
    let proxy = fault_proxy::FaultProxy::start(
        &reg.addr,
        fault_proxy::Faults {
            before_manifest_put: Some(hook),
            ..Default::default()
        },
    );
    let target = format!("{}/lost/app:v1", proxy.addr);
    let a = hoist(t)
        .args(["image", "append", "--base", "scratch", "--layer"])
        .arg(format!("{}:/app", t.join("app").display()))
        .args(["--tag", &target])
        .timeout(std::time::Duration::from_secs(60))
        .assert()
        .success();
    let err = stderr(&a);
    assert!(
        err.contains(&format!(
            "warning: registry {}: it refused the manifest of {target} for blobs it no longer has",
            proxy.addr
        )) && err.contains("(did it restart with empty storage?); sending 2 blobs again"),
        "{err}"
    );
    // The registry has the image whole: pulled past the proxy.
    hoist(t)
        .env("HOIST_CACHE_DIR", t.join("cache"))
        .args(["image", "pull", &reg.reference("lost/app:v1")])
        .timeout(std::time::Duration::from_secs(60))
        .assert()
        .success();
}

/// An image as `docker push` leaves it in a registry: hoist appends `layer` (SRC:DEST) onto
/// scratch for `platform`, and skopeo copies that as Docker schema 2 to `repo_tag`. Returns
/// its reference and its manifest as the registry serves it.
fn schema2_image(
    reg: &Registry,
    t: &std::path::Path,
    repo_tag: &str,
    platform: &str,
    layer: &str,
) -> (String, hoist_oci::RawManifest) {
    let oci = reg.reference(&format!("oci-{repo_tag}"));
    hoist(t)
        .args([
            "image",
            "append",
            "--base",
            "scratch",
            "--platform",
            platform,
        ])
        .args(["--layer", layer, "--tag", &oci])
        .assert()
        .success();
    let s2 = reg.reference(repo_tag);
    registry::push_as_docker_schema2(&oci, &s2);
    let c = hoist_oci::RegistryClient::new(Default::default()).unwrap();
    let raw = hoist_oci::block_on(c.get_manifest(&s2.parse().unwrap())).unwrap();
    assert_eq!(
        raw.media_type,
        hoist_oci::manifest::media::DOCKER_MANIFEST,
        "skopeo pushed schema 2"
    );
    (s2, raw)
}

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("{e}: {s}"))
}

/// `m` (a manifest's JSON) is OCI-typed: its own media type, its config's and every
/// layer's (gzip), as a Docker schema 2 manifest converted for an OCI layout is.
fn assert_oci_typed(m: &serde_json::Value) {
    use hoist_oci::manifest::media;
    assert_eq!(m["mediaType"], media::OCI_MANIFEST, "{m}");
    assert_eq!(m["config"]["mediaType"], media::OCI_CONFIG, "{m}");
    let layers = m["layers"].as_array().unwrap();
    assert!(!layers.is_empty(), "{m}");
    assert!(
        layers
            .iter()
            .all(|l| l["mediaType"] == media::OCI_LAYER_GZIP),
        "{m}"
    );
}

/// The entries of a layout's index.json: (ref name, digest, media type).
fn index_entries(dir: &std::path::Path) -> Vec<(String, String, String)> {
    let index = json(&std::fs::read_to_string(dir.join("index.json")).unwrap());
    (index["manifests"].as_array().unwrap().iter())
        .map(|m| {
            let s = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
            let name = &m["annotations"]["org.opencontainers.image.ref.name"];
            (s(name), s(&m["digest"]), s(&m["mediaType"]))
        })
        .collect()
}

/// A Docker schema 2 image copied into `oci:DIR:NAME` gets OCI media types, which skopeo and
/// umoci need there (they failed on it before); its blobs are the same, its manifest digest
/// is new and said. `--preserve-digests` writes it as it is; a layout holding such a
/// manifest is read, back to a registry with the digest it had. hoist's store keeps the
/// registry's digests.
#[test]
fn a_docker_image_copied_into_a_layout_gets_oci_media_types() {
    use hoist_oci::manifest::media;
    let reg = Registry::start(false);
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    write_file(&t.join("src/run.sh"), b"#!/bin/sh\necho hi\n", 0o755);
    write_file(&t.join("src/conf/app.conf"), b"x=1\n", 0o640);
    let layer = format!("{}:/app", t.join("src").display());
    let (src, source) = schema2_image(&reg, t, "s2/img:1", "linux/amd64", &layer);
    let old = source.digest.to_string();
    let source_json = json(std::str::from_utf8(&source.bytes).unwrap());

    let lay = t.join("lay");
    let at = |dir: &std::path::Path, name: &str| format!("oci:{}:{name}", dir.display());
    let a = hoist(t)
        .args(["image", "copy", &src, &at(&lay, "t")])
        .assert()
        .success();
    let inspected = json(&skopeo(&["inspect", &at(&lay, "t")]));
    let new = inspected["Digest"].as_str().unwrap().to_string();
    assert_ne!(new, old);
    let said = stdout(&a);
    assert!(
        said.contains(&format!(
            "\nconverted Docker media types to OCI (an OCI layout holds OCI manifests): {new}, \
             {old} at the source; --preserve-digests keeps them\n"
        )),
        "{said}"
    );
    let raw = json(&skopeo(&["inspect", "--raw", &at(&lay, "t")]));
    assert_oci_typed(&raw);
    assert_eq!(blob_digests(&raw), blob_digests(&source_json));
    assert_eq!(
        unpacked(&format!("{}:t", lay.display()), &t.join("b1")),
        [
            "app d755",
            "app/conf d755",
            "app/conf/app.conf f640",
            "app/run.sh f755"
        ]
    );
    // Scripts get both digests.
    let a = hoist(t)
        .args(["image", "copy", &src, &at(&lay, "j"), "-o", "json"])
        .assert()
        .success();
    let rep = json(&stdout(&a));
    assert_eq!(
        (rep["digest"].as_str(), rep["converted_from"].as_str()),
        (Some(&*new), Some(&*old))
    );

    // Back to a registry: the OCI manifest as it is in the layout, which registries and
    // skopeo read.
    let back = reg.reference("back/img:1");
    let a = hoist(t)
        .args(["image", "copy", &at(&lay, "t"), &back, "-o", "json"])
        .assert()
        .success();
    let rep = json(&stdout(&a));
    assert_eq!(
        (rep["digest"].as_str(), &rep["converted_from"]),
        (Some(&*new), &serde_json::Value::Null)
    );
    let pushed = json(&skopeo(&[
        "inspect",
        "--tls-verify=false",
        &format!("docker://{back}"),
    ]));
    assert_eq!(pushed["Digest"], new);

    // --preserve-digests: the Docker manifest as it is, under the source's digest.
    let kept = t.join("kept");
    let a = hoist(t)
        .args(["image", "copy", "--preserve-digests", &src, &at(&kept, "t")])
        .assert()
        .success();
    assert!(!stdout(&a).contains("converted"), "{}", stdout(&a));
    assert_eq!(
        index_entries(&kept),
        [(
            "t".to_string(),
            old.clone(),
            media::DOCKER_MANIFEST.to_string()
        )]
    );
    // Such a layout is read: to a registry with the same digest, into another layout
    // converted to the same manifest as straight from the registry.
    let again = reg.reference("back/kept:1");
    let a = hoist(t)
        .args(["image", "copy", &at(&kept, "t"), &again, "-o", "json"])
        .assert()
        .success();
    assert_eq!(json(&stdout(&a))["digest"], old);
    let c = hoist_oci::RegistryClient::new(Default::default()).unwrap();
    let got = hoist_oci::block_on(c.get_manifest(&again.parse().unwrap())).unwrap();
    assert_eq!(got.bytes, source.bytes);
    let a = hoist(t)
        .args([
            "image",
            "copy",
            &at(&kept, "t"),
            &at(&lay, "from-kept"),
            "-o",
            "json",
        ])
        .assert()
        .success();
    let rep = json(&stdout(&a));
    assert_eq!(
        (rep["digest"].as_str(), rep["converted_from"].as_str()),
        (Some(&*new), Some(&*old))
    );

    // A media type with no OCI equivalent (Docker schema 2 has no zstd layer) stops the
    // copy before anything is stored, and says what to do.
    let odd = String::from_utf8(source.bytes.clone()).unwrap().replace(
        media::DOCKER_LAYER_GZIP,
        "application/vnd.docker.image.rootfs.diff.tar.zstd",
    );
    let odd = hoist_oci::RawManifest::new(odd.into_bytes(), None).unwrap();
    let zstd = reg.reference("s2/img:zstd");
    hoist_oci::block_on(c.put_manifest(&zstd.parse().unwrap(), &odd)).unwrap();
    let bad = t.join("bad");
    let err = fails(t, &["image", "copy", &zstd, &at(&bad, "t")]);
    assert!(
        err.contains(&format!(
            "cannot convert manifest {} to OCI media types for an OCI layout: layer 0 has media \
             type \"application/vnd.docker.image.rootfs.diff.tar.zstd\", which has no OCI \
             equivalent",
            odd.digest
        )) && err.contains("hint: --preserve-digests stores the manifest as it is"),
        "{err}"
    );
    assert_eq!(index_entries(&bad), []);
    assert_eq!(
        std::fs::read_dir(bad.join("blobs/sha256")).unwrap().count(),
        0
    );
    hoist(t)
        .args(["image", "copy", "--preserve-digests", &zstd, &at(&bad, "t")])
        .assert()
        .success();

    // hoist's store finds images by their registry digests: never converted, pulled or
    // copied there by name.
    let store = t.join("store");
    hoist(t)
        .args(["image", "pull", "--store"])
        .arg(&store)
        .arg(&src)
        .assert()
        .success();
    let a = hoist(t)
        .args(["image", "copy", &src, &at(&store, "copied"), "-o", "json"])
        .assert()
        .success();
    assert_eq!(json(&stdout(&a))["converted_from"], serde_json::Value::Null);
    let entries = index_entries(&store);
    assert!(entries.iter().any(|(n, ..)| n == "copied"), "{entries:?}");
    assert!(
        entries
            .iter()
            .all(|(_, d, m)| *d == old && m == media::DOCKER_MANIFEST),
        "{entries:?}"
    );
}

/// A Docker manifest list copied with `--all` into a layout becomes an OCI index of the
/// converted images, each platform readable by skopeo; the same list between registries
/// keeps its digest.
#[test]
fn a_docker_manifest_list_copied_into_a_layout_becomes_an_oci_index() {
    use hoist_oci::manifest::media;
    let reg = Registry::start(false);
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let mut images = vec![];
    for arch in ["amd64", "arm64"] {
        let dir = t.join(arch);
        write_file(&dir.join(format!("{arch}.txt")), arch.as_bytes(), 0o644);
        let layer = format!("{}:/", dir.display());
        let (_, raw) = schema2_image(
            &reg,
            t,
            &format!("s2/multi:{arch}"),
            &format!("linux/{arch}"),
            &layer,
        );
        images.push((arch, raw));
    }
    let entries: Vec<_> = (images.iter())
        .map(|(arch, raw)| {
            serde_json::json!({
                "mediaType": media::DOCKER_MANIFEST,
                "size": raw.bytes.len(),
                "digest": raw.digest,
                "platform": {"architecture": arch, "os": "linux"},
            })
        })
        .collect();
    let list = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media::DOCKER_LIST,
        "manifests": entries,
    });
    let list = hoist_oci::RawManifest::new(serde_json::to_vec(&list).unwrap(), None).unwrap();
    let src = reg.reference("s2/multi:list");
    let c = hoist_oci::RegistryClient::new(Default::default()).unwrap();
    hoist_oci::block_on(c.put_manifest(&src.parse().unwrap(), &list)).unwrap();

    let lay = t.join("lay");
    let dst = format!("oci:{}:t", lay.display());
    let a = hoist(t)
        .args(["image", "copy", "--all", &src, &dst])
        .assert()
        .success();
    let index = json(&skopeo(&["inspect", "--raw", &dst]));
    assert_eq!(index["mediaType"], media::OCI_INDEX, "{index}");
    let entry = index_entries(&lay);
    assert_eq!(entry.len(), 1, "{entry:?}");
    let (name, new, media_type) = &entry[0];
    assert_eq!(
        (name.as_str(), media_type.as_str()),
        ("t", media::OCI_INDEX)
    );
    let said = stdout(&a);
    assert!(
        said.contains(&format!(
            "converted Docker media types to OCI (an OCI layout holds OCI manifests): {new}, {} \
             at the source",
            list.digest
        )),
        "{said}"
    );
    let blob = |digest: &str| {
        let hex = digest.trim_start_matches("sha256:");
        let bytes = std::fs::read(lay.join("blobs/sha256").join(hex)).unwrap();
        assert_eq!(hoist_oci::Digest::of(&bytes).hex(), hex);
        json(std::str::from_utf8(&bytes).unwrap())
    };
    assert_eq!(blob(new), index);
    let listed = index["manifests"].as_array().unwrap();
    assert_eq!(listed.len(), 2, "{index}");
    for (entry, (arch, raw)) in listed.iter().zip(&images) {
        assert_eq!(entry["mediaType"], media::OCI_MANIFEST, "{index}");
        assert_eq!(entry["platform"]["architecture"], *arch, "{index}");
        assert_ne!(entry["digest"], raw.digest.to_string());
        let manifest = blob(entry["digest"].as_str().unwrap());
        assert_oci_typed(&manifest);
        let source = json(std::str::from_utf8(&raw.bytes).unwrap());
        assert_eq!(blob_digests(&manifest), blob_digests(&source));
        // skopeo picks the platform's image through the index (its Digest is the index's).
        let image = json(&skopeo(&["inspect", "--override-arch", arch, &dst]));
        assert_eq!(image["Digest"].as_str(), Some(new.as_str()), "{image}");
        assert_eq!(image["Architecture"], *arch, "{image}");
        assert_eq!(
            image["Layers"],
            serde_json::json!([source["layers"][0]["digest"]])
        );
    }

    // Without --all, the platform's image alone, converted.
    let one = format!("oci:{}:arm", lay.display());
    let a = hoist(t)
        .args([
            "image",
            "copy",
            "--platform",
            "linux/arm64",
            &src,
            &one,
            "-o",
            "json",
        ])
        .assert()
        .success();
    let rep = json(&stdout(&a));
    assert_eq!(
        rep["converted_from"],
        images[1].1.digest.to_string(),
        "{rep}"
    );
    assert_eq!(rep["digest"], listed[1]["digest"], "{rep}");
    let image = json(&skopeo(&["inspect", &one]));
    assert_eq!(
        (&image["Digest"], &image["Architecture"]),
        (&rep["digest"], &"arm64".into())
    );

    // Between registries the list stays as it is.
    let mirror = reg.reference("mirror/multi:list");
    let a = hoist(t)
        .args(["image", "copy", "--all", &src, &mirror, "-o", "json"])
        .assert()
        .success();
    let rep = json(&stdout(&a));
    assert_eq!(rep["digest"], list.digest.to_string(), "{rep}");
    assert_eq!(rep["converted_from"], serde_json::Value::Null, "{rep}");
}

/// `append --tag oci:DIR:NAME` on a Docker schema 2 base stores an OCI-typed manifest that
/// skopeo and umoci read (they failed on it before), says so with the digest a push to a
/// registry gives, and `--preserve-digests` stores that very manifest.
#[test]
fn append_on_a_docker_base_into_a_layout_gets_oci_media_types() {
    use hoist_oci::manifest::media;
    let reg = Registry::start(false);
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    write_file(&t.join("os/etc/os-release"), b"ID=test\n", 0o644);
    let os = format!("{}:/", t.join("os").display());
    let (base, base_raw) = schema2_image(&reg, t, "s2/base:1", "linux/amd64", &os);
    let base_json = json(std::str::from_utf8(&base_raw.bytes).unwrap());
    write_file(&t.join("app/run.sh"), b"#!/bin/sh\necho hi\n", 0o755);
    let app = format!("{}:/app", t.join("app").display());
    let append = |tag: &str, extra: &[&str]| {
        hoist(t)
            .args(["image", "append", "--base", &base, "--layer", &app])
            .args(["--cmd", "/app/run.sh", "--tag", tag])
            .args(extra)
            .assert()
            .success()
    };
    // What a registry gets: Docker media types, as the base has.
    let pushed = reg.reference("app/web:1");
    let docker = json(&stdout(&append(&pushed, &["-o", "json"])))["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let c = hoist_oci::RegistryClient::new(Default::default()).unwrap();
    let raw = hoist_oci::block_on(c.get_manifest(&pushed.parse().unwrap())).unwrap();
    assert_eq!(
        (raw.media_type.as_str(), raw.digest.to_string()),
        (media::DOCKER_MANIFEST, docker.clone())
    );

    let lay = t.join("lay");
    let dst = format!("oci:{}:t", lay.display());
    let said = stdout(&append(&dst, &[]));
    let inspected = json(&skopeo(&["inspect", &dst]));
    let new = inspected["Digest"].as_str().unwrap().to_string();
    assert_ne!(new, docker);
    assert!(
        said.starts_with(&format!("stored {dst} ({new})"))
            && said.contains(&format!(
                "\nconverted Docker media types (of the Docker schema 2 base) to OCI (an OCI \
                 layout holds OCI manifests): {new}, {docker} as pushed to a registry; \
                 --preserve-digests keeps them\n"
            )),
        "{said}"
    );
    let manifest = json(&skopeo(&["inspect", "--raw", &dst]));
    assert_oci_typed(&manifest);
    let layers = manifest["layers"].as_array().unwrap();
    // The base layer is the base's blob; the config is the one pushed.
    assert_eq!(layers[0]["digest"], base_json["layers"][0]["digest"]);
    let raw_json = json(std::str::from_utf8(&raw.bytes).unwrap());
    assert_eq!(blob_digests(&manifest), blob_digests(&raw_json));
    assert_eq!(
        unpacked(&format!("{}:t", lay.display()), &t.join("b1")),
        [
            "app d755",
            "app/run.sh f755",
            "etc d755",
            "etc/os-release f644"
        ]
    );
    let rep = json(&stdout(&append(
        &format!("oci:{}:j", lay.display()),
        &["-o", "json"],
    )));
    assert_eq!(
        (rep["digest"].as_str(), rep["converted_from"].as_str()),
        (Some(&*new), Some(&*docker))
    );

    // --preserve-digests: the manifest a push gives, Docker-typed, under its digest.
    let kept = t.join("kept");
    let rep = json(&stdout(&append(
        &format!("oci:{}:t", kept.display()),
        &["--preserve-digests", "-o", "json"],
    )));
    assert_eq!(
        (rep["digest"].as_str(), &rep["converted_from"]),
        (Some(&*docker), &serde_json::Value::Null)
    );
    assert_eq!(
        index_entries(&kept),
        [(
            "t".to_string(),
            docker.clone(),
            media::DOCKER_MANIFEST.to_string()
        )]
    );
}
