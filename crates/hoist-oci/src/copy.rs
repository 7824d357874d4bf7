//! Copy images between registries and OCI layout directories, transferring only blobs the
//! target lacks and mounting where possible. Byte for byte (manifest digests are preserved),
//! but for a Docker-typed manifest written into a user's OCI layout: that gets OCI media
//! types ([`crate::convert`]) unless [`CopyOptions::preserve_digests`] is set.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use tokio::task::JoinSet;

use crate::build::counters_delta;
use crate::client::{BlobOutcome, CounterSnapshot, RegistryClient};
use crate::convert;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::layout::OciLayout;
use crate::lost_blobs::{self, Put};
use crate::manifest::{Parsed, Platform, RawManifest};
use crate::reference::Reference;

/// Where an image lives: a registry, or an OCI layout directory (`oci:DIR[:NAME]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    Registry(Reference),
    Layout { dir: PathBuf, name: Option<String> },
}

impl FromStr for Location {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        if let Some(rest) = s.strip_prefix("oci:") {
            if rest.is_empty() {
                return Err(Error::Invalid(format!(
                    "invalid location {s:?}: expected oci:DIR[:NAME]"
                )));
            }
            // skopeo's rule (containers/image): DIR is everything up to the first ':', so a
            // DIR cannot hold one, and NAME is the rest, ':' and '/' included
            // (`oci:lay:registry:5000/app:v1`, `oci:lay:sha256:<digest>`).
            let (dir, name) = match rest.split_once(':') {
                Some((dir, name)) => (dir, Some(name)),
                None => (rest, None),
            };
            if dir.is_empty() {
                return Err(Error::Invalid(format!(
                    "invalid location {s:?}: expected oci:DIR[:NAME], with DIR before the first ':'"
                )));
            }
            if let Some(n) = name {
                check_ref_name(n).map_err(|why| {
                    Error::Invalid(format!(
                        "invalid location {s:?}: image name {n:?} {why}; the directory is \
                         what comes before the first ':' ({dir:?}), the name all after it"
                    ))
                })?;
            }
            return Ok(Location::Layout {
                dir: dir.into(),
                name: name.map(String::from),
            });
        }
        let s = s.strip_prefix("docker://").unwrap_or(s);
        Ok(Location::Registry(Reference::parse(s)?))
    }
}

/// Check `name` against the grammar of `org.opencontainers.image.ref.name` (OCI image spec,
/// annotations): `component ("/" component)*`, a component being runs of ASCII letters and
/// digits joined by one of `- . _ : @ +` or by `--`. Err says what is wrong.
fn check_ref_name(name: &str) -> std::result::Result<(), String> {
    const RULE: &str = "(letters and digits joined by one of - . _ : @ + or by --, in \
                        parts separated by /)";
    if name.is_empty() {
        return Err(format!("is empty {RULE}"));
    }
    for component in name.split('/') {
        let b = component.as_bytes();
        let alnum = |i: usize| b.get(i).is_some_and(u8::is_ascii_alphanumeric);
        if !alnum(0) || !alnum(b.len().saturating_sub(1)) {
            return Err(format!(
                "has a part {component:?} that does not start and end with a letter or digit \
                 {RULE}"
            ));
        }
        let mut i = 0;
        while i < b.len() {
            let sep = match b[i] {
                _ if alnum(i) => 0,
                b'-' if b.get(i + 1) == Some(&b'-') => 2,
                b'-' | b'.' | b'_' | b':' | b'@' | b'+' => 1,
                c => {
                    return Err(format!(
                        "has the character {:?}, which a ref name cannot hold {RULE}",
                        c as char
                    ));
                }
            };
            if sep > 0 && !alnum(i + sep) {
                return Err(format!(
                    "has {:?} in {component:?} not followed by a letter or digit {RULE}",
                    &component[i..i + sep]
                ));
            }
            i += sep.max(1);
        }
    }
    Ok(())
}

