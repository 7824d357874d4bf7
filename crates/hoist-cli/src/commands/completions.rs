use std::process::ExitCode;

use clap::{Args, CommandFactory};
use clap_complete::Shell;

use crate::cli::Cli;

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to generate completions for.
    pub shell: Shell,
}

pub fn run(args: CompletionsArgs) -> miette::Result<ExitCode> {
    let mut cmd = Cli::command();
    // Into memory first: clap_complete panics if stdout is a closed pipe.
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "hoist", &mut script);
    out!("{}", String::from_utf8_lossy(&script));
    Ok(ExitCode::SUCCESS)
}
