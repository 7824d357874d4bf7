//! Label selectors and field selectors.

use serde_json::{Map, Value};
use std::fmt;

/// Why a selector could not be parsed or used. The server answers 400 with `to_string()`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// Syntax error in a label selector string.
    #[error("unable to parse requirement: {0}")]
    Parse(String),
    /// Invalid key or value in a requirement (label key/value rules).
    #[error("unable to parse requirement: {0}")]
    InvalidRequirement(String),
    /// Syntax error in a field selector string.
    #[error("invalid selector: '{0}'; can't understand '{1}'")]
    FieldSyntax(String, String),
    /// Field selector on a field the kind does not support.
    #[error("field label not supported: {0}")]
    FieldNotSupported(String),
    /// Malformed `LabelSelector` JSON (`matchLabels`/`matchExpressions`).
    #[error("invalid label selector: {0}")]
    InvalidJson(String),
}

/// A label selector operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    /// `key=value`
    Equals,
    /// `key==value`
    DoubleEquals,
    /// `key!=value`
    NotEquals,
    /// `key in (a,b)`
    In,
    /// `key notin (a,b)`
    NotIn,
    /// `key`
    Exists,
    /// `!key`
    DoesNotExist,
    /// `key>1` (integer comparison)
    GreaterThan,
    /// `key<1` (integer comparison)
    LessThan,
}

/// One requirement of a label selector. Values are sorted and deduplicated for `In`/`NotIn`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    pub key: String,
    pub operator: Operator,
    pub values: Vec<String>,
}

/// A parsed label selector: all requirements must match (AND). Empty matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    pub requirements: Vec<Requirement>,
}

impl LabelSelector {
    /// Parse the `labelSelector` query syntax. Requirements come out sorted by key
    /// (as Kubernetes does), so printing a parsed selector is canonical.
    pub fn parse(input: &str) -> Result<LabelSelector, SelectorError> {
        let tokens = lex(input)?;
        let mut p = Parser { tokens, pos: 0 };
        let mut requirements = Vec::new();
        if p.tokens.is_empty() {
            return Ok(LabelSelector::default());
        }
        loop {
            requirements.push(p.requirement()?);
            match p.next() {
                None => break,
                Some(Token::Comma) => {
                    if p.peek().is_none() {
                        return Err(SelectorError::Parse(
                            "found '', expected: identifier after ','".into(),
                        ));
                    }
                }
                Some(t) => {
                    return Err(SelectorError::Parse(format!(
                        "found '{}', expected: ','",
                        t.text()
                    )));
                }
            }
        }
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(LabelSelector { requirements })
    }

    /// Convert a `metav1.LabelSelector` object (`matchLabels`, `matchExpressions`).
    /// `null` and `{}` select everything (callers decide whether a missing selector
    /// should instead select nothing).
    pub fn from_label_selector_json(selector: &Value) -> Result<LabelSelector, SelectorError> {
        let obj = match selector {
            Value::Null => return Ok(LabelSelector::default()),
            Value::Object(o) => o,
            other => {
                return Err(SelectorError::InvalidJson(format!(
                    "expected an object, got {other}"
                )));
            }
        };
        let mut requirements = Vec::new();
        match obj.get("matchLabels") {
            None | Some(Value::Null) => {}
            Some(Value::Object(m)) => {
                for (k, v) in m {
                    let v = v.as_str().ok_or_else(|| {
                        SelectorError::InvalidJson(format!(
                            "matchLabels.{k}: expected a string, got {v}"
                        ))
                    })?;
                    requirements.push(Requirement::new(k, Operator::Equals, vec![v.to_string()])?);
                }
            }
            Some(other) => {
                return Err(SelectorError::InvalidJson(format!(
                    "matchLabels: expected an object, got {other}"
                )));
            }
        }
        match obj.get("matchExpressions") {
            None | Some(Value::Null) => {}
            Some(Value::Array(exprs)) => {
                for (i, e) in exprs.iter().enumerate() {
                    let key = e.get("key").and_then(Value::as_str).ok_or_else(|| {
                        SelectorError::InvalidJson(format!(
                            "matchExpressions[{i}].key: Required value"
                        ))
                    })?;
                    let op = match e.get("operator").and_then(Value::as_str) {
                        Some("In") => Operator::In,
                        Some("NotIn") => Operator::NotIn,
                        Some("Exists") => Operator::Exists,
                        Some("DoesNotExist") => Operator::DoesNotExist,
                        Some(other) => {
                            return Err(SelectorError::InvalidJson(format!(
                                "matchExpressions[{i}].operator: Unsupported value: \"{other}\": supported values: \"In\", \"NotIn\", \"Exists\", \"DoesNotExist\""
                            )));
                        }
                        None => {
                            return Err(SelectorError::InvalidJson(format!(
                                "matchExpressions[{i}].operator: Required value"
                            )));
                        }
                    };
                    let values = match e.get("values") {
                        None | Some(Value::Null) => Vec::new(),
                        Some(Value::Array(vs)) => vs
                            .iter()
                            .map(|v| {
                                v.as_str().map(str::to_string).ok_or_else(|| {
                                    SelectorError::InvalidJson(format!(
                                        "matchExpressions[{i}].values: expected strings, got {v}"
                                    ))
                                })
                            })
                            .collect::<Result<_, _>>()?,
                        Some(other) => {
                            return Err(SelectorError::InvalidJson(format!(
                                "matchExpressions[{i}].values: expected a list, got {other}"
                            )));
                        }
                    };
                    requirements.push(Requirement::new(key, op, values)?);
                }
            }
            Some(other) => {
                return Err(SelectorError::InvalidJson(format!(
                    "matchExpressions: expected a list, got {other}"
                )));
            }
        }
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(LabelSelector { requirements })
    }

