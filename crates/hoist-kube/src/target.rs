//! Which cluster and namespace hoist talks to, and the guard that keeps it off
//! production: contexts that look remote are refused unless explicitly allowed.

use std::net::IpAddr;
use std::path::PathBuf;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde_json::json;

use crate::error::{KubeError, Result};

/// The name of the context `hoist cluster up` writes for the embedded cluster.
pub const EMBEDDED_CONTEXT: &str = "hoist";

/// Context names of well-known local development clusters.
const LOCAL_CONTEXT_NAMES: &[&str] = &[
    "minikube",
    "docker-desktop",
    "docker-for-desktop",
    "rancher-desktop",
    "orbstack",
    "colima",
];
const LOCAL_CONTEXT_PREFIXES: &[&str] = &["kind-", "k3d-", "colima-"];

/// What the caller knows about the wanted cluster; resolved against a kubeconfig.
#[derive(Debug, Clone, Default)]
pub struct TargetOptions {
    /// Kubeconfig file; `None`: `$KUBECONFIG`, else `~/.kube/config`.
    pub kubeconfig: Option<PathBuf>,
    /// `--context` on the command line (wins over everything).
    pub context: Option<String>,
    /// The project's choice (hoist.yaml/settings `cluster:` naming a context).
    pub project_context: Option<String>,
    /// When nothing names a context and the current one is not usable (missing, or
    /// remote and not allowed), use the embedded cluster's (`hoist`).
    pub prefer_embedded: bool,
    /// Use the kubeconfig's current context when nothing else names one.
    pub allow_current_context: bool,
    /// Contexts that may be used although they look remote (`allowed_contexts`).
    pub allowed_contexts: Vec<String>,
    /// Project name: the default namespace is `<project>-<developer>`.
    pub project: String,
    /// An explicit namespace (overrides the default).
    pub namespace: Option<String>,
    /// The developer; `None`: `$HOIST_USER`, else `$USER`, else `dev`.
    pub developer: Option<String>,
}

impl TargetOptions {
    /// Applies the project's `cluster:` setting: `auto` (the current context if it is
    /// local or allowed, else the embedded cluster's), `embedded` (the `hoist` context)
    /// or the name of a kubeconfig context.
    pub fn with_cluster_setting(mut self, setting: &str) -> Self {
        match setting {
            "auto" | "" => {
                self.prefer_embedded = true;
                self.allow_current_context = true;
            }
            "embedded" => self.project_context = Some(EMBEDDED_CONTEXT.into()),
            context => self.project_context = Some(context.into()),
        }
        self
    }
}

/// Why a context counts as local (or that it does not).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Locality {
    /// The embedded hoist cluster.
    Embedded,
    /// The API server address is loopback.
    Loopback,
    /// A well-known local cluster by context name (kind-*, minikube, ...).
    KnownLocal,
    Remote,
}

impl Locality {
    pub fn is_local(&self) -> bool {
        !matches!(self, Locality::Remote)
    }
}

/// A resolved choice: context, server, namespace and developer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterTarget {
    pub context: String,
    pub server: String,
    pub locality: Locality,
    pub namespace: String,
    pub developer: String,
    pub project: String,
    /// The kubeconfig file used (`None`: the default lookup).
    pub kubeconfig: Option<PathBuf>,
}

/// Classifies a context by name and API server URL.
pub fn classify(context: &str, server: &str) -> Locality {
    if context == EMBEDDED_CONTEXT {
        return Locality::Embedded;
    }
    if server_is_loopback(server) {
        return Locality::Loopback;
    }
    if LOCAL_CONTEXT_NAMES.contains(&context)
        || LOCAL_CONTEXT_PREFIXES
            .iter()
            .any(|p| context.starts_with(p))
    {
        return Locality::KnownLocal;
    }
    Locality::Remote
}

