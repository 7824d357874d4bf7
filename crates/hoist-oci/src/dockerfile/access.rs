//! hoist's own registry settings, handed to buildah and podman so a Dockerfile's `FROM`
//! reaches the registries `hoist image build` reaches: plain HTTP for loopback and
//! insecure registries, the `--ca-file` CA, the credentials of hoist's Docker config.
//!
//! Plain HTTP goes per registry through a generated `registries.conf`
//! (`CONTAINERS_REGISTRIES_CONF`): the machine's effective main file (the user's, else the
//! system one) with `[[registry]] insecure = true` tables added for the registries that
//! need it, so its search registries, aliases and mirrors stay; drop-in files
//! (`registries.conf.d`) are still read by the builder. `--tls-verify=false` would drop
//! TLS checks for every registry, so it is used only when the main file is in the old
//! (v1) format that cannot take such tables.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::client::{ClientOptions, is_insecure};
use crate::error::{IoContext, Result};
use crate::reference::Reference;

/// The registry settings of hoist's client that a builder should share.
#[derive(Clone, Debug, Default)]
pub struct RegistryAccess {
    /// Registries (`host[:port]` or `host`) named insecure (`--insecure-registry`,
    /// `HOIST_INSECURE_REGISTRIES`): plain HTTP or unverified TLS.
    pub insecure: Vec<String>,
    /// Loopback registries that serve HTTPS (the others get plain HTTP).
    pub tls_loopback: Vec<String>,
    /// Extra CA certificates (PEM) to trust.
    pub ca_file: Option<PathBuf>,
    /// The Docker config hoist reads its credentials from, when it exists.
    pub authfile: Option<PathBuf>,
}

impl RegistryAccess {
    /// What a client with these options uses, and hoist's Docker config.
    pub fn from_client_options(o: &ClientOptions) -> Self {
        let config = crate::auth::config_path();
        Self {
            insecure: o.insecure.clone(),
            tls_loopback: o.tls_loopback.clone(),
            ca_file: o.ca_file.clone(),
            authfile: config.is_file().then_some(config),
        }
    }

    /// The registries among `referenced` (and every one named insecure) that hoist talks
    /// to without verified TLS.
    pub fn insecure_among(&self, referenced: &BTreeSet<String>) -> BTreeSet<String> {
        let mut out: BTreeSet<String> = self.insecure.iter().cloned().collect();
        out.extend(
            referenced
                .iter()
                .filter(|r| is_insecure(r, &self.insecure) && !self.tls_loopback.contains(r))
                .cloned(),
        );
        out
    }
}

/// What a buildah/podman run gets: arguments for `bud`/`build` (and `push` for the
/// authfile), environment, and the temp files they point at (removed on drop).
#[derive(Debug, Default)]
pub(crate) struct BuilderAccess {
    pub build_args: Vec<String>,
    pub env: Vec<(String, OsString)>,
    _files: Option<tempfile::TempDir>,
}

impl BuilderAccess {
    /// Settings for a build of `dockerfile` with `build_args` (they may name `FROM`'s
    /// registry through an `ARG`).
    pub(crate) fn prepare(
        access: &RegistryAccess,
        dockerfile: &Path,
        build_args: &BTreeMap<String, String>,
    ) -> Result<Self> {
        let text = std::fs::read_to_string(dockerfile)
            .ctx(|| format!("reading {}", dockerfile.display()))?;
        let insecure = access.insecure_among(&registries_in_dockerfile(&text, build_args));
        let mut out = BuilderAccess::default();
        if let Some(a) = &access.authfile {
            out.build_args
                .extend(["--authfile".into(), a.display().to_string()]);
        }
        if access.ca_file.is_none() && insecure.is_empty() {
            return Ok(out);
        }
        let dir = tempfile::Builder::new()
            .prefix("hoist-builder-")
            .tempdir()
            .ctx(|| "creating a temp dir for the builder's registry settings".into())?;
        if let Some(ca) = &access.ca_file {
            // containers-certs.d: every `*.crt` in the directory is a CA, trusted besides
            // the system roots.
            let certs = dir.path().join("certs");
            std::fs::create_dir(&certs).ctx(|| format!("creating {}", certs.display()))?;
            std::fs::copy(ca, certs.join("ca.crt"))
                .ctx(|| format!("copying CA file {}", ca.display()))?;
            out.build_args
                .extend(["--cert-dir".into(), certs.display().to_string()]);
        }
        if !insecure.is_empty() {
            let (path, base) = main_registries_conf();
            let base_text = match &path {
                Some(p) => std::fs::read_to_string(p).ctx(|| format!("reading {}", p.display()))?,
                None => String::new(),
            };
            match with_insecure_registries(&base_text, &insecure) {
                Some(text) => {
                    let conf = dir.path().join("registries.conf");
                    std::fs::write(&conf, text).ctx(|| format!("writing {}", conf.display()))?;
                    tracing::debug!(?insecure, base = %base, "builder registries.conf");
                    out.env
                        .push(("CONTAINERS_REGISTRIES_CONF".into(), conf.into_os_string()));
                }
                None => {
                    tracing::warn!(
                        "{base} is in the v1 format, so plain HTTP for {} is given to the \
                         builder as --tls-verify=false (for every registry of the build)",
                        insecure.iter().cloned().collect::<Vec<_>>().join(", ")
                    );
                    out.build_args.push("--tls-verify=false".into());
                }
            }
        }
        out._files = Some(dir);
        Ok(out)
    }
}

