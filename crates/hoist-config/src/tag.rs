//! Content-derived image tags: a stable hash of the image section and the
//! bytes of everything that goes into the image, so identical inputs give
//! identical tags (and identical `render` output).

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
    for svc in p.services.iter().filter(|s| s.image().is_some()) {
        let mut visiting = Vec::new();
        if let Err(e) = tag_of(p, svc, platform, &mut tags, &mut visiting) {
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
    h.update(b"hoist-image-v1\0");
    h.update(serde_json::to_vec(img).unwrap_or_default());
    if let Some(platform) = platform {
        h.update(b"\0platform\0");
        h.update(platform.as_bytes());
    }
    // A base that is another service's image changes when that image does.
    if let Some(base) = &img.base
        && let Some(base_svc) = p.service(base).filter(|b| b.image().is_some())
    {
        let t = tag_of(p, base_svc, platform, memo, visiting)?;
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
            for layer in &img.layers {
                h.update(b"\0layer\0");
                for f in files::layer_files(&svc.dir, layer).map_err(fail)? {
                    hash_file(&mut h, &f.rel, &f.host).map_err(fail)?;
                }
            }
        }
        ImageSource::Dockerfile => {
            let df = svc.path(img.dockerfile.as_deref().unwrap_or("Dockerfile"));
            hash_file(&mut h, "Dockerfile", &df).map_err(fail)?;
            let ctx = svc.path(img.context.as_deref().unwrap_or("."));
            for f in files::walk(&ctx).map_err(|e| fail(e.to_string()))? {
                let rel = files::rel_slash(&f, &ctx);
                if rel.split('/').any(|c| c == ".git") {
                    continue;
                }
                hash_file(&mut h, &rel, &f).map_err(fail)?;
            }
        }
    }
    let tag = format!("h-{}", &hex::encode(h.finalize())[..12]);
    visiting.pop();
    memo.insert(svc.name.clone(), tag.clone());
    Ok(tag)
}

fn hash_file(h: &mut Sha256, rel: &str, path: &std::path::Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::symlink_metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    h.update(rel.as_bytes());
    h.update([0]);
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(path).map_err(|e| format!("{}: {e}", path.display()))?;
        h.update(b"symlink\0");
        h.update(target.as_os_str().as_encoded_bytes());
    } else {
        let exec = meta.permissions().mode() & 0o111 != 0;
        h.update(if exec { b"x" } else { b"-" });
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(&bytes);
        // The layer keeps file capabilities (`setcap`), so the tag hashes them; a file
        // without any hashes as it always did.
        if let Some(cap) = hoist_fileset::file_capability(path) {
            h.update(b"\0capability\0");
            h.update(&cap);
        }
    }
    h.update([0]);
    Ok(())
}
