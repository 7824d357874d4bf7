//! Registry credentials from Docker's config (`$DOCKER_CONFIG/config.json`, else
//! `~/.docker/config.json`): `credHelpers`, `auths`, `credsStore`, in Docker's order.

use std::path::PathBuf;
use std::process::Stdio;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Map, Value, json};
use tokio::io::AsyncWriteExt;

use crate::error::{Error, IoContext, Result};
use crate::reference::DOCKER_HUB;

#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    Basic {
        username: String,
        password: String,
    },
    /// An OAuth2 refresh token (`identitytoken`), exchanged at the token endpoint.
    IdentityToken(String),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Basic { username, .. } => write!(f, "Basic({username}, ***)"),
            Credential::IdentityToken(_) => write!(f, "IdentityToken(***)"),
        }
    }
}

/// Where credentials were found (or looked for), for error messages.
#[derive(Clone, Debug)]
pub struct Lookup {
    pub credential: Option<Credential>,
    pub description: String,
}

pub fn config_dir() -> PathBuf {
    docker_config_env().unwrap_or_else(|| home_dir().join(".docker"))
}

/// `DOCKER_CONFIG`, unless unset or empty.
fn docker_config_env() -> Option<PathBuf> {
    std::env::var_os("DOCKER_CONFIG")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
}

pub(crate) fn home_dir() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/"))
}

pub fn config_path() -> PathBuf {
    config_dir().join("config.json")
}

fn read_config(path: &std::path::Path) -> Result<Option<Map<String, Value>>> {
    match std::fs::read(path) {
        Ok(bytes) => match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(m)) => Ok(Some(m)),
            Ok(_) => Err(Error::DockerConfig {
                path: path.into(),
                reason: "expected a JSON object".into(),
            }),
            Err(e) => Err(Error::DockerConfig {
                path: path.into(),
                reason: e.to_string(),
            }),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::DockerConfig {
            path: path.into(),
            reason: e.to_string(),
        }),
    }
}

/// Keys Docker uses for a registry in `auths`: the host, optionally with a scheme and `/v1/`
/// (Docker Hub's historic key is `https://index.docker.io/v1/`).
fn key_matches(key: &str, registry: &str) -> bool {
    let k = key
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let k = k.split('/').next().unwrap_or(k);
    k == registry
        || (registry == DOCKER_HUB && (k == "index.docker.io" || k == "registry-1.docker.io"))
}

fn helper_server(registry: &str) -> String {
    if registry == DOCKER_HUB {
        "https://index.docker.io/v1/".into()
    } else {
        registry.into()
    }
}

/// A credential helper configured in config.json: `docker-credential-{name}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Helper {
    pub name: String,
    /// Configured for this registry (`credHelpers`) rather than for all (`credsStore`).
    pub per_registry: bool,
}

/// The helper Docker would use for `registry`: `credHelpers[registry]`, else `credsStore`.
fn helper_for(cfg: &Map<String, Value>, registry: &str) -> Option<Helper> {
    if let Some(h) = cfg
        .get("credHelpers")
        .and_then(|h| h.as_object())
        .and_then(|h| h.iter().find(|(k, _)| key_matches(k, registry)))
        .and_then(|(_, v)| v.as_str())
        // An empty name means the file itself, as in Docker.
        .filter(|h| !h.is_empty())
    {
        return Some(Helper {
            name: h.into(),
            per_registry: true,
        });
    }
    let store = cfg.get("credsStore").and_then(|s| s.as_str())?;
    (!store.is_empty()).then(|| Helper {
        name: store.into(),
        per_registry: false,
    })
}