/// The main registries.conf buildah and podman read (`CONTAINERS_REGISTRIES_CONF`, else
/// `~/.config/containers/registries.conf`, else `/etc/containers/registries.conf`), if
/// any, and how to name it in messages.
fn main_registries_conf() -> (Option<PathBuf>, String) {
    if let Some(p) = std::env::var_os("CONTAINERS_REGISTRIES_CONF").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        let name = p.display().to_string();
        return (p.is_file().then_some(p), name);
    }
    let user = crate::auth::home_dir().join(".config/containers/registries.conf");
    if user.is_file() {
        let name = user.display().to_string();
        return (Some(user), name);
    }
    let system = PathBuf::from("/etc/containers/registries.conf");
    let name = system.display().to_string();
    (system.is_file().then_some(system), name)
}

/// `base` (a registries.conf) where each of `registries` is insecure: a `[[registry]]`
/// table naming it (by `location` or `prefix`), or a `[[registry.mirror]]` entry with that
/// `location`, gets `insecure = true` (replacing what it said: hoist talks plain HTTP to it,
/// so the builder must too); a registry no `[[registry]]` table names gets a table of its
/// own. `None` if `base` is in the v1 format (no tables can be added to it).
pub fn with_insecure_registries(base: &str, registries: &BTreeSet<String>) -> Option<String> {
    /// A `[[registry]]` or `[[registry.mirror]]` table of `base`.
    struct Table {
        /// Line index of its header.
        header: usize,
        mirror: bool,
        names: Vec<String>,
        /// Line index of its `insecure =` line.
        insecure: Option<usize>,
    }
    let mut lines: Vec<String> = base.lines().map(String::from).collect();
    let mut tables: Vec<Table> = vec![];
    // Whether the lines read belong to the last of `tables` (not to another table).
    let mut open = false;
    for (n, line) in lines.iter().enumerate() {
        let t = line.trim();
        if t.starts_with("[registries.") {
            return None;
        }
        if t.starts_with('[') {
            let (top, mirror) = (t == "[[registry]]", t == "[[registry.mirror]]");
            open = top || mirror;
            if open {
                tables.push(Table {
                    header: n,
                    mirror,
                    names: vec![],
                    insecure: None,
                });
            }
            continue;
        }
        let Some(table) = tables.last_mut().filter(|_| open) else {
            continue;
        };
        if let Some((k, v)) = t.split_once('=') {
            match k.trim() {
                "location" => table.names.push(v.trim().trim_matches(['"', '\'']).into()),
                "prefix" if !table.mirror => {
                    table.names.push(v.trim().trim_matches(['"', '\'']).into())
                }
                "insecure" => table.insecure = Some(n),
                _ => {}
            }
        }
    }
    let mut configured = BTreeSet::new();
    // Bottom up, so that inserting a line keeps the indices above it.
    let mut edits: Vec<(usize, bool)> = vec![]; // (line, replace) — else insert after
    for t in &tables {
        let Some(name) = t.names.iter().find(|n| registries.contains(*n)) else {
            continue;
        };
        if !t.mirror {
            configured.insert(name.clone());
        }
        match t.insecure {
            Some(line) => edits.push((line, true)),
            None => edits.push((t.header, false)),
        }
    }
    edits.sort_by_key(|e| std::cmp::Reverse(e.0));
    for (line, replace) in edits {
        let set = "insecure = true # set by hoist: it talks plain HTTP to this registry";
        if replace {
            lines[line] = set.to_string();
        } else {
            lines.insert(line + 1, set.to_string());
        }
    }
    let mut out = lines.join("\n");
    if !out.is_empty() {
        out.push('\n');
    }
    for r in registries.iter().filter(|r| !configured.contains(*r)) {
        out.push_str(&format!(
            "\n# added by hoist: it talks plain HTTP to this registry\n[[registry]]\nlocation = \"{r}\"\ninsecure = true\n"
        ));
    }
    Some(out)
}

