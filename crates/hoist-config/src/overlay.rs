//! The settings overlay: how values from every layer combine.
//!
//! Precedence, lowest first: mold defaults < `hoist.yaml` `values` <
//! `service.yaml` < developer settings file < `--set path=value`.
//! Maps merge deeply, lists replace, `null` deletes a key.

use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{ConfigError, ErrorKind};

/// Deep-merges `over` into `base`: maps merge key by key, anything else
/// (scalars, lists) replaces, and `null` removes the key.
pub fn merge(base: &mut Map<String, Value>, over: &Map<String, Value>) {
    for (k, v) in over {
        match v {
            Value::Null => {
                base.remove(k);
            }
            Value::Object(o) => match base.get_mut(k) {
                Some(Value::Object(b)) => merge(b, o),
                _ => {
                    let mut fresh = Map::new();
                    merge(&mut fresh, o);
                    base.insert(k.clone(), Value::Object(fresh));
                }
            },
            other => {
                base.insert(k.clone(), other.clone());
            }
        }
    }
}

/// The per-developer settings file (`hoist-settings.yaml`, git-ignored).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsFile {
    /// Values for every service (over service.yaml).
    #[serde(default)]
    pub values: Map<String, Value>,
    /// Per-service values: `services: {api: {replicas: 2}}`.
    #[serde(default)]
    pub services: Map<String, Value>,
    /// When non-empty, only these services (and what they depend on) are enabled.
    #[serde(default)]
    pub enabled: Vec<String>,
    /// Services to leave out.
    #[serde(default)]
    pub disabled: Vec<String>,
    /// Overrides hoist.yaml's `registry` for this developer.
    #[serde(default)]
    pub registry: Option<String>,
    /// Overrides hoist.yaml's `cluster` for this developer.
    #[serde(default)]
    pub cluster: Option<String>,
}

/// One `--set path=value` from the command line.
///
/// `path` is dotted. `services.<name>.<key>…` targets one service; anything
/// else (optionally prefixed `values.`) targets every service. The value is
/// parsed as YAML, so `3`, `true`, `[a, b]` and `null` mean what they say.
#[derive(Debug, Clone, PartialEq)]
pub struct SetOverride {
    /// Service the override applies to, or `None` for all.
    pub service: Option<String>,
    /// Key path inside the values.
    pub path: Vec<String>,
    pub value: Value,
}

impl SetOverride {
    /// The override as a values map (`a.b=1` → `{a: {b: 1}}`).
    pub fn as_map(&self) -> Map<String, Value> {
        let mut v = self.value.clone();
        for k in self.path.iter().rev() {
            let mut m = Map::new();
            m.insert(k.clone(), v);
            v = Value::Object(m);
        }
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }
}

impl FromStr for SetOverride {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, ConfigError> {
        let bad = |why: &str| {
            ConfigError::new(
                ErrorKind::InvalidOverride,
                format!("invalid --set `{s}`: {why}"),
            )
            .help("use --set path=value, e.g. --set replicas=2 or --set services.api.replicas=2")
        };
        let (path, raw) = s.split_once('=').ok_or_else(|| bad("missing `=`"))?;
        let mut parts: Vec<String> = path.split('.').map(str::to_string).collect();
        if parts.iter().any(|p| p.is_empty()) {
            return Err(bad("empty path segment"));
        }
        let service = if parts[0] == "services" {
            if parts.len() < 3 {
                return Err(bad("expected services.<name>.<key>"));
            }
            parts.remove(0);
            Some(parts.remove(0))
        } else {
            if parts[0] == "values" && parts.len() > 1 {
                parts.remove(0);
            }
            None
        };
        let value: Value = if raw.trim().is_empty() {
            Value::String(String::new())
        } else {
            serde_norway::from_str(raw)
                .map_err(|e| bad(&format!("value is not valid YAML: {e}")))?
        };
        Ok(SetOverride {
            service,
            path: parts,
            value,
        })
    }
}

/// Everything above service.yaml: the settings file and `--set` overrides.
#[derive(Debug, Clone, Default)]
pub struct SettingsOverlay {
    pub settings: SettingsFile,
    pub overrides: Vec<SetOverride>,
}

impl SettingsOverlay {
    /// Applies the developer layers for `service` onto `values`, in precedence order.
    pub fn apply(&self, service: &str, values: &mut Map<String, Value>) {
        merge(values, &self.settings.values);
        if let Some(Value::Object(per)) = self.settings.services.get(service) {
            merge(values, per);
        }
        for o in self.overrides.iter().filter(|o| o.service.is_none()) {
            merge(values, &o.as_map());
        }
        for o in self
            .overrides
            .iter()
            .filter(|o| o.service.as_deref() == Some(service))
        {
            merge(values, &o.as_map());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn maps_merge_deeply_lists_replace_null_deletes() {
        let mut base =
            obj(json!({"a": {"x": 1, "y": 2}, "list": [1, 2, 3], "gone": true, "keep": "k"}));
        merge(
            &mut base,
            &obj(
                json!({"a": {"y": 20, "z": 30}, "list": [9], "gone": null, "new": {"n": null, "m": 1}}),
            ),
        );
        assert_eq!(
            Value::Object(base),
            json!({"a": {"x": 1, "y": 20, "z": 30}, "list": [9], "keep": "k", "new": {"m": 1}})
        );
    }

    #[test]
    fn set_override_parses_paths_and_yaml_values() {
        let o: SetOverride = "services.api.resources.cpu=2".parse().unwrap();
        assert_eq!(o.service.as_deref(), Some("api"));
        assert_eq!(o.path, ["resources", "cpu"]);
        assert_eq!(o.value, json!(2));
        let o: SetOverride = "values.debug=true".parse().unwrap();
        assert_eq!(
            (o.service, o.path, o.value),
            (None, vec!["debug".into()], json!(true))
        );
        let o: SetOverride = "tags=[a, b]".parse().unwrap();
        assert_eq!(o.value, json!(["a", "b"]));
        let o: SetOverride = "x=null".parse().unwrap();
        assert_eq!(o.value, Value::Null);
        assert_eq!(o.as_map(), obj(json!({"x": null})));
        assert!("novalue".parse::<SetOverride>().is_err());
        assert!("services.api=1".parse::<SetOverride>().is_err());
        assert!("a..b=1".parse::<SetOverride>().is_err());
    }

    #[test]
    fn precedence_settings_then_per_service_then_set() {
        let overlay = SettingsOverlay {
            settings: SettingsFile {
                values: obj(json!({"replicas": 2, "log": "info"})),
                services: obj(json!({"api": {"replicas": 3}})),
                ..Default::default()
            },
            overrides: vec![
                "services.api.log=debug".parse().unwrap(),
                "log=warn".parse().unwrap(),
                "services.web.replicas=9".parse().unwrap(),
            ],
        };
        let mut api = obj(json!({"replicas": 1, "log": "error", "port": 80}));
        overlay.apply("api", &mut api);
        // per-service --set beats global --set beats settings.services beats settings.values
        assert_eq!(
            Value::Object(api),
            json!({"replicas": 3, "log": "debug", "port": 80})
        );
        let mut other = obj(json!({"replicas": 1}));
        overlay.apply("other", &mut other);
        assert_eq!(Value::Object(other), json!({"replicas": 2, "log": "warn"}));
    }
}
