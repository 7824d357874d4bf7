//! Dockerfile services: build with the first builder found (`docker buildx`, `buildah`,
//! `podman`) into an OCI layout, then push it with our own client (only missing blobs).
//!
//! Builds are reproducible: the builder stamps every time (config, history, file mtimes)
//! with `SOURCE_DATE_EPOCH`, else [`crate::layer::DEFAULT_EPOCH`], as hoist's own layers
//! are; the same inputs give the same digest. buildah and podman get hoist's registry
//! settings ([`access`]); docker buildx uses its daemon's (`daemon.json`'s
//! `insecure-registries`, `/etc/docker/certs.d`, `docker login`).

mod access;
mod child;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;

pub use access::{RegistryAccess, registries_in_dockerfile, with_insecure_registries};
pub use child::{STOP_GRACE, wait_for_cleanups};

use crate::client::RegistryClient;
use crate::copy::{CopyOptions, CopyReport, Location, copy};
use crate::error::{Error, IoContext, Result};
use crate::reference::Reference;
use access::BuilderAccess;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Builder {
    DockerBuildx,
    Buildah,
    Podman,
}

impl Builder {
    pub fn name(self) -> &'static str {
        match self {
            Builder::DockerBuildx => "docker buildx",
            Builder::Buildah => "buildah",
            Builder::Podman => "podman",
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct DockerfileSpec {
    /// Build context directory.
    pub context: PathBuf,
    /// Dockerfile path (default `<context>/Dockerfile`).
    pub dockerfile: Option<PathBuf>,
    pub build_args: BTreeMap<String, String>,
    pub target: Option<String>,
    /// `--platform` for the builder (its own default, the machine's, when unset).
    pub platform: Option<crate::Platform>,
}

/// Knobs for buildah and podman (both take them alike), by default from
/// `HOIST_BUILDAH_STORAGE_DRIVER`, `HOIST_BUILDAH_ISOLATION` (e.g. `vfs` and `chroot`
/// inside containers), `HOIST_BUILDAH_ROOT` (a storage root of its own) and
/// `HOIST_BUILDAH_NETWORK` (e.g. `none`; chroot isolation takes only the host's).
#[derive(Clone, Debug, Default)]
pub struct BuilderOptions {
    pub storage_driver: Option<String>,
    pub isolation: Option<String>,
    /// buildah/podman storage root (`--root`, with `--runroot` beside it, and podman's
    /// `--tmpdir`).
    pub root: Option<PathBuf>,
    /// The network of `RUN` steps (`--network`); the builder's default when unset.
    pub network: Option<String>,
    /// hoist's registry settings, for buildah and podman (docker buildx uses its daemon's).
    pub registries: RegistryAccess,
}

impl BuilderOptions {
    pub fn from_env() -> Self {
        let var = |k| std::env::var(k).ok().filter(|v: &String| !v.is_empty());
        Self {
            storage_driver: var("HOIST_BUILDAH_STORAGE_DRIVER"),
            isolation: var("HOIST_BUILDAH_ISOLATION"),
            root: var("HOIST_BUILDAH_ROOT").map(PathBuf::from),
            network: var("HOIST_BUILDAH_NETWORK"),
            registries: RegistryAccess::default(),
        }
    }

    /// [`Self::from_env`] with the registry settings of `client` (plain HTTP, CA file)
    /// and hoist's Docker config.
    pub fn for_client(client: &RegistryClient) -> Self {
        Self {
            registries: RegistryAccess::from_client_options(client.options()),
            ..Self::from_env()
        }
    }
}

async fn works(prog: &std::path::Path, args: &[&str]) -> bool {
    tokio::process::Command::new(prog)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .is_ok_and(|s| s.success())
}

fn find_in(path: &std::ffi::OsStr, prog: &str) -> Option<PathBuf> {
    std::env::split_paths(path)
        .map(|d| d.join(prog))
        .find(|p| p.is_file())
}

/// The first available builder, in the order docker buildx (with a reachable daemon),
/// buildah, podman. `HOIST_BUILDER=docker|buildah|podman` forces one.
pub async fn detect_builder() -> Result<Builder> {
    let forced = std::env::var("HOIST_BUILDER")
        .ok()
        .filter(|v| !v.is_empty());
    detect_builder_in(
        &std::env::var_os("PATH").unwrap_or_default(),
        forced.as_deref(),
    )
    .await
}

/// [`detect_builder`] over an explicit `PATH` value.
pub async fn detect_builder_in(path: &std::ffi::OsStr, forced: Option<&str>) -> Result<Builder> {
    let candidates: &[Builder] = match forced {
        None => &[Builder::DockerBuildx, Builder::Buildah, Builder::Podman],
        Some("docker") => &[Builder::DockerBuildx],
        Some("buildah") => &[Builder::Buildah],
        Some("podman") => &[Builder::Podman],
        Some(other) => {
            return Err(Error::Invalid(format!(
                "HOIST_BUILDER={other:?}: expected docker, buildah or podman"
            )));
        }
    };
    for b in candidates {
        let ok = match b {
            Builder::DockerBuildx => match find_in(path, "docker") {
                Some(p) => {
                    works(&p, &["buildx", "version"]).await
                        && works(&p, &["info", "--format", "{{.ServerVersion}}"]).await
                }
                None => false,
            },
            Builder::Buildah => match find_in(path, "buildah") {
                Some(p) => works(&p, &["--version"]).await,
                None => false,
            },
            Builder::Podman => match find_in(path, "podman") {
                Some(p) => works(&p, &["--version"]).await,
                None => false,
            },
        };
        if ok {
            return Ok(*b);
        }
    }
    if let Some(forced) = forced {
        let others: Vec<&str> = ["docker", "buildah", "podman"]
            .into_iter()
            .filter(|p| *p != forced && find_in(path, p).is_some())
            .collect();
        let what = if forced == "docker" {
            "docker with buildx and a running daemon"
        } else {
            forced
        };
        let hint = match others.as_slice() {
            [] => String::new(),
            found => format!(
                "; found {} (unset HOIST_BUILDER to use it)",
                found.join(", ")
            ),
        };
        return Err(Error::Invalid(format!(
            "HOIST_BUILDER={forced} asks for {what}, which is not installed or does not work{hint}"
        )));
    }
    Err(Error::NoBuilder)
}

/// Variables the builder must not see: buildah and podman refuse to run ("checking
/// authfile") when DOCKER_CONFIG names a directory without config.json; there are no
/// credentials in it to use anyway.
fn env_remove(builder: Builder) -> &'static [&'static str] {
    if builder != Builder::DockerBuildx
        && std::env::var_os("DOCKER_CONFIG")
            .is_some_and(|d| !Path::new(&d).join("config.json").exists())
    {
        &["DOCKER_CONFIG"]
    } else {
        &[]
    }
}

#[allow(clippy::too_many_arguments)]
async fn run(
    builder: Builder,
    prog: &str,
    args: &[String],
    env: &[(String, std::ffi::OsString)],
    dockerfile: &Path,
    scratch: Option<&child::Scratch>,
    how: child::Stop,
    gone: Option<child::Gone>,
) -> Result<()> {
    tracing::info!(%prog, ?args, ?env, "running image builder");
    // A cancelled build (Ctrl-C) stops its builder gracefully: see `child`.
    let out = child::run(
        prog,
        args,
        env,
        env_remove(builder),
        scratch.cloned(),
        how,
        gone,
    )
    .await
    .ctx(|| format!("running {prog}"))?;
    if !out.status.success() {
        let mut stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        if stderr.trim().is_empty() {
            stderr = String::from_utf8_lossy(&out.stdout).into_owned();
        }
        return Err(Error::BuilderFailed {
            builder: builder.name().into(),
            status: out.status.to_string(),
            dockerfile: dockerfile.into(),
            stderr: stderr
                .trim()
                .chars()
                .rev()
                .take(4000)
                .collect::<String>()
                .chars()
                .rev()
                .chain(hint(builder, &stderr).chars())
                .collect(),
        });
    }
    Ok(())
}

/// What to do about a registry the builder could not reach with hoist's settings.
fn hint(builder: Builder, stderr: &str) -> &'static str {
    if builder == Builder::DockerBuildx {
        ""
    } else if stderr.contains("server gave HTTP response to HTTPS client") {
        "\nhint: the builder gets plain HTTP for the loopback registries a FROM names and for \
         every registry named with --insecure-registry (or HOIST_INSECURE_REGISTRIES); name \
         this one so (a FROM whose registry comes from an ARG hoist cannot resolve is not seen)"
    } else if stderr.contains("certificate signed by unknown authority") {
        "\nhint: give the registry's CA with --ca-file (the builder gets it as --cert-dir)"
    } else {
        ""
    }
}

