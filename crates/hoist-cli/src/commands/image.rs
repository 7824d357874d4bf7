//! `hoist image …`: append layers onto a base and push, copy, inspect, pull into the local store.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use hoist_oci::build::{BuildOptions, BuildSpec, build_and_push, build_to_layout};
use hoist_oci::client::{ClientOptions, DEFAULT_MAX_CONCURRENCY, RegistryClient};
use hoist_oci::copy::{CopyOptions, Location, copy};
use hoist_oci::layout::OciLayout;
use hoist_oci::manifest::{Parsed, Platform, RawManifest, parse_config};
use hoist_oci::{LayerSpec, LocalStore, Reference, block_on};
use miette::{IntoDiagnostic, miette};

use super::interruptible;
use crate::cli::GlobalOpts;
use crate::output::{OutputFormat, count, count_irregular, human_bytes};

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Build services' images from the project (service.yaml `image:`) and push them.
    Build(super::image_build::BuildArgs),
    /// Append layers onto a base image and push the result (or store it in an OCI layout); only missing blobs are sent.
    Append(AppendArgs),
    /// Copy an image between registries and OCI layout directories (oci:DIR[:NAME]).
    Copy(CopyArgs),
    /// Show an image's manifest, config, layers and sizes.
    Inspect(InspectArgs),
    /// Pull an image into the local store the embedded cluster runs images from.
    Pull(PullArgs),
}

#[derive(Debug, Args, Clone)]
pub struct RegistryOpts {
    /// Talk plain HTTP to this registry (`HOST[:PORT]` or `http://HOST[:PORT]`), as to
    /// loopback ones (which switch to HTTPS when they answer that they speak TLS); repeatable.
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    pub insecure: Vec<String>,
    /// Extra CA certificates (PEM) to trust for HTTPS registries.
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Platform to pick from multi-platform images (default linux/amd64). When given,
    /// `append`, `build`, `inspect` and `pull` also refuse an image that exists for another
    /// platform only, and `build` passes it to the Dockerfile builder.
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<String>,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t)]
    pub output: OutputFormat,
}

/// For the commands that move blobs.
#[derive(Debug, Args, Clone)]
pub struct TransferOpts {
    /// Blob transfers at once (probes for the blobs queued behind them run ahead).
    #[arg(long, short = 'j', value_name = "N", default_value_t = DEFAULT_MAX_CONCURRENCY as u16,
          value_parser = clap::value_parser!(u16).range(1..=64))]
    pub jobs: u16,
}

impl RegistryOpts {
    /// A client for reading manifests and configs.
    pub(super) fn client(&self) -> miette::Result<RegistryClient> {
        self.client_with(DEFAULT_MAX_CONCURRENCY)
    }

    /// A client that moves blobs, `t.jobs` at once.
    pub(super) fn transfer_client(&self, t: &TransferOpts) -> miette::Result<RegistryClient> {
        self.client_with(t.jobs.into())
    }

    fn client_with(&self, max_concurrency: usize) -> miette::Result<RegistryClient> {
        let mut o = ClientOptions::from_env().into_diagnostic()?;
        o.insecure.extend(self.insecure.iter().cloned());
        if let Some(f) = &self.ca_file {
            o.ca_file = Some(f.clone());
        }
        o.max_concurrency = max_concurrency;
        let c = RegistryClient::new(o).into_diagnostic()?;
        if std::io::stderr().is_terminal() && self.output == OutputFormat::Text {
            c.set_progress(Some(hoist_oci::progress::bar()));
        }
        Ok(c)
    }

    pub(super) fn platform(&self) -> miette::Result<Platform> {
        match &self.platform {
            Some(p) => p.parse().into_diagnostic(),
            None => Ok(Platform::linux_amd64()),
        }
    }

    /// Was `--platform` given (then a single-platform image for another one is refused)?
    pub(super) fn platform_asked(&self) -> bool {
        self.platform.is_some()
    }
}

