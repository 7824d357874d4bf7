//! Which files a layer takes from its source directory.
//!
//! The image build (hoist-oci), the content tag and the watcher (hoist-config,
//! hoist-watch) all ask this one [`FileSet`], so an image never holds a file its tag
//! did not hash, and a change the tag hashes always reaches the image.
//!
//! Rules, for a path relative to the layer's source (`a/b/c.txt`):
//! - `include`/`exclude` patterns in gitignore style: one without `/` matches a file or
//!   directory name at any depth (`*.tmp`, `node_modules`); one with `/` matches the
//!   path from the source root (`src/*.rs`; a leading `/` or `./` is dropped).
//! - `.dockerignore` and `.hoistignore` in the source directory, with Docker's
//!   semantics: every pattern is relative to the root (`*.log` is top-level only;
//!   `**/*.log` is any depth).
//! - In exclude lists and ignore files, `!pattern` takes a path back, and the last
//!   matching pattern wins.
//! - A matching directory covers everything under it.
//! - With include patterns, a file is taken only if it (or a directory above it)
//!   matches one.
//!
//! A Docker build context has its own rules ([`FileSet::for_docker_context`]): the
//! builder's ignore file only, as Docker reads it.
//!
//! [`entries`] walks a source under these rules into the layer's entries, for the layer
//! builder and the content tag alike.

mod capability;
mod epoch;
mod walk;

use std::path::{Path, PathBuf};

use globset::{GlobBuilder, GlobMatcher};

pub use capability::{
    CAPABILITY_PAX_RECORD, CAPABILITY_XATTR, file_capability, set_file_capability,
};
pub use epoch::{DEFAULT_EPOCH, InvalidEpoch, SOURCE_DATE_EPOCH, source_date_epoch};
pub use walk::{EntryKind, LayerEntry, WalkError, entries, source_metadata};

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("invalid glob {pattern:?} in {origin}: {reason}")]
pub struct InvalidGlob {
    pub pattern: String,
    /// Where the pattern came from: `include`, `exclude`, or an ignore file's path.
    pub origin: String,
    pub reason: String,
}

/// The ignore files read from a source directory, in this order (later ones win).
pub const IGNORE_FILES: [&str; 2] = [".dockerignore", ".hoistignore"];

/// The selection rules of one layer source.
#[derive(Clone, Debug, Default)]
pub struct FileSet {
    /// Ignore files and `exclude`, in order: (pattern, takes back).
    excludes: Vec<(GlobMatcher, bool)>,
    includes: Vec<GlobMatcher>,
}

impl FileSet {
    /// The rules for the layer source `from`: its ignore files when it is a directory
    /// (missing ones are fine; a single-file source has none), then `exclude`, and
    /// `include`.
    pub fn for_dir(
        from: &Path,
        include: &[String],
        exclude: &[String],
    ) -> Result<FileSet, InvalidGlob> {
        let mut set = FileSet::default();
        for name in IGNORE_FILES {
            let path = from.join(name);
            if let Ok(text) = std::fs::read_to_string(&path) {
                let origin = path.display().to_string();
                for line in text.lines() {
                    set.add_exclude(line, &origin, Anchor::Root)?;
                }
            }
        }
        set.add_patterns(include, exclude)?;
        Ok(set)
    }

    /// The rules of a Docker build context: the ignore file the builder reads
    /// ([`docker_ignore_file`]), with Docker's meaning, and `.git` left out (it changes with
    /// every git command; list it in `.dockerignore` so that the image leaves it out too).
    /// `.hoistignore` is not read: Docker and buildah do not read it, so a file it lists
    /// still reaches the image.
    pub fn for_docker_context(context: &Path, dockerfile: &Path) -> Result<FileSet, InvalidGlob> {
        let mut set = FileSet::default();
        if let Some(path) = docker_ignore_file(context, dockerfile)
            && let Ok(text) = std::fs::read_to_string(&path)
        {
            let origin = path.display().to_string();
            for line in text.lines() {
                set.add_exclude(line, &origin, Anchor::Root)?;
            }
        }
        set.add_exclude(".git", "hoist", Anchor::NameAnywhere)?;
        Ok(set)
    }

    /// The rules of `include` and `exclude` alone (checks use this to validate patterns,
    /// the watcher for live-update triggers).
    pub fn for_patterns(include: &[String], exclude: &[String]) -> Result<FileSet, InvalidGlob> {
        let mut set = FileSet::default();
        set.add_patterns(include, exclude)?;
        Ok(set)
    }

    fn add_patterns(&mut self, include: &[String], exclude: &[String]) -> Result<(), InvalidGlob> {
        for p in exclude {
            self.add_exclude(p, "exclude", Anchor::NameAnywhere)?;
        }
        for p in include {
            match compile(p, "include", Anchor::NameAnywhere)? {
                // "All but these" is what exclude says; a `!` here would read as its opposite.
                Some((_, true)) => {
                    return Err(InvalidGlob {
                        pattern: p.clone(),
                        origin: "include".into(),
                        reason:
                            "`!` takes paths back in exclude lists only; put the pattern in exclude"
                                .into(),
                    });
                }
                Some((glob, false)) => self.includes.push(glob),
                None => {}
            }
        }
        Ok(())
    }

