//! Append layers onto a base image and push only what the target registry lacks (or store
//! the result in an OCI layout). Base layers are mounted (same registry), copied across,
//! or read from the base's layout, never rebuilt.

use std::collections::BTreeMap;
use std::path::PathBuf;

use bytes::Bytes;
use tokio::task::JoinSet;

use crate::client::{BlobOutcome, CounterSnapshot, RegistryClient};
use crate::convert;
use crate::copy::Location;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::layer::{BuiltLayer, LayerBuilder, LayerSpec, default_temp_dir, source_date_epoch};
use crate::layout::OciLayout;
use crate::lost_blobs::Put;
use crate::manifest::{
    Descriptor, History, ImageConfig, ImageManifest, Platform, RawManifest, media, parse_config,
};
use crate::reference::Reference;

/// What to build: a service's `image:` section, or `hoist image append` flags.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BuildSpec {
    /// Base image: a reference, `oci:DIR[:NAME]` (an OCI layout), or `scratch`.
    pub base: String,
    /// One layer per spec, in order.
    pub layers: Vec<LayerSpec>,
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    /// `KEY=VALUE` pairs; a key already in the base is replaced.
    pub env: Vec<(String, String)>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub labels: BTreeMap<String, String>,
}

#[derive(Clone, Debug)]
pub struct BuildOptions {
    /// Which image of a multi-platform base to build on (default linux/amd64).
    pub platform: Platform,
    /// The platform was asked for (`--platform`): a single-platform base for another one
    /// is then an error. Otherwise it is built on as it is, with a warning.
    pub require_platform: bool,
    /// Where new layers are written while they are built: default
    /// [`crate::layer::default_temp_dir`], or the store's blob directory when building into
    /// the local store (so they land there by link, never copied).
    pub temp_dir: Option<PathBuf>,
    /// The target's tag is a content tag (`h-…`, a hash of the image's inputs), not one
    /// the user chose: an image already under it is this image, so a Dockerfile build
    /// whose target exists is skipped (hoist-engine's `build_and_deliver`).
    pub content_tag: bool,
    /// Into a user's OCI layout, store an image built on a Docker-typed base with Docker
    /// media types, as a push to a registry does (same digest), rather than convert it to
    /// OCI ones ([`crate::convert`]), which skopeo and umoci need there.
    pub preserve_digests: bool,
}