/// The registry a `hoist registry login|logout` argument names, as Docker reads it: a
/// scheme and any path are dropped (`https://ghcr.io/` is `ghcr.io`), and Docker Hub's
/// names (`https://index.docker.io/v1/`, `registry-1.docker.io`) are `docker.io`.
pub fn registry_arg(input: &str) -> Result<String> {
    let host = input
        .trim()
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = host.split('/').next().unwrap_or_default();
    let invalid = |reason: &str| {
        Error::Invalid(format!(
            "invalid registry {input:?}: {reason}; expected HOST[:PORT] (e.g. ghcr.io, 127.0.0.1:5000), optionally as a URL"
        ))
    };
    if host.is_empty() {
        return Err(invalid("no host"));
    }
    // A first path component without '.' or ':' would be a Docker Hub repository.
    let not_host = || invalid(&format!("{host:?} is not a registry host"));
    if !host.contains(['.', ':', '[']) && host != "localhost" {
        return Err(not_host());
    }
    // Checked as the registry of an image reference, like any other.
    let r = crate::Reference::parse(&format!("{host}/x")).map_err(|_| not_host())?;
    Ok(r.registry)
}

/// Find credentials for `registry`. A config.json that cannot be read gives none, with a
/// warning, as Docker does: registries that need no login keep working, and the reason
/// is in the description a 401 shows.
pub async fn lookup(registry: &str) -> Result<Lookup> {
    let path = config_path();
    let cfg = match read_config(&path) {
        Ok(Some(cfg)) => cfg,
        Ok(None) => {
            return Ok(Lookup {
                credential: None,
                description: format!(
                    "no credentials: {} does not exist ({})",
                    path.display(),
                    match docker_config_env() {
                        Some(_) => "DOCKER_CONFIG points there",
                        None => "the default; DOCKER_CONFIG is unset",
                    }
                ),
            });
        }
        Err(e) => {
            static WARNED: std::sync::Once = std::sync::Once::new();
            WARNED.call_once(|| tracing::warn!("{e}; going on without credentials"));
            return Ok(Lookup {
                credential: None,
                description: format!(
                    "no credentials: {e}\nhint: fix or remove {}; `hoist registry login` will not overwrite it",
                    path.display()
                ),
            });
        }
    };
    let helper = helper_for(&cfg, registry);
    if let Some(Helper { name: helper, .. }) = helper.as_ref().filter(|h| h.per_registry) {
        let c = run_helper(helper, registry).await?;
        return Ok(Lookup {
            description: format!(
                "credentials from credHelpers[{registry}] = docker-credential-{helper} (in {}){}",
                path.display(),
                if c.is_none() { ": none stored" } else { "" }
            ),
            credential: c,
        });
    }
    if let Some((key, entry)) = cfg
        .get("auths")
        .and_then(|a| a.as_object())
        .and_then(|a| a.iter().find(|(k, _)| key_matches(k, registry)))
    {
        // Like Docker: a malformed entry is warned about and left aside, so a registry that
        // needs no credentials still works; one that does names the entry in its 401.
        let c = match parse_auth_entry(entry) {
            Ok(c) => c,
            Err(reason) => {
                let description = format!(
                    "auths[{key:?}] in {} is malformed: {reason}",
                    path.display()
                );
                tracing::warn!("{description}");
                return Ok(Lookup {
                    credential: None,
                    description,
                });
            }
        };
        if let Some(c) = c {
            return Ok(Lookup {
                credential: Some(c),
                description: format!("credentials from auths[{key:?}] in {}", path.display()),
            });
        }
    }
    if let Some(Helper { name: store, .. }) = helper {
        let c = run_helper(&store, registry).await?;
        return Ok(Lookup {
            description: format!(
                "credentials from credsStore docker-credential-{store} (in {}){}",
                path.display(),
                if c.is_none() { ": none stored" } else { "" }
            ),
            credential: c,
        });
    }
    Ok(Lookup {
        credential: None,
        description: format!(
            "no credentials for {registry} in {} (looked in credHelpers, auths, credsStore)",
            path.display()
        ),
    })
}