    /// Whether the selector has no requirements (matches everything).
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Does a label map match? Non-string label values count as absent.
    pub fn matches(&self, labels: &Map<String, Value>) -> bool {
        self.requirements
            .iter()
            .all(|r| r.matches(labels.get(&r.key).and_then(Value::as_str)))
    }

    /// Match against an object's `metadata.labels`.
    pub fn matches_object(&self, object: &Value) -> bool {
        static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
        let labels = object
            .pointer("/metadata/labels")
            .and_then(Value::as_object)
            .unwrap_or_else(|| EMPTY.get_or_init(Map::new));
        self.matches(labels)
    }
}

impl Requirement {
    /// Build a validated requirement (label key/value rules, value counts per operator).
    pub fn new(
        key: &str,
        operator: Operator,
        mut values: Vec<String>,
    ) -> Result<Requirement, SelectorError> {
        let key_errs = crate::names::validate_label_key(key);
        if !key_errs.is_empty() {
            return Err(SelectorError::InvalidRequirement(format!(
                "key: Invalid value: \"{key}\": {}",
                key_errs.join("; ")
            )));
        }
        match operator {
            Operator::In | Operator::NotIn if values.is_empty() => {
                return Err(SelectorError::InvalidRequirement(
                    "values: Invalid value: \"\": for 'in', 'notin' operators, values set can't be empty".into(),
                ));
            }
            Operator::Equals | Operator::DoubleEquals | Operator::NotEquals
                if values.len() != 1 =>
            {
                return Err(SelectorError::InvalidRequirement(
                    "values: Invalid value: \"\": exact-match compatibility requires one single value".into(),
                ));
            }
            Operator::Exists | Operator::DoesNotExist if !values.is_empty() => {
                return Err(SelectorError::InvalidRequirement(
                    "values: Invalid value: \"\": values set must be empty for exists and does not exist".into(),
                ));
            }
            Operator::GreaterThan | Operator::LessThan => {
                if values.len() != 1 {
                    return Err(SelectorError::InvalidRequirement(
                        "values: Invalid value: \"\": for 'Gt', 'Lt' operators, exactly one value is required".into(),
                    ));
                }
                if values[0].parse::<i64>().is_err() {
                    return Err(SelectorError::InvalidRequirement(format!(
                        "values[0]: Invalid value: \"{}\": for 'Gt', 'Lt' operators, the value must be an integer",
                        values[0]
                    )));
                }
            }
            _ => {}
        }
        for v in &values {
            let errs = crate::names::validate_label_value(v);
            if !errs.is_empty() {
                return Err(SelectorError::InvalidRequirement(format!(
                    "values[0][{key}]: Invalid value: \"{v}\": {}",
                    errs.join("; ")
                )));
            }
        }
        if matches!(operator, Operator::In | Operator::NotIn) {
            values.sort();
            values.dedup();
        }
        Ok(Requirement {
            key: key.to_string(),
            operator,
            values,
        })
    }

