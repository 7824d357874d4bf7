use std::process::ExitCode;

use clap::Args;

use super::project::{SetArgs, load};
use crate::cli::GlobalOpts;
use crate::output::OutputFormat;

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// `text` (diagnostics with source snippets) or `json` (one object per problem).
    #[arg(short = 'o', long = "output", value_enum, default_value_t)]
    pub format: OutputFormat,
    #[command(flatten)]
    pub set: SetArgs,
}

pub fn run(args: ValidateArgs, g: &GlobalOpts) -> miette::Result<ExitCode> {
    let project = load(g, &args.set)?;
    let problems = project.validate();
    if let Some(doc) = args.format.document() {
        let list: Vec<serde_json::Value> = problems
            .iter()
            .map(|p| {
                serde_json::json!({
                    "code": miette::Diagnostic::code(p).map(|c| c.to_string()),
                    "message": p.message,
                    "file": p.location.as_ref().map(|l| l.file.display().to_string()),
                    "line": p.location.as_ref().map(|l| l.line),
                    "column": p.location.as_ref().map(|l| l.column),
                    "help": p.help,
                })
            })
            .collect();
        doc.print(&serde_json::json!({
            "ok": problems.is_empty(),
            "problems": list
        }))?;
    } else {
        for p in &problems {
            eprintln!("{:?}", miette::Report::new(p.clone()));
        }
        if problems.is_empty() {
            outln!(
                "project `{}`: {} service{}, no problems",
                project.config.name,
                project.services.len(),
                if project.services.len() == 1 { "" } else { "s" }
            );
        } else {
            eprintln!(
                "{} problem{} found",
                problems.len(),
                if problems.len() == 1 { "" } else { "s" }
            );
        }
    }
    Ok(if problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