    fn add_exclude(&mut self, line: &str, origin: &str, anchor: Anchor) -> Result<(), InvalidGlob> {
        let p = line.trim();
        if p.starts_with('#') {
            return Ok(());
        }
        if let Some(rule) = compile(p, origin, anchor)? {
            self.excludes.push(rule);
        }
        Ok(())
    }

    /// Is `rel` (a file or a directory) left out by an ignore file or `exclude`?
    pub fn excludes(&self, rel: &str) -> bool {
        let mut verdict = false;
        for (glob, takes_back) in &self.excludes {
            if matches_self_or_parent(glob, rel) {
                verdict = !takes_back;
            }
        }
        verdict
    }

    /// Does `include` let the file `rel` in (always, when there are no include patterns)?
    pub fn includes(&self, rel: &str) -> bool {
        self.includes.is_empty() || self.includes.iter().any(|g| matches_self_or_parent(g, rel))
    }

    /// Does the layer take the file `rel`?
    pub fn takes(&self, rel: &str) -> bool {
        self.includes(rel) && !self.excludes(rel)
    }

    /// Are there include patterns (then only directories holding taken files appear)?
    pub fn has_includes(&self) -> bool {
        !self.includes.is_empty()
    }

    /// Is there a `!` rule? Then something under an excluded directory may be taken back,
    /// and a walk must look inside it, as Docker does, instead of skipping it whole.
    pub fn has_take_backs(&self) -> bool {
        self.excludes.iter().any(|(_, takes_back)| *takes_back)
    }
}

/// The ignore file a build of `dockerfile` in `context` reads, as BuildKit chooses it:
/// `<Dockerfile>.dockerignore` next to the Dockerfile when it exists (`api.Dockerfile` →
/// `api.Dockerfile.dockerignore`), else the context's `.dockerignore`, else none. Pass it
/// to builders that do not choose it themselves (`buildah bud --ignorefile`).
pub fn docker_ignore_file(context: &Path, dockerfile: &Path) -> Option<PathBuf> {
    docker_ignore_candidates(context, dockerfile)
        .into_iter()
        .find(|p| p.is_file())
}

/// The ignore files a build of `dockerfile` in `context` may read, in BuildKit's order
/// (see [`docker_ignore_file`]), existing or not: a watcher watches them all.
pub fn docker_ignore_candidates(context: &Path, dockerfile: &Path) -> Vec<PathBuf> {
    let beside = dockerfile.file_name().map(|name| {
        let mut n = name.to_os_string();
        n.push(".dockerignore");
        dockerfile.with_file_name(n)
    });
    beside
        .into_iter()
        .chain([context.join(".dockerignore")])
        .collect()
}

#[derive(Clone, Copy)]
enum Anchor {
    /// Docker's ignore files: relative to the root.
    Root,
    /// `include`/`exclude`: no `/` matches a name at any depth.
    NameAnywhere,
}

/// A pattern as a matcher, and whether it takes paths back (`!`); None for a blank one.
fn compile(
    pattern: &str,
    origin: &str,
    anchor: Anchor,
) -> Result<Option<(GlobMatcher, bool)>, InvalidGlob> {
    let p = pattern.trim();
    let (takes_back, p) = match p.strip_prefix('!') {
        Some(rest) => (true, rest.trim()),
        None => (false, p),
    };
    // Decided before `./` and `/` go: `./docs` and `/docs` are from the root.
    let anywhere = matches!(anchor, Anchor::NameAnywhere) && !p.trim_end_matches('/').contains('/');
    let p = p.strip_prefix("./").unwrap_or(p);
    let p = p.trim_start_matches('/').trim_end_matches('/');
    if p.is_empty() {
        return Ok(None);
    }
    let glob = if anywhere {
        format!("**/{p}")
    } else {
        p.to_string()
    };
    GlobBuilder::new(&glob)
        .literal_separator(true)
        .build()
        .map(|g| Some((g.compile_matcher(), takes_back)))
        .map_err(|e| InvalidGlob {
            pattern: pattern.to_string(),
            origin: origin.to_string(),
            reason: e.kind().to_string(),
        })
}

