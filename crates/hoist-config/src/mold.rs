//! Molds: a directory of minijinja YAML templates plus `mold.yaml`, a small
//! schema of parameters with types and defaults. Many services share one mold.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use minijinja::{Environment, UndefinedBehavior};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{ConfigError, ErrorKind, Location};
use crate::yaml::SourceFile;

/// `mold.yaml`: what a mold is for and which parameters it takes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MoldFile {
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub parameters: Vec<Parameter>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Parameter {
    pub name: String,
    #[serde(rename = "type", default)]
    pub kind: ParamType,
    #[serde(default)]
    pub default: Option<Value>,
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParamType {
    String,
    Integer,
    Number,
    Boolean,
    List,
    Map,
    #[default]
    Any,
}

impl ParamType {
    pub fn accepts(self, v: &Value) -> bool {
        match self {
            ParamType::String => v.is_string(),
            ParamType::Integer => v.is_i64() || v.is_u64(),
            ParamType::Number => v.is_number(),
            ParamType::Boolean => v.is_boolean(),
            ParamType::List => v.is_array(),
            ParamType::Map => v.is_object(),
            ParamType::Any => true,
        }
    }

    fn name(self) -> &'static str {
        match self {
            ParamType::String => "a string",
            ParamType::Integer => "an integer",
            ParamType::Number => "a number",
            ParamType::Boolean => "a boolean",
            ParamType::List => "a list",
            ParamType::Map => "a map",
            ParamType::Any => "any value",
        }
    }
}

/// What a JSON value is, in words, for error messages.
pub fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("boolean `{b}`"),
        Value::Number(n) => format!("number `{n}`"),
        Value::String(s) => format!("string \"{s}\""),
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "a map".into(),
    }
}

/// A loaded mold.
#[derive(Debug, Clone)]
pub struct Mold {
    pub name: String,
    pub dir: PathBuf,
    pub schema: MoldFile,
    pub schema_source: SourceFile,
    /// Template files in name order (`deployment.yaml`, `service.yaml`, ...).
    pub templates: Vec<SourceFile>,
}

impl Mold {
    /// Loads `<molds_dir>/<name>/`.
    pub fn load(molds_dir: &Path, name: &str) -> Result<Mold, ConfigError> {
        let dir = molds_dir.join(name);
        let schema_path = dir.join("mold.yaml");
        let schema_source = SourceFile::read(&schema_path)?;
        let schema: MoldFile = schema_source.parse()?;
        let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map_err(|e| ConfigError::io(&dir, &e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.is_file()
                    && p.file_name().is_some_and(|n| n != "mold.yaml")
                    && p.extension().is_some_and(|x| x == "yaml" || x == "yml")
            })
            .collect();
        names.sort();
        let templates = names
            .iter()
            .map(|p| SourceFile::read(p))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Mold {
            name: name.to_string(),
            dir,
            schema,
            schema_source,
            templates,
        })
    }

    pub fn parameter(&self, name: &str) -> Option<&Parameter> {
        self.schema.parameters.iter().find(|p| p.name == name)
    }

    /// The defaults layer: every parameter with a default.
    pub fn defaults(&self) -> Map<String, Value> {
        self.schema
            .parameters
            .iter()
            .filter_map(|p| p.default.clone().map(|d| (p.name.clone(), d)))
            .collect()
    }

    fn template_name(&self, file: &SourceFile) -> String {
        let base = file
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        format!("{}/{}", self.name, base)
    }

    /// Checks merged `values` against the schema: required parameters present,
    /// types right. `where_` says which service asked (for the message).
    pub fn check_values(
        &self,
        values: &Map<String, Value>,
        service: &str,
        at: &dyn Fn(&str) -> Option<Location>,
    ) -> Vec<ConfigError> {
        let mut out = Vec::new();
        for p in &self.schema.parameters {
            match values.get(&p.name) {
                None if p.required => out.push(
                    ConfigError::new(
                        ErrorKind::MissingParameter,
                        format!(
                            "service `{service}` does not set parameter `{}` required by mold `{}`",
                            p.name, self.name
                        ),
                    )
                    .at_opt(at("mold"))
                    .help(format!(
                        "add `values: {{{}: ...}}` to the service{}",
                        p.name,
                        p.description
                            .as_ref()
                            .map(|d| format!(" ({d})"))
                            .unwrap_or_default()
                    )),
                ),
                Some(v) if !p.kind.accepts(v) => out.push(
                    ConfigError::new(
                        ErrorKind::WrongType,
                        format!(
                            "parameter `{}` of mold `{}` must be {}, but service `{service}` gives {}",
                            p.name,
                            self.name,
                            p.kind.name(),
                            describe(v)
                        ),
                    )
                    .at_opt(at(&p.name)),
                ),
                _ => {}
            }
        }
        out
    }
}