/// True when the URL's host is `localhost` or a loopback IP (127.0.0.0/8, ::1).
pub fn server_is_loopback(server: &str) -> bool {
    let rest = server.split_once("://").map_or(server, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(stripped) = authority.strip_prefix('[') {
        stripped.split(']').next().unwrap_or("")
    } else {
        authority.split(':').next().unwrap_or("")
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    host == "localhost"
        || host.ends_with(".localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Lowercases and maps anything outside `[a-z0-9-]` to `-`, trims `-` at both ends and
/// cuts to `max` characters: a DNS-1123 label fragment (`""` if nothing is left).
pub fn sanitize_dns1123(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let mut out: String = out.trim_matches('-').chars().take(max).collect();
    while out.ends_with('-') {
        out.pop();
    }
    out
}

pub fn is_dns1123_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// The developer name: explicit, else `$HOIST_USER`, else `$USER`, sanitised; `dev` if empty.
pub fn developer_name(explicit: Option<&str>) -> String {
    let raw = explicit
        .map(String::from)
        .or_else(|| std::env::var("HOIST_USER").ok().filter(|s| !s.is_empty()))
        .or_else(|| std::env::var("USER").ok().filter(|s| !s.is_empty()))
        .unwrap_or_default();
    let s = sanitize_dns1123(&raw, 30);
    if s.is_empty() { "dev".into() } else { s }
}

/// `<project>-<developer>`, both sanitised, at most 63 characters.
pub fn default_namespace(project: &str, developer: &str) -> String {
    let p = sanitize_dns1123(project, 32);
    let d = sanitize_dns1123(developer, 63 - p.len().min(62) - 1);
    match (p.is_empty(), d.is_empty()) {
        (false, false) => format!("{p}-{d}"),
        (false, true) => p,
        (true, false) => d,
        (true, true) => "hoist".into(),
    }
}

impl ClusterTarget {
    /// Reads the kubeconfig named by the options (or the default one) and resolves.
    pub fn from_options(opts: &TargetOptions) -> Result<Self> {
        let kc = read_kubeconfig(opts)?;
        Self::resolve(&kc, opts)
    }

    /// Chooses the context (explicit > project > current if allowed), classifies it,
    /// applies the remote guard and computes the namespace. Pure: no I/O.
    pub fn resolve(kc: &Kubeconfig, opts: &TargetOptions) -> Result<Self> {
        let name = match opts
            .context
            .clone()
            .or_else(|| opts.project_context.clone())
        {
            Some(n) if !n.is_empty() => n,
            _ => Self::fallback_context(kc, opts)?,
        };
        let ctx = kc.contexts.iter().find(|c| c.name == name).ok_or_else(|| {
            if name == EMBEDDED_CONTEXT {
                KubeError::NoEmbeddedContext
            } else {
                KubeError::UnknownContext {
                    name: name.clone(),
                    known: known_contexts(kc),
                }
            }
        })?;
        let cluster_name = ctx
            .context
            .as_ref()
            .map(|c| c.cluster.as_str())
            .unwrap_or("");
        let server = kc
            .clusters
            .iter()
            .find(|c| c.name == cluster_name)
            .and_then(|c| c.cluster.as_ref())
            .and_then(|c| c.server.clone())
            .unwrap_or_default();
        let locality = classify(&name, &server);
        if !locality.is_local() && !opts.allowed_contexts.iter().any(|a| a == &name) {
            return Err(KubeError::RemoteContextRefused {
                context: name,
                server: if server.is_empty() {
                    "unknown".into()
                } else {
                    server
                },
            });
        }
        let developer = developer_name(opts.developer.as_deref());
        let namespace = match &opts.namespace {
            Some(ns) if is_dns1123_label(ns) => ns.clone(),
            Some(ns) => return Err(KubeError::InvalidNamespace(ns.clone())),
            None => default_namespace(&opts.project, &developer),
        };
        Ok(ClusterTarget {
            context: name,
            server,
            locality,
            namespace,
            developer,
            project: opts.project.clone(),
            kubeconfig: opts.kubeconfig.clone(),
        })
    }

    /// No context named: the current one if it passes the guard, else the embedded
    /// cluster's (when preferred and present), else the current one (to be refused).
    fn fallback_context(kc: &Kubeconfig, opts: &TargetOptions) -> Result<String> {
        let current = opts
            .allow_current_context
            .then(|| kc.current_context.clone())
            .flatten()
            .filter(|c| !c.is_empty());
        let usable = |name: &str| {
            classify(name, &server_of(kc, name)).is_local()
                || opts.allowed_contexts.iter().any(|a| a == name)
        };
        let has_embedded = kc.contexts.iter().any(|c| c.name == EMBEDDED_CONTEXT);
        match current {
            Some(c) if usable(&c) => Ok(c),
            _ if opts.prefer_embedded && has_embedded => Ok(EMBEDDED_CONTEXT.into()),
            Some(c) => Ok(c),
            None if opts.prefer_embedded => Err(KubeError::NoEmbeddedContext),
            None => Err(KubeError::NoContext),
        }
    }

    /// A kube-rs client for this context.
    pub async fn client(&self) -> Result<Client> {
        install_crypto_provider();
        let kc = match &self.kubeconfig {
            Some(p) => Kubeconfig::read_from(p),
            None => Kubeconfig::read(),
        }
        .map_err(|e| KubeError::Kubeconfig(e.to_string()))?;
        let options = KubeConfigOptions {
            context: Some(self.context.clone()),
            ..Default::default()
        };
        let mut config = Config::from_custom_kubeconfig(kc, &options)
            .await
            .map_err(|e| KubeError::Kubeconfig(format!("context `{}`: {e}", self.context)))?;
        config.default_namespace = self.namespace.clone();
        Client::try_from(config)
            .map_err(|e| KubeError::Kubeconfig(format!("context `{}`: {e}", self.context)))
    }

    /// Creates the namespace if it does not exist. Returns true when it was created.
    pub async fn ensure_namespace(&self, client: &Client) -> Result<bool> {
        ensure_namespace(client, &self.namespace).await
    }
}

/// Creates `name` if missing (an existing one, even terminating, is left alone).
pub async fn ensure_namespace(client: &Client, name: &str) -> Result<bool> {
    let api: Api<Namespace> = Api::all(client.clone());
    let what = format!("Namespace/{name}");
    if api
        .get_opt(name)
        .await
        .map_err(|e| KubeError::api("get", &what, e))?
        .is_some()
    {
        return Ok(false);
    }
    let ns: Namespace = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}
    }))
    .expect("a Namespace literal");
    match api.create(&PostParams::default(), &ns).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(KubeError::api("create", what, e)),
    }
}

