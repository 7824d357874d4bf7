//! `dockerfile:` services end to end with the real buildah and podman (vfs storage, a
//! storage root per test: see hoist-oci's tests/support/builder.rs) and a real registry:
//! `FROM` the project's own loopback registry, reproducible builds, no rebuild of a
//! content tag that is there, and Ctrl-C. Each test runs for both builders.

#[path = "../../hoist-oci/tests/support/builder.rs"]
mod builder;
#[path = "../../hoist-oci/tests/support/registry.rs"]
mod registry;

use std::path::{Path, PathBuf};
use std::process::{Command as Std, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::Command;
use assert_cmd::cargo::CommandCargoExt;
use hoist_oci::dockerfile::Builder;
use registry::Registry;

/// Runs each test `$name(builder)` as `buildah::$name` and `podman::$name`.
macro_rules! for_each_builder {
    ($($name:ident),* $(,)?) => {
        mod buildah {
            $(#[test]
            fn $name() {
                super::$name(super::Builder::Buildah);
            })*
        }
        mod podman {
            $(#[test]
            fn $name() {
                super::$name(super::Builder::Podman);
            })*
        }
    };
}

for_each_builder!(
    from_the_projects_loopback_registry,
    reproducible_and_built_only_once,
    ctrl_c_or_sigterm_stops_the_builder_without_leaving_containers,
    builds_do_not_use_the_system_temp_dir,
    a_broken_dockerfile_is_reported_and_leaves_nothing,
);

/// The builder's storage root in the test's dir.
fn storage(dir: &Path) -> PathBuf {
    dir.join("storage")
}

/// A project with one Dockerfile service `df` (`dockerfile`; its context holds `app.txt`
/// and `busybox`).
fn project(dir: &Path, registry: &str, dockerfile: &str) -> PathBuf {
    let root = dir.join("p");
    let svc = root.join("services/df");
    std::fs::create_dir_all(&svc).unwrap();
    std::fs::write(
        root.join("hoist.yaml"),
        format!("name: p\nregistry: {registry}\nservices: [\"services/*\"]\n"),
    )
    .unwrap();
    std::fs::write(
        svc.join("service.yaml"),
        "name: df\nimage: {dockerfile: Dockerfile}\n",
    )
    .unwrap();
    std::fs::write(svc.join("Dockerfile"), dockerfile).unwrap();
    std::fs::write(svc.join("app.txt"), "hello\n").unwrap();
    std::fs::copy("/bin/busybox", svc.join("busybox")).unwrap();
    root
}

/// The environment every hoist run here gets: a home of its own, the builder `b` with a
/// storage root in `dir`, and `bin` (where the test may put a wrapper of the builder)
/// first on PATH.
fn env(dir: &Path, b: Builder) -> Vec<(&'static str, std::ffi::OsString)> {
    let path = std::env::join_paths(
        std::iter::once(dir.join("bin")).chain(std::env::split_paths(
            &std::env::var_os("PATH").unwrap_or_default(),
        )),
    )
    .unwrap();
    let mut env = vec![
        ("HOME", dir.join("home").into()),
        ("DOCKER_CONFIG", dir.join("docker").into()),
        ("HOIST_CACHE_DIR", dir.join("cache").into()),
        ("PATH", path),
    ];
    env.extend(builder::env(b, &storage(dir)));
    env
}

fn hoist(root: &Path, dir: &Path, b: Builder) -> Command {
    let mut c = Command::cargo_bin("hoist").unwrap();
    c.arg("-C")
        .arg(root)
        .envs(env(dir, b))
        .env_remove("HOIST_INSECURE_REGISTRIES")
        .env_remove("SOURCE_DATE_EPOCH")
        .env_remove("CONTAINERS_REGISTRIES_CONF");
    c
}

/// `hoist image build df --store` in `root`, running on (to be signalled or killed), its
/// stderr to `stderr`.
fn build_in_background(root: &Path, dir: &Path, b: Builder, stderr: Stdio) -> std::process::Child {
    Std::cargo_bin("hoist")
        .unwrap()
        .arg("-C")
        .arg(root)
        .args(["image", "build", "df", "--store"])
        .envs(env(dir, b))
        .env_remove("HOIST_INSECURE_REGISTRIES")
        .env_remove("CONTAINERS_REGISTRIES_CONF")
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap()
}

/// Pushes a busybox-only image to `reference` (a base that `RUN` works on, no network).
fn push_busybox(root: &Path, dir: &Path, reference: &str) {
    hoist(root, dir, Builder::Buildah)
        .args(["image", "append", "--base", "scratch", "--tag", reference])
        .args(["--layer", "/bin/busybox:/bin/busybox"])
        .assert()
        .success();
}

/// The builder's working containers in the test's storage root.
fn containers(dir: &Path, b: Builder) -> String {
    builder::containers(b, &storage(dir))
}

fn build_json(root: &Path, dir: &Path, b: Builder, extra: &[&str]) -> serde_json::Value {
    let out = hoist(root, dir, b)
        .args(["image", "build", "df", "-o", "json"])
        .args(extra)
        .assert()
        .success();
    let v: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    v[0].clone()
}

/// The project's registry is loopback, so hoist talks plain HTTP to it; the builder
/// pulls `FROM` it the same way (before, buildah tried HTTPS and failed).
fn from_the_projects_loopback_registry(b: Builder) {
    builder::require(b);
    let reg = Registry::start(false);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let base = reg.reference("base/bb:1");
    let root = project(
        dir,
        &reg.addr,
        &format!(
            "FROM {base}\nCOPY app.txt /app.txt\nRUN [\"/bin/busybox\", \"sh\", \"-c\", \"echo built > /built\"]\n"
        ),
    );
    push_busybox(&root, dir, &base);
    let built = build_json(&root, dir, b, &[]);
    let cfg = registry::skopeo_config(&format!(
        "docker://{}",
        built["reference"].as_str().unwrap()
    ));
    // The base's layer, then what the Dockerfile added (the builder makes it one layer).
    let base_cfg = registry::skopeo_config(&format!("docker://{base}"));
    let layers = cfg["rootfs"]["diff_ids"].as_array().unwrap();
    assert_eq!(layers.len(), 2, "{cfg}");
    assert_eq!(layers[0], base_cfg["rootfs"]["diff_ids"][0], "{cfg}");
    builder::assert_clean(b, &storage(dir));
}

/// Two builds of the same inputs give the same digest (`--timestamp`), and a content tag
/// already in the registry is not built again: the builder does not run (a wrapper of
/// it first on PATH counts its runs and execs the real one), the output says so.
fn reproducible_and_built_only_once(b: Builder) {
    builder::require(b);
    let reg = Registry::start(false);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let root = project(
        dir,
        &reg.addr,
        "FROM scratch\nCOPY busybox /bin/busybox\nCOPY app.txt /app.txt\nRUN [\"/bin/busybox\", \"sh\", \"-c\", \"echo built > /built\"]\n",
    );
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let prog = builder::prog(b);
    let count = dir.join("builder-runs");
    let real = String::from_utf8(Std::new("which").arg(prog).output().unwrap().stdout)
        .unwrap()
        .trim()
        .to_string();
    let wrapper = bin.join(prog);
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\necho \"$*\" >> '{}'\nexec '{real}' \"$@\"\n",
            count.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let build_word = match b {
        Builder::Podman => " build ",
        _ => " bud ",
    };
    let builds = || {
        std::fs::read_to_string(&count)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(build_word))
            .count()
    };

    let first = build_json(&root, dir, b, &[]);
    assert_eq!(builds(), 1, "{first}");
    let reference = first["reference"].as_str().unwrap();
    assert!(reference.contains(":h-"), "{first}");
    assert_eq!(first["already_there"], false, "{first}");
    let cfg = registry::skopeo_config(&format!("docker://{reference}"));
    assert_eq!(cfg["created"], "2000-01-01T00:00:00Z", "{cfg}");

    // Again: the registry has the content tag, so no build and nothing sent.
    let second = build_json(&root, dir, b, &[]);
    assert_eq!(builds(), 1, "built again: {second}");
    assert_eq!(second["already_there"], true, "{second}");
    assert_eq!(second["digest"], first["digest"]);
    assert_eq!(second["uploaded_bytes"], 0);
    let text = hoist(&root, dir, b)
        .args(["image", "build", "df"])
        .assert()
        .success();
    let text = String::from_utf8_lossy(&text.get_output().stdout).to_string();
    assert!(text.contains("already there"), "{text}");
    assert_eq!(builds(), 1);

    // An explicit tag is always built; the same inputs give the same image.
    let tagged = build_json(&root, dir, b, &["--tag", "t1"]);
    let again = build_json(&root, dir, b, &["--tag", "t1"]);
    assert_eq!(builds(), 3);
    assert_eq!(tagged["already_there"], false);
    assert_eq!(tagged["digest"], first["digest"], "not reproducible");
    assert_eq!(again["digest"], first["digest"], "not reproducible");
    // No working container, and no image under hoist's build tags (nor any other: the
    // build is FROM scratch).
    builder::assert_clean(b, &storage(dir));
    assert_eq!(builder::images(b, &storage(dir)), Vec::<String>::new());
}