fn matches_self_or_parent(glob: &GlobMatcher, rel: &str) -> bool {
    if glob.is_match(rel) {
        return true;
    }
    let mut s = rel;
    while let Some((parent, _)) = s.rsplit_once('/') {
        if glob.is_match(parent) {
            return true;
        }
        s = parent;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(p: &[&str]) -> Vec<String> {
        p.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_pattern_without_slash_matches_a_name_at_any_depth() {
        let s = FileSet::for_patterns(&[], &v(&["*.tmp", "node_modules"])).unwrap();
        for rel in [
            "x.tmp",
            "sub/y.tmp",
            "a/b/c.tmp",
            "node_modules/x/a.js",
            "web/node_modules/a.js",
        ] {
            assert!(!s.takes(rel), "{rel}");
        }
        for rel in ["x.tmpl", "sub/keep.txt", "node_modules_old/a.js"] {
            assert!(s.takes(rel), "{rel}");
        }
        let s = FileSet::for_patterns(&v(&["*.html"]), &[]).unwrap();
        assert!(s.takes("a.html") && s.takes("sub/deeper/d.html"));
        assert!(!s.takes("sub/s.css"));
    }

    #[test]
    fn a_pattern_with_slash_matches_from_the_root() {
        let s = FileSet::for_patterns(&v(&["src/*.rs", "/top.txt", "./docs/"]), &[]).unwrap();
        assert!(s.takes("src/main.rs") && s.takes("top.txt") && s.takes("docs/a/b.md"));
        assert!(!s.takes("lib/src/main.rs") && !s.takes("src/a/b.rs") && !s.takes("x/top.txt"));
        assert!(!s.takes("x/docs/a.md"), "./docs is from the root");
        let s = FileSet::for_patterns(&[], &v(&["./build"])).unwrap();
        assert!(!s.takes("build/out") && s.takes("web/build/out"));
    }

    #[test]
    fn the_last_matching_exclude_wins() {
        let s = FileSet::for_patterns(&[], &v(&["*.log", "!keep.log"])).unwrap();
        assert!(!s.takes("a.log") && s.takes("keep.log") && s.takes("sub/keep.log"));
    }

    #[test]
    fn ignore_files_keep_dockers_root_relative_meaning() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(".dockerignore"),
            "# comment\n*.log\n\nbuild/\n",
        )
        .unwrap();
        std::fs::write(dir.path().join(".hoistignore"), "!important.log\n").unwrap();
        let s = FileSet::for_dir(dir.path(), &[], &[]).unwrap();
        assert!(!s.takes("a.log") && !s.takes("build/out/x"));
        assert!(s.takes("sub/a.log"), "Docker's *.log is top-level only");
        assert!(
            s.takes("important.log"),
            ".hoistignore is read after .dockerignore"
        );
    }

    #[test]
    fn docker_contexts_read_the_builders_ignore_file_only() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = dir.path();
        let df = ctx.join("Dockerfile");
        std::fs::write(&df, "FROM scratch\n").unwrap();
        std::fs::write(ctx.join(".hoistignore"), "*.txt\n").unwrap();
        let s = FileSet::for_docker_context(ctx, &df).unwrap();
        assert!(s.takes("a.txt"), ".hoistignore is not Docker's");
        assert!(!s.takes(".git/HEAD") && !s.takes("sub/.git/x"));
        assert_eq!(docker_ignore_file(ctx, &df), None);
        std::fs::write(ctx.join(".dockerignore"), "*.md\n!keep.md\n").unwrap();
        let s = FileSet::for_docker_context(ctx, &df).unwrap();
        assert!(!s.takes("notes.md") && s.takes("keep.md") && s.takes("sub/notes.md"));
        // `<Dockerfile>.dockerignore` beside the Dockerfile wins over the context's.
        let other = ctx.join("build").join("api.Dockerfile");
        std::fs::create_dir_all(other.parent().unwrap()).unwrap();
        std::fs::write(&other, "FROM scratch\n").unwrap();
        std::fs::write(ctx.join("build/api.Dockerfile.dockerignore"), "*.rs\n").unwrap();
        assert_eq!(
            docker_ignore_file(ctx, &other),
            Some(ctx.join("build/api.Dockerfile.dockerignore"))
        );
        let s = FileSet::for_docker_context(ctx, &other).unwrap();
        assert!(s.takes("notes.md") && !s.takes("main.rs"));
    }

    #[test]
    fn a_take_back_in_include_is_refused() {
        let e = FileSet::for_patterns(&v(&["*", "!*.md"]), &[]).unwrap_err();
        assert_eq!(e.pattern, "!*.md");
        assert!(e.reason.contains("in exclude lists only"), "{e}");
        let s = FileSet::for_patterns(&[], &v(&["node_modules", "!node_modules/keep"])).unwrap();
        assert!(s.has_take_backs() && s.takes("node_modules/keep/a.js"));
        assert!(
            !FileSet::for_patterns(&[], &v(&["x"]))
                .unwrap()
                .has_take_backs()
        );
    }

    #[test]
    fn bad_patterns_say_where_they_came_from() {
        let e = FileSet::for_patterns(&v(&["a[b"]), &[]).unwrap_err();
        assert_eq!((e.pattern.as_str(), e.origin.as_str()), ("a[b", "include"));
        assert!(
            e.to_string().contains("invalid glob \"a[b\" in include"),
            "{e}"
        );
    }
}
