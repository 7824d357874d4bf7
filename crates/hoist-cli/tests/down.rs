//! `hoist down` through the real binary against the embedded cluster started with
//! `hoist cluster up` (temp data dir, temp KUBECONFIG), checked with kubectl.

use std::path::PathBuf;
use std::process::{Command, Output};

use assert_cmd::cargo::CommandCargoExt;

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        let env = Self {
            dir: tempfile::tempdir().unwrap(),
        };
        std::fs::create_dir_all(env.project()).unwrap();
        std::fs::write(env.project().join("hoist.yaml"), "name: shop\n").unwrap();
        env
    }
    fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kube").join("config")
    }
    fn project(&self) -> PathBuf {
        self.dir.path().join("shop")
    }
    fn hoist(&self, args: &[&str]) -> Output {
        Command::cargo_bin("hoist")
            .unwrap()
            .args(args)
            .env("KUBECONFIG", self.kubeconfig())
            .env("HOME", self.dir.path())
            .env("HOIST_USER", "ann")
            .output()
            .unwrap()
    }
    fn up(&self) {
        let data = self.dir.path().join("data");
        let out = self.hoist(&[
            "cluster",
            "up",
            "--port",
            "0",
            "--data-dir",
            data.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", text(&out));
    }
    fn kubectl(&self, args: &[&str]) -> String {
        let out = Command::new("kubectl")
            .arg("--request-timeout=10s")
            .args(args)
            .env("KUBECONFIG", self.kubeconfig())
            .output()
            .unwrap();
        assert!(out.status.success(), "kubectl {args:?}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let _ = self.hoist(&["cluster", "down", "--data-dir", data.to_str().unwrap()]);
    }
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn labelled(name: &str, ns: &str, developer: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: {ns}\n  labels:\n    app.kubernetes.io/managed-by: hoist\n    hoist.dev/project: shop\n    hoist.dev/developer: {developer}\n    hoist.dev/service: web\ndata:\n  a: b\n"
    )
}

#[test]
fn down_deletes_only_this_developers_objects() {
    let env = Env::new();
    env.up();
    env.kubectl(&["create", "namespace", "shop-ann"]);
    env.kubectl(&["create", "namespace", "shop-bob"]);
    // Objects as a killed `hoist up` would leave them: labelled, with no inventory.
    let file = env.dir.path().join("objs.yaml");
    let docs = [
        labelled("web-config", "shop-ann", "ann"),
        labelled("web-config", "shop-bob", "bob"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: mine-not-hoists\n  namespace: shop-ann\n".into(),
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  namespace: shop-ann\n  labels:\n    app.kubernetes.io/managed-by: hoist\n    hoist.dev/project: shop\n    hoist.dev/developer: ann\nspec:\n  ports:\n  - port: 80\n".into(),
    ];
    std::fs::write(&file, docs.join("---\n")).unwrap();
    env.kubectl(&["apply", "-f", file.to_str().unwrap()]);

    let out = env.hoist(&["-C", env.project().to_str().unwrap(), "down", "-o", "json"]);
    assert!(out.status.success(), "{}", text(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["context"], "hoist");
    assert_eq!(doc["namespace"], "shop-ann");
    let mut deleted: Vec<String> = doc["deleted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            format!(
                "{}/{}",
                d["kind"].as_str().unwrap(),
                d["name"].as_str().unwrap()
            )
        })
        .collect();
    deleted.sort();
    assert_eq!(deleted, ["ConfigMap/web-config", "Service/web"]);
    assert_eq!(doc["namespaceDeleted"], false);

    let left = env.kubectl(&["get", "configmaps,services", "-n", "shop-ann", "-o", "name"]);
    assert!(
        !left.contains("configmap/web-config") && !left.contains("service/web"),
        "{left}"
    );
    assert!(left.contains("configmap/mine-not-hoists"), "{left}");
    assert!(
        env.kubectl(&["get", "configmaps", "-n", "shop-bob", "-o", "name"])
            .contains("configmap/web-config")
    );

    // Nothing left: still succeeds; then --delete-namespace removes the namespace.
    let out = env.hoist(&[
        "-C",
        env.project().to_str().unwrap(),
        "down",
        "--delete-namespace",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("0 object(s) of project shop (developer ann) removed from context hoist; namespace shop-ann deleted"), "{stdout}");
    let nss = env.kubectl(&["get", "namespaces", "-o", "name"]);
    assert!(
        !nss.contains("namespace/shop-ann") && nss.contains("namespace/shop-bob"),
        "{nss}"
    );
}

#[test]
fn down_refuses_a_remote_context() {
    let env = Env::new();
    std::fs::create_dir_all(env.kubeconfig().parent().unwrap()).unwrap();
    // Never contacted: the guard refuses before any connection.
    std::fs::write(
        env.kubeconfig(),
        "apiVersion: v1\nkind: Config\nclusters:\n- name: prod\n  cluster:\n    server: https://k8s.example.com:6443\ncontexts:\n- name: prod\n  context:\n    cluster: prod\n    user: prod\nusers:\n- name: prod\n  user:\n    token: abc\ncurrent-context: prod\n",
    )
    .unwrap();
    let out = env.hoist(&["-C", env.project().to_str().unwrap(), "down"]);
    assert!(!out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    // miette wraps long lines at 80 columns: check pieces that fit on one line.
    assert!(
        stderr.contains("refusing to deploy to kubeconfig context `prod`"),
        "{stderr}"
    );
    assert!(stderr.contains("k8s.example.com:6443"), "{stderr}");
    assert!(
        stderr.contains("allowed_contexts:\n  │     - prod"),
        "{stderr}"
    );
    let out = env.hoist(&[
        "-C",
        env.project().to_str().unwrap(),
        "down",
        "--context",
        "nope",
    ]);
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("`nope` does not exist (known contexts: prod)"),
        "{}",
        text(&out)
    );
}

fn json_of(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "{}", text(out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn names(v: &serde_json::Value) -> Vec<String> {
    let mut n: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            format!(
                "{}/{}",
                d["kind"].as_str().unwrap(),
                d["name"].as_str().unwrap()
            )
        })
        .collect();
    n.sort();
    n
}

#[test]
fn deploy_prune_readiness_report_and_down_on_the_example() {
    let env = Env::new();
    env.up();
    let shop = env.dir.path().join("example");
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/shop");
    let cp = Command::new("cp")
        .arg("-r")
        .arg(&repo)
        .arg(&shop)
        .status()
        .unwrap();
    assert!(cp.success());
    let dir = shop.to_str().unwrap();

    let doc = json_of(&env.hoist(&["-C", dir, "deploy", "--no-wait", "-o", "json"]));
    assert_eq!(
        (doc["context"].as_str(), doc["namespace"].as_str()),
        (Some("hoist"), Some("shop-ann"))
    );
    assert_eq!(doc["applied"].as_array().unwrap().len(), 9, "{doc}");
    assert!(doc["pruned"].as_array().unwrap().is_empty());
    let deployments = env.kubectl(&[
        "get",
        "deployments",
        "-n",
        "shop-ann",
        "-o",
        "name",
        "-l",
        "app.kubernetes.io/managed-by=hoist,hoist.dev/project=shop,hoist.dev/developer=ann",
    ]);
    assert_eq!(deployments.lines().count(), 4, "{deployments}");

    // Pods do not run on the embedded cluster yet: waiting ends with an explanation.
    let out = env.hoist(&["-C", dir, "deploy", "web", "--timeout", "1"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("not ready after 1s:\nDeployment/web in namespace shop-ann is not ready: "),
        "{stderr}"
    );

    // A removed service is pruned on the next full deploy; the others stay untouched.
    std::fs::remove_dir_all(shop.join("services/stats")).unwrap();
    let doc = json_of(&env.hoist(&["-C", dir, "deploy", "--no-wait", "-o", "json"]));
    assert_eq!(
        names(&doc["pruned"]),
        ["Deployment/stats", "Service/stats"],
        "{doc}"
    );
    assert_eq!(doc["applied"].as_array().unwrap().len(), 7);

    let doc = json_of(&env.hoist(&["-C", dir, "down", "-o", "json"]));
    assert_eq!(doc["deleted"].as_array().unwrap().len(), 7, "{doc}");
    let left = env.kubectl(&[
        "get",
        "deployments,services,configmaps,serviceaccounts",
        "-n",
        "shop-ann",
        "-o",
        "name",
        "-l",
        "hoist.dev/project=shop",
    ]);
    assert_eq!(left.trim(), "", "{left}");
}