impl Location {
    /// Refuse a layout name that reads as a digest: `oci:DIR:sha256:…` picks an image by its
    /// digest, so an image stored under such a name could never be found by it.
    pub fn check_destination(&self) -> Result<()> {
        match self {
            Location::Layout { name: Some(n), dir } if n.starts_with("sha256:") => {
                Err(Error::Invalid(format!(
                    "oci:{}:{n}: a destination is named by a tag-like name, not a digest (the digest is the image's own)",
                    dir.display()
                )))
            }
            _ => Ok(()),
        }
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Registry(r) => write!(f, "{r}"),
            Location::Layout { dir, name: Some(n) } => write!(f, "oci:{}:{n}", dir.display()),
            Location::Layout { dir, name: None } => write!(f, "oci:{}", dir.display()),
        }
    }
}

#[derive(Clone, Debug)]
pub struct CopyOptions {
    /// Copy every image of an index (the index digest is then preserved, but for a Docker
    /// manifest list converted for a user's OCI layout).
    pub all_platforms: bool,
    /// Otherwise copy only this platform's image.
    pub platform: Platform,
    /// Write Docker-typed manifests into a user's OCI layout as they are (skopeo's flag):
    /// digests unchanged, but skopeo and umoci cannot read them there.
    pub preserve_digests: bool,
}

