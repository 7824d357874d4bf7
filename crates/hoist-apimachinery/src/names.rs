//! Object name validation and `generateName`.

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
    let _ = (group, kind);
    todo!()
}

/// Errors (empty if valid) for an RFC 1123 subdomain, worded as Kubernetes does.
pub fn validate_dns1123_subdomain(value: &str) -> Vec<String> {
    let _ = value;
    todo!()
}

/// Errors (empty if valid) for an RFC 1123 label.
pub fn validate_dns1123_label(value: &str) -> Vec<String> {
    let _ = value;
    todo!()
}

/// Errors (empty if valid) for an RFC 1035 label.
pub fn validate_dns1035_label(value: &str) -> Vec<String> {
    let _ = value;
    todo!()
}

/// Errors (empty if valid) for a name used as a URL path segment.
pub fn validate_path_segment_name(value: &str) -> Vec<String> {
    let _ = value;
    todo!()
}

/// Validate `metadata.name` under `rule`; messages as Kubernetes prints them.
pub fn validate_object_name(name: &str, rule: NameRule) -> Vec<String> {
    let _ = (name, rule);
    todo!()
}

/// Validate a label key (qualified name) and return Kubernetes' messages.
pub fn validate_label_key(key: &str) -> Vec<String> {
    let _ = key;
    todo!()
}

/// Validate a label value and return Kubernetes' messages.
pub fn validate_label_value(value: &str) -> Vec<String> {
    let _ = value;
    todo!()
}

/// The alphabet Kubernetes uses for random name suffixes (no vowels, no confusable digits).
pub const NAME_SUFFIX_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// `generateName`: prefix (truncated to 58 chars) + 5 random chars.
pub fn generate_name(prefix: &str) -> String {
    let _ = prefix;
    todo!()
}

/// `generateName` with a caller-supplied random source (`next()` returns any u64).
pub fn generate_name_with(prefix: &str, next: &mut dyn FnMut() -> u64) -> String {
    let _ = (prefix, next);
    todo!()
}