/// Build the Dockerfile into the OCI layout `out` under `name`.
pub async fn build_to_layout(
    builder: Builder,
    spec: &DockerfileSpec,
    opts: &BuilderOptions,
    out: &Path,
    name: &str,
) -> Result<Location> {
    build_to_layout_in(builder, spec, opts, out, name, None).await
}

/// [`build_to_layout`], with `out` inside `scratch`, a temp dir of hoist's that a cancelled
/// builder keeps until it has stopped (it uses it while it stops).
async fn build_to_layout_in(
    builder: Builder,
    spec: &DockerfileSpec,
    opts: &BuilderOptions,
    out: &Path,
    name: &str,
    scratch: Option<&child::Scratch>,
) -> Result<Location> {
    let dockerfile = spec
        .dockerfile
        .clone()
        .unwrap_or_else(|| spec.context.join("Dockerfile"));
    if !dockerfile.is_file() {
        return Err(Error::MissingSource { path: dockerfile });
    }
    if !spec.context.is_dir() {
        return Err(Error::MissingSource {
            path: spec.context.clone(),
        });
    }
    std::fs::create_dir_all(out).ctx(|| format!("creating {}", out.display()))?;
    // Unique per build: builds run in parallel (same `name`, same process), and each
    // pushes and removes its own tag.
    static BUILDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = BUILDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tag = format!("localhost/hoist-build/{}:{}-{n}", name, std::process::id());
    let access = match builder {
        Builder::DockerBuildx => BuilderAccess::default(),
        _ => BuilderAccess::prepare(&opts.registries, &dockerfile, &spec.build_args)?,
    };
    // BuildKit reads `<Dockerfile>.dockerignore` before the context's `.dockerignore`;
    // buildah and podman are told, so every builder leaves out what the content tag does
    // not hash (and does not read a `.containerignore` instead).
    let ignore_file = hoist_fileset::docker_ignore_file(&spec.context, &dockerfile);
    let c = commands(
        builder,
        &Build {
            spec,
            opts,
            dockerfile: &dockerfile,
            ignore_file: ignore_file.as_deref(),
            access: &access.build_args,
            epoch: crate::layer::source_date_epoch()?,
            tag: &tag,
            out,
            name,
        },
    );
    // The builder's own big temp files (buildah copies layers through TMPDIR, default
    // /var/tmp) go into the build's scratch dir too: on the cache's disk, whatever TMPDIR
    // says, and removed with it, even after a builder that had to be killed.
    let mut tmp_env = vec![];
    if let Some(dir) = scratch {
        let t = dir.path().join("builder-tmp");
        std::fs::create_dir_all(&t).ctx(|| format!("creating {}", t.display()))?;
        tmp_env.push(("TMPDIR".to_string(), t.into_os_string()));
    }
    let build_env: Vec<_> = access.env.iter().cloned().chain(tmp_env.clone()).collect();
    // From the build on, the builder's storage may hold the image under `tag` (a
    // cancelled podman may still finish the build while it is stopped); it goes whether
    // the build and push end, fail or are cancelled.
    // A cancelled buildah or podman is stopped by failing its running step (`child::Stop`).
    let (untag, gone, how) = match builder {
        Builder::DockerBuildx => (None, None, child::Stop::Group),
        Builder::Buildah | Builder::Podman => {
            let (untag, gone) = child::Untag::after(c.prog, c.rmi.clone(), env_remove(builder));
            (Some(untag), Some(gone), child::Stop::Steps)
        }
    };
    run(
        builder,
        c.prog,
        &c.build,
        &build_env,
        &dockerfile,
        scratch,
        how,
        gone,
    )
    .await?;
    if builder == Builder::DockerBuildx {
        let tar = out.with_extension("tar");
        let f = std::fs::File::open(&tar).ctx(|| format!("opening {}", tar.display()))?;
        tar::Archive::new(f)
            .unpack(out)
            .ctx(|| format!("unpacking {} into {}", tar.display(), out.display()))?;
        let _ = std::fs::remove_file(&tar);
    } else {
        // A push has nothing to clean up: stopped at once.
        let push = child::Stop::Group;
        run(
            builder,
            c.prog,
            &c.push,
            &tmp_env,
            &dockerfile,
            scratch,
            push,
            None,
        )
        .await?;
    }
    drop(untag);
    // buildx names the image with the full `name=`; point at it by that name.
    Ok(Location::Layout {
        dir: out.into(),
        name: Some(name.into()),
    })
}