/// The credential of an `auths` entry; `None` if it holds none (an entry a credential
/// store left behind), `Err` saying what is wrong with a malformed one.
fn parse_auth_entry(entry: &Value) -> std::result::Result<Option<Credential>, String> {
    if let Some(t) = entry
        .get("identitytoken")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
    {
        return Ok(Some(Credential::IdentityToken(t.into())));
    }
    if let Some(a) = entry
        .get("auth")
        .and_then(Value::as_str)
        .filter(|a| !a.is_empty())
    {
        let decoded = B64
            .decode(a.trim())
            .map_err(|e| format!("`auth` is not valid base64 ({e})"))?;
        let s = String::from_utf8(decoded).map_err(|_| "`auth` does not decode to UTF-8 text")?;
        let (u, p) = s
            .split_once(':')
            .ok_or("`auth` decodes to no `user:password` (no ':')")?;
        return Ok(Some(Credential::Basic {
            username: u.into(),
            password: p.into(),
        }));
    }
    let u = entry.get("username").and_then(Value::as_str);
    let p = entry.get("password").and_then(Value::as_str);
    match (u, p) {
        (Some(u), Some(p)) => Ok(Some(Credential::Basic {
            username: u.into(),
            password: p.into(),
        })),
        _ => Ok(None),
    }
}

/// Run `docker-credential-NAME ACTION` with `input` on stdin: its output if it succeeded,
/// else `Ok(Err(text))` with what it said (helpers print errors on stdout or stderr).
async fn helper_call(
    helper: &str,
    registry: &str,
    action: &str,
    input: &str,
) -> Result<std::result::Result<String, String>> {
    let prog = format!("docker-credential-{helper}");
    call_helper(&prog, helper, registry, action, input).await
}

/// [`helper_call`] of the program `prog` (found on PATH unless it is a path).
async fn call_helper(
    prog: &str,
    helper: &str,
    registry: &str,
    action: &str,
    input: &str,
) -> Result<std::result::Result<String, String>> {
    let mut child = tokio::process::Command::new(prog)
        .arg(action)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::CredentialHelper {
            helper: helper.into(),
            registry: registry.into(),
            reason: format!("cannot run {prog} {action}: {e} (is it installed and on PATH?)"),
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        match stdin.write_all(input.as_bytes()).await {
            // A helper that exits (or closes its stdin) without reading it: what it said
            // and how it exited are the error to show, not the write that found it gone.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                tracing::debug!(%prog, "the credential helper did not read its input");
            }
            r => r.ctx(|| format!("writing to {prog}"))?,
        }
    }
    let out = child
        .wait_with_output()
        .await
        .ctx(|| format!("waiting for {prog}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        return Ok(Ok(stdout));
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let said = [stderr.trim(), stdout.trim()]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    Ok(Err(format!("{prog} {action}: {}: {said}", out.status)))
}

fn helper_failed(helper: &str, registry: &str, reason: String) -> Error {
    Error::CredentialHelper {
        helper: helper.into(),
        registry: registry.into(),
        reason,
    }
}

/// `docker-credential-NAME get` with the server URL on stdin; "not found" means no credentials.
async fn run_helper(helper: &str, registry: &str) -> Result<Option<Credential>> {
    let err = |reason: String| helper_failed(helper, registry, reason);
    let stdout = match helper_call(helper, registry, "get", &helper_server(registry)).await? {
        Ok(out) => out,
        Err(said) if said.contains("credentials not found") => return Ok(None),
        Err(said) => return Err(err(said)),
    };
    let v: Value =
        serde_json::from_str(&stdout).map_err(|e| err(format!("invalid JSON output: {e}")))?;
    let user = v
        .get("Username")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let secret = v.get("Secret").and_then(Value::as_str).unwrap_or_default();
    if secret.is_empty() {
        return Ok(None);
    }
    if user == "<token>" {
        return Ok(Some(Credential::IdentityToken(secret.into())));
    }
    Ok(Some(Credential::Basic {
        username: user.into(),
        password: secret.into(),
    }))
}

/// Where [`store`] put credentials, or [`remove`] took them from.
#[derive(Clone, Debug)]
pub struct Stored {
    /// config.json (written only if its `auths` changed).
    pub path: PathBuf,
    /// The credential helper used (`credHelpers[registry]`, else `credsStore`).
    pub helper: Option<Helper>,
}

impl std::fmt::Display for Stored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.helper {
            Some(h) => write!(
                f,
                "docker-credential-{} ({} in {})",
                h.name,
                if h.per_registry {
                    "credHelpers"
                } else {
                    "credsStore"
                },
                self.path.display()
            ),
            None => write!(f, "{}", self.path.display()),
        }
    }
}