    /// Does a label value (None = label absent) satisfy this requirement?
    pub fn matches(&self, value: Option<&str>) -> bool {
        let in_values = |v: &str| self.values.iter().any(|x| x == v);
        match self.operator {
            Operator::Equals | Operator::DoubleEquals | Operator::In => {
                value.is_some_and(in_values)
            }
            Operator::NotEquals | Operator::NotIn => !value.is_some_and(in_values),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                let (Some(v), Some(bound)) = (
                    value.and_then(|v| v.parse::<i64>().ok()),
                    self.values.first().and_then(|b| b.parse::<i64>().ok()),
                ) else {
                    return false;
                };
                if self.operator == Operator::GreaterThan {
                    v > bound
                } else {
                    v < bound
                }
            }
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let one = self.values.first().map(String::as_str).unwrap_or("");
        match self.operator {
            Operator::Equals => write!(f, "{}={one}", self.key),
            Operator::DoubleEquals => write!(f, "{}=={one}", self.key),
            Operator::NotEquals => write!(f, "{}!={one}", self.key),
            Operator::In => write!(f, "{} in ({})", self.key, self.values.join(",")),
            Operator::NotIn => write!(f, "{} notin ({})", self.key, self.values.join(",")),
            Operator::Exists => write!(f, "{}", self.key),
            Operator::DoesNotExist => write!(f, "!{}", self.key),
            Operator::GreaterThan => write!(f, "{}>{one}", self.key),
            Operator::LessThan => write!(f, "{}<{one}", self.key),
        }
    }
}

impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Ident(String),
    Bang,
    Eq,
    DoubleEq,
    NotEq,
    Gt,
    Lt,
    Open,
    Close,
    Comma,
}

impl Token {
    fn text(&self) -> &str {
        match self {
            Token::Ident(s) => s,
            Token::Bang => "!",
            Token::Eq => "=",
            Token::DoubleEq => "==",
            Token::NotEq => "!=",
            Token::Gt => ">",
            Token::Lt => "<",
            Token::Open => "(",
            Token::Close => ")",
            Token::Comma => ",",
        }
    }
}

fn is_special(c: char) -> bool {
    matches!(c, '!' | '=' | '>' | '<' | '(' | ')' | ',') || c.is_whitespace()
}

