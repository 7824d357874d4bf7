//! Image references, normalised the way Docker does it:
//! `busybox` → `docker.io/library/busybox:latest`.

use std::fmt;
use std::str::FromStr;

use crate::digest::Digest;
use crate::error::{Error, Result};

pub const DOCKER_HUB: &str = "docker.io";

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reference {
    pub registry: String,
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

fn bad(input: &str, reason: impl Into<String>) -> Error {
    Error::InvalidReference {
        input: input.into(),
        reason: reason.into(),
    }
}

/// One path component: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !is_alnum(b[0]) || !is_alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator run: ".", "_", "__" or any number of "-".
        let start = i;
        while i < b.len() && !is_alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// A repository path as [`Reference::parse`] accepts it: components of
/// [`valid_component`] joined by `/`, at most 255 bytes. For names read back from files
/// hoist wrote (they go into URLs).
pub(crate) fn valid_repository(path: &str) -> bool {
    !path.is_empty() && path.len() <= 255 && path.split('/').all(valid_component)
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

fn valid_host(h: &str) -> bool {
    let (host, port) = if let Some(rest) = h.strip_prefix('[') {
        // [ipv6]:port
        match rest.split_once(']') {
            Some((ip, port)) => (ip, port.strip_prefix(':')),
            None => return false,
        }
    } else {
        match h.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (h, None),
        }
    };
    if let Some(p) = port
        && (p.is_empty() || !p.bytes().all(|c| c.is_ascii_digit()) || p.parse::<u16>().is_err())
    {
        return false;
    }
    !host.is_empty()
        && host
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b':'))
}

impl Reference {
    pub fn parse(input: &str) -> Result<Self> {
        let s = input;
        if s.trim().is_empty() {
            return Err(bad(input, "empty reference"));
        }
        // As Docker: a reference is taken as written, not trimmed into another one.
        if s.trim() != s {
            return Err(bad(
                input,
                "remove the whitespace around it (a reference holds no spaces)",
            ));
        }
        if s.contains("://") {
            return Err(bad(
                input,
                "remove the URL scheme: a reference looks like HOST[:PORT]/REPO[:TAG][@DIGEST]",
            ));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => (
                r,
                Some(Digest::parse(d).map_err(|_| {
                    bad(
                        input,
                        format!("invalid digest {d:?}: expected sha256:<64 hex characters>"),
                    )
                })?),
            ),
            None => (s, None),
        };
        let (name, tag) = match rest.rfind(':') {
            Some(i) if !rest[i + 1..].contains('/') => (&rest[..i], Some(&rest[i + 1..])),
            _ => (rest, None),
        };
        if let Some(t) = tag
            && !valid_tag(t)
        {
            return Err(bad(
                input,
                format!("invalid tag {t:?}: up to 128 of [A-Za-z0-9_.-], not starting with . or -"),
            ));
        }
        let (registry, path) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.')
                    || first.contains(':')
                    || first == "localhost"
                    || first.starts_with('[') =>
            {
                if !valid_host(first) {
                    return Err(bad(input, format!("invalid registry host {first:?}")));
                }
                (first.to_string(), rest.to_string())
            }
            _ => (DOCKER_HUB.to_string(), name.to_string()),
        };
        let registry = if registry == "index.docker.io" || registry == "registry-1.docker.io" {
            DOCKER_HUB.to_string()
        } else {
            registry
        };
        if path.is_empty() {
            return Err(bad(input, "missing repository name"));
        }
        for c in path.split('/') {
            if !valid_component(c) {
                let hint = if c.bytes().any(|b| b.is_ascii_uppercase()) {
                    " (repository names must be lowercase)"
                } else {
                    ""
                };
                return Err(bad(
                    input,
                    format!("invalid repository path component {c:?}{hint}"),
                ));
            }
        }
        let repository = if registry == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        if repository.len() > 255 {
            return Err(bad(input, "repository name longer than 255 characters"));
        }
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, Some(_)) => None,
            (None, None) => Some("latest".to_string()),
        };
        Ok(Self {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// The tag or digest to ask the registry for (digest wins: it is exact).
    pub fn reference(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".into(),
        }
    }

    /// The host to talk to: Docker Hub's API lives on another name.
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            "registry-1.docker.io"
        } else {
            &self.registry
        }
    }

    pub fn with_digest(&self, d: Digest) -> Self {
        Self {
            digest: Some(d),
            ..self.clone()
        }
    }

    /// `registry/repository` without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }
}

impl FromStr for Reference {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Reference::parse(s)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> String {
        Reference::parse(s).unwrap().to_string()
    }

    #[test]
    fn normalises_like_docker() {
        assert_eq!(p("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(p("busybox:1.36"), "docker.io/library/busybox:1.36");
        assert_eq!(p("user/app"), "docker.io/user/app:latest");
        assert_eq!(
            p("index.docker.io/library/alpine"),
            "docker.io/library/alpine:latest"
        );
        assert_eq!(p("localhost/app"), "localhost/app:latest");
        assert_eq!(p("localhost:5000/a/b/c:v1"), "localhost:5000/a/b/c:v1");
        assert_eq!(p("ghcr.io/o/r:t_1.2-x"), "ghcr.io/o/r:t_1.2-x");
        let d = "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
        let r = Reference::parse(&format!("127.0.0.1:5000/repo:tag@{d}")).unwrap();
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "repo");
        assert_eq!(r.tag.as_deref(), Some("tag"));
        assert_eq!(r.reference(), d);
        let r = Reference::parse(&format!("repo@{d}")).unwrap();
        assert_eq!(r.tag, None);
        assert_eq!(r.to_string(), format!("docker.io/library/repo@{d}"));
        assert_eq!(p("[::1]:5000/x"), "[::1]:5000/x:latest");
        assert_eq!(
            p("my_repo/a__b/c-d--e.f"),
            "docker.io/my_repo/a__b/c-d--e.f:latest"
        );
    }

    #[test]
    fn repository_names() {
        for ok in ["a", "library/busybox", "team/app-ann", "a__b/c-d--e.f"] {
            assert!(valid_repository(ok), "{ok}");
        }
        for bad in [
            "", "a//b", "/a", "a/", "A", "a?b", "a&from=b", "../a", "a b", "a\n",
        ] {
            assert!(!valid_repository(bad), "{bad:?}");
        }
        assert!(!valid_repository(&"a".repeat(256)));
    }

    #[test]
    fn rejects_malformed() {
        for (input, needle) in [
            ("", "empty"),
            ("Busybox", "lowercase"),
            ("busybox:", "invalid tag"),
            ("busybox:-x", "invalid tag"),
            ("busybox@sha256:123", "invalid digest"),
            ("https://ghcr.io/x", "scheme"),
            ("a//b", "component \"\""),
            ("localhost:99999/x", "registry host"),
            ("ghcr.io/", "missing repository"),
            ("a/b_-c", "component"),
            ("a/.b", "component"),
            ("busybox ", "whitespace"),
            ("\tghcr.io/x:1", "whitespace"),
            ("ghcr.io/x:1\n", "whitespace"),
        ] {
            let e = Reference::parse(input).unwrap_err().to_string();
            assert!(e.contains(needle), "{input:?}: {e}");
            assert!(e.contains(&format!("{input:?}")), "{e}");
        }
    }
}
