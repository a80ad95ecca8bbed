//! What rprof prints and writes once a capture ends: the profile (a table
//! on stdout, or a `.prof` file), a one-line summary on stderr, and the
//! exit status that says whether the profile is complete.

use crate::cli::OutputConfig;
use anyhow::{Context, Result};
use rprof_format::{OutputFormat, ProfileData};
use rprof_reader::Capture;
use std::io::Write;

/// rprof itself failed (bad input, the target could not be profiled).
pub const EXIT_ERROR: u8 = 1;
/// The capture is incomplete: events were dropped or the ring was corrupt.
pub const EXIT_INCOMPLETE: u8 = 3;

/// Writes the profile as `config` asks: each `-o` file in its format, or
/// the table on stdout.
pub fn write_profile(capture: &Capture, config: &OutputConfig, pid: Option<u32>) -> Result<()> {
    let data = ProfileData::new(&capture.profile, capture.paths.as_ref());
    let mut options = config.options.clone();
    options.pid = pid;
    if config.outputs.is_empty() {
        let stdout = std::io::stdout();
        OutputFormat::Text
            .write(data, &options, stdout.lock())
            .context("cannot print the table")?;
        return Ok(());
    }
    for (path, format) in &config.outputs {
        // `{pid}` names the one process, as with --subprocesses.
        let path = &match pid {
            Some(pid) => crate::procs::per_process_path(path, pid),
            None => path.clone(),
        };
        let file = std::fs::File::create(path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        let mut w = std::io::BufWriter::new(file);
        format
            .write(data, &options, &mut w)
            .map_err(anyhow::Error::from)
            .and_then(|_| w.flush().map_err(Into::into))
            .with_context(|| format!("cannot write {} ({format})", path.display()))?;
    }
    Ok(())
}

/// Asks the session for call paths if an output needs them.
pub fn prepare(session: &mut rprof_reader::Session, config: &OutputConfig) {
    if config.needs_paths() {
        session.record_paths(config.limits);
    }
}

/// Says so when a capture recorded no event at all, and why that can be;
/// returns true then. `launched`: the target was started by `rprof run`,
/// whose bootstrap always makes at least one call under the hook, so an
/// empty capture there means the hook never fired.
pub fn warn_if_empty(capture: &Capture, launched: bool) -> bool {
    let s = &capture.summary;
    if s.events > 0 || s.corrupt.is_some() {
        return false;
    }
    if launched {
        eprintln!(
            "rprof: error: no events were recorded: the profile hook never fired in the target, so this profile is empty; please report it with `python -VV` of the interpreter"
        );
    } else {
        eprintln!(
            "rprof: warning: no events were recorded: no thread ran Python code while rprof was attached (the target was idle, or blocked in native code); attach for longer or while it works"
        );
    }
    true
}

/// The summary line, and warnings for anything that makes the profile
/// incomplete. Returns false if it is incomplete.
pub fn summarize(capture: &Capture) -> bool {
    let s = &capture.summary;
    let version = s
        .python_version
        .map(|(a, b, c)| format!("Python {a}.{b}.{c}"))
        .unwrap_or_else(|| "Python".into());
    let hook = match s.hook {
        Some(rprof_abi::Hook::Monitoring) => "sys.monitoring",
        Some(rprof_abi::Hook::SetProfile) => "setprofile",
        _ => "no",
    };
    let clock = match s.clock {
        Some(rprof_abi::Clock::Tsc) => "tsc",
        _ => "monotonic",
    };
    let r = &s.refused;
    let refused = r.functions + r.threads + r.frames + r.names + s.refused_events;
    eprintln!(
        "rprof: {} events, {} functions over {:.3} s from {version} ({hook} hook, {clock} clock); target waited {} times for {:.3} s{}",
        s.events,
        capture.profile.functions.len(),
        s.duration_seconds,
        s.waits,
        s.wait_seconds,
        if refused > 0 {
            format!("; {refused} items refused")
        } else {
            String::new()
        },
    );
    warn_incomplete(capture, "");
    if !s.stopped_cleanly && s.events > 0 && s.corrupt.is_none() {
        eprintln!(
            "rprof: warning: the capture ended without the target's end-of-stream record (it exited); if it was killed, its last events may be missing"
        );
    }
    s.is_exact()
}

/// Warnings for anything that makes `capture` incomplete, each line
/// starting with `rprof: warning: {prefix}` (a process's name in a
/// multi-process capture, else empty).
pub fn warn_incomplete(capture: &Capture, prefix: &str) {
    let s = &capture.summary;
    if s.refused.any() || s.refused_events > 0 {
        let r = &s.refused;
        eprintln!(
            "rprof: warning: {prefix}the target sent more than rprof keeps (a broken or hostile ring): refused {} function definitions, {} threads ({} of their events), {} calls, {} thread names; the profile is incomplete",
            r.functions, r.threads, s.refused_events, r.frames, r.names
        );
    }
    if s.dropped > 0 {
        eprintln!(
            "rprof: warning: {prefix}{} events were dropped because the ring was full; the profile is incomplete (use a larger --ring-size, or --on-full wait)",
            s.dropped
        );
    }
    if s.invalid_events > 0 {
        eprintln!(
            "rprof: warning: {prefix}{} events named unknown functions and were ignored",
            s.invalid_events
        );
    }
    if let Some(c) = &s.corrupt {
        eprintln!("rprof: warning: {prefix}{c}");
    }
    if let Some(paths) = &capture.paths {
        let t = paths.truncation;
        if t.depth_folded > 0 {
            eprintln!(
                "rprof: note: {prefix}{} calls deeper than --max-depth were folded into their ancestor in the call-path outputs",
                t.depth_folded
            );
        }
        if t.node_folded > 0 {
            eprintln!(
                "rprof: note: {prefix}the call tree reached its node limit; {} calls were folded into their parent in the call-path outputs",
                t.node_folded
            );
        }
        if t.spans_dropped > 0 {
            eprintln!(
                "rprof: note: {prefix}{} calls are missing from the timeline outputs (--max-trace-events)",
                t.spans_dropped
            );
        }
    }
    if s.abandoned {
        eprintln!(
            "rprof: warning: {prefix}the target stopped recording because rprof did not keep up"
        );
    }
}
