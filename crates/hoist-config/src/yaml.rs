//! YAML reading with precise locations: every parse error becomes a
//! [`ConfigError`] that names the file, line, column and field.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::error::{ConfigError, ErrorKind, Location, did_you_mean};

/// The text of one file, kept so errors can point into it.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub path: PathBuf,
    pub text: Arc<str>,
}

impl SourceFile {
    pub fn read(path: &Path) -> Result<SourceFile, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::io(path, &e))?;
        Ok(SourceFile::new(path, text))
    }

    pub fn new(path: &Path, text: impl Into<Arc<str>>) -> SourceFile {
        SourceFile {
            path: path.to_path_buf(),
            text: text.into(),
        }
    }

    /// A location at 1-based line/column.
    pub fn location(&self, line: usize, column: usize, label: &str) -> Location {
        Location::at_line_col(&self.path, &self.text, line, column, label)
    }

    /// The location of a key path like `["image", "layers", "0", "from"]`, found by
    /// indentation; falls back to the deepest parent found, then to the file start.
    pub fn locate(&self, path: &[&str], label: &str) -> Location {
        let offset = (1..=path.len())
            .rev()
            .find_map(|n| locate_key(&self.text, &path[..n]))
            .unwrap_or(0);
        Location::at(&self.path, &self.text, offset, label)
    }

    /// The location of item `index` (whose text is `item`) of the list at `path`,
    /// in block style (`- item`) or flow style (`[a, item]`).
    pub fn locate_item(&self, path: &[&str], index: usize, item: &str, label: &str) -> Location {
        let idx = index.to_string();
        let mut full: Vec<&str> = path.to_vec();
        full.push(&idx);
        if let Some(off) = locate_key(&self.text, &full) {
            return Location::at(&self.path, &self.text, off, label);
        }
        if let Some(off) = locate_key(&self.text, path) {
            let line_end = self.text[off..]
                .find('\n')
                .map_or(self.text.len(), |e| off + e);
            if let Some(pos) = self.text[off..line_end].find(item) {
                return Location::at(&self.path, &self.text, off + pos, label);
            }
        }
        self.locate(path, label)
    }

    /// Parses the whole file as one `T`, mapping errors to located diagnostics.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        // An empty file is an empty mapping (so `missing field` errors read naturally).
        let text: &str = if self.text.trim().is_empty() {
            "{}"
        } else {
            &self.text
        };
        // Before the typed parse, which would call a tag in a free-form map an "enum".
        self.refuse_custom_tags()?;
        serde_norway::from_str(text).map_err(|e| self.yaml_error(&e))
    }

    /// hoist's files take values as written, and a string field reads a tagged scalar
    /// (`!secret db-pass`) as its bare text: a tag some other tool would act on must not
    /// be dropped without a word. Core tags (`!!str`, `!!int`, ...) are fine.
    fn refuse_custom_tags(&self) -> Result<(), ConfigError> {
        // Nearly every file has no `!` at all: no second parse for them.
        if !self.text.contains('!') {
            return Ok(());
        }
        let Ok(value) = serde_norway::from_str::<serde_norway::Value>(&self.text) else {
            return Ok(());
        };
        let mut path = Vec::new();
        let Some(tag) = first_custom_tag(&value, &mut path) else {
            return Ok(());
        };
        let comps: Vec<&str> = path.iter().map(String::as_str).collect();
        let label = "custom YAML tag";
        // Point at the tag itself: its first occurrence after the deepest key found (in
        // flow style, `env: {A: !x y}`, only `env` is found by indentation).
        let location = (0..=comps.len())
            .rev()
            .find_map(|n| {
                let from = if n == 0 {
                    0
                } else {
                    locate_key(&self.text, &comps[..n])?
                };
                self.text[from..].find(&tag).map(|i| from + i)
            })
            .map(|off| Location::at(&self.path, &self.text, off, label))
            .unwrap_or_else(|| self.locate(&comps, label));
        let shown = dotted(&path);
        Err(ConfigError::new(
            ErrorKind::WrongType,
            format!("`{shown}` has the YAML tag `{tag}`, which hoist does not interpret"),
        )
        .at(location)
        .help(format!(
            "remove the tag to use the value as written, or quote the whole value \
             (`\"{tag} ...\"`) if the tag is meant to be part of the text"
        )))
    }

    /// Turns a serde_norway error into a diagnostic pointing into this file.
    pub fn yaml_error(&self, e: &serde_norway::Error) -> ConfigError {
        let full = e.to_string();
        let message = strip_location_suffix(&full).to_string();
        let (path, detail) = split_path(&message);
        let (kind, label, help) = classify(detail);
        let mut location = e
            .location()
            .map(|l| self.location(l.line(), l.column(), &label));
        // Some errors (missing fields) carry only the document start; the path
        // in the message (`image.layers[0]`) finds the mapping they are about.
        if let Some(p) = path
            && location
                .as_ref()
                .is_none_or(|l| l.line == 1 && l.column == 1)
        {
            let comps = path_components(p);
            let comps: Vec<&str> = comps.iter().map(String::as_str).collect();
            if let Some(off) = locate_key(&self.text, &comps) {
                location = Some(Location::at(&self.path, &self.text, off, &label));
            }
        }
        // A map's own check of one entry (`` `KEY` has no value``) is reported at the map:
        // point at the entry's key instead.
        if let Some(p) = path
            && let Some(key) = detail
                .strip_prefix('`')
                .and_then(|r| r.split_once("` "))
                .map(|(k, _)| k)
        {
            let mut comps = path_components(p);
            comps.push(key.to_string());
            let comps: Vec<&str> = comps.iter().map(String::as_str).collect();
            if let Some(off) = locate_key(&self.text, &comps) {
                location = Some(Location::at(&self.path, &self.text, off, &label));
            }
        }
        let message = match path {
            Some(p) => format!("{detail} (at `{p}`)"),
            None => detail.to_string(),
        };
        ConfigError::new(kind, message)
            .at_opt(location)
            .help_opt(help)
    }
}

