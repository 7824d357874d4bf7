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

/// Find credentials for `registry`.
pub async fn lookup(registry: &str) -> Result<Lookup> {
    let path = config_path();
    let Some(cfg) = read_config(&path)? else {
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
    };
    if let Some(helper) = cfg
        .get("credHelpers")
        .and_then(|h| h.as_object())
        .and_then(|h| h.iter().find(|(k, _)| key_matches(k, registry)))
        .and_then(|(_, v)| v.as_str())
    {
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
        && let Some(c) = parse_auth_entry(entry)
    {
        return Ok(Lookup {
            credential: Some(c),
            description: format!("credentials from auths[{key:?}] in {}", path.display()),
        });
    }
    if let Some(store) = cfg.get("credsStore").and_then(|s| s.as_str()) {
        let c = run_helper(store, registry).await?;
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

fn parse_auth_entry(entry: &Value) -> Option<Credential> {
    if let Some(t) = entry
        .get("identitytoken")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
    {
        return Some(Credential::IdentityToken(t.into()));
    }
    if let Some(a) = entry
        .get("auth")
        .and_then(Value::as_str)
        .filter(|a| !a.is_empty())
    {
        let decoded = B64.decode(a.trim()).ok()?;
        let s = String::from_utf8(decoded).ok()?;
        let (u, p) = s.split_once(':')?;
        return Some(Credential::Basic {
            username: u.into(),
            password: p.into(),
        });
    }
    let u = entry.get("username").and_then(Value::as_str)?;
    let p = entry.get("password").and_then(Value::as_str)?;
    Some(Credential::Basic {
        username: u.into(),
        password: p.into(),
    })
}

/// `docker-credential-NAME get` with the server URL on stdin; "not found" means no credentials.
async fn run_helper(helper: &str, registry: &str) -> Result<Option<Credential>> {
    let prog = format!("docker-credential-{helper}");
    let err = |reason: String| Error::CredentialHelper {
        helper: helper.into(),
        registry: registry.into(),
        reason,
    };
    let mut child = tokio::process::Command::new(&prog)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            err(format!(
                "cannot run {prog}: {e} (is it installed and on PATH?)"
            ))
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(helper_server(registry).as_bytes())
            .await
            .ctx(|| format!("writing to {prog}"))?;
    }
    let out = child
        .wait_with_output()
        .await
        .ctx(|| format!("waiting for {prog}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        if stdout.contains("credentials not found")
            || String::from_utf8_lossy(&out.stderr).contains("credentials not found")
        {
            return Ok(None);
        }
        return Err(err(format!(
            "exit status {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
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

/// Store basic credentials for `registry` in `auths` of config.json, keeping everything else.
pub fn store(registry: &str, username: &str, password: &str) -> Result<PathBuf> {
    let path = config_path();
    let mut cfg = read_config(&path)?.unwrap_or_default();
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
    Ok(path)
}

/// Remove `registry` from `auths`; returns whether anything was removed.
pub fn remove(registry: &str) -> Result<(PathBuf, bool)> {
    let path = config_path();
    let Some(mut cfg) = read_config(&path)? else {
        return Ok((path, false));
    };
    let mut removed = false;
    if let Some(a) = cfg.get_mut("auths").and_then(Value::as_object_mut) {
        let before = a.len();
        a.retain(|k, _| !key_matches(k, registry));
        removed = a.len() != before;
    }
    if removed {
        write_config(&path, &cfg)?;
    }
    Ok((path, removed))
}

fn write_config(path: &std::path::Path, cfg: &Map<String, Value>) -> Result<()> {
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
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o600))
        .ctx(|| format!("chmod {}", path.display()))?;
    tmp.persist(path).map_err(|e| Error::Io {
        context: format!("writing {}", path.display()),
        source: e.error,
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_entries() {
        assert_eq!(
            parse_auth_entry(&json!({"auth": B64.encode("u:p:q")})),
            Some(Credential::Basic {
                username: "u".into(),
                password: "p:q".into()
            })
        );
        assert_eq!(
            parse_auth_entry(&json!({"identitytoken": "t"})),
            Some(Credential::IdentityToken("t".into()))
        );
        assert_eq!(parse_auth_entry(&json!({})), None);
        assert!(key_matches("https://index.docker.io/v1/", DOCKER_HUB));
        assert!(key_matches("127.0.0.1:5000", "127.0.0.1:5000"));
        assert!(!key_matches("127.0.0.1:5001", "127.0.0.1:5000"));
    }
}
