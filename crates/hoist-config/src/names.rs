//! Kubernetes name rules.

/// Why `name` is not a DNS-1123 label (lowercase alphanumerics and `-`,
/// starting and ending alphanumeric, at most 63 characters), or `None` if it is.
pub fn dns1123_label_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        return Some("it is empty");
    }
    if name.len() > 63 {
        return Some("it is longer than 63 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Some("it may contain only lowercase letters, digits and `-`");
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Some("it must start and end with a letter or digit");
    }
    None
}

/// Why `name` is not a valid OCI repository path (`shop/api`), or `None`.
pub fn repository_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        return Some("it is empty");
    }
    for part in name.split('/') {
        if part.is_empty() {
            return Some("it has an empty path component");
        }
        if !part
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        {
            return Some("it may contain only lowercase letters, digits, `.`, `_`, `-` and `/`");
        }
        let edge = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
        if !edge(part.as_bytes()[0]) || !edge(part.as_bytes()[part.len() - 1]) {
            return Some("each path component must start and end with a letter or digit");
        }
    }
    None
}

/// Why `name` cannot name an environment variable (or a label) of an image, if it cannot.
pub fn env_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("is empty")
    } else if name.contains('=') {
        Some("holds `=`")
    } else if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Some("has a space or a control character")
    } else {
        None
    }
}

/// Why `dir` cannot be an image's working directory, if it cannot (empty means none): the
/// runtime needs an absolute path, and Docker's relative WORKDIR builds on an earlier one.
pub fn workdir_problem(dir: &str) -> Option<&'static str> {
    (!dir.is_empty() && !dir.starts_with('/')).then_some("must be an absolute path")
}

/// Why `tag` cannot be an image tag, if it cannot: up to 128 of `[A-Za-z0-9_.-]`, not
/// starting with `.` or `-`.
pub fn tag_problem(tag: &str) -> Option<String> {
    let b = tag.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"_.-".contains(c));
    (!ok).then(|| {
        format!("invalid tag {tag:?}: up to 128 of [A-Za-z0-9_.-], not starting with . or -")
    })
}

/// Why `input` is not an image reference (`busybox`, `host:5000/team/app:v1@sha256:…`),
/// or `None`. The grammar is hoist-oci's `Reference::parse` (Docker's, a little looser on
/// hosts); a test in hoist-cli, which sees both crates, holds the two to the same answers.
pub fn image_reference_problem(input: &str) -> Option<String> {
    let s = input;
    if s.trim().is_empty() {
        return Some("it is empty".into());
    }
    if s.trim() != s {
        return Some("it has whitespace around it (a reference holds no spaces)".into());
    }
    if s.contains("://") {
        return Some("it has a URL scheme: a reference is HOST[:PORT]/REPO[:TAG][@DIGEST]".into());
    }
    let rest = match s.split_once('@') {
        Some((rest, d)) => {
            let hex = d.strip_prefix("sha256:").unwrap_or_default();
            if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
                return Some(format!(
                    "invalid digest {d:?}: expected sha256:<64 hex characters>"
                ));
            }
            rest
        }
        None => s,
    };
    let name = match rest.rfind(':') {
        Some(i) if !rest[i + 1..].contains('/') => {
            if let Some(why) = tag_problem(&rest[i + 1..]) {
                return Some(why);
            }
            &rest[..i]
        }
        _ => rest,
    };
    let (host, path) = match name.split_once('/') {
        Some((first, path))
            if first.contains(['.', ':']) || first == "localhost" || first.starts_with('[') =>
        {
            if !valid_host(first) {
                return Some(format!("invalid registry host {first:?}"));
            }
            (Some(first), path)
        }
        _ => (None, name),
    };
    if path.is_empty() {
        return Some("the repository name is missing".into());
    }
    if let Some(c) = path.split('/').find(|c| !valid_path_component(c)) {
        let hint = if c.bytes().any(|b| b.is_ascii_uppercase()) {
            " (repository names must be lowercase)"
        } else {
            ""
        };
        return Some(format!("invalid repository path component {c:?}{hint}"));
    }
    // Docker Hub's one-part names live under `library/`, which counts.
    let hub =
        host.is_none_or(|h| ["docker.io", "index.docker.io", "registry-1.docker.io"].contains(&h));
    let len = path.len()
        + if hub && !path.contains('/') {
            "library/".len()
        } else {
            0
        };
    if len > 255 {
        return Some("the repository name is longer than 255 characters".into());
    }
    None
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn valid_path_component(c: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let b = c.as_bytes();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    c.split(|ch: char| ch.is_ascii_lowercase() || ch.is_ascii_digit())
        .filter(|sep| !sep.is_empty())
        .all(|sep| sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-'))
}

/// `host`, `host:port` or `[ipv6]:port`.
fn valid_host(h: &str) -> bool {
    let (host, port) = match h.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((ip, port)) => (ip, port.strip_prefix(':')),
            None => return false,
        },
        None => match h.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (h, None),
        },
    };
    if port.is_some_and(|p| {
        p.is_empty() || !p.bytes().all(|c| c.is_ascii_digit()) || p.parse::<u16>().is_err()
    }) {
        return false;
    }
    !host.is_empty()
        && host
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b".-:".contains(&c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repositories() {
        for ok in ["api", "shop/api", "a.b/c_d-e"] {
            assert_eq!(repository_problem(ok), None, "{ok}");
        }
        for bad in ["", "Shop/api", "shop//api", "/api", "api:1", "-api"] {
            assert!(repository_problem(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn dns1123_labels() {
        for ok in ["a", "api", "web-2", "0abc"] {
            assert_eq!(dns1123_label_problem(ok), None, "{ok}");
        }
        for bad in ["", "Api", "my_svc", "-a", "a-", "a.b", &"x".repeat(64)] {
            assert!(dns1123_label_problem(bad).is_some(), "{bad}");
        }
    }
}
