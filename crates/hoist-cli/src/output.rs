//! Output formats shared by every command: readable text for people, JSON for scripts.

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::ValueEnum;

/// `println!` to stdout that never panics; see [`write_stdout`].
macro_rules! outln {
    () => {
        $crate::output::write_stdout(format_args!(""), true)
    };
    ($($arg:tt)*) => {
        $crate::output::write_stdout(format_args!($($arg)*), true)
    };
}

/// `print!` to stdout that never panics; see [`write_stdout`].
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::write_stdout(format_args!($($arg)*), false)
    };
}

/// Set once stdout turned out to be a closed pipe.
static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);

/// Write formatted text to stdout, see [`to_stdout`].
pub fn write_stdout(args: std::fmt::Arguments, newline: bool) {
    to_stdout(|out| {
        out.write_fmt(args)?;
        if newline {
            out.write_all(b"\n")?;
        }
        Ok(())
    });
}

/// Run `write` on stdout and flush it. Once stdout is a closed pipe (`hoist render | head`),
/// the rest of the output is dropped quietly (returns `false`) and the command ends with its
/// own exit status (`hoist ci | head` still fails when a test does); `println!` would panic.
/// Any other failure to write (a full disk under `> file`) ends hoist with an error, so
/// cut-off output never passes for whole output.
pub fn to_stdout(
    write: impl FnOnce(&mut std::io::StdoutLock<'static>) -> std::io::Result<()>,
) -> bool {
    if STDOUT_CLOSED.load(Ordering::Relaxed) {
        return false;
    }
    let mut out = std::io::stdout().lock();
    match write(&mut out).and_then(|()| out.flush()) {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            STDOUT_CLOSED.store(true, Ordering::Relaxed);
            false
        }
        Err(e) => {
            eprintln!("error: cannot write to standard output: {e}");
            std::process::exit(1);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum OutputFormat {
    /// Human-readable text (tables, summaries).
    #[default]
    Text,
    /// One JSON document.
    Json,
    /// The same document as YAML.
    Yaml,
}

/// The output of commands that stream events (`up`, `ci`): a stream has no YAML form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum StreamFormat {
    /// Human-readable text (progress lines, tables, summaries).
    #[default]
    Text,
    /// One JSON event per line.
    Json,
}

/// A machine-readable form of a command's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Document {
    Json,
    Yaml,
}

impl OutputFormat {
    /// The document to print instead of text, if one was asked for.
    pub fn document(self) -> Option<Document> {
        match self {
            OutputFormat::Text => None,
            OutputFormat::Json => Some(Document::Json),
            OutputFormat::Yaml => Some(Document::Yaml),
        }
    }
}

impl Document {
    /// Print `value`: pretty JSON, or YAML with the same fields in the same order.
    pub fn print(self, value: &impl serde::Serialize) -> miette::Result<()> {
        use miette::IntoDiagnostic;
        match self {
            Document::Json => outln!("{}", serde_json::to_string_pretty(value).into_diagnostic()?),
            // serde_norway ends the document with a newline.
            Document::Yaml => out!("{}", serde_norway::to_string(value).into_diagnostic()?),
        }
        Ok(())
    }
}

/// A byte count for people (`18.76 MiB`); JSON output keeps exact numbers.
pub fn human_bytes(n: u64) -> String {
    hoist_oci::indicatif::HumanBytes(n).to_string()
}

/// `1 layer`, `2 layers`: a count with its noun.
pub fn count(n: u64, noun: &str) -> String {
    count_irregular(n, noun, &format!("{noun}s"))
}

/// [`count`] for a noun whose plural is not `-s` ("retry", "retries").
pub fn count_irregular(n: u64, one: &str, many: &str) -> String {
    match n {
        1 => format!("1 {one}"),
        n => format!("{n} {many}"),
    }
}

/// Log events for a person at a terminal or in CI output: `warning: message key=value`,
/// no time or module path (`-v` and `HOIST_LOG` keep the full format for debugging).
pub struct Plain;

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for Plain
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let level = *event.metadata().level();
        let label = match level {
            tracing::Level::ERROR => "error",
            tracing::Level::WARN => "warning",
            tracing::Level::INFO => "info",
            tracing::Level::DEBUG => "debug",
            tracing::Level::TRACE => "trace",
        };
        if writer.has_ansi_escapes() {
            let colour = match level {
                tracing::Level::ERROR => "31",
                tracing::Level::WARN => "33",
                _ => "2",
            };
            write!(writer, "\x1b[{colour}m{label}\x1b[0m: ")?;
        } else {
            write!(writer, "{label}: ")?;
        }
        use tracing_subscriber::fmt::FormatFields as _;
        ctx.format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_say_their_plural() {
        assert_eq!(count(1, "layer"), "1 layer");
        assert_eq!(count(2, "layer"), "2 layers");
        assert_eq!(count_irregular(1, "retry", "retries"), "1 retry");
        assert_eq!(count_irregular(3, "retry", "retries"), "3 retries");
    }

    #[test]
    fn sizes_and_counts_read_naturally() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(2390), "2.33 KiB");
        assert_eq!(human_bytes(157_336_288), "150.05 MiB");
        assert_eq!(count(1, "layer"), "1 layer");
        assert_eq!(count(0, "layer"), "0 layers");
        assert_eq!(count(9, "blob"), "9 blobs");
    }
}
