//! Content-derived image tags: a stable hash of the image section and of everything
//! that goes into the image, so identical inputs give identical tags (and identical
//! `render` output), and an image that differs gets another tag.
//!
//! A layer is hashed entry by entry from the same walk the layer builder writes
//! ([`hoist_fileset::entries`]): path, kind, full mode, file bytes, link target and file
//! capabilities, plus the mtime (`SOURCE_DATE_EPOCH`). A Docker build context is hashed
//! the same way under the builder's `.dockerignore`. A registry base is hashed by the
//! reference as written: render is offline, so `base: name@sha256:…` is how a tag follows
//! a base that moves.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::error::{ConfigError, ErrorKind};
use crate::files;
use crate::manifest::ImageSource;
use crate::project::{Project, Service};

/// `h-<12 hex>` for every service that has an image. A `platform` asked for
/// (`image build --platform`) is an input too: the same files built for another platform
/// are another image, and must not take the tag of the one built by default.
pub fn content_tags(
    p: &Project,
    platform: Option<&str>,
) -> Result<BTreeMap<String, String>, Vec<ConfigError>> {
    let mut tags = BTreeMap::new();
    let mut errors = Vec::new();
    // Every entry's mtime and the config's `created` time.
    let epoch = match hoist_fileset::source_date_epoch() {
        Ok(e) => e,
        Err(e) => {
            return Err(vec![
                ConfigError::new(ErrorKind::InvalidImage, e.to_string())
                    .help("every layer entry's mtime and the image's `created` time come from it, so the content tag hashes it"),
            ]);
        }
    };
    for svc in p.services.iter().filter(|s| s.image().is_some()) {
        let mut visiting = Vec::new();
        if let Err(e) = tag_of(p, svc, platform, epoch, &mut tags, &mut visiting) {
            errors.push(e);
        }
    }
    if errors.is_empty() {
        Ok(tags)
    } else {
        Err(errors)
    }
}

fn tag_of(
    p: &Project,
    svc: &Service,
    platform: Option<&str>,
    epoch: u64,
    memo: &mut BTreeMap<String, String>,
    visiting: &mut Vec<String>,
) -> Result<String, ConfigError> {
    if let Some(t) = memo.get(&svc.name) {
        return Ok(t.clone());
    }
    if visiting.contains(&svc.name) {
        visiting.push(svc.name.clone());
        return Err(ConfigError::new(
            ErrorKind::Cycle,
            format!("image base cycle: {}", visiting.join(" → ")),
        ));
    }
    visiting.push(svc.name.clone());
    let Some(img) = svc.image() else {
        return Ok(String::new());
    };
    let mut h = Sha256::new();
    // v2: directories, full modes and the epoch are hashed (every tag changed once).
    h.update(b"hoist-image-v2\0");
    h.update(serde_json::to_vec(img).unwrap_or_default());
    if let Some(platform) = platform {
        h.update(b"\0platform\0");
        h.update(platform.as_bytes());
    }
    // The default gives the images it always gave, so it keeps their tags too.
    if epoch != hoist_fileset::DEFAULT_EPOCH {
        h.update(b"\0epoch\0");
        h.update(epoch.to_string().as_bytes());
    }
    // A base that is another service's image changes when that image does.
    if let Some(base) = &img.base
        && let Some(base_svc) = p.service(base).filter(|b| b.image().is_some())
    {
        let t = tag_of(p, base_svc, platform, epoch, memo, visiting)?;
        h.update(b"\0base\0");
        h.update(t.as_bytes());
    }
    let fail = |e: String| {
        ConfigError::new(
            ErrorKind::MissingFile,
            format!("service `{}`: cannot read image input: {e}", svc.name),
        )
    };
    match img.source() {
        ImageSource::Layers => {
            for (i, layer) in img.layers.iter().enumerate() {
                h.update(b"\0layer\0");
                let at = |e: &dyn std::fmt::Display| {
                    fail(e.to_string()).at(svc.locate(
                        &["image", "layers", &i.to_string(), "from"],
                        "read from here",
                    ))
                };
                let entries = files::layer_entries(&svc.dir, layer).map_err(|e| at(&e))?;
                // A directory source copied to `/` writes no entry for the image root. A
                // relative destination is under the working directory (maybe only the base
                // knows which), so it may be written: hashed (at worst a tag moves when
                // the image would not).
                let root_written = !layer.to.starts_with('/')
                    || layer.to.split('/').any(|c| !c.is_empty() && c != ".");
                for e in entries {
                    if e.rel.is_empty() && !root_written {
                        continue;
                    }
                    hash_entry(&mut h, &e).map_err(|e| at(&e))?;
                }
            }
        }
        ImageSource::Dockerfile => {
            let df = svc.path(img.dockerfile.as_deref().unwrap_or("Dockerfile"));
            h.update(b"Dockerfile\0");
            let bytes = std::fs::read(&df).map_err(|e| fail(format!("{}: {e}", df.display())))?;
            h.update((bytes.len() as u64).to_le_bytes());
            h.update(&bytes);
            let ctx = svc.path(img.context.as_deref().unwrap_or("."));
            let at = |e: &dyn std::fmt::Display| {
                fail(e.to_string()).at(svc.locate(&["image", img.context_key()], "read from here"))
            };
            // What the builder sends: the context under its `.dockerignore`.
            let set = hoist_fileset::FileSet::for_docker_context(&ctx, &df).map_err(|e| at(&e))?;
            for e in hoist_fileset::entries(&ctx, &set).map_err(|e| at(&e))? {
                // The context directory itself is not copied (`COPY . /app` copies into it).
                if !e.rel.is_empty() {
                    hash_entry(&mut h, &e).map_err(|e| at(&e))?;
                }
            }
        }
    }
    let tag = format!("h-{}", &hex::encode(h.finalize())[..12]);
    visiting.pop();
    memo.insert(svc.name.clone(), tag.clone());
    Ok(tag)
}

/// One layer entry, as the layer holds it.
fn hash_entry(h: &mut Sha256, e: &hoist_fileset::LayerEntry) -> Result<(), String> {
    use hoist_fileset::EntryKind;
    h.update(e.rel.as_bytes());
    h.update(format!("\0{:o}\0", e.mode).as_bytes());
    match &e.kind {
        EntryKind::Dir => h.update(b"dir"),
        EntryKind::Symlink { target } => {
            h.update(b"symlink\0");
            h.update(target.as_os_str().as_encoded_bytes());
        }
        EntryKind::File { capability, .. } => {
            // A regular file by the walk (a FIFO never gets here, so this cannot block).
            let bytes =
                std::fs::read(&e.host).map_err(|err| format!("{}: {err}", e.host.display()))?;
            h.update(b"file\0");
            h.update((bytes.len() as u64).to_le_bytes());
            h.update(&bytes);
            if let Some(cap) = capability {
                h.update(b"\0capability\0");
                h.update(cap);
            }
        }
    }
    h.update([0]);
    Ok(())
}