fn lex(input: &str) -> Result<Vec<Token>, SelectorError> {
    let mut out = Vec::new();
    let mut chars = input.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let tok = match c {
            c if c.is_whitespace() => continue,
            ',' => Token::Comma,
            '(' => Token::Open,
            ')' => Token::Close,
            '>' => Token::Gt,
            '<' => Token::Lt,
            '=' => {
                if chars.peek().map(|p| p.1) == Some('=') {
                    chars.next();
                    Token::DoubleEq
                } else {
                    Token::Eq
                }
            }
            '!' => {
                if chars.peek().map(|p| p.1) == Some('=') {
                    chars.next();
                    Token::NotEq
                } else {
                    Token::Bang
                }
            }
            _ => {
                let mut end = i + c.len_utf8();
                while let Some(&(j, d)) = chars.peek() {
                    if is_special(d) {
                        break;
                    }
                    end = j + d.len_utf8();
                    chars.next();
                }
                Token::Ident(input[i..end].to_string())
            }
        };
        out.push(tok);
    }
    Ok(out)
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }
    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        t
    }
    fn found(t: Option<&Token>) -> String {
        t.map(|t| t.text().to_string()).unwrap_or_default()
    }

    fn requirement(&mut self) -> Result<Requirement, SelectorError> {
        if self.peek() == Some(&Token::Bang) {
            self.next();
            return match self.next() {
                Some(Token::Ident(k)) => {
                    if matches!(self.peek(), None | Some(Token::Comma)) {
                        Requirement::new(&k, Operator::DoesNotExist, vec![])
                    } else {
                        Err(SelectorError::Parse(format!(
                            "found '{}', expected: ','",
                            Self::found(self.peek())
                        )))
                    }
                }
                t => Err(SelectorError::Parse(format!(
                    "found '{}', expected: identifier",
                    Self::found(t.as_ref())
                ))),
            };
        }
        let key = match self.next() {
            Some(Token::Ident(k)) => k,
            t => {
                return Err(SelectorError::Parse(format!(
                    "found '{}', expected: !, identifier, or 'end of string'",
                    Self::found(t.as_ref())
                )));
            }
        };
        let op = match self.peek() {
            None | Some(Token::Comma) => return Requirement::new(&key, Operator::Exists, vec![]),
            Some(Token::Eq) => Operator::Equals,
            Some(Token::DoubleEq) => Operator::DoubleEquals,
            Some(Token::NotEq) => Operator::NotEquals,
            Some(Token::Gt) => Operator::GreaterThan,
            Some(Token::Lt) => Operator::LessThan,
            Some(Token::Ident(w)) if w == "in" => Operator::In,
            Some(Token::Ident(w)) if w == "notin" => Operator::NotIn,
            t => {
                return Err(SelectorError::Parse(format!(
                    "found '{}', expected: in, notin, =, ==, !=, gt, lt",
                    Self::found(t)
                )));
            }
        };
        self.next();
        let values = match op {
            Operator::In | Operator::NotIn => {
                match self.next() {
                    Some(Token::Open) => {}
                    t => {
                        return Err(SelectorError::Parse(format!(
                            "found '{}', expected: '('",
                            Self::found(t.as_ref())
                        )));
                    }
                }
                let mut values = Vec::new();
                loop {
                    match self.next() {
                        Some(Token::Ident(v)) => {
                            values.push(v);
                            match self.next() {
                                Some(Token::Comma) => continue,
                                Some(Token::Close) => break,
                                t => {
                                    return Err(SelectorError::Parse(format!(
                                        "found '{}', expected: ',' or ')'",
                                        Self::found(t.as_ref())
                                    )));
                                }
                            }
                        }
                        // Kubernetes accepts empty values inside the set: `in (a,)`, `in ()`.
                        Some(Token::Comma) => values.push(String::new()),
                        Some(Token::Close) => {
                            values.push(String::new());
                            break;
                        }
                        t => {
                            return Err(SelectorError::Parse(format!(
                                "found '{}', expected: ',', ')' or identifier",
                                Self::found(t.as_ref())
                            )));
                        }
                    }
                }
                values
            }
            _ => match self.peek() {
                Some(Token::Ident(v)) => {
                    let v = v.clone();
                    self.next();
                    vec![v]
                }
                // `key=` selects an empty value.
                None | Some(Token::Comma) => vec![String::new()],
                t => {
                    return Err(SelectorError::Parse(format!(
                        "found '{}', expected: identifier",
                        Self::found(t)
                    )));
                }
            },
        };
        Requirement::new(&key, op, values)
    }
}

/// A field selector operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldOperator {
    Equals,
    DoubleEquals,
    NotEquals,
}

/// One requirement of a field selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRequirement {
    pub field: String,
    pub operator: FieldOperator,
    pub value: String,
}

/// A parsed field selector (AND of requirements).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {
    pub requirements: Vec<FieldRequirement>,
}

impl FieldSelector {
    /// Parse the `fieldSelector` query syntax (`a=b,c!=d`; `\` escapes `,`, `=`, `!` and `\`
    /// in values).
    pub fn parse(input: &str) -> Result<FieldSelector, SelectorError> {
        let mut requirements = Vec::new();
        if input.trim().is_empty() {
            return Ok(FieldSelector::default());
        }
        for term in split_unescaped(input, ',') {
            let (field, op, raw) = split_term(&term)
                .ok_or_else(|| SelectorError::FieldSyntax(input.to_string(), term.clone()))?;
            let field = field.trim();
            if field.is_empty() {
                return Err(SelectorError::FieldSyntax(input.to_string(), term.clone()));
            }
            let value = unescape(raw)
                .ok_or_else(|| SelectorError::FieldSyntax(input.to_string(), term.clone()))?;
            requirements.push(FieldRequirement {
                field: field.to_string(),
                operator: op,
                value,
            });
        }
        Ok(FieldSelector { requirements })
    }

