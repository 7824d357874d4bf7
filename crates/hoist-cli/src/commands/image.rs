use std::process::ExitCode;

use clap::Subcommand;

use crate::cli::GlobalOpts;

#[derive(Debug, Subcommand)]
pub enum ImageCommand {}

pub fn run(cmd: ImageCommand, _g: &GlobalOpts) -> miette::Result<ExitCode> {
    match cmd {}
}
