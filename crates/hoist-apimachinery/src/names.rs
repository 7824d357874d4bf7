//! Object name validation and `generateName`, with Kubernetes' exact messages.

/// Which rule a kind's `metadata.name` must follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameRule {
    /// RFC 1123 subdomain (most kinds: Pod, ConfigMap, Secret, Deployment, CRs, ...).
    Dns1123Subdomain,
    /// RFC 1123 label (Namespace).
    Dns1123Label,
    /// RFC 1035 label (Service).
    Dns1035Label,
    /// Any string that is a valid URL path segment (RBAC kinds).
    PathSegment,
}

/// The rule Kubernetes applies to `metadata.name` of `group`/`kind`.
pub fn name_rule_for(group: &str, kind: &str) -> NameRule {
    match (group, kind) {
        ("", "Namespace") => NameRule::Dns1123Label,
        ("", "Service") => NameRule::Dns1035Label,
        (
            "rbac.authorization.k8s.io",
            "Role" | "ClusterRole" | "RoleBinding" | "ClusterRoleBinding",
        ) => NameRule::PathSegment,
        _ => NameRule::Dns1123Subdomain,
    }
}

const DNS1123_LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_LABEL_MAX: usize = 63;
const DNS1123_SUBDOMAIN_FMT: &str =
    "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1123_SUBDOMAIN_MAX: usize = 253;
const DNS1035_LABEL_FMT: &str = "[a-z]([-a-z0-9]*[a-z0-9])?";

/// Kubernetes' `RegexError` wording: examples joined with `, or` quirks included.
fn regex_error(msg: &str, fmt: &str, examples: &[&str]) -> String {
    let mut out = msg.to_string();
    if !examples.is_empty() {
        out.push_str(" (e.g. ");
        for (i, e) in examples.iter().enumerate() {
            if i > 0 {
                out.push_str(" or ");
            }
            out.push('\'');
            out.push_str(e);
            out.push_str("', ");
        }
        out.push_str("regex used for validation is '");
        out.push_str(fmt);
        out.push_str("')");
    }
    out
}

fn max_len_error(n: usize) -> String {
    format!("must be no more than {n} characters")
}