/// rustls needs one process-wide crypto provider; hoist uses `ring` only.
pub fn install_crypto_provider() {
    // Err means one is installed already, which is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn read_kubeconfig(opts: &TargetOptions) -> Result<Kubeconfig> {
    match &opts.kubeconfig {
        Some(p) => Kubeconfig::read_from(p),
        None => Kubeconfig::read(),
    }
    .map_err(|e| KubeError::Kubeconfig(e.to_string()))
}

/// The API server URL of a context (`""` when the kubeconfig does not say).
fn server_of(kc: &Kubeconfig, context: &str) -> String {
    let cluster = kc
        .contexts
        .iter()
        .find(|c| c.name == context)
        .and_then(|c| c.context.as_ref())
        .map(|c| c.cluster.as_str())
        .unwrap_or("");
    kc.clusters
        .iter()
        .find(|c| c.name == cluster)
        .and_then(|c| c.cluster.as_ref())
        .and_then(|c| c.server.clone())
        .unwrap_or_default()
}

fn known_contexts(kc: &Kubeconfig) -> String {
    if kc.contexts.is_empty() {
        return "none".into();
    }
    kc.contexts
        .iter()
        .map(|c| c.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kubeconfig() -> Kubeconfig {
        Kubeconfig::from_yaml(
            "apiVersion: v1\nkind: Config\nclusters:\n\
- {name: prod, cluster: {server: 'https://k8s.example.com:6443'}}\n\
- {name: kind, cluster: {server: 'https://kind.internal:6443'}}\n\
- {name: loop, cluster: {server: 'https://127.0.0.1:6443'}}\n\
- {name: hoist, cluster: {server: 'https://127.0.0.1:7443'}}\n\
contexts:\n\
- {name: prod, context: {cluster: prod, user: me}}\n\
- {name: kind-dev, context: {cluster: kind, user: me}}\n\
- {name: lab, context: {cluster: loop, user: me}}\n\
- {name: hoist, context: {cluster: hoist, user: me}}\n\
current-context: prod\nusers: []\n",
        )
        .unwrap()
    }

    fn opts() -> TargetOptions {
        TargetOptions {
            project: "shop".into(),
            developer: Some("Ann.Lee".into()),
            allow_current_context: true,
            ..Default::default()
        }
    }

    #[test]
    fn loopback_hosts() {
        for s in [
            "https://127.0.0.1:6443",
            "https://127.3.4.5",
            "https://[::1]:443/",
            "http://localhost:8080",
            "https://api.localhost",
            "https://user@127.0.0.1:1",
        ] {
            assert!(server_is_loopback(s), "{s}");
        }
        for s in [
            "https://k8s.example.com",
            "https://203.0.113.9:6443",
            "https://[2001:db8::1]",
            "https://localhost.example.com",
            "",
        ] {
            assert!(!server_is_loopback(s), "{s}");
        }
    }

    #[test]
    fn classification() {
        assert_eq!(classify("hoist", "https://x.example"), Locality::Embedded);
        assert_eq!(
            classify("kind-a", "https://x.example"),
            Locality::KnownLocal
        );
        assert_eq!(classify("k3d-x", "https://x.example"), Locality::KnownLocal);
        assert_eq!(
            classify("minikube", "https://192.0.2.1"),
            Locality::KnownLocal
        );
        assert_eq!(classify("orbstack", "https://x"), Locality::KnownLocal);
        assert_eq!(classify("prod", "https://127.0.0.1:1"), Locality::Loopback);
        assert_eq!(
            classify("prod", "https://k8s.example.com"),
            Locality::Remote
        );
        assert_eq!(
            classify("kindling", "https://k8s.example.com"),
            Locality::Remote
        );
    }

    #[test]
    fn precedence_explicit_then_project_then_current() {
        let kc = kubeconfig();
        let mut o = opts();
        o.context = Some("lab".into());
        o.project_context = Some("kind-dev".into());
        assert_eq!(ClusterTarget::resolve(&kc, &o).unwrap().context, "lab");
        o.context = None;
        let t = ClusterTarget::resolve(&kc, &o).unwrap();
        assert_eq!(
            (t.context.as_str(), &t.locality),
            ("kind-dev", &Locality::KnownLocal)
        );
        o.project_context = None;
        o.allow_current_context = false;
        assert!(matches!(
            ClusterTarget::resolve(&kc, &o),
            Err(KubeError::NoContext)
        ));
    }

    #[test]
    fn cluster_setting() {
        let kc = kubeconfig();
        let base = || TargetOptions {
            project: "shop".into(),
            ..Default::default()
        };
        let t = ClusterTarget::resolve(&kc, &base().with_cluster_setting("auto")).unwrap();
        assert_eq!(
            (t.context.as_str(), &t.locality),
            ("hoist", &Locality::Embedded)
        );
        let t = ClusterTarget::resolve(&kc, &base().with_cluster_setting("kind-dev")).unwrap();
        assert_eq!(t.context, "kind-dev");
        let mut no_hoist = kc.clone();
        no_hoist.contexts.retain(|c| c.name != "hoist");
        // auto without the embedded context falls back to the current one (guarded).
        let err =
            ClusterTarget::resolve(&no_hoist, &base().with_cluster_setting("auto")).unwrap_err();
        assert!(
            matches!(err, KubeError::RemoteContextRefused { .. }),
            "{err}"
        );
        let err = ClusterTarget::resolve(&no_hoist, &base().with_cluster_setting("embedded"))
            .unwrap_err();
        assert!(
            err.to_string().contains("start it with `hoist cluster up`"),
            "{err}"
        );
    }

    #[test]
    fn remote_refused_with_the_line_to_add() {
        let kc = kubeconfig();
        let err = ClusterTarget::resolve(&kc, &opts()).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("refusing to deploy to kubeconfig context `prod`"),
            "{msg}"
        );
        assert!(msg.contains("https://k8s.example.com:6443"), "{msg}");
        assert!(msg.contains("allowed_contexts:\n    - prod\n"), "{msg}");
        let mut o = opts();
        o.allowed_contexts = vec!["prod".into()];
        let t = ClusterTarget::resolve(&kc, &o).unwrap();
        assert_eq!(
            (t.context.as_str(), &t.locality),
            ("prod", &Locality::Remote)
        );
    }

    #[test]
    fn unknown_context_lists_known_ones() {
        let mut o = opts();
        o.context = Some("nope".into());
        let msg = ClusterTarget::resolve(&kubeconfig(), &o)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("`nope` does not exist (known contexts: prod, kind-dev, lab, hoist)"),
            "{msg}"
        );
    }

    #[test]
    fn namespaces() {
        let mut o = opts();
        o.context = Some("hoist".into());
        assert_eq!(
            ClusterTarget::resolve(&kubeconfig(), &o).unwrap().namespace,
            "shop-ann-lee"
        );
        o.namespace = Some("Bad_NS".into());
        assert!(matches!(
            ClusterTarget::resolve(&kubeconfig(), &o),
            Err(KubeError::InvalidNamespace(_))
        ));
        o.namespace = Some("team-a".into());
        assert_eq!(
            ClusterTarget::resolve(&kubeconfig(), &o).unwrap().namespace,
            "team-a"
        );
        assert_eq!(sanitize_dns1123("--Jörg  O'Neil--", 63), "j-rg-o-neil");
        assert_eq!(sanitize_dns1123("___", 63), "");
        assert_eq!(developer_name(Some("***")), "dev");
        let long = default_namespace(&"p".repeat(40), &"u".repeat(40));
        assert!(long.len() <= 63 && is_dns1123_label(&long), "{long}");
        assert_eq!(sanitize_dns1123("abc-def", 4), "abc");
    }
}
