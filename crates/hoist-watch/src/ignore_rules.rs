//! Which paths the watcher skips: built-in defaults (`.git`, `target/`,
//! `node_modules/`, editor swap files), then `.gitignore` (git semantics),
//! `.dockerignore` and `.hoistignore` (Docker semantics: patterns relative to
//! the directory holding the file) in any directory, the deepest match winning
//! as in git. What the project declares (service.yaml, hoist.yaml, `k8s:` files,
//! layer and sync sources: the *protected* paths) is never hidden: a
//! `.dockerignore` listing `service.yaml` or `k8s/`, or a `.gitignore` listing
//! the `dist/` a layer copies, is common and must not stop hoist from seeing
//! those edits. Patterns still apply to what is *below* a protected directory
//! (`*.log` hides `dist/x.log`), only not through it (`dist/` does not hide
//! `dist/app.js`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use ignore::Match;
use ignore::gitignore::{Gitignore, GitignoreBuilder};

/// Ignore files read in every watched directory.
pub const IGNORE_FILES: [&str; 3] = [".gitignore", ".dockerignore", ".hoistignore"];

/// Patterns (gitignore syntax) ignored unless the options say otherwise.
pub const DEFAULT_IGNORES: &[&str] = &[
    ".git/",
    "target/",
    "node_modules/",
    // hoist's own state next to the project.
    ".hoist/",
    // Editors' swap and backup files (vim, emacs, JetBrains).
    "*.swp",
    "*.swx",
    "*~",
    ".#*",
    "\\#*#",
    "4913",
    "*___jb_tmp___",
    "*___jb_old___",
];

/// File names that are project configuration wherever they are.
const CONFIG_NAMES: [&str; 3] = ["hoist.yaml", "service.yaml", "mold.yaml"];

/// A problem in an ignore file (reported, not fatal: the line is skipped).
#[derive(Debug, Clone)]
pub struct IgnoreFileProblem {
    pub file: PathBuf,
    pub message: String,
}

pub struct IgnoreRules {
    root: PathBuf,
    defaults: Gitignore,
    /// Directories holding at least one ignore file → their combined matcher.
    dirs: HashMap<PathBuf, Gitignore>,
    protected: Vec<PathBuf>,
}

impl IgnoreRules {
    /// Rules rooted at `root` with the given default patterns (gitignore syntax).
    pub fn new(root: &Path, defaults: &[String]) -> Result<IgnoreRules, String> {
        let mut b = GitignoreBuilder::new(root);
        for p in defaults {
            b.add_line(None, p)
                .map_err(|e| format!("default ignore pattern `{p}`: {e}"))?;
        }
        let defaults = b
            .build()
            .map_err(|e| format!("default ignore patterns: {e}"))?;
        Ok(IgnoreRules {
            root: root.to_path_buf(),
            defaults,
            dirs: HashMap::new(),
            protected: Vec::new(),
        })
    }

    /// Paths that ignore files cannot hide (with their ancestors, so they are reached).
    pub fn set_protected(&mut self, paths: Vec<PathBuf>) {
        self.protected = paths;
    }

    /// (Re)reads the ignore files of `dir`. Returns problems found in them.
    pub fn load_dir(&mut self, dir: &Path) -> Vec<IgnoreFileProblem> {
        let mut problems = Vec::new();
        let mut b = GitignoreBuilder::new(dir);
        let mut any = false;
        for name in IGNORE_FILES {
            let file = dir.join(name);
            let Ok(text) = std::fs::read_to_string(&file) else {
                continue;
            };
            any = true;
            let docker = name != ".gitignore";
            for line in text.lines() {
                let line = if docker {
                    anchored(line)
                } else {
                    Some(line.to_string())
                };
                let Some(line) = line else { continue };
                if let Err(e) = b.add_line(Some(file.clone()), &line) {
                    problems.push(IgnoreFileProblem {
                        file: file.clone(),
                        message: e.to_string(),
                    });
                }
            }
        }
        if !any {
            self.dirs.remove(dir);
            return problems;
        }
        match b.build() {
            Ok(g) => {
                self.dirs.insert(dir.to_path_buf(), g);
            }
            Err(e) => {
                self.dirs.remove(dir);
                problems.push(IgnoreFileProblem {
                    file: dir.to_path_buf(),
                    message: e.to_string(),
                });
            }
        }
        problems
    }

    /// Forgets the rules of `dir` and everything below it (the directory is gone).
    pub fn forget(&mut self, dir: &Path) {
        self.dirs.retain(|d, _| !d.starts_with(dir));
    }

    /// Whether `rel`, a path below a watched tree outside the project, is hidden by the
    /// default patterns (`.git`, `node_modules/`, swap files). Ignore files there are not
    /// read: what such a tree holds for a layer is decided by the layer's own rules.
    pub fn is_ignored_by_default(&self, rel: &Path, is_dir: bool) -> bool {
        !rel.as_os_str().is_empty()
            && rel.is_relative()
            && Verdict::from(self.defaults.matched_path_or_any_parents(rel, is_dir))
                == Verdict::Ignore
    }