/// Parses a stream of YAML documents (`---` separated) into JSON values,
/// dropping empty documents.
pub fn parse_documents(text: &str) -> Result<Vec<serde_json::Value>, serde_norway::Error> {
    let mut docs = Vec::new();
    for doc in serde_norway::Deserializer::from_str(text) {
        let value = serde_json::Value::deserialize(doc)?;
        if !value.is_null() {
            docs.push(value);
        }
    }
    Ok(docs)
}

/// The first tagged value in `v` (depth first), with the key path to it.
fn first_custom_tag(v: &serde_norway::Value, path: &mut Vec<String>) -> Option<String> {
    use serde_norway::Value;
    match v {
        Value::Tagged(t) => match t.tag.to_string().as_str() {
            // The non-specific tag (`! text`) only says "a plain string".
            "!" | "!!" => first_custom_tag(&t.value, path),
            tag => Some(tag.to_string()),
        },
        Value::Mapping(m) => m.iter().find_map(|(k, v)| {
            path.push(match k {
                Value::String(s) => s.clone(),
                other => serde_norway::to_string(other)
                    .map(|s| s.trim_end().to_string())
                    .unwrap_or_default(),
            });
            let found = first_custom_tag(v, path);
            if found.is_none() {
                path.pop();
            }
            found
        }),
        Value::Sequence(items) => items.iter().enumerate().find_map(|(i, v)| {
            path.push(i.to_string());
            let found = first_custom_tag(v, path);
            if found.is_none() {
                path.pop();
            }
            found
        }),
        _ => None,
    }
}