    /// Whether the selector has no requirements.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Check every field is supported for `group`/`kind` (see [`supported_field_labels`]);
    /// `extra` adds fields (e.g. a CRD's `selectableFields`).
    pub fn validate_for(
        &self,
        group: &str,
        kind: &str,
        extra: &[String],
    ) -> Result<(), SelectorError> {
        let supported = supported_field_labels(group, kind);
        for r in &self.requirements {
            let f = r.field.as_str();
            let ok = f == "metadata.name"
                || f == "metadata.namespace"
                || supported.contains(&f)
                || extra.iter().any(|e| e == f);
            if !ok {
                return Err(SelectorError::FieldNotSupported(r.field.clone()));
            }
        }
        Ok(())
    }

    /// Does the object match? Values are compared as strings (see [`field_label_value`]).
    pub fn matches(&self, object: &Value) -> bool {
        self.requirements.iter().all(|r| {
            let actual = field_label_value(object, &r.field);
            match r.operator {
                FieldOperator::Equals | FieldOperator::DoubleEquals => actual == r.value,
                FieldOperator::NotEquals => actual != r.value,
            }
        })
    }

    /// The value required by `field=value` / `field==value`, if any (lets the server
    /// turn `metadata.name=x` into a point lookup).
    pub fn exact_value(&self, field: &str) -> Option<&str> {
        self.requirements
            .iter()
            .find(|r| r.field == field && r.operator != FieldOperator::NotEquals)
            .map(|r| r.value.as_str())
    }
}

impl fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            let op = match r.operator {
                FieldOperator::Equals => "=",
                FieldOperator::DoubleEquals => "==",
                FieldOperator::NotEquals => "!=",
            };
            write!(f, "{}{op}{}", r.field, escape(&r.value))?;
        }
        Ok(())
    }
}

fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        if matches!(c, '\\' | ',' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn unescape(v: &str) -> Option<String> {
    let mut out = String::with_capacity(v.len());
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some(e @ ('\\' | ',' | '=')) => out.push(e),
                _ => return None,
            }
        } else if c == ',' || c == '=' {
            return None;
        } else {
            out.push(c);
        }
    }
    Some(out)
}

fn split_unescaped(s: &str, sep: char) -> Vec<String> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut escaped = false;
    for c in s.chars() {
        if escaped {
            cur.push(c);
            escaped = false;
        } else if c == '\\' {
            cur.push(c);
            escaped = true;
        } else if c == sep {
            parts.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    parts.push(cur);
    parts
}

/// Split `field<op>value` at the first unescaped operator (`!=`, `==`, `=`).
fn split_term(term: &str) -> Option<(&str, FieldOperator, &str)> {
    let b = term.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' {
            i += 2;
            continue;
        }
        if term[i..].starts_with("!=") {
            return Some((&term[..i], FieldOperator::NotEquals, &term[i + 2..]));
        }
        if term[i..].starts_with("==") {
            return Some((&term[..i], FieldOperator::DoubleEquals, &term[i + 2..]));
        }
        if b[i] == b'=' {
            return Some((&term[..i], FieldOperator::Equals, &term[i + 1..]));
        }
        i += 1;
    }
    None
}

/// The field labels Kubernetes accepts in field selectors for `group`/`kind`
/// besides `metadata.name` and `metadata.namespace` (which every kind accepts).
pub fn supported_field_labels(group: &str, kind: &str) -> &'static [&'static str] {
    match (group, kind) {
        ("", "Pod") => &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.podIPs",
            "status.nominatedNodeName",
        ],
        ("", "Event") => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        ("events.k8s.io", "Event") => &[
            "regarding.kind",
            "regarding.namespace",
            "regarding.name",
            "regarding.uid",
            "regarding.apiVersion",
            "regarding.resourceVersion",
            "regarding.fieldPath",
            "reason",
            "reportingController",
            "type",
        ],
        ("", "Secret") => &["type"],
        ("", "Namespace") => &["status.phase"],
        ("", "Node") => &["spec.unschedulable"],
        ("", "Service") => &["spec.clusterIP", "spec.type"],
        ("", "ReplicationController") => &["status.replicas"],
        ("apps", "ReplicaSet") => &["status.replicas"],
        ("batch", "Job") => &["status.successful"],
        _ => &[],
    }
}

