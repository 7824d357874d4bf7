//! Errors a user can act on: what is wrong, where (file:line:column), and a hint.
//!
//! Every problem is a [`ConfigError`]. It displays as `file:line:col: message` so
//! plain-text logs carry the location, and implements [`miette::Diagnostic`] so
//! the CLI can show the source snippet with the offending span underlined.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use miette::{LabeledSpan, NamedSource, SourceSpan};

/// What kind of problem a [`ConfigError`] is (stable, for matching in code and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    NoProject,
    Io,
    Syntax,
    UnknownField,
    WrongType,
    MissingField,
    InvalidName,
    DuplicateName,
    MissingMold,
    MissingParameter,
    UnknownParameter,
    Template,
    Cycle,
    UnknownDependency,
    UnknownService,
    MissingFile,
    InvalidImage,
    InvalidOverride,
    ToolMissing,
    ToolFailed,
    InvalidObject,
}

impl ErrorKind {
    fn code(self) -> &'static str {
        match self {
            ErrorKind::NoProject => "hoist::no_project",
            ErrorKind::Io => "hoist::io",
            ErrorKind::Syntax => "hoist::yaml_syntax",
            ErrorKind::UnknownField => "hoist::unknown_field",
            ErrorKind::WrongType => "hoist::wrong_type",
            ErrorKind::MissingField => "hoist::missing_field",
            ErrorKind::InvalidName => "hoist::invalid_name",
            ErrorKind::DuplicateName => "hoist::duplicate_name",
            ErrorKind::MissingMold => "hoist::missing_mold",
            ErrorKind::MissingParameter => "hoist::missing_parameter",
            ErrorKind::UnknownParameter => "hoist::unknown_parameter",
            ErrorKind::Template => "hoist::template",
            ErrorKind::Cycle => "hoist::dependency_cycle",
            ErrorKind::UnknownDependency => "hoist::unknown_dependency",
            ErrorKind::UnknownService => "hoist::unknown_service",
            ErrorKind::MissingFile => "hoist::missing_file",
            ErrorKind::InvalidImage => "hoist::invalid_image",
            ErrorKind::InvalidOverride => "hoist::invalid_override",
            ErrorKind::ToolMissing => "hoist::tool_missing",
            ErrorKind::ToolFailed => "hoist::tool_failed",
            ErrorKind::InvalidObject => "hoist::invalid_object",
        }
    }
}

/// A place in a source file, with the text kept so the snippet can be shown.
#[derive(Debug, Clone)]
pub struct Location {
    pub file: PathBuf,
    /// 1-based.
    pub line: usize,
    /// 1-based.
    pub column: usize,
    named: NamedSource<Arc<str>>,
    /// Byte offset and length of the highlighted span.
    offset: usize,
    len: usize,
    label: String,
}

impl Location {
    /// A location at byte `offset` of `source` (the text of `file`).
    pub fn at(file: &Path, source: &Arc<str>, offset: usize, label: impl Into<String>) -> Self {
        let offset = floor_char_boundary(source, offset);
        let (line, column) = line_col(source, offset);
        // Underline to the end of the token (or line), which reads better than one char.
        let rest = &source[offset..];
        let len = rest.find(['\n', ':', ',', ']', '}']).unwrap_or(rest.len());
        // At least one whole character, when there is one.
        let len = if len == 0 {
            rest.chars().next().map_or(0, char::len_utf8)
        } else {
            len
        };
        Location {
            file: file.to_path_buf(),
            line,
            column,
            named: NamedSource::new(file.display().to_string(), source.clone()),
            offset,
            len,
            label: label.into(),
        }
    }

    /// A location at 1-based `line`/`column` of `source`.
    pub fn at_line_col(
        file: &Path,
        source: &Arc<str>,
        line: usize,
        column: usize,
        label: impl Into<String>,
    ) -> Self {
        let offset = offset_of(source, line, column);
        Self::at(file, source, offset, label)
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..floor_char_boundary(text, offset)];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rfind('\n')
        .map_or(before.len(), |i| before.len() - i - 1)
        + 1;
    (line, column)
}

