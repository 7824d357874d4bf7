//! `hoist init`: a working starting point (hoist.yaml, a mold, one service,
//! the git-ignored settings file). Never overwrites anything.

use std::path::{Path, PathBuf};

use crate::error::{ConfigError, ErrorKind};

/// Built-in molds `hoist init --mold` can write.
pub const MOLDS: &[&str] = &["web"];

const WEB_MOLD: &[(&str, &str)] = &[
    (
        "mold.yaml",
        include_str!("../../../examples/shop/molds/web/mold.yaml"),
    ),
    (
        "deployment.yaml",
        include_str!("../../../examples/shop/molds/web/deployment.yaml"),
    ),
    (
        "svc.yaml",
        include_str!("../../../examples/shop/molds/web/svc.yaml"),
    ),
];

const SETTINGS: &str = "\
# Your personal settings (git-ignored). They override hoist.yaml and service.yaml:
# mold defaults < hoist.yaml values < service.yaml < this file < --set path=value
values: {}
# services:
#   hello:
#     replicas: 2
# disabled: [hello]
";

fn project_file(name: &str) -> String {
    format!(
        "name: {name}
# Images are pushed to this registry (hoist's dev registry by default).
registry: localhost:5000
# auto | embedded | <kubeconfig context>
cluster: auto
services: [\"services/*\"]
molds: molds
values: {{}}
settings_file: hoist-settings.yaml
"
    )
}

fn service_file(mold: &str) -> String {
    format!(
        "name: hello
mold: {mold}
values:
  port: 8080
image:
  base: scratch
  layers:
    - from: /bin/busybox        # busybox-static: a whole userland in one file
      to: /bin/busybox
    - from: ./public
      to: /www
  entrypoint: [\"/bin/busybox\", \"httpd\"]
  cmd: [\"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]
ports:
  - name: http
    port: 8080
    local: 8080
live_update:
  sync:
    - from: ./public
      to: /www
"
    )
}

/// A project name from a directory name (a DNS-1123 label).
fn name_for(dir: &Path) -> String {
    let raw = std::path::absolute(dir)
        .ok()
        .and_then(|d| d.file_name().map(|n| n.to_string_lossy().to_lowercase()))
        .unwrap_or_default();
    let s: String = raw
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let s = s.trim_matches('-');
    if s.is_empty() {
        "my-project".into()
    } else {
        s.chars().take(63).collect()
    }
}

/// What `init` did.
#[derive(Debug, Clone)]
pub struct Scaffolded {
    pub created: Vec<PathBuf>,
    /// Whether `.gitignore` was created or appended to.
    pub gitignore_updated: bool,
}

/// Writes a new project into `dir`. Fails without writing anything if any of
/// the files already exists.
pub fn init(dir: &Path, mold: &str) -> Result<Scaffolded, ConfigError> {
    if !MOLDS.contains(&mold) {
        return Err(ConfigError::new(
            ErrorKind::MissingMold,
            format!("`hoist init` has no built-in mold `{mold}`"),
        )
        .help(format!("built-in molds: {}", MOLDS.join(", "))));
    }
    let mut files: Vec<(PathBuf, String)> = vec![
        (dir.join("hoist.yaml"), project_file(&name_for(dir))),
        (dir.join("hoist-settings.yaml"), SETTINGS.to_string()),
        (dir.join("services/hello/service.yaml"), service_file(mold)),
        (
            dir.join("services/hello/public/index.html"),
            "<!doctype html>\n<h1>Hello from hoist</h1>\n".to_string(),
        ),
    ];
    for (name, text) in WEB_MOLD {
        files.push((dir.join("molds").join(mold).join(name), text.to_string()));
    }
    let existing: Vec<String> = files
        .iter()
        .filter(|(p, _)| p.exists())
        .map(|(p, _)| p.display().to_string())
        .collect();
    if !existing.is_empty() {
        return Err(ConfigError::new(
            ErrorKind::Io,
            format!(
                "refusing to overwrite existing files: {}",
                existing.join(", ")
            ),
        )
        .help("run `hoist init` in an empty directory, or move these files away"));
    }
    let write = |p: &Path, text: &str| -> Result<(), ConfigError> {
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).map_err(|e| ConfigError::io(parent, &e))?;
        }
        std::fs::write(p, text).map_err(|e| ConfigError::io(p, &e))
    };
    for (p, text) in &files {
        write(p, text)?;
    }
    let gitignore = dir.join(".gitignore");
    let current = std::fs::read_to_string(&gitignore).unwrap_or_default();
    let gitignore_updated = !current.lines().any(|l| l.trim() == "hoist-settings.yaml");
    if gitignore_updated {
        let mut text = current;
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str("# per-developer hoist settings\nhoist-settings.yaml\n");
        write(&gitignore, &text)?;
    }
    Ok(Scaffolded {
        created: files.into_iter().map(|(p, _)| p).collect(),
        gitignore_updated,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Project, RenderOptions, render};

    #[test]
    fn init_then_render_works_and_never_overwrites() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("My_App");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(".gitignore"), "target").unwrap();
        let s = init(&dir, "web").unwrap();
        assert!(s.gitignore_updated);
        assert_eq!(
            std::fs::read_to_string(dir.join(".gitignore")).unwrap(),
            "target\n# per-developer hoist settings\nhoist-settings.yaml\n"
        );
        let p = Project::discover(&dir.join("services/hello")).unwrap();
        assert_eq!(p.config.name, "my-app");
        assert!(p.validate().is_empty(), "{:?}", p.validate());
        let objs = render(
            &p,
            &RenderOptions {
                tag: Some("t".into()),
                ..Default::default()
            },
        )
        .unwrap();
        let kinds: Vec<&str> = objs.iter().map(|o| o.kind()).collect();
        assert_eq!(kinds, ["Service", "Deployment"]);
        let err = init(&dir, "web").unwrap_err();
        assert!(err.message.contains("refusing to overwrite"), "{err}");
        assert!(init(tmp.path(), "nope").is_err());
    }
}