/// What one build is made of, for [`commands`].
struct Build<'a> {
    spec: &'a DockerfileSpec,
    opts: &'a BuilderOptions,
    dockerfile: &'a Path,
    /// The ignore file buildah/podman are to read (`--ignorefile`).
    ignore_file: Option<&'a Path>,
    /// Registry settings for buildah/podman ([`BuilderAccess::build_args`]).
    access: &'a [String],
    /// `SOURCE_DATE_EPOCH`: every time in the image.
    epoch: u64,
    /// buildah/podman tag the image in their storage with it, then push it from there.
    tag: &'a str,
    /// The OCI layout to fill (buildx writes `out.tar` first).
    out: &'a Path,
    name: &'a str,
}

/// A builder's command lines: `build`, then (buildah, podman) `push` into the layout and
/// `rmi` the tag.
#[derive(Debug, PartialEq)]
struct Commands {
    prog: &'static str,
    build: Vec<String>,
    push: Vec<String>,
    rmi: Vec<String>,
}

fn commands(builder: Builder, b: &Build) -> Commands {
    let (spec, opts) = (b.spec, b.opts);
    let mut common: Vec<String> = vec!["-f".into(), b.dockerfile.display().to_string()];
    for (k, v) in &spec.build_args {
        common.extend(["--build-arg".into(), format!("{k}={v}")]);
    }
    if let Some(t) = &spec.target {
        common.extend(["--target".into(), t.clone()]);
    }
    if let Some(p) = &spec.platform {
        common.extend(["--platform".into(), p.to_string()]);
    }
    let context = spec.context.display().to_string();
    if builder == Builder::DockerBuildx {
        let tar = b.out.with_extension("tar");
        let mut build: Vec<String> = vec![
            "buildx".into(),
            "build".into(),
            "--output".into(),
            // rewrite-timestamp (BuildKit 0.13+): file mtimes at SOURCE_DATE_EPOCH too.
            format!(
                "type=oci,dest={},name={},rewrite-timestamp=true",
                tar.display(),
                b.name
            ),
        ];
        if !spec.build_args.contains_key("SOURCE_DATE_EPOCH") {
            build.extend([
                "--build-arg".into(),
                format!("SOURCE_DATE_EPOCH={}", b.epoch),
            ]);
        }
        build.extend(common);
        build.push(context);
        return Commands {
            prog: "docker",
            build,
            push: vec![],
            rmi: vec![],
        };
    }
    let buildah = builder == Builder::Buildah;
    let mut global = vec![];
    if let Some(d) = &opts.storage_driver {
        global.extend(["--storage-driver".to_string(), d.clone()]);
    }
    if let Some(r) = &opts.root {
        global.extend([
            "--root".into(),
            r.join("root").display().to_string(),
            "--runroot".into(),
            r.join("run").display().to_string(),
        ]);
        if !buildah {
            // libpod's own state (events log, exit files) goes to /run/libpod unless
            // told: beside the storage root too, so the build uses nothing of the machine's.
            global.extend(["--tmpdir".into(), r.join("libpod").display().to_string()]);
        }
    }
    let mut build = global.clone();
    build.push(if buildah { "bud" } else { "build" }.into());
    if let Some(i) = &opts.isolation {
        build.extend(["--isolation".into(), i.clone()]);
    }
    if let Some(n) = &opts.network {
        build.extend(["--network".into(), n.clone()]);
    }
    if !buildah {
        // podman commits every step as an image of its own by default (buildah does
        // not): extra copies (whole ones with vfs) that a build running beside this one
        // may take a step from. As buildah, every build runs all its steps.
        build.push("--layers=false".into());
    }
    // Reproducible: created times, history and file mtimes all at `epoch`.
    build.extend(["--timestamp".into(), b.epoch.to_string()]);
    build.extend(b.access.iter().cloned());
    build.extend(["-t".into(), b.tag.to_string()]);
    build.extend(common);
    if let Some(f) = b.ignore_file {
        build.extend(["--ignorefile".into(), f.display().to_string()]);
    }
    build.push(context);
    let mut push = global.clone();
    push.extend([
        "push".into(),
        b.tag.to_string(),
        format!("oci:{}:{}", b.out.display(), b.name),
    ]);
    let mut rmi = global;
    rmi.extend(["rmi".into(), b.tag.to_string()]);
    Commands {
        prog: if buildah { "buildah" } else { "podman" },
        build,
        push,
        rmi,
    }
}

