//! Shared by the project commands: finding and loading the project with `--set`.

use std::path::PathBuf;

use clap::Args;
use hoist_config::{ConfigErrors, Project, SetOverride};

use crate::cli::GlobalOpts;

/// `--set path=value`, repeatable (highest precedence of all layers).
#[derive(Debug, Args, Clone, Default)]
pub struct SetArgs {
    /// Override a value: `--set replicas=2` (all services) or
    /// `--set services.api.replicas=2` (one). The value is YAML; `null` deletes.
    #[arg(long = "set", value_name = "PATH=VALUE")]
    pub set: Vec<String>,
}

impl SetArgs {
    pub fn overrides(&self) -> miette::Result<Vec<SetOverride>> {
        let mut out = Vec::new();
        let mut errors = Vec::new();
        for s in &self.set {
            match s.parse() {
                Ok(o) => out.push(o),
                Err(e) => errors.push(e),
            }
        }
        if errors.is_empty() {
            Ok(out)
        } else {
            Err(ConfigErrors(errors).into())
        }
    }
}

pub fn start_dir(g: &GlobalOpts) -> PathBuf {
    g.directory.clone().unwrap_or_else(|| PathBuf::from("."))
}

pub fn load(g: &GlobalOpts, set: &SetArgs) -> miette::Result<Project> {
    let overrides = set.overrides()?;
    Ok(Project::discover_with(&start_dir(g), &overrides)?)
}
