//! The real buildah and podman the Dockerfile tests build with, each on vfs storage of the
//! test's own (nothing goes into the machine's) and without daemons, as root:
//! - buildah with chroot isolation (its `RUN` steps share the host's network, which
//!   chroot isolation cannot take away; the Dockerfiles here reach nothing);
//! - podman with oci isolation (runc) and `--network none`.
#![allow(dead_code)]

use std::ffi::OsString;
use std::path::Path;
use std::process::Command;

use hoist_oci::dockerfile::{Builder, BuilderOptions};

/// The program of `builder` (buildah or podman).
pub fn prog(builder: Builder) -> &'static str {
    match builder {
        Builder::Buildah => "buildah",
        Builder::Podman => "podman",
        Builder::DockerBuildx => panic!("docker buildx is not tested for real"),
    }
}

/// Fails the test naming what to install when `builder` is missing: CI installs both
/// (scripts/install-deps), so a skip there would hide a broken install.
pub fn require(builder: Builder) {
    let prog = prog(builder);
    assert!(
        Command::new(prog).arg("--version").output().is_ok(),
        "{prog} is required for this test (scripts/install-deps)"
    );
}

/// `(isolation, network)` the tests give `builder`.
fn isolation_network(builder: Builder) -> (&'static str, Option<&'static str>) {
    match builder {
        Builder::Podman => ("oci", Some("none")),
        _ => ("chroot", None),
    }
}

/// The options for `builder` with its storage root at `root`.
pub fn options(builder: Builder, root: &Path) -> BuilderOptions {
    let (isolation, network) = isolation_network(builder);
    BuilderOptions {
        storage_driver: Some("vfs".into()),
        isolation: Some(isolation.into()),
        root: Some(root.to_path_buf()),
        network: network.map(String::from),
        ..Default::default()
    }
}

/// The same settings as the `hoist` binary reads them, `HOIST_BUILDER` included.
pub fn env(builder: Builder, root: &Path) -> Vec<(&'static str, OsString)> {
    let (isolation, network) = isolation_network(builder);
    let mut env = vec![
        ("HOIST_BUILDER", prog(builder).into()),
        ("HOIST_BUILDAH_STORAGE_DRIVER", "vfs".into()),
        ("HOIST_BUILDAH_ISOLATION", isolation.into()),
        ("HOIST_BUILDAH_ROOT", root.into()),
    ];
    if let Some(n) = network {
        env.push(("HOIST_BUILDAH_NETWORK", n.into()));
    }
    env
}

/// `builder` on the storage root `root`, with the storage flags hoist gives it.
pub fn command(builder: Builder, root: &Path) -> Command {
    let mut cmd = Command::new(prog(builder));
    cmd.args(["--storage-driver", "vfs", "--root"])
        .arg(root.join("root"))
        .arg("--runroot")
        .arg(root.join("run"));
    if builder == Builder::Podman {
        cmd.arg("--tmpdir").arg(root.join("libpod"));
    }
    cmd
}

/// `builder ARGS` on the storage root `root`: its output.
pub fn on_storage(builder: Builder, root: &Path, args: &[&str]) -> String {
    let out = command(builder, root).args(args).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// The builder's working containers in the storage root `root` (podman lists them as
/// external: buildah's kind, not its own).
pub fn containers(builder: Builder, root: &Path) -> String {
    match builder {
        Builder::Podman => on_storage(builder, root, &["ps", "--all", "--external", "-q"]),
        _ => on_storage(builder, root, &["containers", "--quiet"]),
    }
}

/// The names (`repository:tag`, `<none>` parts for an untagged one) of every image in
/// the storage root `root`.
pub fn images(builder: Builder, root: &Path) -> Vec<String> {
    let format = match builder {
        Builder::Podman => "{{.Repository}}:{{.Tag}}",
        _ => "{{.Name}}:{{.Tag}}",
    };
    on_storage(builder, root, &["images", "--all", "--format", format])
        .lines()
        .map(String::from)
        .collect()
}

/// Asserts that no working container and no image of hoist's builds (its build tags) is
/// left in the storage root `root`, once this process's cleanups (the build tags' removal
/// runs on threads of its own) are done: call it before the test's temp dir goes, which a
/// builder still running there would fill again.
pub fn assert_clean(builder: Builder, root: &Path) {
    hoist_oci::dockerfile::wait_for_cleanups(std::time::Duration::from_secs(30));
    assert_eq!(
        containers(builder, root),
        "",
        "working containers left behind"
    );
    let images = images(builder, root);
    assert!(
        !images
            .iter()
            .any(|i| i.contains("hoist-build") || i.contains("<none>")),
        "{images:?}"
    );
}

/// Removes every working container in `root` (a failed test's leftovers).
pub fn remove_containers(builder: Builder, root: &Path) {
    let _ = match builder {
        Builder::Podman => {
            let ids = containers(builder, root);
            command(builder, root)
                .args(["rm", "--force"])
                .args(ids.split_whitespace())
                .output()
        }
        _ => command(builder, root).args(["rm", "--all"]).output(),
    };
}