/// A temp dir for a build's output under hoist's cache (`$HOIST_CACHE_DIR/tmp`, owner-only,
/// beside the store), removed when the last holder lets it go (a cancelled builder, once
/// stopped). Not the system temp dir: that is often a small
/// tmpfs an image does not fit in, and from the cache's disk the image's blobs move into
/// the store by rename instead of being copied.
fn output_dir() -> Result<child::Scratch> {
    let parent = crate::layer::default_temp_dir();
    // What a killed hoist left there (no destructor ran) goes: its lock is free.
    crate::temp_lock::sweep_once(&parent);
    crate::temp_lock::locked_temp_dir(&parent, crate::layer::BUILD_DIR_PREFIX)
        .map(std::sync::Arc::new)
}

/// Build with the first builder found and push to `target` (only missing blobs).
pub async fn build_and_push_dockerfile(
    client: &RegistryClient,
    spec: &DockerfileSpec,
    target: &Reference,
) -> Result<CopyReport> {
    let builder = detect_builder().await?;
    let tmp = output_dir()?;
    let out = tmp.path().join("layout");
    let opts = BuilderOptions::for_client(client);
    let loc = build_to_layout_in(builder, spec, &opts, &out, "image", Some(&tmp)).await?;
    copy(
        client,
        &loc,
        &Location::Registry(target.clone()),
        &CopyOptions::default(),
    )
    .await
}

