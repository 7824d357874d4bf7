//! A `scratch` + busybox test image, built into a local store by hoist-oci's own
//! `build_to_store` (no registry: the base is `scratch`). Shared by the runc tests here
//! and, through `#[path]`, by hoist-cli's.

use std::path::Path;

use hoist_oci::build::{BuildOptions, BuildSpec, build_to_store};
use hoist_oci::{ClientOptions, LayerSpec, LocalStore, Reference, RegistryClient, block_on};

/// Stages /bin/busybox with symlinks for `applets` under `stage/bin` (plus `stage/tmp`);
/// the caller adds any other files to `stage` before calling [`put_busybox_image`].
pub fn stage_busybox(stage: &Path, applets: &[&str]) {
    for d in ["bin", "tmp"] {
        std::fs::create_dir_all(stage.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", stage.join("bin/busybox")).unwrap();
    for applet in applets {
        std::os::unix::fs::symlink("busybox", stage.join("bin").join(applet)).unwrap();
    }
}

/// Stores `stage` as the single layer (at `/`) of a `scratch` image named `reference`
/// in the store at `store_dir`, with `PATH=/bin` and `cmd`.
pub fn put_busybox_image(store_dir: &Path, reference: &str, stage: &Path, cmd: &[&str]) {
    let spec = BuildSpec {
        base: "scratch".into(),
        layers: vec![LayerSpec {
            from: stage.to_path_buf(),
            to: "/".into(),
            ..Default::default()
        }],
        entrypoint: None,
        cmd: (!cmd.is_empty()).then(|| cmd.iter().map(|s| s.to_string()).collect()),
        env: vec![("PATH".into(), "/bin".into())],
        workdir: None,
        user: None,
        labels: Default::default(),
    };
    let client = RegistryClient::new(ClientOptions::default()).unwrap();
    let store = LocalStore::open(store_dir).unwrap();
    let name = Reference::parse(reference).unwrap();
    block_on(build_to_store(
        &client,
        &spec,
        &store,
        &name,
        &BuildOptions::default(),
    ))
    .unwrap();
}