fn is_lower_alnum(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`
fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && is_lower_alnum(b[0])
        && is_lower_alnum(b[b.len() - 1])
        && b.iter().all(|&c| is_lower_alnum(c) || c == b'-')
}

/// Errors (empty if valid) for an RFC 1123 subdomain, worded as Kubernetes does.
pub fn validate_dns1123_subdomain(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_SUBDOMAIN_MAX {
        errs.push(max_len_error(DNS1123_SUBDOMAIN_MAX));
    }
    if !value.split('.').all(is_dns1123_label) {
        errs.push(regex_error(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
            DNS1123_SUBDOMAIN_FMT,
            &["example.com"],
        ));
    }
    errs
}

/// Errors (empty if valid) for an RFC 1123 label.
pub fn validate_dns1123_label(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_LABEL_MAX {
        errs.push(max_len_error(DNS1123_LABEL_MAX));
    }
    if !is_dns1123_label(value) {
        errs.push(regex_error(
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character",
            DNS1123_LABEL_FMT,
            &["my-name", "123-abc"],
        ));
    }
    errs
}

/// Errors (empty if valid) for an RFC 1035 label.
pub fn validate_dns1035_label(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_LABEL_MAX {
        errs.push(max_len_error(DNS1123_LABEL_MAX));
    }
    let b = value.as_bytes();
    let ok = !b.is_empty() && b[0].is_ascii_lowercase() && is_dns1123_label(value);
    if !ok {
        errs.push(regex_error(
            "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character",
            DNS1035_LABEL_FMT,
            &["my-name", "abc-123"],
        ));
    }
    errs
}

/// Errors (empty if valid) for a name used as a URL path segment.
pub fn validate_path_segment_name(value: &str) -> Vec<String> {
    if value == "." || value == ".." {
        return vec![format!("may not be '{value}'")];
    }
    let mut errs = Vec::new();
    for bad in ["/", "%"] {
        if value.contains(bad) {
            errs.push(format!("may not contain '{bad}'"));
        }
    }
    errs
}

/// Validate `metadata.name` under `rule`; messages as Kubernetes prints them
/// (the server prefixes `metadata.name: Invalid value: "<name>": `).
pub fn validate_object_name(name: &str, rule: NameRule) -> Vec<String> {
    match rule {
        NameRule::Dns1123Subdomain => validate_dns1123_subdomain(name),
        NameRule::Dns1123Label => validate_dns1123_label(name),
        NameRule::Dns1035Label => validate_dns1035_label(name),
        NameRule::PathSegment => validate_path_segment_name(name),
    }
}

const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const QUALIFIED_NAME_ERR: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
const LABEL_VALUE_ERR: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";

fn is_qualified_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// Validate a label key (qualified name, optional DNS subdomain prefix) with Kubernetes' messages.
pub fn validate_label_key(key: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if key.matches('/').count() > 1 {
        errs.push(regex_error(
            &format!("a qualified name {QUALIFIED_NAME_ERR}"),
            QUALIFIED_NAME_FMT,
            &["MyName", "my.name", "123-abc"],
        ));
        return errs;
    }
    if let Some(prefix) = prefix {
        if prefix.is_empty() {
            errs.push("prefix part must be non-empty".to_string());
        } else {
            for e in validate_dns1123_subdomain(prefix) {
                errs.push(format!("prefix part {e}"));
            }
        }
    }
    if name.is_empty() {
        errs.push("name part must be non-empty".to_string());
    } else {
        if name.len() > 63 {
            errs.push(format!("name part {}", max_len_error(63)));
        }
        if !is_qualified_name_part(name) {
            errs.push(regex_error(
                &format!("name part {QUALIFIED_NAME_ERR}"),
                QUALIFIED_NAME_FMT,
                &["MyName", "my.name", "123-abc"],
            ));
        }
    }
    errs
}

/// Validate a label value with Kubernetes' messages.
pub fn validate_label_value(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > 63 {
        errs.push(max_len_error(63));
    }
    if !value.is_empty() && !is_qualified_name_part(value) {
        errs.push(regex_error(
            LABEL_VALUE_ERR,
            LABEL_VALUE_FMT,
            &["MyValue", "my_value", "12345"],
        ));
    }
    errs
}

/// The alphabet Kubernetes uses for random name suffixes (no vowels, no confusable digits).
pub const NAME_SUFFIX_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// Longest prefix kept by `generateName` (63 - 5).
pub const MAX_GENERATED_PREFIX: usize = 58;

/// `generateName`: prefix (truncated to 58 bytes) + 5 random chars.
pub fn generate_name(prefix: &str) -> String {
    // Randomness from std's per-process hasher keys plus a counter: no extra dependency,
    // and collisions are handled by the server retrying on AlreadyExists anyway.
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let state = std::collections::hash_map::RandomState::new();
    let mut next = || {
        let mut h = state.build_hasher();
        h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        if let Ok(d) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            h.write_u128(d.as_nanos());
        }
        h.finish()
    };
    generate_name_with(prefix, &mut next)
}

/// `generateName` with a caller-supplied random source (`next()` returns any u64).
pub fn generate_name_with(prefix: &str, next: &mut dyn FnMut() -> u64) -> String {
    let mut cut = prefix.len().min(MAX_GENERATED_PREFIX);
    while !prefix.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut out = prefix[..cut].to_string();
    for _ in 0..5 {
        let i = (next() % NAME_SUFFIX_ALPHABET.len() as u64) as usize;
        out.push(NAME_SUFFIX_ALPHABET[i] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subdomain_accepts_and_rejects_like_kubernetes() {
        for ok in ["a", "example.com", "a-b.c-d", "0", "a.1", &"a".repeat(253)] {
            assert!(validate_dns1123_subdomain(ok).is_empty(), "{ok}");
        }
        for bad in ["", "A", "a_b", "-a", "a-", "a..b", ".a", "a.", "a b", "ä"] {
            assert_eq!(validate_dns1123_subdomain(bad).len(), 1, "{bad}");
        }
        assert_eq!(
            validate_dns1123_subdomain(&"a".repeat(254)),
            vec!["must be no more than 253 characters".to_string()]
        );
    }

    #[test]
    fn subdomain_message_is_exact() {
        assert_eq!(
            validate_dns1123_subdomain("Foo")[0],
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
        );
    }

    #[test]
    fn label_messages_are_exact() {
        assert_eq!(
            validate_dns1123_label("a.b")[0],
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
        );
        assert_eq!(
            validate_dns1123_label(&"a".repeat(64)),
            vec!["must be no more than 63 characters".to_string()]
        );
        assert!(validate_dns1123_label("123-abc").is_empty());
        assert_eq!(
            validate_dns1035_label("1abc")[0],
            "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
        );
        assert!(validate_dns1035_label("abc-123").is_empty());
    }

    #[test]
    fn object_name_rules_per_kind() {
        assert_eq!(name_rule_for("", "Namespace"), NameRule::Dns1123Label);
        assert_eq!(name_rule_for("", "Service"), NameRule::Dns1035Label);
        assert_eq!(
            name_rule_for("apps", "Deployment"),
            NameRule::Dns1123Subdomain
        );
        assert!(validate_object_name("a.b", NameRule::Dns1123Subdomain).is_empty());
        assert!(!validate_object_name("a.b", NameRule::Dns1123Label).is_empty());
        assert!(validate_object_name("system:admin", NameRule::PathSegment).is_empty());
        assert_eq!(
            validate_object_name("..", NameRule::PathSegment),
            vec!["may not be '..'".to_string()]
        );
        assert_eq!(
            validate_object_name("a/b", NameRule::PathSegment),
            vec!["may not contain '/'".to_string()]
        );
    }

    #[test]
    fn label_keys_and_values() {
        assert!(validate_label_key("app").is_empty());
        assert!(validate_label_key("app.kubernetes.io/name").is_empty());
        assert!(!validate_label_key("/name").is_empty());
        assert!(!validate_label_key("Bad_Prefix/name").is_empty());
        assert!(!validate_label_key("a/b/c").is_empty());
        assert!(!validate_label_key("-x").is_empty());
        assert!(validate_label_value("").is_empty());
        assert!(validate_label_value("v1.2_3-x").is_empty());
        assert!(!validate_label_value("a b").is_empty());
        assert!(!validate_label_value(&"a".repeat(64)).is_empty());
    }

    #[test]
    fn generate_name_uses_alphabet_and_truncates() {
        let mut n = 0u64;
        let mut next = || {
            n += 1;
            n
        };
        let name = generate_name_with("web-", &mut next);
        assert_eq!(name, "web-cdfgh");
        let long = "x".repeat(80);
        let name = generate_name(&long);
        assert_eq!(name.len(), 63);
        assert!(
            name[58..]
                .bytes()
                .all(|c| NAME_SUFFIX_ALPHABET.contains(&c))
        );
        assert_ne!(generate_name("a-"), generate_name("a-"));
        assert!(validate_dns1123_subdomain(&generate_name("web-")).is_empty());
    }
}