/// Store basic credentials for `registry` where Docker would: through the credential
/// helper configured for it (`credHelpers[registry]`, else `credsStore`), which then holds
/// the only copy (an `auths` entry would shadow a `credsStore`); else in `auths` of
/// config.json. Everything else in config.json is kept; a config.json that cannot be read
/// is refused, never overwritten.
pub async fn store(registry: &str, username: &str, password: &str) -> Result<Stored> {
    let path = config_path();
    let mut cfg = read_config(&path)?.unwrap_or_default();
    let helper = helper_for(&cfg, registry);
    if let Some(Helper { name: h, .. }) = &helper {
        let input = json!({
            "ServerURL": helper_server(registry),
            "Username": username,
            "Secret": password,
        })
        .to_string();
        helper_call(h, registry, "store", &input)
            .await?
            .map_err(|said| helper_failed(h, registry, said))?;
        if remove_auths(&mut cfg, registry) {
            write_config(&path, &cfg)?;
        }
        return Ok(Stored { path, helper });
    }
    let auths = cfg.entry("auths").or_insert_with(|| json!({}));
    let Some(auths) = auths.as_object_mut() else {
        return Err(Error::DockerConfig {
            path,
            reason: "`auths` is not an object".into(),
        });
    };
    auths.retain(|k, _| !key_matches(k, registry));
    auths.insert(
        helper_server(registry),
        json!({ "auth": B64.encode(format!("{username}:{password}")) }),
    );
    write_config(&path, &cfg)?;
    Ok(Stored { path, helper })
}

/// Drop `registry`'s `auths` entries; whether there were any.
fn remove_auths(cfg: &mut Map<String, Value>, registry: &str) -> bool {
    let Some(a) = cfg.get_mut("auths").and_then(Value::as_object_mut) else {
        return false;
    };
    let before = a.len();
    a.retain(|k, _| !key_matches(k, registry));
    a.len() != before
}

/// Remove `registry`'s credentials: erased from its credential helper, if one is
/// configured, and from `auths`. Returns where, and whether anything was removed.
pub async fn remove(registry: &str) -> Result<(Stored, bool)> {
    let path = config_path();
    let Some(mut cfg) = read_config(&path)? else {
        return Ok((Stored { path, helper: None }, false));
    };
    let helper = helper_for(&cfg, registry);
    let mut removed = false;
    if let Some(Helper { name: h, .. }) = &helper {
        match helper_call(h, registry, "erase", &helper_server(registry)).await? {
            Ok(_) => removed = true,
            Err(said) if said.contains("credentials not found") => {}
            Err(said) => return Err(helper_failed(h, registry, said)),
        }
    }
    if remove_auths(&mut cfg, registry) {
        write_config(&path, &cfg)?;
        removed = true;
    }
    Ok((Stored { path, helper }, removed))
}

/// Write config.json atomically (a temp file renamed over it). A symlinked config.json
/// (dotfile setups) is written through: the file it points to is replaced (owner-only
/// permissions: it may hold passwords), and the link stays, as Docker does.
fn write_config(path: &std::path::Path, cfg: &Map<String, Value>) -> Result<()> {
    let target = resolve_links(path)?;
    let path = target.as_path();
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    std::fs::create_dir_all(dir).ctx(|| format!("creating {}", dir.display()))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .ctx(|| format!("creating a temp file in {}", dir.display()))?;
    use std::io::Write;
    serde_json::to_writer_pretty(&mut tmp, cfg).map_err(|source| Error::Json {
        what: path.display().to_string(),
        source,
    })?;
    tmp.write_all(b"\n")
        .ctx(|| format!("writing {}", path.display()))?;
    use std::os::unix::fs::PermissionsExt;
    // It may hold passwords: never readable by others, whatever the file had.
    let mode = match std::fs::metadata(path) {
        Ok(m) => m.permissions().mode() & 0o600,
        Err(_) => 0o600,
    };
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(mode))
        .ctx(|| format!("chmod {}", path.display()))?;
    tmp.persist(path).map_err(|e| Error::Io {
        context: format!("writing {}", path.display()),
        source: e.error,
    })?;
    Ok(())
}

