//! The files a user writes: `hoist.yaml` and `service.yaml`, as typed serde
//! structs. Unknown fields are rejected so typos surface with "did you mean".

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

/// `hoist.yaml` at the project root.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectFile {
    /// Project name (used for labels and the default namespace of dev sessions).
    pub name: String,
    /// Registry images are pushed to, e.g. `localhost:5000` (none: bare image names).
    #[serde(default)]
    pub registry: Option<String>,
    /// `auto`, `embedded`, or the name of a kubeconfig context.
    #[serde(default = "default_cluster")]
    pub cluster: String,
    /// Kubeconfig contexts hoist may deploy to (protects production clusters).
    #[serde(default)]
    pub allowed_contexts: Vec<String>,
    /// Globs (relative to the root) of directories holding a `service.yaml`.
    #[serde(default = "default_service_globs")]
    pub services: Vec<String>,
    /// Directory of molds, relative to the root.
    #[serde(default = "default_molds_dir")]
    pub molds: String,
    /// Values for every service's mold (over mold defaults, under service.yaml).
    #[serde(default)]
    pub values: Map<String, Value>,
    /// The per-developer settings file (git-ignored), relative to the root.
    #[serde(default = "default_settings_file")]
    pub settings_file: String,
    /// Where custom resources name an image (containers, initContainers and env
    /// values are found without this): `[{kind: Function, path: spec.image}]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_paths: Vec<ImagePath>,
    /// Test steps `hoist ci` runs on the host once every service is ready.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tests: Vec<TestStep>,
}

/// One place an image reference lives in objects of one kind.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ImagePath {
    /// The object kind, e.g. `Function` (any apiVersion).
    pub kind: String,
    /// Dot-separated field path; `[]` after a field walks every item of a list,
    /// e.g. `spec.image` or `spec.steps[].image`.
    pub path: String,
}

impl ImagePath {
    /// The path's segments: (field, walk list items).
    pub fn segments(&self) -> Result<Vec<(&str, bool)>, String> {
        if self.path.trim().is_empty() {
            return Err("the path is empty".into());
        }
        self.path
            .split('.')
            .map(|seg| {
                let (name, each) = match seg.strip_suffix("[]") {
                    Some(n) => (n, true),
                    None => (seg, false),
                };
                if name.is_empty()
                    || !name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                {
                    Err(format!(
                        "`{seg}` is not a field name (letters, digits, `_`, `-`, optionally followed by `[]`)"
                    ))
                } else {
                    Ok((name, each))
                }
            })
            .collect()
    }
}

/// A test step of `hoist ci`: a shell command run on the host.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TestStep {
    pub name: String,
    /// Run with `sh -c` in the project root. Port-forward addresses are in the
    /// environment as `HOIST_<SERVICE>_<PORT>_ADDR` (upper case, `-` → `_`).
    pub run: String,
    /// `30s`, `5m`, `1h` or plain seconds; default 5m.
    #[serde(default, deserialize_with = "scalar_opt")]
    pub timeout: Option<String>,
}

impl TestStep {
    pub const DEFAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

    /// The timeout, or why it cannot be read.
    pub fn timeout(&self) -> Result<std::time::Duration, String> {
        match &self.timeout {
            None => Ok(Self::DEFAULT_TIMEOUT),
            Some(t) => parse_duration(t),
        }
    }
}

/// `90`, `90s`, `5m`, `1h`, `250ms`.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let t = s.trim();
    let (num, unit) = match t.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => (&t[..i], &t[i..]),
        None => (t, "s"),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration (expected e.g. `30s`, `5m`, `1h`)"))?;
    let secs = |m: u64| std::time::Duration::from_secs(n.saturating_mul(m));
    match unit {
        "ms" => Ok(std::time::Duration::from_millis(n)),
        "s" => Ok(secs(1)),
        "m" => Ok(secs(60)),
        "h" => Ok(secs(3600)),
        _ => Err(format!(
            "`{s}` has an unknown unit `{unit}` (expected ms, s, m or h)"
        )),
    }
}

fn default_cluster() -> String {
    "auto".into()
}
pub fn default_service_globs() -> Vec<String> {
    vec!["services/*".into()]
}
fn default_molds_dir() -> String {
    "molds".into()
}
pub fn default_settings_file() -> String {
    "hoist-settings.yaml".into()
}

/// One `service.yaml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceFile {
    /// The service name: a DNS-1123 label (lowercase letters, digits, `-`).
    pub name: String,
    /// The mold (template directory) that produces this service's objects.
    #[serde(default)]
    pub mold: Option<String>,
    /// Mold parameters. `params` is accepted as an alias.
    #[serde(default, alias = "params")]
    pub values: Map<String, Value>,
    #[serde(default)]
    pub image: Option<ImageSpec>,
    #[serde(default)]
    pub ports: Vec<PortSpec>,
    #[serde(default, deserialize_with = "scalar_map")]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub depends_on: Vec<String>,
    #[serde(default)]
    pub live_update: Option<LiveUpdate>,
    #[serde(default)]
    pub debug_port: Option<u16>,
    /// Extra raw Kubernetes YAML files or globs, relative to the service directory.
    #[serde(default)]
    pub k8s: Vec<String>,
    /// A kustomize directory, relative to the service directory.
    #[serde(default)]
    pub kustomize: Option<String>,
    #[serde(default)]
    pub helm: Option<HelmSpec>,
    /// `false` keeps the service out of `up`/`render` unless a developer enables it.
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

