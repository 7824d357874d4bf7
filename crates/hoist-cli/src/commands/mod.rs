//! One module per command (group). Each exposes `run(args, &GlobalOpts)`.

pub mod ci;
pub mod cluster;
pub mod completions;
pub mod deploy;
pub mod down;
pub mod image;
pub mod image_build;
pub mod init;
mod project;
pub mod registry;
pub mod render;
pub mod services;
mod session;
pub mod up;
pub mod validate;

use std::process::ExitCode;

use miette::IntoDiagnostic;

use crate::cli::{Cli, Command};

/// Run `f`, work that writes blobs, so that Ctrl-C or SIGTERM cancels it and its temp
/// files go (see [`hoist_oci::block_on_interruptible`]); then hoist says "interrupted:
/// `what` was cancelled" and exits with 130 or 143 ([`crate::report::Interrupted`]).
pub(crate) fn interruptible<T>(
    what: &str,
    f: impl std::future::Future<Output = hoist_oci::Result<T>>,
) -> miette::Result<T> {
    match hoist_oci::block_on_interruptible(what, f) {
        Err(e @ hoist_oci::Error::Cancelled { by: Some(by), .. }) => {
            Err(crate::report::Interrupted {
                message: e.to_string(),
                by,
            }
            .into())
        }
        r => r.into_diagnostic(),
    }
}

pub fn run(cli: Cli) -> miette::Result<ExitCode> {
    let g = &cli.global;
    match cli.command {
        Command::Init(a) => init::run(a, g),
        Command::Validate(a) => validate::run(a, g),
        Command::Services(a) => services::run(a, g),
        Command::Render(a) => render::run(a, g),
        Command::Image(a) => image::run(a, g),
        Command::Registry(a) => registry::run(a, g),
        Command::Cluster(a) => cluster::run(a, g),
        Command::Deploy(a) => deploy::run(a, g),
        Command::Down(a) => down::run(a, g),
        Command::Up(a) => up::run(a, g),
        Command::Ci(a) => ci::run(a, g),
        Command::Completions(a) => completions::run(a),
    }
}