#[derive(Debug, Args)]
pub struct AppendArgs {
    /// Base image: a registry reference, oci:DIR[:NAME] (an OCI layout), or `scratch`.
    #[arg(long)]
    pub base: String,
    /// SRC:DEST — copy a file or directory into the image as one new layer; repeatable.
    #[arg(long = "layer", value_name = "SRC:DEST")]
    pub layers: Vec<String>,
    /// Entrypoint: a JSON array (`["/app","--flag"]`) or words split on spaces.
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Command: a JSON array or words split on spaces.
    #[arg(long)]
    pub cmd: Option<String>,
    /// KEY=VALUE environment variable; repeatable.
    #[arg(long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Working directory of the container.
    #[arg(long)]
    pub workdir: Option<String>,
    /// User (and group) the container runs as, e.g. `1000` or `app:app`.
    #[arg(long)]
    pub user: Option<String>,
    /// KEY=VALUE label; repeatable.
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Where the result goes: a registry reference (pushed), or oci:DIR[:NAME] (stored in
    /// an OCI layout, created if missing; built on a Docker schema 2 base, its manifest
    /// gets OCI media types there, see --preserve-digests).
    #[arg(long, short = 't')]
    pub tag: String,
    /// With --tag oci:DIR: keep the Docker media types an image built on a Docker schema 2
    /// base has, so its digest is the one a push to a registry gives (skopeo and umoci
    /// cannot read such a manifest from a layout).
    #[arg(long)]
    pub preserve_digests: bool,
    #[command(flatten)]
    pub reg: RegistryOpts,
    #[command(flatten)]
    pub transfer: TransferOpts,
}

/// `hoist image copy --help`, below the options.
const COPY_ABOUT_LAYOUTS: &str = "\
An OCI layout holds OCI manifests: a Docker schema 2 manifest (or manifest list) copied into \
oci:DIR gets OCI media types, as `skopeo copy` gives it, so that skopeo, umoci and other OCI \
tools can read it there. Its config and layers stay the same blobs, but the manifest is new \
and so is its digest; the output gives both. --preserve-digests writes it as it is instead. \
Copies to a registry, and into hoist's own image store, keep every digest.";

#[derive(Debug, Args)]
#[command(after_long_help = COPY_ABOUT_LAYOUTS)]
pub struct CopyArgs {
    /// Source: a registry reference or oci:DIR[:NAME].
    pub src: String,
    /// Destination: a registry reference or oci:DIR[:NAME].
    pub dst: String,
    /// Copy every platform of a multi-platform image (keeps the index digest, but for a
    /// Docker manifest list copied into an OCI layout: see below).
    #[arg(long)]
    pub all: bool,
    /// Write a Docker schema 2 manifest into an OCI layout as it is, digest unchanged,
    /// rather than with OCI media types (skopeo and umoci cannot read it from the layout).
    #[arg(long)]
    pub preserve_digests: bool,
    #[command(flatten)]
    pub reg: RegistryOpts,
    #[command(flatten)]
    pub transfer: TransferOpts,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// A registry reference or oci:DIR[:NAME].
    pub image: String,
    #[command(flatten)]
    pub reg: RegistryOpts,
}

#[derive(Debug, Args)]
pub struct PullArgs {
    pub image: String,
    /// Store directory (default: $HOIST_CACHE_DIR/images, else the user cache dir).
    #[arg(long, value_name = "DIR")]
    pub store: Option<PathBuf>,
    #[command(flatten)]
    pub reg: RegistryOpts,
    #[command(flatten)]
    pub transfer: TransferOpts,
}

pub fn run(cmd: ImageCommand, g: &GlobalOpts) -> miette::Result<ExitCode> {
    match cmd {
        ImageCommand::Build(a) => super::image_build::run(a, g),
        ImageCommand::Append(a) => append(a),
        ImageCommand::Copy(a) => copy_cmd(a),
        ImageCommand::Inspect(a) => inspect(a),
        ImageCommand::Pull(a) => pull(a),
    }
}

fn words(flag: &str, s: &str) -> miette::Result<Vec<String>> {
    let t = s.trim();
    if t.starts_with('[') {
        serde_json::from_str(t).map_err(|e| miette!("--{flag} {s:?}: invalid JSON array: {e}"))
    } else if t.contains(['"', '\'', '\\']) {
        // Split on spaces, `echo "a b"` would be three words with quotes in them.
        Err(miette!(
            help = format!("e.g. --{flag} '[\"echo\", \"hello world\"]'"),
            "--{flag} {s:?}: quotes are not parsed in the words form; give a JSON array"
        ))
    } else {
        Ok(t.split_whitespace().map(String::from).collect())
    }
}

fn key_value(flag: &str, s: &str) -> miette::Result<(String, String)> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => match hoist_config::names::env_name_problem(k) {
            Some(why) => Err(miette!("--{flag} {s:?}: the name {k:?} {why}")),
            None => Ok((k.into(), v.into())),
        },
        _ => Err(miette!("--{flag} {s:?}: expected KEY=VALUE")),
    }
}