/// Ctrl-C or SIGTERM during a Dockerfile build: the builder is stopped gracefully, so it
/// removes its working container (killed outright, it leaves it behind), and hoist exits
/// 130 or 143 soon, its build output dir (with the dir's lock file) gone, no process of
/// the build's `RUN` step left. In the `RUN` step, and before it: as soon as the builder
/// has started (while it sets up its working container or copies), and in a build without
/// `RUN` (podman has no step to fail then; what it prints meanwhile killed it while hoist
/// read its output through a pipe).
fn ctrl_c_or_sigterm_stops_the_builder_without_leaving_containers(b: Builder) {
    builder::require(b);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // The step's processes carry the test's dir in their environment, to be found by it.
    let mark = format!("HOIST_TEST_DIR={}", dir.display());
    let with_run = format!(
        "FROM scratch\nCOPY busybox /bin/busybox\nENV {mark}\nRUN [\"/bin/busybox\", \"sleep\", \"30\"]\n"
    );
    let without_run = "FROM scratch\nCOPY busybox /bin/busybox\nCOPY app.txt /app.txt\n";
    let root = project(dir, "127.0.0.1:1", &with_run);
    let dockerfile = root.join("services/df/Dockerfile");
    // (Dockerfile, signal, exit code, in the RUN step: else as soon as the builder started)
    let cases = [
        (with_run.as_str(), libc::SIGINT, 130, true),
        (with_run.as_str(), libc::SIGTERM, 143, true),
        (with_run.as_str(), libc::SIGINT, 130, false),
        (without_run, libc::SIGTERM, 143, false),
    ];
    for (df, signal, code, in_run) in cases {
        let case = format!("signal {signal}, in the RUN step: {in_run}, Dockerfile {df:?}");
        std::fs::write(&dockerfile, df).unwrap();
        let mut child = build_in_background(&root, dir, b, Stdio::piped());
        let deadline = Instant::now() + Duration::from_secs(60);
        let started = || {
            if in_run {
                // The build has started once the builder has its working container.
                !containers(dir, b).trim().is_empty()
            } else {
                // The builder runs (it is given its storage root in the test's dir).
                !processes_mentioning(&storage(dir)).is_empty()
            }
        };
        while !started() {
            assert!(
                child.try_wait().unwrap().is_none(),
                "{case}: hoist ended before the build started"
            );
            assert!(Instant::now() < deadline, "{case}: the build never started");
            std::thread::sleep(Duration::from_millis(if in_run { 100 } else { 5 }));
        }
        if in_run {
            // Into the RUN step (the container exists a moment before it runs).
            std::thread::sleep(Duration::from_millis(500));
        }
        let interrupted = Instant::now();
        // SAFETY: signalling the child we started.
        assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, signal) }, 0);
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if interrupted.elapsed() > Duration::from_secs(20) {
                let _ = child.kill();
                panic!("{case}: hoist did not stop within 20 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
        assert_eq!(status.code(), Some(code), "{case}: {stderr}");
        assert!(
            interrupted.elapsed() < Duration::from_secs(10),
            "{case}: took {:?}",
            interrupted.elapsed()
        );
        assert!(stderr.contains("interrupted"), "{case}: {stderr}");
        assert_eq!(
            containers(dir, b),
            "",
            "{case}: working containers left behind"
        );
        builder::assert_clean(b, &storage(dir));
        // The step's `sleep 30` went too (with runc isolation it is in no group of
        // hoist's: the builder must have stopped it).
        assert_eq!(
            processes_with_env(&mark),
            Vec::<i32>::new(),
            "{case}: RUN step left"
        );
        // Nor its container's state in runc's machine-wide state dir.
        assert_eq!(runc_states_naming(dir), Vec::<String>::new(), "{case}");
        assert_eq!(
            cache_tmp_entries(dir),
            Vec::<String>::new(),
            "{case}: build output left behind"
        );
    }
}