/// The registries (`host[:port]`) of the images a Dockerfile pulls: `FROM`, `COPY
/// --from=`, `RUN --mount=from=`. `ARG`s are substituted (a build arg over the
/// default); a reference still holding a variable, or a stage name, is left out.
pub fn registries_in_dockerfile(
    text: &str,
    build_args: &BTreeMap<String, String>,
) -> BTreeSet<String> {
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    let mut stages: BTreeSet<String> = BTreeSet::new();
    let mut images: Vec<String> = vec![];
    for line in logical_lines(text) {
        let mut words = line.split_whitespace();
        let Some(instr) = words.next() else { continue };
        let words: Vec<&str> = words.collect();
        match instr.to_ascii_uppercase().as_str() {
            "ARG" => {
                for w in &words {
                    let (name, default) = match w.split_once('=') {
                        Some((n, d)) => (n, Some(d.trim_matches(['"', '\'']))),
                        None => (*w, None),
                    };
                    let value = build_args
                        .get(name)
                        .map(String::as_str)
                        .or(default)
                        .map(String::from);
                    if let Some(v) = value {
                        vars.insert(name.to_string(), v);
                    }
                }
            }
            "FROM" => {
                let mut rest = words.iter().filter(|w| !w.starts_with("--"));
                if let Some(image) = rest.next() {
                    images.push(image.to_string());
                }
                if let (Some(as_), Some(name)) = (rest.next(), rest.next())
                    && as_.eq_ignore_ascii_case("as")
                {
                    stages.insert(name.to_ascii_lowercase());
                }
            }
            "COPY" | "ADD" => images.extend(
                words
                    .iter()
                    .filter_map(|w| w.strip_prefix("--from="))
                    .map(String::from),
            ),
            "RUN" => images.extend(
                words
                    .iter()
                    .filter_map(|w| w.strip_prefix("--mount="))
                    .flat_map(|m| m.split(','))
                    .filter_map(|kv| kv.strip_prefix("from="))
                    .map(String::from),
            ),
            _ => {}
        }
    }
    images
        .iter()
        .filter_map(|i| substitute(i, &vars))
        .filter(|i| !stages.contains(&i.to_ascii_lowercase()) && i != "scratch")
        .filter_map(|i| Reference::parse(&i).ok())
        .map(|r| r.registry)
        .collect()
}

/// Lines joined over `\` continuations, comments and blank lines left out.
fn logical_lines(text: &str) -> Vec<String> {
    let mut out = vec![];
    let mut cur = String::new();
    for raw in text.lines() {
        let t = raw.trim();
        if t.starts_with('#') || (t.is_empty() && !cur.is_empty()) {
            continue;
        }
        match t.strip_suffix('\\') {
            Some(part) => {
                cur.push_str(part);
                cur.push(' ');
            }
            None => {
                cur.push_str(t);
                if !cur.trim().is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
                cur.clear();
            }
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur);
    }
    out
}