fn append(a: AppendArgs) -> miette::Result<ExitCode> {
    let layers = a
        .layers
        .iter()
        .map(|l| LayerSpec::parse_cli(l))
        .collect::<Result<Vec<_>, _>>()
        .into_diagnostic()?;
    let spec = BuildSpec {
        base: a.base.clone(),
        layers,
        entrypoint: a
            .entrypoint
            .as_deref()
            .map(|e| words("entrypoint", e))
            .transpose()?,
        cmd: a.cmd.as_deref().map(|c| words("cmd", c)).transpose()?,
        env: a
            .env
            .iter()
            .map(|e| key_value("env", e))
            .collect::<miette::Result<_>>()?,
        workdir: match a.workdir.as_deref() {
            Some(w) if let Some(why) = hoist_config::names::workdir_problem(w) => {
                return Err(miette!(
                    help = format!("--workdir /{w}"),
                    "--workdir {w:?}: {why}"
                ));
            }
            w => w.map(String::from),
        },
        user: a.user.clone(),
        labels: a
            .labels
            .iter()
            .map(|l| key_value("label", l))
            .collect::<miette::Result<BTreeMap<_, _>>>()?,
    };
    let target: Location = a.tag.parse().into_diagnostic()?;
    let client = a.reg.transfer_client(&a.transfer)?;
    let started = std::time::Instant::now();
    let opts = BuildOptions {
        platform: a.reg.platform()?,
        require_platform: a.reg.platform_asked(),
        preserve_digests: a.preserve_digests,
        ..Default::default()
    };
    let what = format!("appending to {}", spec.base);
    let rep = match &target {
        Location::Registry(r) => interruptible(&what, build_and_push(&client, &spec, r, &opts)),
        Location::Layout { dir, name } => interruptible(
            &what,
            build_to_layout(&client, &spec, dir, name.as_deref(), &opts),
        ),
    }?;
    client.set_progress(None);
    let secs = started.elapsed().as_secs_f64();
    match (a.reg.output.document(), &target) {
        (Some(doc), _) => doc.print(&rep)?,
        (_, Location::Registry(_)) => outln!(
            "pushed {}@{} in {secs:.2} s: {} uploaded, {} mounted, {} already present ({} sent{})",
            rep.reference,
            rep.digest,
            count(rep.layers_uploaded as u64, "layer"),
            rep.layers_mounted,
            rep.layers_present,
            // Blob bytes sent: new layers, the config, and base layers streamed over from
            // another registry.
            human_bytes(rep.transfer.upload_bytes),
            retried(&rep.transfer),
        ),
        (_, Location::Layout { .. }) => outln!(
            "stored {} ({}) in {secs:.2} s: {} written, {} already there ({} downloaded{})",
            rep.reference,
            rep.digest,
            count(rep.layers_uploaded as u64, "layer"),
            rep.layers_present,
            human_bytes(rep.transfer.download_bytes),
            retried(&rep.transfer),
        ),
    }
    if let (None, Some(docker)) = (a.reg.output.document(), &rep.converted_from) {
        outln!(
            "converted Docker media types (of the Docker schema 2 base) to OCI (an OCI layout \
             holds OCI manifests): {}, {docker} as pushed to a registry; --preserve-digests \
             keeps them",
            rep.digest
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `, 22 MiB re-sent after 3 retries` when transfers were retried (the bytes counted as
/// sent are each blob's once), else nothing.
fn retried(t: &hoist_oci::client::CounterSnapshot) -> String {
    match (t.retries, t.resent_bytes) {
        (0, _) => String::new(),
        (n, 0) => format!(", after {}", count_irregular(n, "retry", "retries")),
        (n, b) => format!(
            ", {} re-sent after {}",
            human_bytes(b),
            count_irregular(n, "retry", "retries")
        ),
    }
}

fn copy_cmd(a: CopyArgs) -> miette::Result<ExitCode> {
    let src: Location = a.src.parse().into_diagnostic()?;
    let dst: Location = a.dst.parse().into_diagnostic()?;
    let client = a.reg.transfer_client(&a.transfer)?;
    let opts = CopyOptions {
        all_platforms: a.all,
        platform: a.reg.platform()?,
        preserve_digests: a.preserve_digests,
    };
    let started = std::time::Instant::now();
    let what = format!("copying {src} to {dst}");
    let rep = interruptible(&what, copy(&client, &src, &dst, &opts))?;
    client.set_progress(None);
    match a.reg.output.document() {
        Some(doc) => doc.print(&rep)?,
        None => outln!(
            "copied {} -> {} ({}) in {:.2} s: {} copied ({}{}), {} mounted, {} already present",
            rep.source,
            rep.destination,
            rep.digest,
            started.elapsed().as_secs_f64(),
            count(rep.blobs_copied as u64, "blob"),
            human_bytes(rep.bytes_copied),
            retried(&rep.transfer),
            rep.blobs_mounted,
            rep.blobs_skipped
        ),
    }
    if let (None, Some(source)) = (a.reg.output.document(), &rep.converted_from) {
        outln!(
            "converted Docker media types to OCI (an OCI layout holds OCI manifests): {}, \
             {source} at the source; --preserve-digests keeps them",
            rep.digest
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn inspect(a: InspectArgs) -> miette::Result<ExitCode> {
    let loc: Location = a.image.parse().into_diagnostic()?;
    let platform = a.reg.platform()?;
    let client = a.reg.client()?;
    client.set_progress(None);
    let (raw, index, config_bytes) = block_on(async {
        match &loc {
            Location::Registry(r) => {
                let (raw, index) = client.resolve_image(r, &platform).await?;
                let m = raw.image()?;
                let cfg = client.get_blob(r, &m.config.digest).await?;
                Ok::<_, hoist_oci::Error>((raw, index, cfg.to_vec()))
            }
            Location::Layout { dir, name } => {
                let l = OciLayout::open(dir)?;
                let (raw, index) = l.resolve_image(name.as_deref(), &platform)?;
                let m = raw.image()?;
                let cfg = l.read_blob(&m.config.digest)?;
                Ok((raw, index, cfg))
            }
        }
    })
    .into_diagnostic()?;
    let m = raw.image().into_diagnostic()?;
    // An OCI artifact (a Helm chart, a signature) has a manifest and layers, but its config
    // is no image config: shown as what it is.
    let config = match m.ensure_image(&loc.to_string()) {
        Ok(()) => Some(parse_config(&config_bytes, &m.config.digest).into_diagnostic()?),
        Err(_) => None,
    };
    // An index was resolved by platform; a single image is what it is.
    if let Some(c) = &config
        && a.reg.platform_asked()
        && index.is_none()
    {
        c.ensure_platform(&platform, &loc.to_string())
            .into_diagnostic()?;
    }
    // The platforms an index offers (the one shown was picked by --platform).
    let platforms: Vec<String> = match index.as_ref().map(RawManifest::parse).transpose() {
        Ok(Some(Parsed::Index(idx))) => (idx.manifests.iter())
            .filter_map(|d| d.platform.as_ref().map(|p| p.to_string()))
            .collect(),
        _ => vec![],
    };
    // Sizes come from the manifest: a bogus one must not overflow.
    let total = m.layers.iter().fold(0u64, |t, l| t.saturating_add(l.size));
    if let Some(doc) = a.reg.output.document() {
        let v = serde_json::json!({
            "reference": loc.to_string(),
            "digest": raw.digest,
            "mediaType": raw.media_type,
            "index": index.as_ref().map(|i: &RawManifest| serde_json::json!({"digest": i.digest, "mediaType": i.media_type, "platforms": platforms})),
            "size": total,
            "layers": m.layers,
            "manifest": m,
            "configMediaType": m.config.media_type,
            "config": config,
        });
        doc.print(&v)?;
        return Ok(ExitCode::SUCCESS);
    }
    outln!("Image:       {loc}");
    outln!("Digest:      {}", raw.digest);
    if let Some(i) = &index {
        outln!("Index:       {} ({})", i.digest, i.media_type);
        if !platforms.is_empty() {
            outln!("Platforms:   {}", platforms.join(", "));
        }
    }
    outln!("Media type:  {}", raw.media_type);
    let Some(config) = config else {
        outln!(
            "Config:      {} (an OCI artifact, not a container image)",
            m.config.media_type
        );
        outln!("Layers:      {} ({})", m.layers.len(), human_bytes(total));
        for l in &m.layers {
            outln!(
                "  {}  {:>11}  {}",
                l.digest,
                human_bytes(l.size),
                l.media_type
            );
        }
        return Ok(ExitCode::SUCCESS);
    };
    outln!("Platform:    {}", config.platform());
    if let Some(c) = &config.created {
        outln!("Created:     {c}");
    }
    if let Some(cc) = &config.config {
        if let Some(e) = &cc.entrypoint {
            outln!(
                "Entrypoint:  {}",
                serde_json::to_string(e).into_diagnostic()?
            );
        }
        if let Some(c) = &cc.cmd {
            outln!(
                "Cmd:         {}",
                serde_json::to_string(c).into_diagnostic()?
            );
        }
        if let Some(w) = &cc.working_dir {
            outln!("WorkingDir:  {w}");
        }
        if let Some(u) = &cc.user {
            outln!("User:        {u}");
        }
        for e in cc.env.iter().flatten() {
            outln!("Env:         {e}");
        }
        for (k, v) in cc.labels.iter().flatten() {
            outln!("Label:       {k}={v}");
        }
    }
    outln!(
        "Layers:      {} ({} compressed)",
        m.layers.len(),
        human_bytes(total)
    );
    for (l, diff) in m.layers.iter().zip(
        config
            .rootfs
            .diff_ids
            .iter()
            .map(Some)
            .chain(std::iter::repeat(None)),
    ) {
        outln!(
            "  {}  {:>11}  {}",
            l.digest,
            human_bytes(l.size),
            diff.map(|d| format!("diff {d}")).unwrap_or_default()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The blobs an image is made of: its config and its layers, each digest once (an image
/// can repeat a layer; it is stored and fetched once).
fn distinct_blobs(m: &hoist_oci::ImageManifest) -> u64 {
    let layers = m.layers.iter().map(|l| &l.digest);
    let all: std::collections::BTreeSet<_> =
        std::iter::once(&m.config.digest).chain(layers).collect();
    all.len() as u64
}

fn pull(a: PullArgs) -> miette::Result<ExitCode> {
    let r = Reference::parse(&a.image).into_diagnostic()?;
    let store = match &a.store {
        Some(d) => LocalStore::open(d),
        None => LocalStore::open_default(),
    }
    .into_diagnostic()?;
    let client = a.reg.transfer_client(&a.transfer)?;
    let started = std::time::Instant::now();
    let platform = a.reg.platform()?;
    let pulled = interruptible(
        &format!("pulling {r}"),
        store.pull_image(&client, &r, &platform, a.reg.platform_asked()),
    )?;
    let img = &pulled.image;
    client.set_progress(None);
    // A fresh client: its counters are this pull's.
    let moved = client.counters();
    // The image pulled, by its own digest (a reference by digest may name an index).
    let image = r.with_digest(img.manifest_digest.clone());
    let from_index = match &pulled.index_digest {
        Some(i) => format!(" (the {platform} image of index {i})"),
        None => String::new(),
    };
    match a.reg.output.document() {
        Some(doc) => doc.print(&serde_json::json!({
            "reference": r.to_string(),
            "image": image.to_string(),
            "digest": img.manifest_digest,
            "index_digest": pulled.index_digest,
            "store": store.layout().root(),
            "blobs_downloaded": moved.blob_downloads,
            "bytes_downloaded": moved.download_bytes,
            // The client's counters under the names `append` and `copy` give them
            // (`transfer.retries`, `transfer.resent_bytes`), so a script reads them one way.
            "transfer": moved,
        }))?,
        None => outln!(
            "pulled {image}{from_index} into {} in {:.2} s: {} downloaded ({}{}), {} already stored",
            store.layout().root().display(),
            started.elapsed().as_secs_f64(),
            count(moved.blob_downloads, "blob"),
            human_bytes(moved.download_bytes),
            retried(&moved),
            distinct_blobs(&img.manifest).saturating_sub(moved.blob_downloads),
        ),
    }
    Ok(ExitCode::SUCCESS)
}
