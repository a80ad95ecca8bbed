//! `rprof`: exact, cProfile-compatible profiles of CPython processes.
#![forbid(unsafe_code)]

mod attach;
mod children;
mod cli;
mod doctor;
pub mod procs;
mod report;
mod run;
mod subprocesses;

use clap::{CommandFactory, Parser};
use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let result = match cli.command {
        cli::Command::Run(args) => run::run(&args),
        cli::Command::Attach(args) => attach::attach(&args),
        cli::Command::Doctor(args) => doctor::doctor(args.pid),
        cli::Command::Completions(args) => {
            let mut out = std::io::stdout().lock();
            clap_complete::generate(args.shell, &mut cli::Cli::command(), "rprof", &mut out);
            out.flush().map(|()| ExitCode::SUCCESS).map_err(Into::into)
        }
        cli::Command::Man => man(),
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

/// The man page, generated from the command-line definition: the main
/// page, then a section per subcommand with its synopsis and options.
fn man() -> anyhow::Result<ExitCode> {
    let cmd = cli::Cli::command();
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut out)?;
    for sub in cmd.get_subcommands() {
        let name = sub.get_name();
        if sub.is_hide_set() || name == "help" {
            continue;
        }
        let man = clap_mangen::Man::new(sub.clone().bin_name(format!("rprof {name}")));
        writeln!(out, ".SH \"RPROF {}\"", name.to_uppercase())?;
        if let Some(about) = sub.get_about() {
            writeln!(out, "{}", roff_escape(&about.to_string()))?;
        }
        let mut section = Vec::new();
        man.render_synopsis_section(&mut section)?;
        man.render_options_section(&mut section)?;
        // Fold the subcommand's own headings into subsections.
        for line in String::from_utf8_lossy(&section).lines() {
            match line.strip_prefix(".SH ") {
                Some(heading) => writeln!(out, ".SS {heading}")?,
                None => writeln!(out, "{line}")?,
            }
        }
    }
    std::io::stdout().write_all(&out)?;
    Ok(ExitCode::SUCCESS)
}

/// Text that roff prints as it is.
fn roff_escape(text: &str) -> String {
    let text = text.replace('\\', "\\e");
    match text.starts_with(['.', '\'']) {
        true => format!("\\&{text}"),
        false => text,
    }
}