/// The processes (pid, command line) whose command line mentions `dir`: the test's
/// builders (buildah is given its storage root there).
fn processes_mentioning(dir: &Path) -> Vec<(i32, String)> {
    let needle = dir.to_string_lossy().to_string();
    let mut found = vec![];
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(&needle) && pid != std::process::id() as i32 {
            found.push((pid, cmdline));
        }
    }
    found
}

/// The containers in runc's machine-wide state dir whose state names `dir`.
fn runc_states_naming(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/run/runc") else {
        return vec![];
    };
    let needle = dir.to_string_lossy().to_string();
    entries
        .flatten()
        .filter(|e| {
            std::fs::read_to_string(e.path().join("state.json")).is_ok_and(|s| s.contains(&needle))
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// The processes with `var` (`NAME=value`) in their environment.
fn processes_with_env(var: &str) -> Vec<i32> {
    let mut found = vec![];
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(environ) = std::fs::read(e.path().join("environ")) else {
            continue;
        };
        if environ.split(|b| *b == 0).any(|v| v == var.as_bytes()) {
            found.push(pid);
        }
    }
    found
}

/// The processes of group `pgid` (the builder's: hoist starts it in a group of its own, with
/// the processes of its `RUN` steps).
fn group_members(pgid: i32) -> Vec<i32> {
    let mut found = vec![];
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        // SAFETY: getpgid only reads.
        if unsafe { libc::getpgid(pid) } == pgid {
            found.push(pid);
        }
    }
    found
}