    /// Whether `path` (under the root) is ignored. `is_dir` as seen on disk.
    pub fn is_ignored(&self, path: &Path, is_dir: bool) -> bool {
        let Ok(rel) = path.strip_prefix(&self.root) else {
            return true; // outside the project
        };
        if rel.as_os_str().is_empty() {
            return false;
        }
        // A protected path and the directories leading to it are never ignored,
        // not even by the defaults: a layer may copy `./target/release/app`.
        if self
            .protected
            .iter()
            .any(|p| p == path || (is_dir && p.starts_with(path)))
        {
            return false;
        }
        // Below a protected directory, patterns still apply to the path and to
        // the directories between it and the protected one, but not through the
        // protected directory or above it (`dist/` in .gitignore must not hide
        // a layer that copies `./dist`; `*.log` still hides `dist/x.log`).
        let boundary = self
            .protected
            .iter()
            .filter(|p| path.starts_with(p))
            .max_by_key(|p| p.components().count())
            .map(PathBuf::as_path);
        if verdict(&self.defaults, path, is_dir, boundary) == Verdict::Ignore {
            return true;
        }
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if !is_dir && (CONFIG_NAMES.contains(&name) || IGNORE_FILES.contains(&name)) {
            return false;
        }
        // The deepest directory with a verdict wins (as in git).
        let mut dir = path.parent();
        while let Some(d) = dir {
            if let Some(g) = self.dirs.get(d) {
                match verdict(g, path, is_dir, boundary) {
                    Verdict::Ignore => return true,
                    Verdict::Whitelist => return false,
                    Verdict::None => {}
                }
            }
            if d == self.root {
                break;
            }
            dir = d.parent();
        }
        false
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    None,
    Ignore,
    Whitelist,
}

impl<T> From<Match<T>> for Verdict {
    fn from(m: Match<T>) -> Self {
        match m {
            Match::None => Verdict::None,
            Match::Ignore(_) => Verdict::Ignore,
            Match::Whitelist(_) => Verdict::Whitelist,
        }
    }
}

/// `g`'s verdict on `path` or its parents (as git: the path first, then each
/// parent up to `g`'s directory), not looking at `boundary` or above it.
fn verdict(g: &Gitignore, path: &Path, is_dir: bool, boundary: Option<&Path>) -> Verdict {
    let Some(b) = boundary else {
        return g.matched_path_or_any_parents(path, is_dir).into();
    };
    let v: Verdict = g.matched(path, is_dir).into();
    if v != Verdict::None {
        return v;
    }
    let mut cur = path.parent();
    while let Some(d) = cur {
        if d == b || !d.starts_with(b) || d == g.path() || !d.starts_with(g.path()) {
            break;
        }
        let v: Verdict = g.matched(d, true).into();
        if v != Verdict::None {
            return v;
        }
        cur = d.parent();
    }
    Verdict::None
}

/// A `.dockerignore` line as a gitignore line anchored at the file's directory
/// (Docker patterns are relative to the context root; `*.log` does not match
/// `a/b.log`). `None` for blank lines and comments.
fn anchored(line: &str) -> Option<String> {
    let t = line.trim();
    if t.is_empty() || t.starts_with('#') {
        return None;
    }
    let (neg, p) = match t.strip_prefix('!') {
        Some(rest) => ("!", rest.trim()),
        None => ("", t),
    };
    let p = p.strip_prefix("./").unwrap_or(p).trim_start_matches('/');
    if p.is_empty() {
        return None;
    }
    Some(format!("{neg}/{p}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(root: &Path) -> IgnoreRules {
        let d: Vec<String> = DEFAULT_IGNORES.iter().map(|s| s.to_string()).collect();
        IgnoreRules::new(root, &d).unwrap()
    }

    #[test]
    fn defaults_cover_vcs_build_dirs_and_swap_files() {
        let root = Path::new("/p");
        let r = rules(root);
        assert!(r.is_ignored(Path::new("/p/.git"), true));
        assert!(r.is_ignored(Path::new("/p/.git/index"), false));
        assert!(r.is_ignored(Path::new("/p/.hoist/state.json"), false));
        assert!(r.is_ignored(Path::new("/p/svc/target"), true));
        assert!(r.is_ignored(Path::new("/p/svc/node_modules/x/y.js"), false));
        assert!(r.is_ignored(Path::new("/p/a/.index.html.swp"), false));
        assert!(r.is_ignored(Path::new("/p/a/index.html~"), false));
        assert!(r.is_ignored(Path::new("/p/a/4913"), false));
        assert!(r.is_ignored(Path::new("/p/a/#x.c#"), false));
        assert!(!r.is_ignored(Path::new("/p/a/index.html"), false));
        assert!(!r.is_ignored(Path::new("/p/target.txt"), false));
        assert!(r.is_ignored(Path::new("/elsewhere/x"), false));
    }

    #[test]
    fn git_and_docker_semantics_nested() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::create_dir_all(root.join("svc/sub")).unwrap();
        std::fs::write(root.join(".gitignore"), "*.log\n/dist\n").unwrap();
        std::fs::write(
            root.join("svc/.dockerignore"),
            "# comment\n*.md\n!README.md\ncache\n",
        )
        .unwrap();
        std::fs::write(root.join("svc/.hoistignore"), "./tmp/\n").unwrap();
        std::fs::write(root.join("svc/.gitignore"), "!keep.log\n").unwrap();
        let mut r = rules(root);
        for d in [root.to_path_buf(), root.join("svc"), root.join("svc/sub")] {
            assert!(r.load_dir(&d).is_empty());
        }
        let ig = |p: &str, dir: bool| r.is_ignored(&root.join(p), dir);
        assert!(ig("a.log", false));
        assert!(
            ig("svc/sub/a.log", false),
            "gitignore name patterns match at any depth"
        );
        assert!(!ig("svc/keep.log", false), "deeper whitelist wins");
        assert!(ig("dist", true));
        assert!(!ig("svc/dist", true), "/dist is anchored at the root");
        assert!(ig("svc/notes.md", false));
        assert!(!ig("svc/README.md", false));
        assert!(
            !ig("svc/sub/notes.md", false),
            "docker patterns are anchored at their directory"
        );
        assert!(ig("svc/cache", true));
        assert!(ig("svc/cache/x", false));
        assert!(ig("svc/tmp", true));
        // Config files stay visible whatever the ignore files say.
        std::fs::write(root.join("svc/.dockerignore"), "service.yaml\ndeploy\n*\n").unwrap();
        r.load_dir(&root.join("svc"));
        assert!(!r.is_ignored(&root.join("svc/service.yaml"), false));
        assert!(r.is_ignored(&root.join("svc/deploy"), true));
        r.set_protected(vec![root.join("svc/deploy/overlays/dev")]);
        assert!(
            !r.is_ignored(&root.join("svc/deploy"), true),
            "ancestor of protected"
        );
        assert!(!r.is_ignored(&root.join("svc/deploy/overlays/dev/k.yaml"), false));
        assert!(r.is_ignored(&root.join("svc/deploy/base.yaml"), false));
        // A protected file inside a default-ignored directory: that file and the
        // way to it are watched, nothing else there.
        r.set_protected(vec![root.join("svc/target/release/app")]);
        assert!(!r.is_ignored(&root.join("svc/target"), true));
        assert!(!r.is_ignored(&root.join("svc/target/release"), true));
        assert!(!r.is_ignored(&root.join("svc/target/release/app"), false));
        assert!(r.is_ignored(&root.join("svc/target/release/app.d"), false));
        assert!(r.is_ignored(&root.join("svc/target/release/deps"), true));
        assert!(r.is_ignored(&root.join("svc/target/debug"), true));
        r.set_protected(vec![root.join("svc/deploy/overlays/dev")]);
        // Patterns still apply below a protected directory, not through it.
        std::fs::write(root.join("svc/.dockerignore"), "deploy\n*.tmp\n").unwrap();
        r.load_dir(&root.join("svc"));
        assert!(!r.is_ignored(&root.join("svc/deploy/overlays/dev/k.yaml"), false));
        assert!(
            !r.is_ignored(&root.join("svc/deploy/overlays/dev/k.tmp"), false),
            "docker patterns are anchored"
        );
        assert!(r.is_ignored(&root.join("svc/x.tmp"), false));
        assert!(r.is_ignored(&root.join("a.log"), false));
        assert!(
            r.is_ignored(&root.join("svc/deploy/overlays/dev/x.log"), false),
            "*.log applies at any depth"
        );
        // Ignore files inside a protected directory still count.
        std::fs::create_dir_all(root.join("svc/deploy/overlays/dev")).unwrap();
        std::fs::write(
            root.join("svc/deploy/overlays/dev/.dockerignore"),
            "*.bak\n",
        )
        .unwrap();
        r.load_dir(&root.join("svc/deploy/overlays/dev"));
        assert!(r.is_ignored(&root.join("svc/deploy/overlays/dev/k.bak"), false));
        assert!(!r.is_ignored(&root.join("svc/deploy/overlays/dev/k.yaml"), false));
        // Removing the ignore files drops their rules.
        for f in IGNORE_FILES {
            let _ = std::fs::remove_file(root.join("svc").join(f));
        }
        r.load_dir(&root.join("svc"));
        assert!(!r.is_ignored(&root.join("svc/notes.md"), false));
    }

    #[test]
    fn anchoring() {
        assert_eq!(anchored("*.md").as_deref(), Some("/*.md"));
        assert_eq!(anchored("!./a/b").as_deref(), Some("!/a/b"));
        assert_eq!(anchored("/x/").as_deref(), Some("/x/"));
        assert_eq!(anchored("**/*.tmp").as_deref(), Some("/**/*.tmp"));
        assert_eq!(anchored("  # c"), None);
        assert_eq!(anchored(""), None);
    }
}