/// `["image", "layers", "0", "from"]` → `image.layers[0].from`.
fn dotted(path: &[String]) -> String {
    let mut out = String::new();
    for c in path {
        if c.parse::<usize>().is_ok() {
            out.push_str(&format!("[{c}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(c);
        }
    }
    out
}

fn strip_location_suffix(msg: &str) -> &str {
    match msg.rfind(" at line ") {
        Some(i) if msg[i..].contains(" column ") => &msg[..i],
        _ => msg,
    }
}

/// serde_norway prefixes errors with the field path (`image.layers[0]: ...`).
fn split_path(msg: &str) -> (Option<&str>, &str) {
    if let Some((p, rest)) = msg.split_once(": ")
        && !p.contains(' ')
        && !p.is_empty()
    {
        return (Some(p), rest);
    }
    (None, msg)
}

/// `image.layers[0].from` → `["image", "layers", "0", "from"]`.
fn path_components(p: &str) -> Vec<String> {
    p.split('.')
        .flat_map(|part| {
            let mut out = Vec::new();
            let mut rest = part;
            if let Some(i) = rest.find('[') {
                out.push(rest[..i].to_string());
                rest = &rest[i..];
                for idx in rest.split('[').filter(|x| !x.is_empty()) {
                    out.push(idx.trim_end_matches(']').to_string());
                }
            } else {
                out.push(rest.to_string());
            }
            out
        })
        .filter(|c| !c.is_empty())
        .collect()
}

fn backticked(s: &str) -> Vec<&str> {
    s.split('`').skip(1).step_by(2).collect()
}

fn classify(detail: &str) -> (ErrorKind, String, Option<String>) {
    if detail.starts_with("unknown field") {
        let names = backticked(detail);
        let (wrong, expected) = names.split_first().map_or(("", &[][..]), |(w, e)| (*w, e));
        let help = did_you_mean(wrong, expected.iter().copied()).or_else(|| {
            (!expected.is_empty()).then(|| {
                format!(
                    "allowed fields here: {}",
                    expected
                        .iter()
                        .map(|e| format!("`{e}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })
        });
        return (ErrorKind::UnknownField, "unknown field".into(), help);
    }
    if detail.starts_with("invalid type") || detail.starts_with("invalid value") {
        return (ErrorKind::WrongType, "wrong type".into(), None);
    }
    if detail.starts_with("missing field") {
        return (ErrorKind::MissingField, "in this mapping".into(), None);
    }
    if detail.starts_with("duplicate field") {
        return (
            ErrorKind::Syntax,
            "duplicate key".into(),
            Some("each key may appear once per mapping".into()),
        );
    }
    (ErrorKind::Syntax, "here".into(), None)
}

/// Finds the byte offset of a key path in YAML text by indentation (block style).
/// Numeric components select the n-th `- ` item of a sequence.
pub fn locate_key(text: &str, path: &[&str]) -> Option<usize> {
    let lines: Vec<(usize, &str)> = text
        .split_inclusive('\n')
        .scan(0usize, |off, l| {
            let start = *off;
            *off += l.len();
            Some((start, l.trim_end_matches(['\n', '\r'])))
        })
        .collect();
    let mut idx = 0; // next line to look at
    let mut parent_indent: isize = -1;
    let mut found = None;
    for comp in path {
        if let Ok(n) = comp.parse::<usize>() {
            let mut hit = None;
            let mut count = 0;
            let mut item_indent = None;
            for (i, (_, line)) in lines.iter().enumerate().skip(idx) {
                let Some((ind, body)) = content(line) else {
                    continue;
                };
                if (ind as isize) <= parent_indent && !body.starts_with("- ") && body != "-" {
                    break;
                }
                if (body.starts_with("- ") || body == "-") && item_indent.is_none_or(|x| x == ind) {
                    item_indent = Some(ind);
                    if count == n {
                        hit = Some((i, ind + 2, 0usize));
                        break;
                    }
                    count += 1;
                }
            }
            let (i, ind, _) = hit?;
            found = Some(lines[i].0 + ind.min(lines[i].1.len()));
            // Keys of the item sit at the dash's indent + 2; the first is on this line.
            idx = i;
            parent_indent = ind as isize - 1;
            continue;
        }
        let mut hit = None;
        for (i, (_, line)) in lines.iter().enumerate().skip(idx) {
            let Some((ind, body)) = content(line) else {
                continue;
            };
            let (ind, body) = match body.strip_prefix("- ") {
                Some(rest) => (ind + 2, rest.trim_start()),
                None => (ind, body),
            };
            if (ind as isize) <= parent_indent && i != idx {
                break;
            }
            let key = body
                .split_once(':')
                .map(|(k, _)| k.trim().trim_matches(['"', '\'']));
            if key == Some(comp) && (ind as isize) > parent_indent {
                hit = Some((i, ind));
                break;
            }
        }
        let (i, ind) = hit?;
        found = Some(
            lines[i].0 + lines[i].1.len() - lines[i].1.trim_start().len() + {
                let t = lines[i].1.trim_start();
                t.strip_prefix("- ")
                    .map_or(0, |rest| t.len() - rest.trim_start().len())
            },
        );
        idx = i + 1;
        parent_indent = ind as isize;
    }
    found
}

fn content(line: &str) -> Option<(usize, &str)> {
    let body = line.trim_start();
    if body.is_empty() || body.starts_with('#') || body == "---" {
        return None;
    }
    Some((line.len() - body.len(), body))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "name: api\nimage:\n  base: scratch\n  layers:\n    - from: ./a\n      to: /a\n    - from: ./b\n      to: /b\nports:\n  - name: http\n";

    fn line_of(path: &[&str]) -> usize {
        let off = locate_key(DOC, path).unwrap();
        DOC[..off].matches('\n').count() + 1
    }

    #[test]
    fn locates_nested_keys_and_list_items() {
        assert_eq!(line_of(&["name"]), 1);
        assert_eq!(line_of(&["image", "base"]), 3);
        assert_eq!(line_of(&["image", "layers", "1", "from"]), 7);
        assert_eq!(line_of(&["image", "layers", "1", "to"]), 8);
        assert_eq!(line_of(&["image", "layers", "0", "to"]), 6);
        assert_eq!(line_of(&["ports", "0", "name"]), 10);
        assert_eq!(locate_key(DOC, &["nope"]), None);
    }

    #[test]
    fn a_custom_tag_is_refused_where_it_is_and_core_tags_pass() {
        #[derive(Deserialize, Debug)]
        #[allow(dead_code)]
        struct S {
            name: String,
            env: std::collections::BTreeMap<String, String>,
            #[serde(default)]
            list: Vec<serde_json::Value>,
        }
        let src = SourceFile::new(
            Path::new("svc/service.yaml"),
            "name: a # not a tag: !x\nenv:\n  A: \"!quoted\"\n  B: !!str 0x1F\n  C: !secret db-pass\n",
        );
        let err = src.parse::<S>().unwrap_err();
        assert_eq!(err.kind, ErrorKind::WrongType);
        let text = err.to_string();
        assert!(text.starts_with("svc/service.yaml:5:6:"), "{text}");
        assert!(
            text.contains("`env.C` has the YAML tag `!secret`"),
            "{text}"
        );
        assert!(err.help.as_deref().unwrap().contains("quote"), "{err:?}");

        let src = SourceFile::new(
            Path::new("s.yaml"),
            "name: a\nenv: {}\nlist:\n  - x: 1\n  - y: !ref z\n",
        );
        let text = src.parse::<S>().unwrap_err().to_string();
        assert!(text.starts_with("s.yaml:5:8:"), "{text}");
        assert!(
            text.contains("`list[1].y` has the YAML tag `!ref`"),
            "{text}"
        );

        let src = SourceFile::new(Path::new("s.yaml"), "name: a\nenv: {A: x, B: !ref z}\n");
        let text = src.parse::<S>().unwrap_err().to_string();
        assert!(text.starts_with("s.yaml:2:16:"), "flow style: {text}");

        let ok = SourceFile::new(
            Path::new("s.yaml"),
            "name: ! a\nenv:\n  A: \"!quoted\"\n  B: !!str 0x1F\n",
        );
        let s = ok.parse::<S>().unwrap();
        assert_eq!(s.env["A"], "!quoted");
        assert_eq!(s.env["B"], "0x1F");
    }

    #[test]
    fn unknown_field_error_names_line_field_and_suggestion() {
        #[derive(Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct S {
            name: String,
            replicas: Option<u32>,
        }
        let src = SourceFile::new(Path::new("svc/service.yaml"), "name: a\nreplcas: 2\n");
        let err = src.parse::<S>().unwrap_err();
        assert_eq!(err.kind, ErrorKind::UnknownField);
        let text = err.to_string();
        assert!(text.starts_with("svc/service.yaml:2:1:"), "{text}");
        assert!(text.contains("replcas"), "{text}");
        assert_eq!(err.help.as_deref(), Some("did you mean `replicas`?"));
    }
}