/// All molds of a project compiled into one template environment.
#[derive(Clone)]
pub struct Templates {
    env: Environment<'static>,
    /// template name → source file, to turn template errors into file:line.
    sources: BTreeMap<String, SourceFile>,
    /// Templates that failed to compile, with their error (rendering them repeats it).
    broken: BTreeMap<String, ConfigError>,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Templates")
            .field("templates", &self.sources.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Templates {
    /// Compiles every template of `molds`; syntax errors are returned, not fatal
    /// (templates that compiled still render).
    pub fn compile<'a>(molds: impl IntoIterator<Item = &'a Mold>) -> (Templates, Vec<ConfigError>) {
        let mut env = Environment::new();
        // Undefined values are errors (typos in templates surface), except in
        // `if` tests where an unset optional parameter simply is false.
        env.set_undefined_behavior(UndefinedBehavior::SemiStrict);
        // Plain substitution: minijinja would JSON-quote every value in `.yaml`
        // templates, which breaks `name: {{ name }}-db`. Authors use `|tojson`.
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        // YAML is whitespace-sensitive: block tags should not leave blank lines.
        if let Ok(syntax) = minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .keep_trailing_newline(true)
            .build()
        {
            env.set_syntax(syntax);
        }
        let mut sources = BTreeMap::new();
        let mut broken = BTreeMap::new();
        for mold in molds {
            for file in &mold.templates {
                let name = mold.template_name(file);
                sources.insert(name.clone(), file.clone());
                if let Err(e) = env.add_template_owned(name.clone(), file.text.to_string()) {
                    broken.insert(name, template_error(&sources, &e));
                }
            }
        }
        let errors = broken.values().cloned().collect();
        (
            Templates {
                env,
                sources,
                broken,
            },
            errors,
        )
    }

    /// Renders every template of `mold` with `ctx`; returns (template file, text) pairs.
    pub fn render(&self, mold: &Mold, ctx: &Value) -> Result<Vec<(PathBuf, String)>, ConfigError> {
        let ctx = minijinja::Value::from(minijinja::value::Serde(ctx));
        let mut out = Vec::new();
        for file in &mold.templates {
            let name = mold.template_name(file);
            if let Some(e) = self.broken.get(&name) {
                return Err(e.clone());
            }
            let tmpl = self
                .env
                .get_template(&name)
                .map_err(|e| template_error(&self.sources, &e))?;
            let text = tmpl
                .render(&ctx)
                .map_err(|e| template_error(&self.sources, &e))?;
            out.push((file.path.clone(), text));
        }
        Ok(out)
    }
}

fn template_error(sources: &BTreeMap<String, SourceFile>, e: &minijinja::Error) -> ConfigError {
    // The root cause carries the most specific place (e.g. inside an include).
    let detail = e
        .detail()
        .map(str::to_string)
        .unwrap_or_else(|| e.kind().to_string());
    let src = e.name().and_then(|n| sources.get(n));
    let location = src.map(|s| match (e.range(), e.line()) {
        (Some(r), _) => Location::at(&s.path, &s.text, r.start, "here"),
        (None, Some(line)) => s.location(line, 1, "here"),
        (None, None) => s.location(1, 1, "in this template"),
    });
    // With a location the headline already names the file; without one, say it.
    let message = match (&location, e.name()) {
        (Some(_), _) => format!("template error: {} ({detail})", e.kind()),
        (None, Some(name)) => format!("template error in {name}: {} ({detail})", e.kind()),
        (None, None) => format!("template error: {} ({detail})", e.kind()),
    };
    ConfigError::new(ErrorKind::Template, message).at_opt(location)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn mold_in(dir: &Path, files: &[(&str, &str)]) -> Mold {
        let m = dir.join("m");
        std::fs::create_dir_all(&m).unwrap();
        for (n, t) in files {
            std::fs::write(m.join(n), t).unwrap();
        }
        Mold::load(dir, "m").unwrap()
    }

    #[test]
    fn renders_templates_in_name_order_with_values() {
        let tmp = tempfile::tempdir().unwrap();
        let mold = mold_in(
            tmp.path(),
            &[
                (
                    "mold.yaml",
                    "parameters:\n  - {name: port, type: integer, default: 80}\n",
                ),
                ("b.yaml", "kind: B\nport: {{ port }}\n"),
                (
                    "a.yaml",
                    "kind: A\nname: {{ name }}\n{% if extra %}extra: 1{% endif %}\n",
                ),
            ],
        );
        assert_eq!(
            mold.defaults(),
            json!({"port": 80}).as_object().unwrap().clone()
        );
        let (t, errs) = Templates::compile([&mold]);
        assert!(errs.is_empty());
        let out = t.render(&mold, &json!({"name": "x", "port": 81})).unwrap();
        assert_eq!(out.len(), 2);
        assert!(out[0].0.ends_with("a.yaml"));
        assert_eq!(out[0].1, "kind: A\nname: x\n");
        assert_eq!(out[1].1, "kind: B\nport: 81\n");
    }

    #[test]
    fn template_errors_name_file_and_line() {
        let tmp = tempfile::tempdir().unwrap();
        let mold = mold_in(
            tmp.path(),
            &[
                ("mold.yaml", ""),
                ("d.yaml", "a: 1\nb: {{ nope.deeper }}\n"),
            ],
        );
        let (t, errs) = Templates::compile([&mold]);
        assert!(errs.is_empty());
        let err = t.render(&mold, &json!({})).unwrap_err();
        let s = err.to_string();
        assert!(s.contains("d.yaml:2:"), "{s}");
        assert_eq!(err.kind, ErrorKind::Template);

        let mold = mold_in(tmp.path(), &[("d.yaml", "a: {% if %}\n")]);
        let (_, errs) = Templates::compile([&mold]);
        assert_eq!(errs.len(), 1);
        assert!(errs[0].to_string().contains("d.yaml:1:"), "{}", errs[0]);
    }

    #[test]
    fn schema_checks_required_and_types() {
        let tmp = tempfile::tempdir().unwrap();
        let mold = mold_in(
            tmp.path(),
            &[(
                "mold.yaml",
                "parameters:\n  - {name: port, type: integer, required: true}\n  - {name: tags, type: list}\n",
            )],
        );
        let none = |_: &str| None;
        let errs = mold.check_values(json!({"tags": "x"}).as_object().unwrap(), "api", &none);
        assert_eq!(errs.len(), 2);
        assert_eq!(errs[0].kind, ErrorKind::MissingParameter);
        assert!(errs[0].message.contains("`port`"));
        assert_eq!(errs[1].kind, ErrorKind::WrongType);
        assert!(errs[1].message.contains("must be a list"));
    }
}
