//! How a failed command's error is shown. The libraries' messages already carry the causes
//! that matter on one line ("cannot reach registry …: connection refused", "invalid JSON in
//! FILE: …"), because that line is also what `-o json`, logs and events show. miette's
//! report lists every cause again below the message; [`deduped`] drops them when the
//! message already says the innermost one, and otherwise the leading ones it says, so each
//! reason is printed once.

use std::fmt;
use std::io::IsTerminal;

use miette::{Diagnostic, Report};

/// How reports are drawn. On a terminal, lines wrap at its width but only at spaces, so
/// a path or URL in a message stays whole for copying (miette's default also breaks after
/// `/`). To a file or pipe, lines are not wrapped: a script or a log search sees each
/// message on one line.
pub fn install_hook() {
    let tty = std::io::stderr().is_terminal();
    // Fails only if a hook is already set, which then stays.
    let _ = miette::set_hook(Box::new(move |_| Box::new(handler_opts(tty).build())));
}

fn handler_opts(tty: bool) -> miette::MietteHandlerOpts {
    miette::MietteHandlerOpts::new()
        .wrap_lines(tty)
        .break_words(false)
        .word_separator(textwrap::WordSeparator::AsciiSpace)
}

/// Ctrl-C or SIGTERM stopped a command's work and what it had started was cleaned up (see
/// [`crate::commands::interruptible`]): hoist ends with the shell's status for that signal
/// (130 for SIGINT, 143 for SIGTERM), as `hoist up` and `hoist ci` do.
#[derive(Debug)]
pub struct Interrupted {
    pub message: String,
    pub by: hoist_oci::StopSignal,
}

impl fmt::Display for Interrupted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Interrupted {}
impl Diagnostic for Interrupted {}

/// The exit status for a command that failed with `report`.
pub fn exit_code(report: &Report) -> std::process::ExitCode {
    match report.downcast_ref::<Interrupted>() {
        Some(i) => std::process::ExitCode::from(i.by.exit_code()),
        None => std::process::ExitCode::FAILURE,
    }
}

/// `report` without the causes its message already says (see the module doc).
pub fn deduped(report: Report) -> Report {
    Report::new(Deduped(report))
}

struct Deduped(Report);

impl fmt::Debug for Deduped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for Deduped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for Deduped {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        let message = self.0.to_string();
        let mut root = self.0.source()?;
        while let Some(next) = root.source() {
            root = next;
        }
        // The message already names the innermost reason: the layers between (an HTTP
        // client's "error sending request", "client error (Connect)", …) add nothing.
        if message.contains(&root.to_string()) {
            return None;
        }
        let mut cause = self.0.source();
        while let Some(c) = cause {
            if !message.contains(&c.to_string()) {
                break;
            }
            cause = c.source();
        }
        cause
    }
}

impl Diagnostic for Deduped {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.0.code()
    }
    fn severity(&self) -> Option<miette::Severity> {
        self.0.severity()
    }
    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.0.help()
    }
    fn url<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.0.url()
    }
    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        self.0.source_code()
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = miette::LabeledSpan> + '_>> {
        self.0.labels()
    }
    fn related<'a>(&'a self) -> Option<Box<dyn Iterator<Item = &'a dyn Diagnostic> + 'a>> {
        self.0.related()
    }
    fn diagnostic_source(&self) -> Option<&dyn Diagnostic> {
        self.0.diagnostic_source()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use miette::{GraphicalReportHandler, GraphicalTheme, IntoDiagnostic, miette};

    /// What the installed hook draws for `r` at `width` columns, without colour.
    fn drawn(r: &Report, tty: bool, width: usize) -> String {
        struct Show<'a>(miette::MietteHandler, &'a Report);
        impl fmt::Debug for Show<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                miette::ReportHandler::debug(&self.0, self.1.as_ref(), f)
            }
        }
        let h = handler_opts(tty)
            .width(width)
            .color(false)
            .unicode(true)
            .build();
        format!("{:?}", Show(h, r))
    }

    #[test]
    fn paths_are_never_split_and_pipes_get_one_line() {
        let path = "/tmp/.tmp1XKuoX/docker/config.json";
        let r =
            miette!("127.0.0.1:5102 requires credentials; no credentials: {path} does not exist");
        let on_tty = drawn(&r, true, 60);
        assert!(on_tty.contains(path), "{on_tty}");
        assert!(
            on_tty.lines().count() > 1,
            "wrapped at 60 columns: {on_tty}"
        );
        let piped = drawn(&r, false, 60);
        assert!(
            piped
                .lines()
                .any(|l| l.contains("requires credentials") && l.contains(path)),
            "{piped}"
        );
    }

    fn render(r: &Report) -> String {
        let mut out = String::new();
        GraphicalReportHandler::new_themed(GraphicalTheme::unicode_nocolor())
            .with_width(200)
            .render_report(&mut out, r.as_ref())
            .unwrap();
        out
    }

    /// An error saying `text`, caused by `cause`.
    #[derive(Debug)]
    struct Layer {
        text: String,
        cause: Option<Box<Layer>>,
    }

    impl fmt::Display for Layer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(&self.text)
        }
    }

    impl std::error::Error for Layer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.cause.as_deref().map(|c| c as _)
        }
    }

    /// A report of `texts[0]` caused by `texts[1]`, caused by …
    fn chain(texts: &[&str]) -> Report {
        let mut layer = None;
        for t in texts.iter().rev() {
            layer = Some(Box::new(Layer {
                text: t.to_string(),
                cause: layer,
            }));
        }
        Err::<(), _>(*layer.unwrap()).into_diagnostic().unwrap_err()
    }

    #[test]
    fn a_cause_the_message_already_says_is_not_repeated() {
        let r = || chain(&["reading a.json: no such file", "no such file"]);
        let before = render(&r());
        assert_eq!(before.matches("no such file").count(), 2, "{before}");
        let after = render(&deduped(r()));
        assert_eq!(after.matches("no such file").count(), 1, "{after}");
        assert!(after.contains("reading a.json: no such file"), "{after}");
    }

    #[test]
    fn layers_between_a_message_and_the_root_cause_it_names_are_dropped() {
        let out = render(&deduped(chain(&[
            "cannot reach registry r (u): cannot connect: connection refused",
            "error sending request for url (u)",
            "client error (Connect)",
            "connection refused",
        ])));
        assert!(!out.contains("client error"), "{out}");
        assert!(!out.contains("error sending"), "{out}");
        assert_eq!(out.matches("connection refused").count(), 1, "{out}");
    }

    #[test]
    fn causes_the_message_does_not_say_are_kept() {
        let out = render(&deduped(chain(&[
            "reading a.json failed",
            "while parsing",
            "no such file",
        ])));
        assert!(out.contains("reading a.json failed"), "{out}");
        assert!(out.contains("while parsing"), "{out}");
        assert!(out.contains("no such file"), "{out}");
        let out = render(&deduped(chain(&[
            "reading a.json: while parsing",
            "while parsing",
            "no such file",
        ])));
        assert_eq!(out.matches("while parsing").count(), 1, "{out}");
        assert!(out.contains("no such file"), "{out}");
    }

    #[test]
    fn help_survives() {
        let r = miette!(help = "e.g. --timeout 90s", "--timeout: bad");
        let out = render(&deduped(r));
        assert!(out.contains("e.g. --timeout 90s"), "{out}");
    }
}
