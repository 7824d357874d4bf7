//! Manifests, indexes and image configs: OCI and Docker schema 2, one set of types.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::digest::Digest;
use crate::error::{Error, Result};

pub mod media {
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
    pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
    pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

    /// Everything we can read, for the `Accept` header.
    pub const ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

    pub fn is_index(m: &str) -> bool {
        m == OCI_INDEX || m == DOCKER_LIST
    }
    pub fn is_manifest(m: &str) -> bool {
        m == OCI_MANIFEST || m == DOCKER_MANIFEST
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

impl Descriptor {
    pub fn new(media_type: impl Into<String>, digest: Digest, size: u64) -> Self {
        Self {
            media_type: media_type.into(),
            digest,
            size,
            platform: None,
            urls: None,
            annotations: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
}

impl Platform {
    pub fn linux_amd64() -> Self {
        Self {
            architecture: "amd64".into(),
            os: "linux".into(),
            variant: None,
            os_version: None,
        }
    }

    /// Does an index entry's platform satisfy this wanted platform? A wanted variant must match;
    /// an unspecified one accepts any (arm64 images often say `v8`).
    pub fn matches(&self, have: &Platform) -> bool {
        self.os == have.os
            && self.architecture == have.architecture
            && (self.variant.is_none() || self.variant == have.variant)
    }
}

impl FromStr for Platform {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let parts: Vec<&str> = s.split('/').collect();
        let bad = || Error::InvalidPlatform { input: s.into() };
        if parts.iter().any(|p| p.is_empty()) {
            return Err(bad());
        }
        match parts.as_slice() {
            [os, arch] => Ok(Self {
                os: (*os).into(),
                architecture: (*arch).into(),
                variant: None,
                os_version: None,
            }),
            [os, arch, v] => Ok(Self {
                os: (*os).into(),
                architecture: (*arch).into(),
                variant: Some((*v).into()),
                os_version: None,
            }),
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// An image manifest (OCI or Docker schema 2: same shape).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImageManifest {
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    #[serde(rename = "mediaType", default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

impl ImageManifest {
    /// The media type to PUT this manifest with.
    pub fn content_type(&self) -> &str {
        self.media_type.as_deref().unwrap_or(media::OCI_MANIFEST)
    }
    pub fn is_docker(&self) -> bool {
        self.media_type.as_deref() == Some(media::DOCKER_MANIFEST)
            || self.config.media_type == media::DOCKER_CONFIG
    }

    /// Refuse an OCI artifact (a Helm chart, a signature, an SBOM): hoist copies one as it
    /// is, but cannot build on it, run it or read its config as an image's. `what` names it.
    pub fn ensure_image(&self, what: &str) -> Result<()> {
        match self.config.media_type.as_str() {
            media::OCI_CONFIG | media::DOCKER_CONFIG => Ok(()),
            other => Err(Error::NotAnImage {
                what: what.into(),
                config_type: other.into(),
            }),
        }
    }
}

/// An image index (OCI) or manifest list (Docker).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImageIndex {
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    #[serde(rename = "mediaType", default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

impl ImageIndex {
    pub fn select(&self, wanted: &Platform, reference: &str) -> Result<&Descriptor> {
        self.manifests
            .iter()
            .find(|d| d.platform.as_ref().is_some_and(|p| wanted.matches(p)))
            .ok_or_else(|| Error::NoMatchingPlatform {
                reference: reference.into(),
                wanted: wanted.to_string(),
                available: self
                    .manifests
                    .iter()
                    .filter_map(|d| d.platform.as_ref().map(|p| p.to_string()))
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }
}

/// A manifest as fetched: the exact bytes (their digest is the image's identity) plus the parse.
#[derive(Clone, Debug)]
pub struct RawManifest {
    pub bytes: Vec<u8>,
    pub media_type: String,
    pub digest: Digest,
}

pub enum Parsed {
    Image(Box<ImageManifest>),
    Index(ImageIndex),
}

impl RawManifest {
    pub fn new(bytes: Vec<u8>, content_type: Option<&str>) -> Result<Self> {
        let digest = Digest::of(&bytes);
        let v: Value = serde_json::from_slice(&bytes).map_err(|source| Error::Json {
            what: "manifest".into(),
            source,
        })?;
        let field = v.get("mediaType").and_then(Value::as_str);
        // The body's own mediaType wins; the Content-Type header is a fallback (some servers say
        // application/json).
        let media_type = match (field, content_type) {
            (Some(m), _) => m.to_string(),
            (None, Some(c)) if media::is_index(c) || media::is_manifest(c) => c.to_string(),
            (None, _) if v.get("manifests").is_some() => media::OCI_INDEX.to_string(),
            (None, _) => media::OCI_MANIFEST.to_string(),
        };
        if !media::is_index(&media_type) && !media::is_manifest(&media_type) {
            return Err(Error::UnsupportedMediaType {
                what: "manifest".into(),
                media_type,
            });
        }
        Ok(Self {
            bytes,
            media_type,
            digest,
        })
    }

    pub fn parse(&self) -> Result<Parsed> {
        let what = || format!("manifest {}", self.digest);
        if media::is_index(&self.media_type) {
            serde_json::from_slice(&self.bytes)
                .map(Parsed::Index)
                .map_err(|source| Error::Json {
                    what: what(),
                    source,
                })
        } else {
            serde_json::from_slice(&self.bytes)
                .map(Parsed::Image)
                .map_err(|source| Error::Json {
                    what: what(),
                    source,
                })
        }
    }

    pub fn image(&self) -> Result<ImageManifest> {
        match self.parse()? {
            Parsed::Image(m) => Ok(*m),
            Parsed::Index(_) => Err(Error::UnsupportedMediaType {
                what: "image manifest".into(),
                media_type: self.media_type.clone(),
            }),
        }
    }

    pub fn descriptor(&self) -> Descriptor {
        Descriptor::new(
            self.media_type.clone(),
            self.digest.clone(),
            self.bytes.len() as u64,
        )
    }
}

/// The image config. Unknown fields are kept as they were so a config we edit loses nothing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImageConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ContainerConfig>,
    pub rootfs: RootFs,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<History>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ImageConfig {
    pub fn empty(platform: &Platform) -> Self {
        Self {
            created: None,
            architecture: platform.architecture.clone(),
            os: platform.os.clone(),
            variant: platform.variant.clone(),
            config: Some(ContainerConfig::default()),
            rootfs: RootFs {
                kind: "layers".into(),
                diff_ids: vec![],
            },
            history: vec![],
            extra: Map::new(),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ContainerConfig {
    #[serde(rename = "User", default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(rename = "Env", default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    #[serde(
        rename = "Entrypoint",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub entrypoint: Option<Vec<String>>,
    #[serde(rename = "Cmd", default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    #[serde(
        rename = "WorkingDir",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub working_dir: Option<String>,
    #[serde(rename = "Labels", default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub diff_ids: Vec<Digest>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub empty_layer: bool,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ImageConfig {
    /// The platform this config says the image is for.
    pub fn platform(&self) -> Platform {
        Platform {
            architecture: self.architecture.clone(),
            os: self.os.clone(),
            variant: self.variant.clone(),
            os_version: None,
        }
    }

    /// When a platform was asked for explicitly, refuse an image for another one (an index
    /// is resolved by platform; a single image just is what it is). `what` names it.
    pub fn ensure_platform(&self, wanted: &Platform, what: &str) -> Result<()> {
        let have = self.platform();
        if wanted.matches(&have) {
            return Ok(());
        }
        Err(Error::PlatformMismatch {
            what: what.into(),
            wanted: wanted.to_string(),
            have: have.to_string(),
        })
    }
}

pub fn parse_config(bytes: &[u8], digest: &Digest) -> Result<ImageConfig> {
    serde_json::from_slice(bytes).map_err(|source| Error::Json {
        what: format!("image config {digest}"),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selects_platform() {
        let d = |p: &str| {
            let mut x = Descriptor::new(media::OCI_MANIFEST, Digest::of(p.as_bytes()), 1);
            x.platform = Some(p.parse().unwrap());
            x
        };
        let idx = ImageIndex {
            schema_version: 2,
            media_type: Some(media::OCI_INDEX.into()),
            manifests: vec![d("linux/arm64/v8"), d("linux/amd64")],
            annotations: None,
        };
        assert_eq!(
            idx.select(&Platform::linux_amd64(), "x").unwrap().digest,
            Digest::of(b"linux/amd64")
        );
        assert_eq!(
            idx.select(&"linux/arm64".parse().unwrap(), "x")
                .unwrap()
                .digest,
            Digest::of(b"linux/arm64/v8")
        );
        let e = idx
            .select(&"linux/s390x".parse().unwrap(), "img")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("linux/s390x") && e.contains("linux/arm64/v8, linux/amd64"),
            "{e}"
        );
        assert!("linux".parse::<Platform>().is_err());
    }

    #[test]
    fn config_round_trips_unknown_fields() {
        let src = r#"{"architecture":"amd64","os":"linux","config":{"Env":["A=1"],"ExposedPorts":{"80/tcp":{}}},"rootfs":{"type":"layers","diff_ids":[]},"os.features":["x"]}"#;
        let c: ImageConfig = serde_json::from_str(src).unwrap();
        let out = serde_json::to_string(&c).unwrap();
        assert!(
            out.contains("ExposedPorts") && out.contains("os.features"),
            "{out}"
        );
    }

    #[test]
    fn raw_manifest_media_type() {
        let m = br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json","manifests":[]}"#;
        let r = RawManifest::new(m.to_vec(), Some("application/json")).unwrap();
        assert!(matches!(r.parse().unwrap(), Parsed::Index(_)));
        assert!(RawManifest::new(br#"{"schemaVersion":1,"mediaType":"application/vnd.docker.distribution.manifest.v1+json"}"#.to_vec(), None).is_err());
    }
}
