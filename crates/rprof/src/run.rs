//! `rprof run`: launch a script under the shim and read its ring until it
//! exits.

use crate::cli::RunArgs;
use crate::report;
use anyhow::{Context, Result};
use rprof_controller::{follow, launch::SHIM_FAILED_EXIT, shim, signals};
use rprof_reader::{clock, Ring, RingConfig, Session};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

/// How long the program's other processes may run on after it exited.
const CHILD_GRACE: Duration = Duration::from_secs(2);
/// How long they may take to stop once asked.
const CHILD_STOP: Duration = Duration::from_secs(3);

pub fn run(args: &RunArgs) -> Result<ExitCode> {
    let output = args.output.output_config()?;
    let capture_config = args.output.capture_config()?;
    let mut launch = args.launch()?;
    // The shim and the ring are memfds of ours, which the child opens
    // through /proc/RPROF/fd/N: nothing on disk, nothing inherited.
    let ring_config = RingConfig {
        bytes: capture_config.ring_bytes,
        clock: clock::preferred(),
        hook: capture_config.hook,
        full_policy: capture_config.full_policy,
        mode: capture_config.mode,
        flags: capture_config.flags,
    };
    let ring_file = shim::memfd(&shim::ring_name(&shim::nonce()), false)
        .and_then(|f| {
            shim::reserve(
                &f,
                shim::RingBytes {
                    total: Ring::file_len(&ring_config),
                    reserved: Ring::reserved_len(&ring_config),
                },
            )?;
            shim::seal(&f, shim::RING_SEALS)?;
            Ok(f)
        })
        .context("cannot create the ring in memory (try a smaller --ring-size)")?;
    let ring_path = shim::proc_path(&ring_file);
    let ring = Ring::create_in(ring_file, Path::new("the ring memfd"), ring_config)?;
    let shim_file = shim::shim_memfd().context("cannot put the profiler's library in memory")?;
    let mut children = if args.subprocesses {
        let c = follow::Children::new()
            .context("cannot set up --subprocesses (an abstract unix socket and a memfd)")?;
        launch.follow_env = c.env(ring.header(), &shim::proc_path(&shim_file));
        Some(crate::children::Children::new(
            c,
            output.needs_paths().then_some(output.limits),
        ))
    } else {
        None
    };
    let mut session = Session::new(ring);
    report::prepare(&mut session, &output);
    signals::catch_interrupts();
    let mut child = launch.spawn(
        Path::new(&shim::proc_path(&shim_file)),
        Path::new(&ring_path),
    )?;
    let child_pid = child.id();
    let status = loop {
        let mut read = session.drain().unwrap_or(0);
        if let Some(c) = children.as_mut() {
            read += c.poll();
            c.scan(child.id() as i32);
        }
        if let Some((sig, from_terminal)) = signals::take_with_origin() {
            // The terminal sends SIGINT to the whole foreground process
            // group, the target included: passing it on would deliver it
            // twice. A signal sent to rprof alone (kill) is passed on.
            if !from_terminal {
                signals::send(child.id(), sig);
            }
        }
        if let Some(status) = child.try_wait().context("cannot wait for the target")? {
            break status;
        }
        if read == 0 {
            std::thread::sleep(Duration::from_micros(500));
        }
    };
    // Everything the target wrote before exiting is in the ring, or
    // written and not published yet.
    session.take_unpublished();
    // The other processes: those still running (a daemon, a pool the
    // program did not join) get a moment, then are asked to stop.
    let followed = children.map(|mut c| {
        c.wind_down(CHILD_GRACE, CHILD_STOP);
        c.finish()
    });
    if status.code() == Some(SHIM_FAILED_EXIT) && session.shim_state() == rprof_abi::state::FAILED {
        let capture = session.finish();
        let why = capture.summary.shim_error.unwrap_or_default();
        anyhow::bail!("the profiler could not start in the target: {why}");
    }
    let capture = session.finish();
    if let Some(w) = capture
        .summary
        .python_version
        .and_then(|(a, b, _)| rprof_controller::untested_version_warning(a.into(), b.into()))
    {
        eprintln!("{w}");
    }
    let exact = match followed {
        None => {
            report::write_profile(&capture, &output, Some(child_pid))?;
            report::summarize(&capture)
        }
        Some(followed) => {
            let mut exact = report::summarize(&capture);
            for (pid, label, ended, c) in &followed {
                let s = &c.summary;
                let how = ended.as_deref().unwrap_or("was still running");
                let label = if label.is_empty() {
                    String::new()
                } else {
                    format!(" ({label})")
                };
                eprintln!(
                    "rprof: PID {pid}{label} {how}: {} events, {} functions",
                    s.events,
                    c.profile.functions.len()
                );
                if !s.is_exact() {
                    exact = false;
                    eprintln!("rprof: warning: the profile of PID {pid} is incomplete: {} events dropped{}", s.dropped, s.corrupt.as_deref().map(|c| format!(", {c}")).unwrap_or_default());
                }
            }
            let merged = crate::children::merge(
                std::iter::once(&capture.profile).chain(followed.iter().map(|f| &f.3.profile)),
            );
            let n = followed.len() + 1;
            eprintln!(
                "rprof: merged the profiles of {n} process{}",
                if n == 1 { "" } else { "es" }
            );
            let all = rprof_reader::Capture {
                profile: merged,
                paths: if followed.is_empty() {
                    capture.paths.clone()
                } else {
                    None
                },
                summary: capture.summary.clone(),
            };
            report::write_profile(&all, &output, Some(child_pid))?;
            exact
        }
    };
    // A target killed by a signal may die before the shim published
    // anything (events are published in batches): its death, reported as
    // 128 + signal below, is the outcome, not an empty-capture error. The
    // floor (benchmarks) records nothing by design.
    let killed = status.signal().is_some();
    let empty = !killed
        && capture_config.mode == rprof_abi::Mode::Record
        && report::warn_if_empty(&capture, true);
    drop(shim_file);
    if !exact || empty {
        return Ok(ExitCode::from(report::EXIT_INCOMPLETE));
    }
    Ok(match (status.code(), status.signal()) {
        (Some(code), _) => ExitCode::from(code.clamp(0, 255) as u8),
        (None, Some(sig)) => ExitCode::from((128 + sig).clamp(0, 255) as u8),
        _ => ExitCode::FAILURE,
    })
}
