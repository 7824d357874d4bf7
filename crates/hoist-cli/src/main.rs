//! `hoist`: the command-line front end. Parsing and output only; the work
//! happens in the library crates.

// Standard output goes through `outln!`/`out!` (output.rs): `println!` panics on a closed pipe.
#![deny(clippy::print_stdout)]

// First: its `outln!`/`out!` macros are used by the modules below.
#[macro_use]
mod output;
mod cli;
mod commands;
mod malloc_tuning;
mod report;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    // The cluster server's log is a file read after the fact: it keeps times and sources.
    let server = matches!(cli.command, cli::Command::Cluster(_));
    init_tracing(cli.global.verbose, server);
    report::install_hook();
    // The cluster server is a long-running process of its own with its own
    // allocation profile, and image transfers are better served by glibc's dynamic
    // threshold (see malloc_tuning); the other client commands are tuned.
    if !matches!(
        cli.command,
        cli::Command::Cluster(_) | cli::Command::Image(_) | cli::Command::Registry(_)
    ) {
        malloc_tuning::fixed_mmap_threshold();
    }
    let result = commands::run(cli);
    // A cancelled Dockerfile build's builder gets its grace period to clean up, and no
    // longer: the process does not end before it is stopped.
    hoist_oci::dockerfile::wait_for_cleanups(
        hoist_oci::dockerfile::STOP_GRACE + std::time::Duration::from_secs(2),
    );
    match result {
        Ok(code) => code,
        Err(report) => {
            let code = report::exit_code(&report);
            eprintln!("{:?}", report::deduped(report));
            code
        }
    }
}

fn init_tracing(verbose: u8, server: bool) {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 => "warn",
        1 => "info,hoist=debug",
        _ => "debug",
    };
    let asked = std::env::var_os("HOIST_LOG").is_some();
    let filter = EnvFilter::try_from_env("HOIST_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal: a log file or CI output gets plain text.
        .with_ansi(std::io::stderr().is_terminal());
    if verbose == 0 && !asked && !server {
        // What a user sees by default are warnings: `warning: …`, like the errors.
        builder.event_format(output::Plain).init();
    } else {
        builder.init();
    }
}
