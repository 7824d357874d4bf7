//! OCI runtime bundles: `config.json` (runtime spec 1.0.2, as runc 1.1 reads it) built from
//! the image config and what the pod asks for, with the kubelet's precedence rules.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use hoist_oci::ImageConfig;
use serde_json::{Value, json};

use crate::error::{Error, IoContext, Result};

pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Docker's default capability set (what an unprivileged Kubernetes container gets).
pub const DEFAULT_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// A bind mount the caller prepared (ConfigMap/Secret/emptyDir/hostPath directory or file).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindMount {
    pub source: PathBuf,
    pub destination: String,
    pub readonly: bool,
}

/// What the pod spec says about one container, already resolved by the kubelet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerSpec {
    /// Container name (for errors).
    pub name: String,
    /// Kubernetes `command`: replaces the image's Entrypoint (and drops its Cmd).
    pub command: Vec<String>,
    /// Kubernetes `args`: replaces the image's Cmd.
    pub args: Vec<String>,
    /// `NAME=value` pairs, overriding the image's variables of the same name.
    pub env: Vec<(String, String)>,
    pub working_dir: Option<String>,
    /// `(uid, gid)`; `None`: the image's `User` (resolved in its /etc/passwd), else root.
    pub user: Option<(u32, u32)>,
    pub mounts: Vec<BindMount>,
    pub hostname: String,
    /// The pod's network namespace to join (`None`: a fresh, empty one).
    pub netns: Option<PathBuf>,
    pub readonly_rootfs: bool,
    /// runc's default spec sets it; Kubernetes maps `allowPrivilegeEscalation: false` to it.
    pub no_new_privileges: bool,
    /// Files for /etc/hosts, /etc/hostname and /etc/resolv.conf, bind-mounted when set.
    pub etc_hosts: Option<PathBuf>,
    pub etc_hostname: Option<PathBuf>,
    pub etc_resolv_conf: Option<PathBuf>,
    /// cgroup path under each v1 hierarchy (`None`: `/hoist/<container id>`).
    pub cgroups_path: Option<String>,
    /// Kubernetes `stdin`: stdin is a pipe attached clients write into.
    pub stdin: bool,
    /// Kubernetes `tty`: the process runs on a pseudo-terminal.
    pub tty: bool,
}

impl Default for ContainerSpec {
    fn default() -> Self {
        Self {
            name: String::new(),
            command: vec![],
            args: vec![],
            env: vec![],
            working_dir: None,
            user: None,
            mounts: vec![],
            hostname: String::new(),
            netns: None,
            readonly_rootfs: false,
            no_new_privileges: true,
            etc_hosts: None,
            etc_hostname: None,
            etc_resolv_conf: None,
            cgroups_path: None,
            stdin: false,
            tty: false,
        }
    }
}

/// A bundle directory: `config.json` next to (or pointing at) the container's rootfs.
#[derive(Clone, Debug)]
pub struct Bundle {
    pub dir: PathBuf,
    pub config: Value,
}

impl Bundle {
    /// Build the config for container `id` with root filesystem `rootfs` and write it to
    /// `dir/config.json`.
    pub fn write(
        dir: &Path,
        id: &str,
        rootfs: &Path,
        image: &ImageConfig,
        spec: &ContainerSpec,
    ) -> Result<Self> {
        let config = runtime_config(id, rootfs, image, spec)?;
        fs::create_dir_all(dir).ctx(|| format!("creating bundle {}", dir.display()))?;
        let p = dir.join("config.json");
        fs::write(
            &p,
            serde_json::to_vec_pretty(&config).expect("serialisable"),
        )
        .ctx(|| format!("writing {}", p.display()))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            config,
        })
    }
}

/// The process arguments per the Kubernetes rules.
pub fn effective_args(image: &ImageConfig, spec: &ContainerSpec) -> Result<Vec<String>> {
    let cfg = image.config.clone().unwrap_or_default();
    let entrypoint = cfg.entrypoint.unwrap_or_default();
    let cmd = cfg.cmd.unwrap_or_default();
    let args: Vec<String> = match (spec.command.is_empty(), spec.args.is_empty()) {
        (false, _) => spec.command.iter().chain(&spec.args).cloned().collect(),
        (true, false) => entrypoint.into_iter().chain(spec.args.clone()).collect(),
        (true, true) => entrypoint.into_iter().chain(cmd).collect(),
    };
    if args.is_empty() {
        return Err(Error::Spec {
            container: spec.name.clone(),
            reason:
                "no command: the image has no Entrypoint or Cmd and the container sets no command"
                    .into(),
        });
    }
    Ok(args)
}