/// How a service's image is made: appended layers on a base (daemonless) or a Dockerfile.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ImageSpec {
    /// Repository name; default: the service name. The registry comes from hoist.yaml.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `scratch`, an image reference, or another service's name (its image).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<LayerSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    #[serde(
        default,
        deserialize_with = "scalar_map",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub env: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workdir: Option<String>,
    #[serde(
        default,
        deserialize_with = "scalar_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub user: Option<String>,
    #[serde(
        default,
        deserialize_with = "scalar_map",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub labels: BTreeMap<String, String>,
    /// Dockerfile path relative to the service directory (the Dockerfile path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dockerfile: Option<String>,
    /// Build context relative to the service directory (default `.`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    #[serde(
        default,
        deserialize_with = "scalar_map",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub args: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

impl ImageSpec {
    /// Which of the two build paths this image uses.
    pub fn source(&self) -> ImageSource {
        if self.dockerfile.is_some() {
            ImageSource::Dockerfile
        } else {
            ImageSource::Layers
        }
    }

    /// The base image (`scratch` when unset).
    pub fn base_or_scratch(&self) -> &str {
        self.base.as_deref().unwrap_or("scratch")
    }

    /// The service.yaml key that names a Dockerfile build's context, for errors about it:
    /// `context` when given, else `dockerfile` (the context is its directory's).
    pub fn context_key(&self) -> &'static str {
        if self.context.is_some() {
            "context"
        } else {
            "dockerfile"
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageSource {
    Layers,
    Dockerfile,
}

/// Files copied into an image layer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LayerSpec {
    /// Source path: relative to the service directory, or absolute on the host.
    pub from: String,
    /// Destination path in the image.
    pub to: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PortSpec {
    pub name: String,
    /// Container port.
    pub port: u16,
    /// Local port for port-forward during development.
    #[serde(default)]
    pub local: Option<u16>,
}

/// Updating a running container without rebuilding its image.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LiveUpdate {
    #[serde(default)]
    pub sync: Vec<SyncRule>,
    #[serde(default)]
    pub run: Vec<RunRule>,
    /// Restart the container's process after syncing.
    #[serde(default)]
    pub restart: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SyncRule {
    /// Local path relative to the service directory.
    pub from: String,
    /// Path in the container.
    pub to: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RunRule {
    /// Shell command run in the container (`sh -c`).
    pub cmd: String,
    /// Run only when a synced file matches one of these globs (empty: always).
    #[serde(default)]
    pub trigger: Vec<String>,
}

/// A Helm chart rendered with `helm template`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HelmSpec {
    /// Chart directory relative to the service directory.
    pub chart: String,
    /// Release name (default: the service name).
    #[serde(default)]
    pub release: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
    /// Values files relative to the service directory.
    #[serde(default)]
    pub values_files: Vec<String>,
    /// Inline values (highest precedence).
    #[serde(default)]
    pub values: Map<String, Value>,
}

/// A map of YAML scalars, each taken as the string it is written as (so `PORT: 8080`
/// works in env maps, and `1.20`, `0x1F` or `017` stay exactly that); a key with no value
/// is refused, naming it.
fn scalar_map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    struct Entries;
    impl<'de> serde::de::Visitor<'de> for Entries {
        type Value = BTreeMap<String, String>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a map of names to strings, numbers or booleans")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some(k) = map.next_key::<String>()? {
                match map.next_value::<Option<Scalar>>()? {
                    Some(v) => out.insert(k, v.0),
                    None => {
                        return Err(serde::de::Error::custom(format!(
                            "`{k}` has no value (YAML null): write `{k}: \"\"` for an empty \
                             string, or remove the key"
                        )));
                    }
                };
            }
            Ok(out)
        }
    }
    d.deserialize_map(Entries)
}

/// An optional scalar, taken as written; null is "not set".
fn scalar_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<Scalar>::deserialize(d)?.map(|s| s.0))
}

/// A scalar's text as written. Read as a typed value, YAML would turn `GO_VERSION: 1.20`
/// into `1.2`, `MASK: 0x1F` into `31` and `ZIP: 01234` into `1234`; asked for a string,
/// the parser hands over a plain scalar's own text. (Null is told apart before, by
/// `Option`: as text it would be `~` or `null`, which nobody means.)
struct Scalar(String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Text;
        impl serde::de::Visitor<'_> for Text {
            type Value = Scalar;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string, number or boolean")
            }
            fn visit_str<E>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
        }
        d.deserialize_str(Text)
    }
}