/// Build with the first builder found into a temporary OCI layout and add the image to
/// the local `store` as `name`, no registry involved (but `client`'s registry settings
/// reach the builder); returns its manifest digest.
pub async fn build_into_store(
    client: &RegistryClient,
    spec: &DockerfileSpec,
    store: &crate::store::LocalStore,
    name: &Reference,
) -> Result<crate::digest::Digest> {
    let builder = detect_builder().await?;
    let tmp = output_dir()?;
    let out = tmp.path().join("layout");
    let opts = BuilderOptions::for_client(client);
    build_to_layout_in(builder, spec, &opts, &out, "image", Some(&tmp)).await?;
    let (store, name) = (store.clone(), name.clone());
    // Blob copies are file I/O; once started, the import finishes even if the caller is
    // cancelled (the store never holds half an image).
    tokio::task::spawn_blocking(move || {
        let built = crate::layout::OciLayout::open(&out)?;
        let digest = store.move_from_layout(&built, Some("image"), &name);
        drop(tmp);
        digest
    })
    .await
    .map_err(|e| Error::Invalid(format!("storing the built image: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docker buildx is not installed here: its command line is checked as it is built
    /// (buildah's and podman's too; tests/dockerfile.rs runs those for real).
    #[test]
    fn every_builder_gets_the_timestamp_and_buildah_podman_the_registry_settings() {
        let spec = DockerfileSpec {
            context: "/ctx".into(),
            build_args: [("A".to_string(), "1".to_string())].into(),
            target: Some("prod".into()),
            platform: Some("linux/arm64".parse().unwrap()),
            ..Default::default()
        };
        let opts = BuilderOptions {
            storage_driver: Some("vfs".into()),
            isolation: Some("oci".into()),
            root: Some("/st".into()),
            network: Some("none".into()),
            ..Default::default()
        };
        let access = ["--authfile".to_string(), "/d/config.json".into()];
        let b = Build {
            spec: &spec,
            opts: &opts,
            dockerfile: Path::new("/ctx/Dockerfile"),
            ignore_file: Some(Path::new("/ctx/Dockerfile.dockerignore")),
            access: &access,
            epoch: 42,
            tag: "localhost/hoist-build/x:1-0",
            out: Path::new("/o/layout"),
            name: "image",
        };
        let words = |v: &[String]| v.join(" ");
        let c = commands(Builder::Buildah, &b);
        assert_eq!(
            words(&c.build),
            "--storage-driver vfs --root /st/root --runroot /st/run bud --isolation oci \
             --network none --timestamp 42 --authfile /d/config.json -t localhost/hoist-build/x:1-0 \
             -f /ctx/Dockerfile --build-arg A=1 --target prod --platform linux/arm64 \
             --ignorefile /ctx/Dockerfile.dockerignore /ctx"
        );
        assert_eq!(
            words(&c.push),
            "--storage-driver vfs --root /st/root --runroot /st/run push \
             localhost/hoist-build/x:1-0 oci:/o/layout:image"
        );
        let c = commands(Builder::Podman, &b);
        assert_eq!(c.prog, "podman");
        assert_eq!(
            words(&c.build),
            "--storage-driver vfs --root /st/root --runroot /st/run --tmpdir /st/libpod \
             build --isolation oci --network none --layers=false --timestamp 42 \
             --authfile /d/config.json -t localhost/hoist-build/x:1-0 -f /ctx/Dockerfile \
             --build-arg A=1 --target prod --platform linux/arm64 \
             --ignorefile /ctx/Dockerfile.dockerignore /ctx"
        );
        assert_eq!(
            words(&c.push),
            "--storage-driver vfs --root /st/root --runroot /st/run --tmpdir /st/libpod \
             push localhost/hoist-build/x:1-0 oci:/o/layout:image"
        );
        assert_eq!(
            words(&c.rmi),
            "--storage-driver vfs --root /st/root --runroot /st/run --tmpdir /st/libpod \
             rmi localhost/hoist-build/x:1-0"
        );
        let c = commands(Builder::DockerBuildx, &b);
        assert_eq!(
            words(&c.build),
            "buildx build --output type=oci,dest=/o/layout.tar,name=image,rewrite-timestamp=true \
             --build-arg SOURCE_DATE_EPOCH=42 -f /ctx/Dockerfile --build-arg A=1 --target prod \
             --platform linux/arm64 /ctx"
        );
        // The user's own SOURCE_DATE_EPOCH build arg stays the only one.
        let mut own = spec.clone();
        own.build_args
            .insert("SOURCE_DATE_EPOCH".into(), "7".into());
        let c = commands(Builder::DockerBuildx, &Build { spec: &own, ..b });
        assert_eq!(words(&c.build).matches("SOURCE_DATE_EPOCH").count(), 1);
    }

    #[tokio::test]
    async fn no_builder_names_what_to_install() {
        let empty = tempfile::tempdir().unwrap();
        let e = detect_builder_in(empty.path().as_os_str(), None)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("docker") && e.contains("buildah") && e.contains("podman"),
            "{e}"
        );
        let e = detect_builder_in(empty.path().as_os_str(), Some("kaniko"))
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("HOIST_BUILDER"), "{e}");
        // Forced to one that is missing, while another is there: says both.
        let bin = tempfile::tempdir().unwrap();
        let fake = bin.path().join("buildah");
        std::fs::write(&fake, "#!/bin/sh\nexit 0\n").unwrap();
        std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let e = detect_builder_in(bin.path().as_os_str(), Some("podman"))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("HOIST_BUILDER=podman asks for podman") && e.contains("found buildah"),
            "{e}"
        );
        assert_eq!(
            detect_builder_in(bin.path().as_os_str(), Some("buildah"))
                .await
                .unwrap(),
            Builder::Buildah
        );
    }
}
