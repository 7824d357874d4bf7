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
