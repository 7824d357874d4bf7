//! Escape hatches rendered by outside tools: `helm template` and
//! `kustomize build` / `kubectl kustomize`. A missing tool is an error that
//! names the tool and the service that needs it.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{ConfigError, ErrorKind};
use crate::manifest::HelmSpec;

/// Looks `name` up on PATH (like `which`).
pub fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The kustomize command available: `kustomize build` or `kubectl kustomize`.
pub fn kustomize_tool(service: &str) -> Result<(PathBuf, &'static str), ConfigError> {
    if let Some(k) = find_tool("kustomize") {
        return Ok((k, "build"));
    }
    if let Some(k) = find_tool("kubectl") {
        return Ok((k, "kustomize"));
    }
    Err(ConfigError::new(
        ErrorKind::ToolMissing,
        format!(
            "service `{service}` uses `kustomize:`, but neither `kustomize` nor `kubectl` is on PATH"
        ),
    )
    .help("install kubectl (it includes kustomize) or kustomize"))
}

pub fn helm_tool(service: &str) -> Result<PathBuf, ConfigError> {
    find_tool("helm").ok_or_else(|| {
        ConfigError::new(
            ErrorKind::ToolMissing,
            format!("service `{service}` uses `helm:`, but `helm` is not on PATH"),
        )
        .help("install helm 3 (https://helm.sh) to render charts")
    })
}

/// Runs kustomize on `dir`; returns its YAML output.
pub fn kustomize(service: &str, dir: &Path) -> Result<String, ConfigError> {
    let (tool, sub) = kustomize_tool(service)?;
    run(service, Command::new(&tool).arg(sub).arg(dir))
}

/// Runs `helm template` for the chart; returns its YAML output.
pub fn helm_template(
    service: &str,
    service_dir: &Path,
    spec: &HelmSpec,
) -> Result<String, ConfigError> {
    let tool = helm_tool(service)?;
    let mut cmd = Command::new(&tool);
    cmd.arg("template")
        .arg(spec.release.as_deref().unwrap_or(service))
        .arg(service_dir.join(&spec.chart));
    if let Some(ns) = &spec.namespace {
        cmd.arg("--namespace").arg(ns);
    }
    for f in &spec.values_files {
        cmd.arg("--values").arg(service_dir.join(f));
    }
    // Inline values go last (highest precedence) through a temporary file: JSON is YAML.
    let inline = tempfile_with(&serde_json::to_vec(&spec.values).unwrap_or_default())
        .map_err(|e| ConfigError::new(ErrorKind::Io, format!("cannot write helm values: {e}")))?;
    if !spec.values.is_empty() {
        cmd.arg("--values").arg(inline.path());
    }
    run(service, &mut cmd)
}

fn tempfile_with(bytes: &[u8]) -> std::io::Result<tempfile::NamedTempFile> {
    use std::io::Write;
    let mut f = tempfile::Builder::new()
        .prefix("hoist-helm-values-")
        .suffix(".json")
        .tempfile()?;
    f.write_all(bytes)?;
    f.flush()?;
    Ok(f)
}

fn run(service: &str, cmd: &mut Command) -> Result<String, ConfigError> {
    let shown = std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(OsStr::to_string_lossy)
        .collect::<Vec<_>>()
        .join(" ");
    tracing::debug!(%service, command = %shown, "running");
    let out = cmd.output().map_err(|e| {
        ConfigError::new(
            ErrorKind::ToolFailed,
            format!("service `{service}`: cannot run `{shown}`: {e}"),
        )
    })?;
    if !out.status.success() {
        return Err(ConfigError::new(
            ErrorKind::ToolFailed,
            format!(
                "service `{service}`: `{shown}` failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ));
    }
    String::from_utf8(out.stdout).map_err(|_| {
        ConfigError::new(
            ErrorKind::ToolFailed,
            format!("service `{service}`: `{shown}` printed output that is not UTF-8"),
        )
    })
}