/// `$NAME`, `${NAME}`, `${NAME:-default}` replaced from `vars`; `None` if one is unknown.
fn substitute(s: &str, vars: &BTreeMap<String, String>) -> Option<String> {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        let (expr, after) = if let Some(r) = rest.strip_prefix('{') {
            let end = r.find('}')?;
            (&r[..end], &r[end + 1..])
        } else {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            (&rest[..end], &rest[end..])
        };
        let value = match expr.split_once(":-") {
            Some((name, default)) => vars
                .get(name)
                .filter(|v| !v.is_empty())
                .cloned()
                .unwrap_or_else(|| default.to_string()),
            None => vars.get(expr)?.clone(),
        };
        out.push_str(&value);
        rest = after;
    }
    out.push_str(rest);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regs(text: &str, args: &[(&str, &str)]) -> Vec<String> {
        let args = args
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        registries_in_dockerfile(text, &args).into_iter().collect()
    }

    #[test]
    fn dockerfile_registries() {
        let text = "# syntax=docker/dockerfile:1\n\
            ARG REG=127.0.0.1:5000\n\
            ARG TAG\n\
            FROM --platform=$BUILDPLATFORM ${REG}/base:1 AS build\n\
            RUN --mount=type=cache,from=localhost:5001/cache:1,target=/c \\\n  make\n\
            FROM build AS again\n\
            FROM scratch\n\
            COPY --from=again /x /x\n\
            COPY --from=[::1]:5002/tools:${TAG} /t /t\n\
            COPY --from=ghcr.io/o/tool:1 /t /t\n\
            FROM alpine\n\
            FROM $UNKNOWN/x\n";
        assert_eq!(
            regs(text, &[]),
            ["127.0.0.1:5000", "docker.io", "ghcr.io", "localhost:5001"]
        );
        // A build arg wins over the default and fills the unset one.
        assert_eq!(
            regs(text, &[("REG", "reg.local:5000"), ("TAG", "1")]),
            [
                "[::1]:5002",
                "docker.io",
                "ghcr.io",
                "localhost:5001",
                "reg.local:5000"
            ]
        );
    }

    #[test]
    fn insecure_are_loopback_and_named_but_not_tls_loopback() {
        let a = RegistryAccess {
            insecure: vec!["reg.local".into()],
            tls_loopback: vec!["localhost:5443".into()],
            ..Default::default()
        };
        let referenced = [
            "127.0.0.1:5000",
            "ghcr.io",
            "localhost:5443",
            "reg.local:5000",
        ]
        .map(String::from)
        .into();
        assert_eq!(
            a.insecure_among(&referenced)
                .into_iter()
                .collect::<Vec<_>>(),
            ["127.0.0.1:5000", "reg.local", "reg.local:5000"]
        );
    }

    #[test]
    fn registries_conf_keeps_the_base_and_makes_its_entries_insecure() {
        let base = "unqualified-search-registries = [\"docker.io\"]\n\n[[registry]]\nlocation = \"127.0.0.1:5000\"\ninsecure = false\n\n[[registry]]\nprefix = \"example.com\"\nlocation = \"mirror.example.com\"\n[[registry.mirror]]\nlocation = \"localhost:5002\"\n[aliases]\n\"x\" = \"docker.io/library/x\"";
        let out = with_insecure_registries(
            base,
            &["127.0.0.1:5000", "localhost:5001", "localhost:5002"]
                .map(String::from)
                .into(),
        )
        .unwrap();
        let lines: Vec<&str> = out.lines().collect();
        // The user's table for 127.0.0.1:5000 said `insecure = false`: hoist talks HTTP
        // to it, so the builder must.
        assert_eq!(lines[3], "location = \"127.0.0.1:5000\"");
        assert!(lines[4].starts_with("insecure = true"), "{out}");
        // A mirror on loopback: its own entry becomes insecure; it is not a registry
        // table of its own, so it also gets one.
        let mirror = lines
            .iter()
            .position(|l| *l == "[[registry.mirror]]")
            .unwrap();
        assert!(lines[mirror + 1].starts_with("insecure = true"), "{out}");
        assert!(out.contains("[[registry]]\nlocation = \"localhost:5002\"\ninsecure = true\n"));
        // Untouched: the search list, the other registry, the aliases.
        assert!(out.starts_with("unqualified-search-registries = [\"docker.io\"]\n"));
        assert!(out.contains("prefix = \"example.com\"\nlocation = \"mirror.example.com\"\n"));
        assert!(out.contains("[aliases]\n\"x\" = \"docker.io/library/x\"\n"));
        assert!(
            out.contains("[[registry]]\nlocation = \"localhost:5001\"\ninsecure = true\n"),
            "{out}"
        );
        assert_eq!(
            out.matches("location = \"127.0.0.1:5000\"").count(),
            1,
            "{out}"
        );
        let v1 = "[registries.search]\nregistries = ['docker.io']\n";
        assert_eq!(
            with_insecure_registries(v1, &["localhost:1".to_string()].into()),
            None
        );
    }
}