/// Kills a builder's process group (if the test fails with it still running) and removes
/// its working containers, so a failed test leaves nothing behind.
struct KillGroup(i32, PathBuf);

impl Drop for KillGroup {
    fn drop(&mut self) {
        if self.0 > 0 && !group_members(self.0).is_empty() {
            // SAFETY: signalling the group of the builder this test started.
            unsafe { libc::kill(-self.0, libc::SIGKILL) };
            let deadline = Instant::now() + Duration::from_secs(5);
            while !group_members(self.0).is_empty() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        builder::remove_containers(Builder::Buildah, &storage(&self.1));
    }
}

/// `hoist image build` killed outright (SIGKILL, no handler runs): the builder still dies
/// with it (PR_SET_PDEATHSIG sends it SIGTERM), and cleans up its working container, well
/// before its 30 s `RUN` would have ended. buildah in its `RUN` step only: podman, and
/// buildah before it, exit on that SIGTERM without removing their working container (see
/// `Stop::Steps` in hoist-oci).
#[test]
fn sigkill_of_hoist_ends_the_builder_too() {
    let b = Builder::Buildah;
    builder::require(b);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // The step's processes carry the test's dir in their environment, to be found by it.
    let mark = format!("HOIST_TEST_DIR={}", dir.display());
    let root = project(
        dir,
        "127.0.0.1:1",
        &format!(
            "FROM scratch\nCOPY busybox /bin/busybox\nENV {mark}\nRUN [\"/bin/busybox\", \"sleep\", \"30\"]\n"
        ),
    );
    let mut child = build_in_background(&root, dir, b, Stdio::null());
    let mut guard = KillGroup(0, dir.to_path_buf());
    // The build has started once buildah has its working container.
    let deadline = Instant::now() + Duration::from_secs(60);
    while containers(dir, b).trim().is_empty() {
        if child.try_wait().unwrap().is_some() || Instant::now() > deadline {
            let _ = child.kill();
            panic!("the build never started (or hoist ended first)");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // The builder: hoist's child, leader of its own group.
    let builders: Vec<_> = processes_mentioning(dir)
        .into_iter()
        .filter(|(pid, cmd)| cmd.contains(" bud ") && unsafe { libc::getpgid(*pid) } == *pid)
        .collect();
    assert_eq!(builders.len(), 1, "{builders:?}");
    guard.0 = builders[0].0;
    // Into the RUN step: buildah cleans up on SIGTERM only then (before, it dies of it).
    let deadline = Instant::now() + Duration::from_secs(30);
    while processes_with_env(&mark).is_empty() {
        assert!(Instant::now() < deadline, "the RUN step never ran");
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let killed = Instant::now();
    // buildah needs a moment to stop its RUN step and remove the container; 30 s is when
    // it would have ended by itself.
    let limit = Duration::from_secs(15);
    loop {
        let (left, containers) = (group_members(guard.0), containers(dir, b));
        if left.is_empty() && containers.trim().is_empty() {
            break;
        }
        assert!(
            killed.elapsed() < limit,
            "{:?} after hoist was killed: builder processes {left:?} ({:?}), working containers {containers:?}",
            killed.elapsed(),
            processes_mentioning(dir)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// What is in hoist's cache temp dir (where Dockerfile builds export their image).
fn cache_tmp_entries(dir: &Path) -> Vec<String> {
    match std::fs::read_dir(dir.join("cache/tmp")) {
        Ok(entries) => entries
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => vec![],
        Err(e) => panic!("reading cache/tmp: {e}"),
    }
}

/// The builder's output goes to hoist's cache temp dir, not the system temp dir (often a
/// small tmpfs): a build works with `TMPDIR` missing or read-only, into the store and into
/// a registry, and leaves nothing in the cache temp dir.
fn builds_do_not_use_the_system_temp_dir(b: Builder) {
    builder::require(b);
    let reg = Registry::start(false);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let root = project(
        dir,
        &reg.addr,
        "FROM scratch\nCOPY busybox /bin/busybox\nCOPY app.txt /app.txt\n",
    );
    let read_only = dir.join("read-only");
    std::fs::create_dir(&read_only).unwrap();
    std::fs::set_permissions(
        &read_only,
        std::os::unix::fs::PermissionsExt::from_mode(0o555),
    )
    .unwrap();
    for (tmpdir, extra) in [
        (dir.join("no-such-dir"), &["--store"][..]),
        (read_only.clone(), &["--tag", "pushed"][..]),
    ] {
        let out = hoist(&root, dir, b)
            .env("TMPDIR", &tmpdir)
            .args(["image", "build", "df", "-o", "json"])
            .args(extra)
            .assert()
            .success();
        let v: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
        let built = &v[0];
        assert!(built["digest"].as_str().is_some(), "{built}");
        assert_eq!(cache_tmp_entries(dir), Vec::<String>::new(), "{extra:?}");
        if extra == ["--store"] {
            let store = hoist_oci::LocalStore::open(dir.join("cache/images")).unwrap();
            let r = hoist_oci::Reference::parse(built["reference"].as_str().unwrap()).unwrap();
            let img = store.resolve(&r).unwrap();
            assert_eq!(img.manifest.layers.len(), 1, "{built}");
            // Moved in whole: every blob checks, and is readable as stored blobs are.
            for l in &img.manifest.layers {
                store.layout().check_blob(&l.digest, l.size).unwrap();
                let mode = std::fs::metadata(store.blob_path(&l.digest)).unwrap();
                assert_eq!(
                    std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
                    0o644
                );
            }
        } else {
            let cfg = registry::skopeo_config(&format!(
                "docker://{}",
                built["reference"].as_str().unwrap()
            ));
            assert_eq!(
                cfg["rootfs"]["diff_ids"].as_array().unwrap().len(),
                1,
                "{cfg}"
            );
        }
    }
    assert!(!dir.join("no-such-dir").exists());
    assert_eq!(std::fs::read_dir(&read_only).unwrap().count(), 0);
    builder::assert_clean(b, &storage(dir));
}

/// A Dockerfile the builder rejects: hoist fails at once with the builder's own error and
/// the Dockerfile's path, and leaves nothing behind (the build tag it never got is not
/// waited for, nor warned about).
fn a_broken_dockerfile_is_reported_and_leaves_nothing(b: Builder) {
    builder::require(b);
    let reg = Registry::start(false);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let root = project(dir, &reg.addr, "FROM scratch\nCOPY does-not-exist /x\n");
    let started = Instant::now();
    let out = hoist(&root, dir, b)
        .args(["image", "build", "df"])
        .assert()
        .code(1);
    let took = started.elapsed();
    let e = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(
        e.contains(&format!("{} failed", builder::prog(b)))
            && e.contains("services/df/Dockerfile")
            && e.contains("does-not-exist"),
        "{e}"
    );
    assert!(!e.contains("could not remove"), "{e}");
    assert!(took < hoist_oci::dockerfile::STOP_GRACE, "took {took:?}");
    assert!(!reg.log().contains("PUT /v2/"), "registry saw a push");
    builder::assert_clean(b, &storage(dir));
    assert_eq!(cache_tmp_entries(dir), Vec::<String>::new());
}
