use std::process::ExitCode;

use clap::Args;

use crate::cli::GlobalOpts;

#[derive(Debug, Args)]
pub struct ServicesArgs {}

pub fn run(_args: ServicesArgs, _g: &GlobalOpts) -> miette::Result<ExitCode> {
    Err(miette::miette!("`hoist services` is not implemented yet"))
}