impl Default for CopyOptions {
    fn default() -> Self {
        Self {
            all_platforms: false,
            platform: Platform::linux_amd64(),
            preserve_digests: false,
        }
    }
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct CopyReport {
    pub source: String,
    pub destination: String,
    /// The digest of the manifest written (with --all, the index's).
    pub digest: Digest,
    /// The source's digest of that manifest when it was Docker-typed and written into an
    /// OCI layout with OCI media types (so `digest` is new); None when copied as it is.
    pub converted_from: Option<Digest>,
    pub blobs_copied: usize,
    pub blobs_mounted: usize,
    pub blobs_skipped: usize,
    /// The bytes of the blobs copied (not of those mounted or already there).
    pub bytes_copied: u64,
    pub transfer: CounterSnapshot,
}

/// What happened to the blobs of one copy.
#[derive(Default)]
struct Tally {
    copied: usize,
    mounted: usize,
    present: usize,
    bytes_copied: u64,
}

enum Src {
    Registry(Reference),
    Layout(OciLayout, Option<String>),
}

enum Dst {
    Registry(Reference),
    Layout(OciLayout, Option<String>),
}

impl Src {
    async fn top(&self, client: &RegistryClient) -> Result<RawManifest> {
        match self {
            Src::Registry(r) => client.get_manifest(r).await,
            Src::Layout(l, name) => l.get_manifest(name.as_deref()),
        }
    }
    async fn manifest(&self, client: &RegistryClient, d: &Digest) -> Result<RawManifest> {
        match self {
            Src::Registry(r) => client.get_manifest(&r.with_digest(d.clone())).await,
            Src::Layout(l, _) => l.manifest_by_digest(d, None),
        }
    }
}

/// Copy `src` to `dst`. Returns the digest of the top manifest written.
pub async fn copy(
    client: &RegistryClient,
    src: &Location,
    dst: &Location,
    opts: &CopyOptions,
) -> Result<CopyReport> {
    let copied = copy_named(client, src, dst, opts).await;
    // A corrupt blob of a layout image says which image to pull again (the store names
    // its images by reference).
    match src {
        Location::Layout {
            name: Some(name), ..
        } if is_pullable(name) => copied.map_err(|e| e.in_image(name)),
        _ => copied,
    }
}

/// Can `hoist image pull NAME` fetch the image a layout names `name`? Not a digest name
/// (`oci:DIR:sha256:…`), though it reads as a tag of a repository `sha256`.
fn is_pullable(name: &str) -> bool {
    Digest::parse(name).is_err() && Reference::parse(name).is_ok()
}

async fn copy_named(
    client: &RegistryClient,
    src: &Location,
    dst: &Location,
    opts: &CopyOptions,
) -> Result<CopyReport> {
    let before = client.counters();
    dst.check_destination()?;
    let source = Arc::new(match src {
        Location::Registry(r) => Src::Registry(r.clone()),
        Location::Layout { dir, name } => Src::Layout(OciLayout::open(dir)?, name.clone()),
    });
    let dest = Arc::new(match dst {
        Location::Registry(r) => Dst::Registry(r.clone()),
        Location::Layout { dir, name } => Dst::Layout(OciLayout::create(dir)?, name.clone()),
    });
    let top = source.top(client).await?;
    let top_digest = top.digest.clone();
    // The images whose blobs move, and the manifest written under the destination's name
    // (with --all, the index; the platform images go before it: unnamed in a registry,
    // as blobs only in a layout).
    let (images, named) = match top.parse()? {
        Parsed::Image(_) => (vec![top.clone()], top),
        Parsed::Index(idx) if opts.all_platforms => {
            let mut children = vec![];
            for d in &idx.manifests {
                children.push(source.manifest(client, &d.digest).await?);
            }
            (children, top)
        }
        Parsed::Index(idx) => {
            let d = idx.select(&opts.platform, &src.to_string())?;
            let child = source.manifest(client, &d.digest).await?;
            (vec![child.clone()], child)
        }
    };
    // A destination pinned to a digest can only take that manifest: say so before any
    // blob moves (the registry would refuse the manifest at the very end).
    if let Location::Registry(r) = dst
        && let Some(pin) = &r.digest
        && *pin != named.digest
    {
        let index_hint = match top_digest == *pin {
            true => " (the source is a multi-platform index: --all copies it whole)",
            false => "",
        };
        return Err(Error::Invalid(format!(
            "{dst} is pinned to {pin}, but the image copied is {}: drop the digest from the destination, or give the one the source has{index_hint}",
            named.digest
        )));
    }
    let source_digest = named.digest.clone();
    let (images, named) = match &*dest {
        Dst::Layout(l, _) if convert::for_layout(l, opts.preserve_digests) => {
            oci_typed(images, named)?
        }
        // A registry keeps digests.
        _ => (images, named),
    };
    let mut stats = Tally::default();
    // Every platform's blobs at once: one plan for the bar, shared blobs sent once.
    copy_blobs(client, &source, &dest, &images, &mut stats).await?;
    for child in images.iter().filter(|i| i.digest != named.digest) {
        put_manifest(client, &source, &dest, child, false).await?;
    }
    put_manifest(client, &source, &dest, &named, true).await?;
    let written = named.digest.clone();
    Ok(CopyReport {
        source: src.to_string(),
        destination: dst.to_string(),
        converted_from: (written != source_digest).then_some(source_digest),
        digest: written,
        blobs_copied: stats.copied,
        blobs_mounted: stats.mounted,
        blobs_skipped: stats.present,
        bytes_copied: stats.bytes_copied,
        transfer: counters_delta(client.counters(), before),
    })
}

/// `images` (image manifests) and `named` (one of them, or the index of them all) with OCI
/// media types for a user's OCI layout, where skopeo and umoci read only those. The index
/// then points at the converted images. Manifests OCI already stay as they are.
fn oci_typed(
    images: Vec<RawManifest>,
    named: RawManifest,
) -> Result<(Vec<RawManifest>, RawManifest)> {
    // An index nested in an index is not an image: left as it is for the copy to refuse
    // as before, not called a manifest with no OCI equivalent.
    let converted = (images.iter())
        .map(|m| match crate::manifest::media::is_index(&m.media_type) {
            true => Ok((m.digest.clone(), m.clone())),
            false => Ok((m.digest.clone(), convert::image_to_oci(m)?)),
        })
        .collect::<Result<Vec<_>>>()?;
    let named = match converted.iter().find(|(d, _)| *d == named.digest) {
        Some((_, image)) => image.clone(),
        None => convert::index_to_oci(&named, &converted)?,
    };
    Ok((converted.into_iter().map(|(_, m)| m).collect(), named))
}

async fn put_manifest(
    client: &RegistryClient,
    source: &Src,
    dest: &Dst,
    raw: &RawManifest,
    named: bool,
) -> Result<()> {
    match dest {
        Dst::Registry(r) => {
            let target = if named {
                r.clone()
            } else {
                Reference {
                    tag: None,
                    digest: Some(raw.digest.clone()),
                    ..r.clone()
                }
            };
            // A reference with both tag and digest: tag it.
            let target = if named && target.tag.is_some() {
                Reference {
                    digest: None,
                    ..target
                }
            } else {
                target
            };
            let lacking = match lost_blobs::put_manifest(client, &target, raw).await? {
                Put::Done(_) => return Ok(()),
                Put::Lacking(lacking) => lacking,
            };
            for (d, size) in &lacking {
                let outcome = send_blob(client, source, dest, d, *size).await?;
                client.settle_plan(outcome, *size);
            }
            lost_blobs::put_again(client, &target, raw, lacking)
                .await
                .map(|_| ())
        }
        Dst::Layout(l, name) if named => l.put_manifest(raw, name.as_deref()),
        // An index's image: a blob the index points to, not an entry of index.json of its
        // own (skopeo does the same), which would make `oci:DIR` ambiguous.
        Dst::Layout(l, _) => l.put_blob(&raw.digest, &raw.bytes),
    }
}

/// Make sure `dest` has blob `d` (`size` bytes) of `source`. Every path streams: no blob
/// is ever held in memory whole.
async fn send_blob(
    c: &RegistryClient,
    source: &Src,
    dest: &Dst,
    d: &Digest,
    size: u64,
) -> Result<BlobOutcome> {
    Ok(match (source, dest) {
        (Src::Registry(sr), Dst::Registry(target)) => c.copy_blob(sr, target, d, size).await?,
        (Src::Layout(sl, _), Dst::Registry(target)) => sl.upload_blob(c, target, d, size).await?,
        (Src::Layout(sl, _), Dst::Layout(l, _)) => l.copy_blob_from(c, sl, d, size).await?,
        (_, Dst::Layout(l, _)) if l.has_blob_of_size(d, size) => BlobOutcome::Present,
        (Src::Registry(sr), Dst::Layout(l, _)) => {
            c.download_blob_to(sr, d, size, &l.blob_path(d)).await?;
            BlobOutcome::Uploaded
        }
    })
}

/// Copy the blobs (configs and layers) of the image manifests `images`, each digest once.
async fn copy_blobs(
    client: &RegistryClient,
    source: &Arc<Src>,
    dest: &Arc<Dst>,
    images: &[RawManifest],
    stats: &mut Tally,
) -> Result<()> {
    let sem = client.blob_task_limit();
    let mut tasks: JoinSet<Result<(BlobOutcome, u64)>> = JoinSet::new();
    let mut blobs = vec![];
    for raw in images {
        let m = raw.image()?;
        let descriptors = std::iter::once(&m.config).chain(m.layers.iter());
        blobs.extend(descriptors.map(|d| (d.digest.clone(), d.size)));
    }
    // Biggest first: the task limit admits tasks in this order, so the long transfers start
    // early and the tail is short (among admitted tasks, a slot goes to the first probed).
    blobs.sort_by_key(|b| std::cmp::Reverse(b.1));
    let mut seen = std::collections::HashSet::new();
    blobs.retain(|b| seen.insert(b.0.clone()));
    // Sizes come from the manifest: a bogus one must not overflow.
    client.plan_bytes(blobs.iter().fold(0u64, |t, b| t.saturating_add(b.1)));
    for (d, size) in blobs {
        let (c, s, t, sem) = (client.clone(), source.clone(), dest.clone(), sem.clone());
        tasks.spawn(async move {
            let _p = sem.acquire_owned().await.expect("semaphore open");
            Ok((send_blob(&c, &s, &t, &d, size).await?, size))
        });
    }
    for (outcome, size) in crate::join_all(tasks, "copy").await? {
        match outcome {
            BlobOutcome::Uploaded => {
                stats.copied += 1;
                stats.bytes_copied = stats.bytes_copied.saturating_add(size);
            }
            BlobOutcome::Mounted => stats.mounted += 1,
            BlobOutcome::Present => stats.present += 1,
        }
        client.settle_plan(outcome, size);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::fs;

    /// A store image named by digest: the hint asks to pull IMAGE, not `sha256:…`; named
    /// by reference, it names that reference.
    #[tokio::test]
    async fn the_pull_hint_names_an_image_only_when_it_can_be_pulled() {
        let tmp = tempfile::tempdir().unwrap();
        let store = crate::store::LocalStore::open(tmp.path().join("store")).unwrap();
        let l = store.layout();
        let (config, layer) = (br#"{"architecture":"amd64","os":"linux"}"#, b"layer");
        let (cd, ld) = (Digest::of(config), Digest::of(layer));
        l.put_blob(&cd, config).unwrap();
        l.put_blob(&ld, layer).unwrap();
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{cd}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{ld}","size":5}}]}}"#,
            config.len()
        );
        let raw = RawManifest::new(manifest.into_bytes(), None).unwrap();
        let client = RegistryClient::new(crate::client::ClientOptions::default()).unwrap();
        for (name, hint) in [
            (
                raw.digest.to_string(),
                "`hoist image pull IMAGE`".to_string(),
            ),
            (
                "hoist.test/app:1".to_string(),
                "`hoist image pull hoist.test/app:1`".into(),
            ),
        ] {
            l.put_manifest(&raw, Some(&name)).unwrap();
            fs::write(l.blob_path(&ld), b"LAYER").unwrap();
            let src = format!("oci:{}:{name}", l.root().display())
                .parse()
                .unwrap();
            let dst = Location::Layout {
                dir: tmp.path().join("out"),
                name: None,
            };
            let err = copy(&client, &src, &dst, &CopyOptions::default())
                .await
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("is corrupt") && err.contains(&hint),
                "{name}: {err}"
            );
        }
    }

    #[test]
    fn locations() {
        assert_eq!(
            "oci:/tmp/x:v1".parse::<Location>().unwrap(),
            Location::Layout {
                dir: "/tmp/x".into(),
                name: Some("v1".into())
            }
        );
        assert_eq!(
            "oci:/tmp/x".parse::<Location>().unwrap(),
            Location::Layout {
                dir: "/tmp/x".into(),
                name: None
            }
        );
        assert!(matches!(
            "docker://busybox".parse::<Location>().unwrap(),
            Location::Registry(_)
        ));
        assert!("oci:".parse::<Location>().is_err());
    }

    fn layout(s: &str) -> (String, Option<String>) {
        match s.parse::<Location>() {
            Ok(Location::Layout { dir, name }) => (dir.display().to_string(), name),
            other => panic!("{s}: {other:?}"),
        }
    }

    fn refused(s: &str) -> String {
        s.parse::<Location>().unwrap_err().to_string()
    }

    /// skopeo's split: DIR up to the first ':', NAME all the rest.
    #[test]
    fn layout_names_follow_the_first_colon() {
        let name = |s: &str| layout(s).1;
        assert_eq!(
            layout("oci:lay:127.0.0.1:5000/t/app:v1"),
            ("lay".into(), Some("127.0.0.1:5000/t/app:v1".into()))
        );
        assert_eq!(layout("oci:./a/b:v1").0, "./a/b");
        let digest = format!("sha256:{}", "ab".repeat(32));
        assert_eq!(name(&format!("oci:lay:{digest}")), Some(digest));
        for ok in ["v1", "V1.2-rc_3", "a--b", "a+b@c", "reg.io/a/b:1.0"] {
            assert_eq!(name(&format!("oci:lay:{ok}")).as_deref(), Some(ok));
        }
        assert_eq!(layout("oci:/tmp/x"), ("/tmp/x".into(), None));
    }

    #[test]
    fn invalid_layout_names_are_refused() {
        // Before: the whole of it became the directory `lay1:..`.
        let e = refused("oci:lay1:../evil");
        assert!(
            e.contains("image name \"../evil\"")
                && e.contains("does not start and end with a letter or digit")
                && e.contains("before the first ':' (\"lay1\")"),
            "{e}"
        );
        let e = refused("oci:lay1:bad name");
        assert!(e.contains("the character ' '"), "{e}");
        for bad in ["a//b", "a/", "-a", "a-", "a..b", "a---b", "a:", "ä"] {
            let e = refused(&format!("oci:lay:{bad}"));
            assert!(e.contains("invalid location"), "{bad}: {e}");
        }
        assert!(refused("oci:lay:").contains("is empty"));
        assert!(refused("oci::v1").contains("DIR before the first ':'"));
    }
}