/// The string value of a field label on an object, as Kubernetes computes it
/// (e.g. `spec.hostNetwork` → `"false"` when unset, `source` → `source.component`
/// for events, `status.successful` → `status.succeeded` for jobs).
pub fn field_label_value(object: &Value, field: &str) -> String {
    let lookup = |path: &str| -> Option<&Value> {
        let mut cur = object;
        for part in path.split('.') {
            cur = cur.as_object()?.get(part)?;
        }
        Some(cur)
    };
    let render = |v: Option<&Value>, default: &str| -> String {
        match v {
            None | Some(Value::Null) => default.to_string(),
            Some(Value::String(s)) => s.clone(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|i| match i {
                    Value::String(s) => s.clone(),
                    // podIPs are objects `{ip: ...}`.
                    Value::Object(o) => o
                        .get("ip")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                    other => other.to_string(),
                })
                .collect::<Vec<_>>()
                .join(","),
            Some(other) => other.to_string(),
        }
    };
    match field {
        "source" => render(lookup("source.component"), ""),
        "status.successful" => render(lookup("status.succeeded"), "0"),
        "status.replicas" => render(lookup("status.replicas"), "0"),
        "spec.hostNetwork" | "spec.unschedulable" => render(lookup(field), "false"),
        _ => render(lookup(field), ""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn parses_every_operator() {
        let s = LabelSelector::parse(
            "app=web, tier==front,env!=prod,zone in (b, a),x notin (y),has,!gone,n>3,m<5",
        )
        .unwrap();
        let ops: Vec<_> = s
            .requirements
            .iter()
            .map(|r| (r.key.as_str(), r.operator))
            .collect();
        assert_eq!(
            ops,
            vec![
                ("app", Operator::Equals),
                ("env", Operator::NotEquals),
                ("gone", Operator::DoesNotExist),
                ("has", Operator::Exists),
                ("m", Operator::LessThan),
                ("n", Operator::GreaterThan),
                ("tier", Operator::DoubleEquals),
                ("x", Operator::NotIn),
                ("zone", Operator::In),
            ]
        );
        assert_eq!(
            s.to_string(),
            "app=web,env!=prod,!gone,has,m<5,n>3,tier==front,x notin (y),zone in (a,b)"
        );
    }

    #[test]
    fn matching_semantics() {
        let l = labels(json!({"app": "web", "env": "dev", "n": "7"}));
        let m = |s: &str| LabelSelector::parse(s).unwrap().matches(&l);
        assert!(m(""));
        assert!(m("app=web"));
        assert!(!m("app=db"));
        assert!(m("app!=db"));
        assert!(m("missing!=x"), "!= matches absent labels");
        assert!(m("env in (dev,prod)"));
        assert!(!m("env notin (dev)"));
        assert!(m("missing notin (dev)"));
        assert!(m("app"));
        assert!(!m("!app"));
        assert!(m("!missing"));
        assert!(m("n>5") && !m("n>7") && m("n<8"));
        assert!(!m("app>1"), "non-integer label never satisfies gt");
        assert!(!m("app=web,env=prod"));
    }

    #[test]
    fn empty_values() {
        let s = LabelSelector::parse("a=").unwrap();
        assert!(s.matches(&labels(json!({"a": ""}))));
        assert!(!s.matches(&labels(json!({}))));
        let s = LabelSelector::parse("a in ()").unwrap();
        assert_eq!(s.requirements[0].values, vec![String::new()]);
        assert_eq!(LabelSelector::parse(&s.to_string()).unwrap(), s);
    }

    #[test]
    fn parse_errors() {
        for bad in [
            "a in b",
            "a in (b",
            "(a)",
            "a=b=c",
            "a,",
            ",a",
            "a notin",
            "!",
            "a b",
            "a in (b c)",
            "a>b",
            "Bad Key=1",
            "a=b c",
            "a=-x",
            "!a=b",
        ] {
            assert!(LabelSelector::parse(bad).is_err(), "{bad} should fail");
        }
        let e = LabelSelector::parse("a in b").unwrap_err().to_string();
        assert!(
            e.starts_with("unable to parse requirement: found 'b', expected: '('"),
            "{e}"
        );
    }

    #[test]
    fn label_selector_json() {
        let s = LabelSelector::from_label_selector_json(&json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["a", "b"]},
                {"key": "gone", "operator": "DoesNotExist"}
            ]
        }))
        .unwrap();
        assert_eq!(s.to_string(), "app=web,!gone,tier in (a,b)");
        assert!(s.matches(&labels(json!({"app": "web", "tier": "b"}))));
        assert!(!s.matches(&labels(json!({"app": "web", "tier": "b", "gone": "x"}))));
        assert!(
            LabelSelector::from_label_selector_json(&json!(null))
                .unwrap()
                .is_empty()
        );
        assert!(
            LabelSelector::from_label_selector_json(
                &json!({"matchExpressions": [{"key": "a", "operator": "In"}]})
            )
            .is_err()
        );
        assert!(
            LabelSelector::from_label_selector_json(
                &json!({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]})
            )
            .is_err()
        );
        assert!(
            LabelSelector::from_label_selector_json(
                &json!({"matchExpressions": [{"key": "a", "operator": "Gt"}]})
            )
            .is_err()
        );
        assert!(
            LabelSelector::from_label_selector_json(&json!({"matchLabels": {"a": 1}})).is_err()
        );
        assert!(LabelSelector::from_label_selector_json(&json!([1])).is_err());
    }

    #[test]
    fn matches_object_metadata_labels() {
        let s = LabelSelector::parse("app=web").unwrap();
        assert!(s.matches_object(&json!({"metadata": {"labels": {"app": "web"}}})));
        assert!(!s.matches_object(&json!({"metadata": {}})));
        assert!(
            LabelSelector::parse("!app")
                .unwrap()
                .matches_object(&json!({}))
        );
    }

    #[test]
    fn field_selectors() {
        let pod = json!({"metadata": {"name": "p", "namespace": "ns"}, "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}});
        let m = |s: &str| FieldSelector::parse(s).unwrap().matches(&pod);
        assert!(m("metadata.name=p"));
        assert!(m("metadata.name==p,metadata.namespace=ns"));
        assert!(!m("metadata.name!=p"));
        assert!(m("status.phase!=Pending,spec.nodeName=n1"));
        assert!(m("spec.hostNetwork=false"));
        assert!(m("spec.schedulerName="));
        assert!(m(""));
        assert_eq!(
            FieldSelector::parse("metadata.name=p")
                .unwrap()
                .exact_value("metadata.name"),
            Some("p")
        );
    }

    #[test]
    fn field_selector_escapes_and_errors() {
        let s = FieldSelector::parse(r"metadata.name=a\,b\=c\\d").unwrap();
        assert_eq!(s.requirements[0].value, r"a,b=c\d");
        assert_eq!(FieldSelector::parse(&s.to_string()).unwrap(), s);
        let e = FieldSelector::parse("metadata.name").unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid selector: 'metadata.name'; can't understand 'metadata.name'"
        );
        assert!(FieldSelector::parse(r"a=b\x").is_err());
        assert!(FieldSelector::parse("=b").is_err());
    }

    #[test]
    fn field_labels_per_kind() {
        let s = FieldSelector::parse("spec.nodeName=n").unwrap();
        assert!(s.validate_for("", "Pod", &[]).is_ok());
        assert_eq!(
            s.validate_for("", "ConfigMap", &[])
                .unwrap_err()
                .to_string(),
            "field label not supported: spec.nodeName"
        );
        assert!(
            s.validate_for("example.com", "Widget", &["spec.nodeName".into()])
                .is_ok()
        );
        assert!(
            FieldSelector::parse("metadata.name=x")
                .unwrap()
                .validate_for("apps", "Deployment", &[])
                .is_ok()
        );
        let ev = json!({"involvedObject": {"name": "p", "kind": "Pod", "uid": "u"}, "source": {"component": "kubelet"}, "type": "Normal"});
        assert!(FieldSelector::parse("involvedObject.name=p,involvedObject.kind=Pod,involvedObject.uid=u,source=kubelet,type=Normal").unwrap().matches(&ev));
        assert!(
            FieldSelector::parse("status.successful=0")
                .unwrap()
                .matches(&json!({"status": {}}))
        );
        assert!(
            FieldSelector::parse("status.successful=2")
                .unwrap()
                .matches(&json!({"status": {"succeeded": 2}}))
        );
    }
}