fn floor_char_boundary(text: &str, mut i: usize) -> usize {
    i = i.min(text.len());
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Byte offset of a 1-based line and (character) column, as YAML parsers count them.
fn offset_of(text: &str, line: usize, column: usize) -> usize {
    let mut off = 0;
    for (n, l) in text.split_inclusive('\n').enumerate() {
        if n + 1 == line {
            let within = l
                .char_indices()
                .nth(column.saturating_sub(1))
                .map_or(l.len(), |(i, _)| i);
            return off + within;
        }
        off += l.len();
    }
    text.len()
}

/// One problem in a hoist project.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", self.headline())]
pub struct ConfigError {
    pub kind: ErrorKind,
    pub message: String,
    pub location: Option<Box<Location>>,
    pub help: Option<String>,
    /// Further places that belong to this problem (e.g. the first of two duplicates).
    pub related: Vec<ConfigError>,
}

impl ConfigError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ConfigError {
            kind,
            message: message.into(),
            location: None,
            help: None,
            related: Vec::new(),
        }
    }

    pub fn at(mut self, location: Location) -> Self {
        self.location = Some(Box::new(location));
        self
    }

    pub fn at_opt(mut self, location: Option<Location>) -> Self {
        self.location = location.map(Box::new);
        self
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn help_opt(mut self, help: Option<String>) -> Self {
        self.help = help;
        self
    }

    pub fn related(mut self, other: ConfigError) -> Self {
        self.related.push(other);
        self
    }

    pub fn io(path: &Path, err: &std::io::Error) -> Self {
        ConfigError::new(
            ErrorKind::Io,
            format!("cannot read {}: {err}", path.display()),
        )
    }

    /// `file:line:col: message`, or just the message when there is no location.
    fn headline(&self) -> String {
        match &self.location {
            Some(l) => format!(
                "{}:{}:{}: {}",
                l.file.display(),
                l.line,
                l.column,
                self.message
            ),
            None => self.message.clone(),
        }
    }
}

impl miette::Diagnostic for ConfigError {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(self.kind.code()))
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        self.location
            .as_ref()
            .map(|l| &l.named as &dyn miette::SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let l = self.location.as_ref()?;
        Some(Box::new(std::iter::once(LabeledSpan::new_with_span(
            Some(l.label.clone()),
            SourceSpan::new(l.offset.into(), l.len),
        ))))
    }

    fn related<'a>(&'a self) -> Option<Box<dyn Iterator<Item = &'a dyn miette::Diagnostic> + 'a>> {
        if self.related.is_empty() {
            return None;
        }
        Some(Box::new(
            self.related.iter().map(|e| e as &dyn miette::Diagnostic),
        ))
    }
}

/// Several problems at once (what `render` returns when the project is broken).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", summary(.0))]
pub struct ConfigErrors(pub Vec<ConfigError>);

fn summary(errors: &[ConfigError]) -> String {
    match errors {
        [one] => one.to_string(),
        many => {
            let mut s = format!("{} problems in the project:", many.len());
            for e in many {
                s.push_str("\n  ");
                s.push_str(&e.to_string());
            }
            s
        }
    }
}

impl miette::Diagnostic for ConfigErrors {
    fn related<'a>(&'a self) -> Option<Box<dyn Iterator<Item = &'a dyn miette::Diagnostic> + 'a>> {
        if self.0.len() < 2 {
            return None;
        }
        Some(Box::new(
            self.0.iter().map(|e| e as &dyn miette::Diagnostic),
        ))
    }
    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        match self.0.as_slice() {
            [one] => one.source_code(),
            _ => None,
        }
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        match self.0.as_slice() {
            [one] => miette::Diagnostic::labels(one),
            _ => None,
        }
    }
    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        match self.0.as_slice() {
            [one] => miette::Diagnostic::help(one),
            _ => None,
        }
    }
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        match self.0.as_slice() {
            [one] => miette::Diagnostic::code(one),
            _ => None,
        }
    }
}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        ConfigErrors(vec![e])
    }
}

/// "did you mean `x`?" for a misspelt name among `candidates`: the closest one
/// within a small edit distance (transpositions count once).
pub fn did_you_mean<'a>(
    wrong: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    let limit = (wrong.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(wrong, c), c))
        .filter(|(d, c)| *d <= limit && *c != wrong)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| format!("did you mean `{c}`?"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_count_characters_and_never_split_them() {
        let src: Arc<str> = Arc::from("név: ü\nx: [é\n");
        let l = Location::at_line_col(Path::new("f"), &src, 2, 5, "here");
        assert_eq!((l.line, l.column), (2, 5));
        assert_eq!(&src[l.offset..l.offset + l.len], "é");
        for off in 0..=src.len() + 2 {
            let l = Location::at(Path::new("f"), &src, off, "x");
            assert!(src.is_char_boundary(l.offset) && l.offset + l.len <= src.len());
        }
    }

    #[test]
    fn suggestions() {
        let c = ["replicas", "ports", "port", "web"];
        assert_eq!(
            did_you_mean("replcas", c).as_deref(),
            Some("did you mean `replicas`?")
        );
        assert_eq!(
            did_you_mean("wbe", c).as_deref(),
            Some("did you mean `web`?")
        );
        assert_eq!(
            did_you_mean("prot", c).as_deref(),
            Some("did you mean `port`?")
        );
        assert_eq!(did_you_mean("zzzzzz", c), None);
    }
}
