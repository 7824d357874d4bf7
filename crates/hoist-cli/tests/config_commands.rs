//! The project commands driven through the real `hoist` binary:
//! init, validate, services/ls, render, completions, --help/--version.

use std::path::{Path, PathBuf};

use assert_cmd::Command;

fn hoist() -> Command {
    Command::cargo_bin("hoist").unwrap()
}

fn shop() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/shop")
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// stderr with miette's line wrapping and box drawing removed, for `contains` checks.
fn flat(out: &std::process::Output) -> String {
    stderr(out)
        .replace(['│', '×', '╰', '─', '╭', '┬', '·'], " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

#[test]
fn help_lists_every_command_and_version_prints() {
    let out = hoist().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = stdout(&out);
    for cmd in [
        "init",
        "validate",
        "services",
        "render",
        "image",
        "registry",
        "cluster",
        "completions",
    ] {
        assert!(
            help.lines().any(|l| l.trim_start().starts_with(cmd)),
            "`{cmd}` missing from:\n{help}"
        );
    }
    let out = hoist().arg("--version").output().unwrap();
    assert_eq!(
        stdout(&out).trim(),
        format!("hoist {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn completions_for_each_shell() {
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef hoist"),
        ("fish", "complete -c hoist"),
    ] {
        let out = hoist().args(["completions", shell]).output().unwrap();
        assert!(out.status.success(), "{shell}");
        let script = stdout(&out);
        assert!(script.contains(marker), "{shell}: no `{marker}`");
        assert!(script.contains("render"), "{shell}: subcommands missing");
    }
}

#[test]
fn render_shop_is_deterministic_and_fills_images() {
    let run = || {
        let out = hoist()
            .arg("-C")
            .arg(shop())
            .arg("render")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out)
    };
    let a = run();
    assert_eq!(a, run(), "two renders differ");
    assert!(a.contains("image: localhost:5000/shop/web:h-"), "{a}");
    assert!(a.contains("image: localhost:5000/shop/worker:h-"));
    assert!(a.contains("name: STATS_MODE"), "kustomize overlay applied");
}

#[test]
fn render_json_tag_out_and_selection() {
    let out = hoist()
        .arg("-C")
        .arg(shop())
        .args(["render", "-o", "json", "--tag", "v7", "web", "api"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list["kind"], "List");
    let items = list["items"].as_array().unwrap();
    let kinds: Vec<String> = items
        .iter()
        .map(|o| {
            format!(
                "{}/{}",
                o["kind"].as_str().unwrap(),
                o["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "Service/api",
            "Service/web",
            "Deployment/api",
            "Deployment/web"
        ]
    );
    assert_eq!(
        items[3]["spec"]["template"]["spec"]["containers"][0]["image"],
        "localhost:5000/shop/web:v7"
    );

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("out");
    let out = hoist()
        .arg("-C")
        .arg(shop())
        .args(["render", "--tag", "v1", "--out"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files, ["api.yaml", "stats.yaml", "web.yaml", "worker.yaml"]);
    let worker = std::fs::read_to_string(dir.join("worker.yaml")).unwrap();
    assert!(worker.contains("kind: ConfigMap") && !worker.contains("name: web"));

    let out = hoist()
        .arg("-C")
        .arg(shop())
        .args(["render", "wbe"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("did you mean `web`?"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn render_set_overrides_values() {
    let out = hoist()
        .arg("-C")
        .arg(shop())
        .args([
            "render",
            "--tag",
            "t",
            "--set",
            "services.web.replicas=4",
            "--set",
            "log_level=warn",
            "web",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let y = stdout(&out);
    assert!(
        y.contains("replicas: 4") && y.contains("value: warn"),
        "{y}"
    );
    let out = hoist()
        .arg("-C")
        .arg(shop())
        .args(["render", "--set", "oops"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("invalid --set `oops`"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn services_table_json_and_ls_alias() {
    let out = hoist().arg("-C").arg(shop()).arg("ls").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let table = stdout(&out);
    assert!(table.starts_with("NAME"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("web") && l.contains("layers on scratch") && l.contains("api"))
    );
    let out = hoist()
        .arg("-C")
        .arg(shop())
        .args(["services", "-o", "json"])
        .output()
        .unwrap();
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["api", "stats", "web", "worker"]);
    assert_eq!(list[2]["image"]["repository"], "localhost:5000/shop/web");
    assert_eq!(list[2]["depends_on"], serde_json::json!(["api"]));
    assert_eq!(list[1]["kustomize"], "deploy/overlays/dev");
}

#[test]
fn validate_ok_and_broken_with_locations() {
    let out = hoist()
        .arg("-C")
        .arg(shop())
        .arg("validate")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));

    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    write(root, "hoist.yaml", "name: t\n");
    write(root, "services/a/service.yaml", "name: a\nmold: nope\n");
    write(root, "services/b/service.yaml", "name: b\nimgae: {}\n");
    let out = hoist()
        .arg("-C")
        .arg(root.join("services/a"))
        .arg("validate")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("services/a/service.yaml:2:1"), "{err}");
    assert!(err.contains("services/b/service.yaml:2:1"), "{err}");
    assert!(err.contains("did you mean `image`?"), "{err}");
    assert!(err.contains("2 problems found"), "{err}");

    let out = hoist()
        .arg("-C")
        .arg(root)
        .args(["validate", "-o", "json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(v["problems"][0]["line"], 2);
}

/// `up` and `ci` stream events: they take text or json, and say so for yaml rather than
/// print text.
#[test]
fn streaming_commands_refuse_yaml() {
    for cmd in ["up", "ci"] {
        let out = hoist().args([cmd, "-o", "yaml"]).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{cmd}: {out:?}");
        assert!(
            stderr(&out).contains("invalid value 'yaml'")
                && stderr(&out).contains("[possible values: text, json]"),
            "{cmd}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn no_project_gives_a_hint() {
    let tmp = tempfile::tempdir().unwrap();
    let out = hoist()
        .arg("-C")
        .arg(tmp.path())
        .arg("render")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = flat(&out);
    assert!(
        err.contains("no hoist.yaml found") && err.contains("hoist init"),
        "{err}"
    );
}

#[test]
fn init_then_render_and_no_overwrite() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("newproj");
    let out = hoist()
        .arg("-C")
        .arg(&dir)
        .args(["init", "--mold", "web"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(dir.join("hoist.yaml").is_file() && dir.join("molds/web/mold.yaml").is_file());
    assert_eq!(
        std::fs::read_to_string(dir.join(".gitignore"))
            .unwrap()
            .matches("hoist-settings.yaml")
            .count(),
        1
    );
    let out = hoist().arg("-C").arg(&dir).arg("render").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("image: localhost:5000/hello:h-"));
    let out = hoist().arg("-C").arg(&dir).arg("init").output().unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("refusing to overwrite"));
    assert_eq!(
        std::fs::read_to_string(dir.join(".gitignore"))
            .unwrap()
            .matches("hoist-settings.yaml")
            .count(),
        1
    );
}

#[test]
fn kustomize_without_kubectl_names_tool_and_service() {
    // PATH without kubectl or kustomize (hoist itself is run by absolute path).
    let empty = tempfile::tempdir().unwrap();
    let out = hoist()
        .env("PATH", empty.path())
        .arg("-C")
        .arg(shop())
        .args(["render", "stats"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = flat(&out);
    assert!(
        err.contains("service `stats` uses `kustomize:`") && err.contains("kubectl"),
        "{err}"
    );
}

fn helm_project(root: &Path) {
    write(root, "hoist.yaml", "name: h\n");
    write(
        root,
        "services/chart-svc/chart/Chart.yaml",
        "apiVersion: v2\nname: demo\nversion: 0.1.0\n",
    );
    write(root, "services/chart-svc/values-dev.yaml", "replicas: 1\n");
    write(
        root,
        "services/chart-svc/service.yaml",
        "name: chart-svc\nhelm:\n  chart: ./chart\n  values_files: [values-dev.yaml]\n  values: {greeting: hi}\n",
    );
}

#[test]
fn helm_missing_names_tool_and_service() {
    // helm is not installable on these machines: this is the real missing-tool path.
    let tmp = tempfile::tempdir().unwrap();
    helm_project(tmp.path());
    let empty = tempfile::tempdir().unwrap();
    let out = hoist()
        .env("PATH", empty.path())
        .arg("-C")
        .arg(tmp.path())
        .arg("render")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = flat(&out);
    assert!(
        err.contains("service `chart-svc` uses `helm:`, but `helm` is not on PATH"),
        "{err}"
    );
}

#[test]
fn helm_template_invocation_with_a_fake_helm() {
    // FAKE helm: real helm cannot be installed here. This script stands in for
    // `helm template` to check the arguments hoist passes and that its output is
    // parsed, labelled and ordered like any other objects.
    let tmp = tempfile::tempdir().unwrap();
    helm_project(tmp.path());
    let bin = tmp.path().join("fake-helm-bin");
    write(
        &bin,
        "helm",
        r#"#!/bin/sh
# FAKE helm for hoist's tests: prints a ConfigMap recording its arguments and
# the inline values file it was given.
last=""
for a in "$@"; do last="$a"; done
echo "apiVersion: v1"
echo "kind: ConfigMap"
echo "metadata:"
echo "  name: from-fake-helm"
echo "data:"
echo "  args: \"$*\""
echo "  inline: '$(cat "$last")'"
"#,
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(bin.join("helm"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:/usr/bin:/bin", bin.display());
    let out = hoist()
        .env("PATH", &path)
        .arg("-C")
        .arg(tmp.path())
        .arg("render")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let y = stdout(&out);
    let svc = tmp.path().join("services/chart-svc");
    let expected_args = format!(
        "args: template chart-svc {}/./chart --values {}/values-dev.yaml --values ",
        svc.display(),
        svc.display()
    );
    assert!(y.contains(&expected_args), "{y}");
    assert!(y.contains(r#"inline: '{"greeting":"hi"}'"#), "{y}");
    assert!(y.contains("hoist.dev/service: chart-svc"), "{y}");
}
