//! `rprof`: exact, cProfile-compatible profiles of CPython processes.
#![forbid(unsafe_code)]

mod cli;
mod report;
mod run;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let result = match cli.command {
        cli::Command::Run(args) => run::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("rprof: {err:#}");
            ExitCode::from(report::EXIT_ERROR)
        }
    }
}