/// The file `path` names once symlinks are followed (it need not exist).
fn resolve_links(path: &std::path::Path) -> Result<PathBuf> {
    let mut path = path.to_path_buf();
    // As many links as the kernel follows before it gives up (ELOOP).
    for _ in 0..40 {
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_symlink() => {
                let to =
                    std::fs::read_link(&path).ctx(|| format!("reading link {}", path.display()))?;
                path = match path.parent() {
                    Some(dir) => dir.join(to),
                    None => to,
                };
            }
            _ => return Ok(path),
        }
    }
    Err(Error::DockerConfig {
        path,
        reason: "too many levels of symbolic links".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A helper that exits without reading its input: its own message and exit status are
    /// the error, not the broken pipe the write of the input finds. The input is larger
    /// than a pipe's buffer, so the write always finds the pipe closed.
    #[tokio::test]
    async fn a_helper_that_does_not_read_its_input_is_heard() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let prog = dir.path().join("docker-credential-broken");
        std::fs::write(
            &prog,
            "#!/bin/sh\nexec 0<&-\necho 'keychain exploded' >&2\nexit 3\n",
        )
        .unwrap();
        std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o755)).unwrap();
        let input = "x".repeat(1 << 20);
        let said = call_helper(prog.to_str().unwrap(), "broken", "r:5000", "get", &input)
            .await
            .unwrap()
            .unwrap_err();
        assert!(said.contains("exit status: 3"), "{said}");
        assert!(said.contains("keychain exploded"), "{said}");
    }

    #[test]
    fn auth_entries() {
        assert_eq!(
            parse_auth_entry(&json!({"auth": B64.encode("u:p:q")})),
            Ok(Some(Credential::Basic {
                username: "u".into(),
                password: "p:q".into()
            }))
        );
        assert_eq!(
            parse_auth_entry(&json!({"identitytoken": "t"})),
            Ok(Some(Credential::IdentityToken("t".into())))
        );
        assert_eq!(parse_auth_entry(&json!({})), Ok(None));
        let bad = parse_auth_entry(&json!({"auth": "!!notbase64"})).unwrap_err();
        assert!(bad.starts_with("`auth` is not valid base64"), "{bad}");
        let bad = parse_auth_entry(&json!({"auth": B64.encode("hoistsecret")})).unwrap_err();
        assert_eq!(bad, "`auth` decodes to no `user:password` (no ':')");
    }

    #[test]
    fn registry_arguments_as_docker_reads_them() {
        let ok = |s: &str| registry_arg(s).unwrap();
        assert_eq!(ok("127.0.0.1:5202"), "127.0.0.1:5202");
        assert_eq!(ok("http://127.0.0.1:5202"), "127.0.0.1:5202");
        assert_eq!(ok("https://ghcr.io/"), "ghcr.io");
        assert_eq!(ok("https://index.docker.io/v1/"), DOCKER_HUB);
        assert_eq!(ok("registry-1.docker.io"), DOCKER_HUB);
        assert_eq!(ok("localhost:5000/v2/"), "localhost:5000");
        let e = registry_arg("http://").unwrap_err().to_string();
        assert!(
            e.starts_with("invalid registry \"http://\": no host"),
            "{e}"
        );
        let e = registry_arg("ftp://x y").unwrap_err().to_string();
        assert!(
            !e.contains("hoist-login-probe") && e.contains("ftp://x y"),
            "{e}"
        );
        assert!(key_matches("https://index.docker.io/v1/", DOCKER_HUB));
        assert!(key_matches("127.0.0.1:5000", "127.0.0.1:5000"));
        assert!(!key_matches("127.0.0.1:5001", "127.0.0.1:5000"));
    }
}