/// Image env overlaid by the spec's, order kept (image first, new names appended), plus
/// PATH and HOSTNAME when missing.
pub fn effective_env(image: &ImageConfig, spec: &ContainerSpec) -> Vec<String> {
    let mut order: Vec<String> = vec![];
    let mut values: BTreeMap<String, String> = BTreeMap::new();
    fn set(order: &mut Vec<String>, values: &mut BTreeMap<String, String>, k: &str, v: &str) {
        if values.insert(k.to_string(), v.to_string()).is_none() {
            order.push(k.to_string());
        }
    }
    for kv in image
        .config
        .as_ref()
        .and_then(|c| c.env.as_ref())
        .into_iter()
        .flatten()
    {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        set(&mut order, &mut values, k, v);
    }
    for (k, v) in &spec.env {
        set(&mut order, &mut values, k, v);
    }
    if !values.contains_key("PATH") {
        set(&mut order, &mut values, "PATH", DEFAULT_PATH);
    }
    if !values.contains_key("HOSTNAME") && !spec.hostname.is_empty() {
        set(&mut order, &mut values, "HOSTNAME", &spec.hostname);
    }
    order.iter().map(|k| format!("{k}={}", values[k])).collect()
}

/// uid/gid: the spec's, else the image's `User` (`uid`, `uid:gid`, `name`, `name:group`,
/// looked up in the rootfs' /etc/passwd and /etc/group), else root.
pub fn effective_user(
    image: &ImageConfig,
    spec: &ContainerSpec,
    rootfs: &Path,
) -> Result<(u32, u32)> {
    if let Some(u) = spec.user {
        return Ok(u);
    }
    let user = image
        .config
        .as_ref()
        .and_then(|c| c.user.clone())
        .unwrap_or_default();
    if user.is_empty() {
        return Ok((0, 0));
    }
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user.as_str(), None),
    };
    let bad = |reason: String| Error::Spec {
        container: spec.name.clone(),
        reason,
    };
    let passwd = fs::read_to_string(rootfs.join("etc/passwd")).unwrap_or_default();
    let (uid, primary_gid) = match u.parse::<u32>() {
        Ok(n) => (
            n,
            lookup(&passwd, |f| f.get(2) == Some(&u)).and_then(|f| f.get(3)?.parse().ok()),
        ),
        Err(_) => {
            let f = lookup(&passwd, |f| f.first() == Some(&u)).ok_or_else(|| {
                bad(format!(
                    "image user {u:?} is not in the image's /etc/passwd"
                ))
            })?;
            let uid = f.get(2).and_then(|s| s.parse().ok());
            let gid = f.get(3).and_then(|s| s.parse().ok());
            (
                uid.ok_or_else(|| bad(format!("bad /etc/passwd line for {u:?}")))?,
                gid,
            )
        }
    };
    let gid = match g {
        None => primary_gid.unwrap_or(0),
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => {
                let group = fs::read_to_string(rootfs.join("etc/group")).unwrap_or_default();
                lookup(&group, |f| f.first() == Some(&g))
                    .and_then(|f| f.get(2)?.parse().ok())
                    .ok_or_else(|| {
                        bad(format!(
                            "image group {g:?} is not in the image's /etc/group"
                        ))
                    })?
            }
        },
    };
    Ok((uid, gid))
}

fn lookup<'a>(file: &'a str, pred: impl Fn(&Vec<&'a str>) -> bool) -> Option<Vec<&'a str>> {
    file.lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| pred(f))
}

fn bind(source: &Path, destination: &str, readonly: bool) -> Value {
    let mut options = vec!["rbind", "rprivate"];
    options.push(if readonly { "ro" } else { "rw" });
    json!({
        "destination": destination,
        "type": "bind",
        "source": source,
        "options": options,
    })
}

