//! `rprof`: exact, cProfile-compatible profiles of CPython processes.
#![forbid(unsafe_code)]

mod attach;
mod cli;
mod report;
mod run;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let result = match cli.command {
        cli::Command::Run(args) => run::run(&args),
        cli::Command::Attach(args) => attach::attach(&args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("rprof: {err:#}");
            // Attach failures have an exit status per kind.
            let code = err
                .downcast_ref::<rprof_controller::attach::AttachError>()
                .map_or(report::EXIT_ERROR, |e| e.exit_code());
            ExitCode::from(code)
        }
    }
}