impl Default for BuildOptions {
    fn default() -> Self {
        Self {
            platform: Platform::linux_amd64(),
            require_platform: false,
            temp_dir: None,
            content_tag: false,
            preserve_digests: false,
        }
    }
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct PushReport {
    pub reference: String,
    pub digest: Digest,
    /// The digest of the Docker-typed manifest built (the one a push to a registry gets)
    /// when it was stored in an OCI layout with OCI media types as `digest`; else None.
    pub converted_from: Option<Digest>,
    pub layers_uploaded: usize,
    pub layers_mounted: usize,
    pub layers_present: usize,
    /// Client counters for this push only.
    pub transfer: CounterSnapshot,
}

/// Where a base image's blobs are read from.
#[derive(Clone, Debug)]
pub enum Base {
    Registry(Reference),
    /// An OCI layout directory (`--base oci:DIR[:NAME]`): nothing is downloaded.
    Layout(OciLayout),
}

/// A built image, ready to push. Its new layers are temp files, removed when it is dropped.
pub struct BuiltImage {
    pub base: Option<Base>,
    pub base_layers: Vec<Descriptor>,
    pub new_layers: Vec<BuiltLayer>,
    pub config: ImageConfig,
    pub config_bytes: Vec<u8>,
    pub manifest: RawManifest,
}

impl BuiltImage {
    /// Its layers, each digest once: the base's, then the new ones not among them. An
    /// image may hold the same layer twice; it is sent, stored and counted once.
    fn distinct_layers(&self) -> (Vec<&Descriptor>, Vec<&BuiltLayer>) {
        let mut seen = std::collections::HashSet::new();
        let base = (self.base_layers.iter())
            .filter(|d| seen.insert(&d.digest))
            .collect();
        let new = (self.new_layers.iter())
            .filter(|l| seen.insert(&l.digest))
            .collect();
        (base, new)
    }
}

pub fn is_scratch(base: &str) -> bool {
    base.trim() == "scratch"
}

/// RFC 3339 UTC for a Unix time (no date crate for one function).
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Apply the spec's settings to a config, appending the new layers' diff_ids and history.
pub fn apply_spec(
    config: &mut ImageConfig,
    spec: &BuildSpec,
    layers: &[BuiltLayer],
    created: &str,
) {
    let c = config.config.get_or_insert_with(Default::default);
    if let Some(e) = &spec.entrypoint {
        c.entrypoint = Some(e.clone());
        // Like Docker: a new ENTRYPOINT drops the base's CMD unless a CMD is given too.
        if spec.cmd.is_none() {
            c.cmd = None;
        }
    }
    if let Some(cmd) = &spec.cmd {
        c.cmd = Some(cmd.clone());
    }
    if !spec.env.is_empty() {
        let env = c.env.get_or_insert_with(Vec::new);
        for (k, v) in &spec.env {
            let prefix = format!("{k}=");
            let entry = format!("{k}={v}");
            match env.iter_mut().find(|e| e.starts_with(&prefix) || *e == k) {
                Some(slot) => *slot = entry,
                None => env.push(entry),
            }
        }
    }
    if let Some(w) = &spec.workdir {
        c.working_dir = Some(w.clone());
    }
    if let Some(u) = &spec.user {
        c.user = Some(u.clone());
    }
    if !spec.labels.is_empty() {
        let labels = c.labels.get_or_insert_with(BTreeMap::new);
        labels.extend(spec.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    for l in layers {
        config.rootfs.diff_ids.push(l.diff_id.clone());
        config.history.push(History {
            created: Some(created.into()),
            created_by: Some(l.created_by.clone()),
            comment: Some("hoist".into()),
            ..Default::default()
        });
    }
    config.created = Some(created.into());
}

/// Sets its flag when dropped: blocking layer builds cannot be aborted, so they poll it.
#[derive(Default)]
struct CancelOnDrop(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// `to`, a relative layer destination, under working directory `workdir`.
fn under_workdir(workdir: &str, to: &str) -> String {
    let workdir = workdir.trim_end_matches('/');
    if workdir.is_empty() {
        format!("/{to}")
    } else {
        format!("{workdir}/{to}")
    }
}

/// The base, its manifest and config (an empty config for `scratch`).
async fn resolve_base(
    client: &RegistryClient,
    spec: &BuildSpec,
    opts: &BuildOptions,
) -> Result<(Option<Base>, Option<ImageManifest>, ImageConfig)> {
    if is_scratch(&spec.base) {
        return Ok((None, None, ImageConfig::empty(&opts.platform)));
    }
    let what = format!("base {}", spec.base);
    let (base, m, bytes, from_index) = match spec.base.parse::<Location>()? {
        Location::Registry(b) => {
            let (raw, index) = client.resolve_image(&b, &opts.platform).await?;
            let m = raw.image()?;
            m.ensure_image(&what)?;
            let bytes = client.get_blob(&b, &m.config.digest).await?.to_vec();
            (Base::Registry(b), m, bytes, index.is_some())
        }
        Location::Layout { dir, name } => {
            let l = OciLayout::open(dir)?;
            let (raw, index) = l.resolve_image(name.as_deref(), &opts.platform)?;
            let m = raw.image()?;
            m.ensure_image(&what)?;
            let bytes = l.read_blob(&m.config.digest)?;
            (Base::Layout(l), m, bytes, index.is_some())
        }
    };
    let cfg = parse_config(&bytes, &m.config.digest)?;
    // An index was resolved by platform already (its entry, not the child's config, is
    // what says the platform); a single image is what it is.
    if !from_index {
        match cfg.ensure_platform(&opts.platform, &what) {
            Err(e) if opts.require_platform => return Err(e),
            Err(e) => tracing::warn!("{e}: the new image is for its platform too"),
            Ok(()) => {}
        }
    }
    Ok((Some(base), Some(m), cfg))
}

/// Build the layers (on blocking threads, one per spec) and the new config + manifest.
pub async fn build(
    client: &RegistryClient,
    spec: &BuildSpec,
    opts: &BuildOptions,
) -> Result<BuiltImage> {
    let dir = opts.temp_dir.clone().unwrap_or_else(default_temp_dir);
    crate::temp_lock::sweep_once(&dir);
    // Dropping this future (Ctrl-C) stops the blocking builds, which remove their temp files.
    let cancel = CancelOnDrop::default();
    let mut tasks = JoinSet::new();
    if !spec.layers.is_empty() {
        client.progress_working(|| match spec.layers.len() {
            1 => "building the layer".into(),
            n => format!("building {n} layers"),
        });
    }
    let spawn = |tasks: &mut JoinSet<_>, i: usize, s: LayerSpec| {
        let (dir, cancel) = (dir.clone(), cancel.0.clone());
        tasks.spawn_blocking(move || {
            LayerBuilder::new()
                .add(&s)
                .and_then(|b| b.build_in_cancellable(&dir, &cancel))
                .map(|l| (i, l))
        });
    };
    // A relative destination is under the working directory, as with Docker's COPY. When
    // only the base can say which that is, those layers wait for it; the rest start now.
    let mut deferred = Vec::new();
    for (i, mut s) in spec.layers.iter().cloned().enumerate() {
        if !s.to.starts_with('/') {
            match &spec.workdir {
                Some(w) => s.to = under_workdir(w, &s.to),
                None => {
                    deferred.push((i, s));
                    continue;
                }
            }
        }
        spawn(&mut tasks, i, s);
    }
    let base = resolve_base(client, spec, opts).await;
    if let Ok((_, _, config)) = &base {
        let workdir = config.config.as_ref().and_then(|c| c.working_dir.clone());
        for (i, mut s) in deferred {
            s.to = under_workdir(workdir.as_deref().unwrap_or("/"), &s.to);
            spawn(&mut tasks, i, s);
        }
    }
    // Every layer task is waited for, even after an error: a blocking task cannot be
    // aborted, and its temp file must be gone when this returns.
    let layers = crate::join_all(tasks, "layer build").await;
    let (base, base_manifest, mut config) = base?;
    let mut layers = layers?;
    layers.sort_by_key(|(i, _)| *i);
    let new_layers: Vec<BuiltLayer> = layers.into_iter().map(|(_, l)| l).collect();
    let docker = base_manifest.as_ref().is_some_and(ImageManifest::is_docker);
    let (manifest_type, config_type, layer_type) = if docker {
        (
            media::DOCKER_MANIFEST,
            media::DOCKER_CONFIG,
            media::DOCKER_LAYER_GZIP,
        )
    } else {
        (
            media::OCI_MANIFEST,
            media::OCI_CONFIG,
            media::OCI_LAYER_GZIP,
        )
    };
    apply_spec(
        &mut config,
        spec,
        &new_layers,
        &rfc3339(source_date_epoch()?),
    );
    let config_bytes = serde_json::to_vec(&config).map_err(|source| Error::Json {
        what: "new image config".into(),
        source,
    })?;
    let base_layers = base_manifest
        .as_ref()
        .map(|m| m.layers.clone())
        .unwrap_or_default();
    let mut all_layers = base_layers.clone();
    all_layers.extend(
        new_layers
            .iter()
            .map(|l| Descriptor::new(layer_type, l.digest.clone(), l.size)),
    );
    let manifest = ImageManifest {
        schema_version: 2,
        media_type: Some(manifest_type.into()),
        config: Descriptor::new(
            config_type,
            Digest::of(&config_bytes),
            config_bytes.len() as u64,
        ),
        layers: all_layers,
        annotations: None,
    };
    let bytes = serde_json::to_vec(&manifest).map_err(|source| Error::Json {
        what: "new manifest".into(),
        source,
    })?;
    let manifest = RawManifest::new(bytes, Some(manifest_type))?;
    Ok(BuiltImage {
        base,
        base_layers,
        new_layers,
        config,
        config_bytes,
        manifest,
    })
}

/// Build `spec` and push it as `target`; only blobs the target lacks are transferred.
pub async fn build_and_push(
    client: &RegistryClient,
    spec: &BuildSpec,
    target: &Reference,
    opts: &BuildOptions,
) -> Result<PushReport> {
    let before = client.counters();
    let img = build(client, spec, opts).await?;
    let report = push_built(client, &img, target).await?;
    let after = client.counters();
    Ok(PushReport {
        transfer: diff(after, before),
        ..report
    })
}

fn diff(a: CounterSnapshot, b: CounterSnapshot) -> CounterSnapshot {
    CounterSnapshot {
        requests: a.requests - b.requests,
        blob_uploads: a.blob_uploads - b.blob_uploads,
        upload_bytes: a.upload_bytes - b.upload_bytes,
        mounts: a.mounts - b.mounts,
        mounts_declined: a.mounts_declined - b.mounts_declined,
        blob_downloads: a.blob_downloads - b.blob_downloads,
        download_bytes: a.download_bytes - b.download_bytes,
        manifest_puts: a.manifest_puts - b.manifest_puts,
        retries: a.retries - b.retries,
        resent_bytes: a.resent_bytes - b.resent_bytes,
    }
}

pub(crate) fn counters_delta(a: CounterSnapshot, b: CounterSnapshot) -> CounterSnapshot {
    diff(a, b)
}

/// Push a built image: base layers (mount/copy), new layers, config, then the manifest.
pub async fn push_built(
    client: &RegistryClient,
    img: &BuiltImage,
    target: &Reference,
) -> Result<PushReport> {
    let sem = client.blob_task_limit();
    let config_size = img.config_bytes.len() as u64;
    let (base_layers, new_layers) = img.distinct_layers();
    let config_digest = img.manifest.image()?.config.digest;
    let new_files: BTreeMap<Digest, PathBuf> = (new_layers.iter())
        .map(|l| (l.digest.clone(), l.path().to_path_buf()))
        .collect();
    // The base's sizes come from its manifest: a bogus one must not overflow.
    let sizes = base_layers.iter().map(|l| l.size);
    let sizes = sizes.chain(new_layers.iter().map(|l| l.size));
    client.plan_bytes(sizes.fold(config_size, u64::saturating_add));
    // Each task answers with its blob's size too: one that needs no transfer leaves the plan.
    let mut tasks: JoinSet<Result<(BlobOutcome, u64)>> = JoinSet::new();
    for d in base_layers {
        let (c, t, d, base, sem) = (
            client.clone(),
            target.clone(),
            (d.digest.clone(), d.size),
            img.base.clone().expect("base layers imply a base"),
            sem.clone(),
        );
        tasks.spawn(async move {
            let _p = sem.acquire_owned().await.expect("semaphore open");
            let outcome = match base {
                // Mounted on the same registry, streamed across from another one.
                Base::Registry(b) => c.copy_blob(&b, &t, &d.0, d.1).await?,
                Base::Layout(l) => l.upload_blob(&c, &t, &d.0, d.1).await?,
            };
            Ok((outcome, d.1))
        });
    }
    for l in new_layers {
        let (c, t, sem) = (client.clone(), target.clone(), sem.clone());
        let (d, path, size) = (l.digest.clone(), l.path().to_path_buf(), l.size);
        // Streamed from the temp file, which `img` keeps until every task is joined.
        tasks.spawn(async move {
            let _p = sem.acquire_owned().await.expect("semaphore open");
            Ok((c.upload_blob_file(&t, &d, &path, size).await?, size))
        });
    }
    {
        let (c, t, sem) = (client.clone(), target.clone(), sem.clone());
        let d = config_digest.clone();
        let data = Bytes::from(img.config_bytes.clone());
        tasks.spawn(async move {
            let _p = sem.acquire_owned().await.expect("semaphore open");
            let outcome = c
                .ensure_blob(&t, &d, None, move || async move { Ok(data) })
                .await?;
            c.settle_plan(outcome, config_size);
            // The config is not a layer: reported as Present so counts stay about layers.
            Ok((BlobOutcome::Present, 0))
        });
    }
    let (mut up, mut mounted, mut present) = (0usize, 0usize, 0usize);
    for (outcome, size) in crate::join_all(tasks, "push").await? {
        match outcome {
            BlobOutcome::Uploaded => up += 1,
            BlobOutcome::Mounted => mounted += 1,
            BlobOutcome::Present => present += 1,
        }
        client.settle_plan(outcome, size);
    }
    let digest = match crate::lost_blobs::put_manifest(client, target, &img.manifest).await? {
        Put::Done(d) => d,
        Put::Lacking(lacking) => {
            // Each sent again from where it came the first time.
            for (d, size) in &lacking {
                let outcome = if let Some(path) = new_files.get(d) {
                    client.upload_blob_file(target, d, path, *size).await?
                } else if *d == config_digest {
                    let data = Bytes::from(img.config_bytes.clone());
                    (client.ensure_blob(target, d, None, move || async move { Ok(data) })).await?
                } else {
                    match &img.base {
                        Some(Base::Registry(b)) => client.copy_blob(b, target, d, *size).await?,
                        Some(Base::Layout(l)) => l.upload_blob(client, target, d, *size).await?,
                        None => {
                            return Err(Error::Invalid(format!(
                                "blob {d} of the image pushed as {target} is neither a new layer, the config, nor a base layer"
                            )));
                        }
                    }
                };
                client.settle_plan(outcome, *size);
            }
            crate::lost_blobs::put_again(client, target, &img.manifest, lacking).await?
        }
    };
    Ok(PushReport {
        reference: target.to_string(),
        digest,
        converted_from: None,
        layers_uploaded: up,
        layers_mounted: mounted,
        layers_present: present.saturating_sub(1),
        transfer: CounterSnapshot::default(),
    })
}

/// Build `spec` straight into the local store as `name` (no push): new blobs are written,
/// base blobs are pulled from the base registry unless already stored.
pub async fn build_to_store(
    client: &RegistryClient,
    spec: &BuildSpec,
    store: &crate::store::LocalStore,
    name: &Reference,
    opts: &BuildOptions,
) -> Result<crate::store::ResolvedImage> {
    let img = build(client, spec, &opts.building_in(store.layout())).await?;
    store_built(client, &img, store, name).await?;
    store.resolve(name)
}

/// Put a built image into the local store as `name`: new layers linked from their temp
/// files, base blobs downloaded (streamed to disk) unless already stored, manifest last.
pub async fn store_built(
    client: &RegistryClient,
    img: &BuiltImage,
    store: &crate::store::LocalStore,
    name: &Reference,
) -> Result<()> {
    land_blobs(client, img, store.layout()).await?;
    store.put_image(name, &img.manifest, &[])
}

/// Build `spec` into the OCI layout at `dir` (created if missing) as `name` (or unnamed):
/// like [`build_and_push`], with a directory in place of a registry. Built on a Docker
/// schema 2 base, the manifest gets OCI media types in a user's layout (see
/// [`BuildOptions::preserve_digests`]); the report's `converted_from` is then its Docker digest.
pub async fn build_to_layout(
    client: &RegistryClient,
    spec: &BuildSpec,
    dir: &std::path::Path,
    name: Option<&str>,
    opts: &BuildOptions,
) -> Result<PushReport> {
    let before = client.counters();
    (Location::Layout {
        dir: dir.to_path_buf(),
        name: name.map(String::from),
    })
    .check_destination()?;
    let layout = OciLayout::create(dir)?;
    let img = build(client, spec, &opts.building_in(&layout)).await?;
    // Converted before any blob lands: a base layer type with no OCI equivalent stops here.
    let manifest = match convert::for_layout(&layout, opts.preserve_digests) {
        true => convert::image_to_oci(&img.manifest)?,
        false => img.manifest.clone(),
    };
    let landed = land_blobs(client, &img, &layout).await?;
    layout.put_manifest(&manifest, name)?;
    Ok(PushReport {
        reference: Location::Layout {
            dir: dir.to_path_buf(),
            name: name.map(String::from),
        }
        .to_string(),
        converted_from: (manifest.digest != img.manifest.digest)
            .then(|| img.manifest.digest.clone()),
        digest: manifest.digest,
        layers_uploaded: landed.written,
        layers_mounted: 0,
        layers_present: landed.present,
        transfer: diff(client.counters(), before),
    })
}

impl BuildOptions {
    /// These options with new layers written in `layout`'s blob directory (unless a temp
    /// directory is set), so they land there by link, never copied.
    fn building_in(&self, layout: &OciLayout) -> Self {
        Self {
            temp_dir: Some(self.temp_dir.clone().unwrap_or_else(|| layout.blob_dir())),
            ..self.clone()
        }
    }
}

/// How many layers [`land_blobs`] wrote, and how many the layout had already.
#[derive(Default)]
struct Landed {
    written: usize,
    present: usize,
}

/// Put every blob of a built image into `layout`, the manifest excepted: base layers
/// downloaded from their registry or copied from their layout unless already there, new
/// layers linked from their temp files, the config.
async fn land_blobs(
    client: &RegistryClient,
    img: &BuiltImage,
    layout: &OciLayout,
) -> Result<Landed> {
    let mut landed = Landed::default();
    let (base_layers, new_layers) = img.distinct_layers();
    let base_layers: Vec<_> = (base_layers.into_iter())
        .map(|d| (d.digest.clone(), d.size))
        .collect();
    match &img.base {
        Some(Base::Registry(base)) => {
            let n = layout
                .download_missing(client, base, base_layers.iter().cloned())
                .await?;
            landed.written += n;
            landed.present += base_layers.len() - n;
        }
        Some(Base::Layout(from)) => {
            client.plan_bytes(base_layers.iter().fold(0u64, |t, b| t.saturating_add(b.1)));
            let mut tasks = JoinSet::new();
            for (d, size) in base_layers {
                let (c, from, to) = (client.clone(), from.clone(), layout.clone());
                tasks.spawn(
                    async move { Ok((to.copy_blob_from(&c, &from, &d, size).await?, size)) },
                );
            }
            for (outcome, size) in crate::join_all(tasks, "layer copy").await? {
                match outcome {
                    BlobOutcome::Present => landed.present += 1,
                    _ => landed.written += 1,
                }
                client.settle_plan(outcome, size);
            }
        }
        None => {}
    }
    for l in new_layers {
        match layout.has_blob_of_size(&l.digest, l.size) {
            true => landed.present += 1,
            false => {
                layout.put_layer(l)?;
                landed.written += 1;
            }
        }
    }
    layout.put_blob(&Digest::of(&img.config_bytes), &img.config_bytes)?;
    Ok(landed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(946_684_800), "2000-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_709_251_199), "2024-02-29T23:59:59Z");
    }

    #[test]
    fn spec_applies_like_docker() {
        let mut c = ImageConfig::empty(&Platform::linux_amd64());
        c.config.as_mut().unwrap().cmd = Some(vec!["sh".into()]);
        c.config.as_mut().unwrap().env = Some(vec!["PATH=/bin".into(), "A=1".into()]);
        let spec = BuildSpec {
            entrypoint: Some(vec!["/app".into()]),
            env: vec![("A".into(), "2".into()), ("B".into(), "3".into())],
            workdir: Some("/w".into()),
            user: Some("1000".into()),
            labels: BTreeMap::from([("k".into(), "v".into())]),
            ..Default::default()
        };
        apply_spec(&mut c, &spec, &[], "2000-01-01T00:00:00Z");
        let cc = c.config.unwrap();
        assert_eq!(cc.entrypoint, Some(vec!["/app".to_string()]));
        assert_eq!(cc.cmd, None);
        assert_eq!(
            cc.env,
            Some(vec!["PATH=/bin".to_string(), "A=2".into(), "B=3".into()])
        );
        assert_eq!(cc.working_dir.as_deref(), Some("/w"));
        assert_eq!(cc.user.as_deref(), Some("1000"));
        assert_eq!(cc.labels.unwrap()["k"], "v");
    }
}