/// The full runtime config, modelled on `runc spec` with the pod's choices applied.
pub fn runtime_config(
    id: &str,
    rootfs: &Path,
    image: &ImageConfig,
    spec: &ContainerSpec,
) -> Result<Value> {
    let args = effective_args(image, spec)?;
    let env = effective_env(image, spec);
    let (uid, gid) = effective_user(image, spec, rootfs)?;
    let cwd = spec
        .working_dir
        .clone()
        .filter(|w| !w.is_empty())
        .or_else(|| image.config.as_ref().and_then(|c| c.working_dir.clone()))
        .filter(|w| !w.is_empty())
        .unwrap_or_else(|| "/".into());
    if !cwd.starts_with('/') {
        return Err(Error::Spec {
            container: spec.name.clone(),
            reason: format!("workingDir {cwd:?} must be an absolute path"),
        });
    }
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc"}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts",
               "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
               "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
               "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs",
               "options": ["nosuid", "noexec", "nodev", "ro"]}),
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
               "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}),
    ];
    for (file, dest) in [
        (&spec.etc_hosts, "/etc/hosts"),
        (&spec.etc_hostname, "/etc/hostname"),
        (&spec.etc_resolv_conf, "/etc/resolv.conf"),
    ] {
        if let Some(f) = file {
            mounts.push(bind(f, dest, false));
        }
    }
    for m in &spec.mounts {
        if !m.destination.starts_with('/') {
            return Err(Error::Spec {
                container: spec.name.clone(),
                reason: format!(
                    "mount destination {:?} must be an absolute path",
                    m.destination
                ),
            });
        }
        if !m.source.exists() {
            return Err(Error::Spec {
                container: spec.name.clone(),
                reason: format!(
                    "mount source {} for {} does not exist (the kubelet prepares volumes before the container)",
                    m.source.display(),
                    m.destination
                ),
            });
        }
        mounts.push(bind(&m.source, &m.destination, m.readonly));
    }
    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "ipc"}),
        json!({"type": "uts"}),
        json!({"type": "mount"}),
    ];
    namespaces.push(match &spec.netns {
        Some(p) => json!({"type": "network", "path": p}),
        None => json!({"type": "network"}),
    });
    let caps: Vec<&str> = DEFAULT_CAPABILITIES.to_vec();
    let hostname = if spec.hostname.is_empty() {
        id
    } else {
        &spec.hostname
    };
    Ok(json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": spec.tty,
            "user": {"uid": uid, "gid": gid},
            "args": args,
            "env": env,
            "cwd": cwd,
            "capabilities": {
                "bounding": caps,
                "effective": caps,
                "permitted": caps,
            },
            "noNewPrivileges": spec.no_new_privileges,
        },
        "root": {"path": rootfs, "readonly": spec.readonly_rootfs},
        "hostname": hostname,
        "mounts": mounts,
        "linux": {
            "cgroupsPath": spec.cgroups_path.clone().unwrap_or_else(|| format!("/hoist/{id}")),
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "namespaces": namespaces,
            "maskedPaths": [
                "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                "/proc/sched_debug", "/sys/firmware", "/proc/scsi",
            ],
            "readonlyPaths": [
                "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
            ],
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hoist_oci::Platform;

    fn image(entrypoint: &[&str], cmd: &[&str], env: &[&str], user: Option<&str>) -> ImageConfig {
        let mut c = ImageConfig::empty(&Platform::linux_amd64());
        let cc = c.config.as_mut().unwrap();
        let v = |s: &[&str]| (!s.is_empty()).then(|| s.iter().map(|x| x.to_string()).collect());
        cc.entrypoint = v(entrypoint);
        cc.cmd = v(cmd);
        cc.env = v(env);
        cc.user = user.map(str::to_string);
        c
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn command_and_args_follow_kubernetes_rules() {
        let img = image(&["/ep", "-x"], &["cmd1"], &[], None);
        let spec = |command: &[&str], args: &[&str]| ContainerSpec {
            command: strings(command),
            args: strings(args),
            ..Default::default()
        };
        let run = |s: ContainerSpec| effective_args(&img, &s).unwrap();
        assert_eq!(run(spec(&[], &[])), strings(&["/ep", "-x", "cmd1"]));
        assert_eq!(run(spec(&["/c"], &[])), strings(&["/c"]));
        assert_eq!(run(spec(&["/c"], &["a"])), strings(&["/c", "a"]));
        assert_eq!(
            run(spec(&[], &["a", "b"])),
            strings(&["/ep", "-x", "a", "b"])
        );
        let empty = image(&[], &[], &[], None);
        let err = effective_args(
            &empty,
            &ContainerSpec {
                name: "app".into(),
                ..Default::default()
            },
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("\"app\"") && err.contains("no command"),
            "{err}"
        );
    }

    #[test]
    fn env_spec_overrides_image_and_defaults_fill_in() {
        let img = image(&[], &["x"], &["A=1", "B=img", "EMPTY"], None);
        let spec = ContainerSpec {
            env: vec![("B".into(), "spec".into()), ("C".into(), "3=3".into())],
            hostname: "pod-a".into(),
            ..Default::default()
        };
        assert_eq!(
            effective_env(&img, &spec),
            strings(&[
                "A=1",
                "B=spec",
                "EMPTY=",
                "C=3=3",
                &format!("PATH={DEFAULT_PATH}"),
                "HOSTNAME=pod-a"
            ])
        );
    }

    #[test]
    fn image_user_resolves_through_passwd_and_group() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("etc")).unwrap();
        fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0::/:/bin/sh\nweb:x:1000:1001::/:/bin/sh\n",
        )
        .unwrap();
        fs::write(dir.path().join("etc/group"), "root:x:0:\nstaff:x:50:\n").unwrap();
        let user = |u: Option<&str>| {
            effective_user(
                &image(&[], &["x"], &[], u),
                &ContainerSpec::default(),
                dir.path(),
            )
        };
        assert_eq!(user(None).unwrap(), (0, 0));
        assert_eq!(user(Some("web")).unwrap(), (1000, 1001));
        assert_eq!(user(Some("1000")).unwrap(), (1000, 1001));
        assert_eq!(user(Some("42")).unwrap(), (42, 0));
        assert_eq!(user(Some("web:staff")).unwrap(), (1000, 50));
        assert_eq!(user(Some("7:8")).unwrap(), (7, 8));
        let err = user(Some("nobody")).unwrap_err().to_string();
        assert!(
            err.contains("nobody") && err.contains("/etc/passwd"),
            "{err}"
        );
        // runAsUser from the pod wins over the image.
        let spec = ContainerSpec {
            user: Some((5, 6)),
            ..Default::default()
        };
        assert_eq!(
            effective_user(&image(&[], &["x"], &[], Some("web")), &spec, dir.path()).unwrap(),
            (5, 6)
        );
    }

    #[test]
    fn config_joins_the_pod_netns_and_mounts_what_the_caller_prepared() {
        let dir = tempfile::tempdir().unwrap();
        let hosts = dir.path().join("hosts");
        fs::write(&hosts, "127.0.0.1 localhost\n").unwrap();
        let spec = ContainerSpec {
            name: "app".into(),
            hostname: "web-0".into(),
            netns: Some("/run/netns/hoist-p1".into()),
            etc_hosts: Some(hosts.clone()),
            working_dir: Some("/srv".into()),
            readonly_rootfs: true,
            mounts: vec![BindMount {
                source: dir.path().to_path_buf(),
                destination: "/data".into(),
                readonly: true,
            }],
            ..Default::default()
        };
        let img = image(&[], &["x"], &[], None);
        let c = runtime_config("c1", Path::new("/r"), &img, &spec).unwrap();
        assert_eq!(c["process"]["cwd"], "/srv");
        assert_eq!(c["root"], json!({"path": "/r", "readonly": true}));
        assert_eq!(c["hostname"], "web-0");
        assert_eq!(c["process"]["noNewPrivileges"], true);
        let ns = c["linux"]["namespaces"].as_array().unwrap();
        assert!(ns.contains(&json!({"type": "network", "path": "/run/netns/hoist-p1"})));
        for t in ["pid", "ipc", "uts", "mount"] {
            assert!(ns.contains(&json!({"type": t})), "{t}");
        }
        let mounts = c["mounts"].as_array().unwrap();
        let dest = |d: &str| mounts.iter().find(|m| m["destination"] == d).cloned();
        assert_eq!(
            dest("/etc/hosts").unwrap()["source"],
            hosts.to_str().unwrap()
        );
        assert_eq!(
            dest("/data").unwrap()["options"],
            json!(["rbind", "rprivate", "ro"])
        );
        assert_eq!(dest("/sys").unwrap()["options"][3], "ro");
        assert!(dest("/etc/resolv.conf").is_none());

        let mut bad = spec.clone();
        bad.mounts[0].source = dir.path().join("missing");
        let err = runtime_config("c1", Path::new("/r"), &img, &bad)
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing") && err.contains("/data"), "{err}");
        let mut bad = spec;
        bad.working_dir = Some("rel".into());
        let err = runtime_config("c1", Path::new("/r"), &img, &bad)
            .unwrap_err()
            .to_string();
        assert!(err.contains("absolute"), "{err}");
    }
}
