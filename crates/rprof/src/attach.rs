//! `rprof attach PID`: inject into a running process, capture until asked
//! to stop, detach, and report.

use crate::cli::AttachArgs;
use crate::report;
use anyhow::{bail, Context, Result};
use rprof_abi::state;
use rprof_controller::{attach, shim, signals, Workdir};
use rprof_reader::{clock, Ring, RingConfig, Session};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// How long the borrowed thread may take over `dlopen` and the shim's
/// agent over taking the GIL and installing the hooks.
const INJECT_TIMEOUT: Duration = Duration::from_secs(5);
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the shim may take to remove its hooks once asked.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

pub fn attach(args: &AttachArgs) -> Result<ExitCode> {
    let output = args.output.output_config()?;
    let config = args.output.capture_config()?;
    if let Some(d) = args.duration {
        if !(d > 0.0 && d.is_finite()) {
            bail!("--duration must be a positive number of seconds");
        }
    }
    let started = Instant::now();
    let pid = args.pid;
    let target = attach::inspect(pid, &shim::file_name())?;
    if let Some(w) = target
        .version
        .and_then(|(a, b)| rprof_controller::untested_version_warning(a, b))
    {
        eprintln!("{w}");
    }
    let t_inspect = started.elapsed();
    let (target_dir, local_dir) = target.shared_dir();
    let owner = (target.status.uid, target.status.gid);
    let workdir = Workdir::for_target(&local_dir, target_dir.as_ref(), owner)?;
    let ring = Ring::create(
        &workdir.ring(),
        RingConfig {
            bytes: config.ring_bytes,
            clock: clock::preferred(),
            hook: config.hook,
            full_policy: config.full_policy,
            mode: config.mode,
        },
    )?;
    std::os::unix::fs::chown(ring.path(), Some(owner.0), Some(owner.1))
        .context("cannot give the ring file to the target's user")?;
    let mut session = Session::new(ring);
    report::prepare(&mut session, &output);
    signals::catch_interrupts();
    let shim_path = workdir.target_shim();
    let ring_path = workdir.target_ring();
    let t_prepared = started.elapsed();
    let report = target.inject(
        &shim_path.to_string_lossy(),
        &ring_path.to_string_lossy(),
        INJECT_TIMEOUT,
    )?;
    let t_injected = started.elapsed();

    // The agent takes the GIL and installs the hooks on every thread.
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        session.drain().ok();
        match session.shim_state() {
            state::RECORDING => break,
            state::FAILED => {
                let capture = session.finish();
                bail!(
                    "the profiler could not start in PID {pid}: {}",
                    capture.summary.shim_error.unwrap_or_default()
                );
            }
            _ => {}
        }
        if !target.alive() {
            bail!("PID {pid} exited before the profiler started");
        }
        if Instant::now() > deadline {
            session.ring().request_stop();
            bail!("the profiler did not start in PID {pid} within {START_TIMEOUT:?}: its interpreter never released the GIL");
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    let attach_latency = started.elapsed();
    if std::env::var_os("RPROF_DEBUG").is_some() {
        eprintln!(
            "rprof: debug: inspect {:?}, prepare {:?}, inject {:?} ({}; thread {}; reused shim: {}), start {:?}",
            t_inspect,
            t_prepared - t_inspect,
            t_injected - t_prepared,
            report.safe_point,
            report.thread,
            report.reused,
            attach_latency - t_injected
        );
    }
    let h = session.ring().header();
    let v = h.python_version.load(std::sync::atomic::Ordering::Relaxed);
    let threads = h.threads_hooked.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!(
        "rprof: attached to PID {pid} (Python {}.{}.{}, {threads} thread{}) in {:.0} ms",
        v >> 24,
        (v >> 16) & 0xff,
        (v >> 8) & 0xff,
        if threads == 1 { "" } else { "s" },
        attach_latency.as_secs_f64() * 1e3,
    );

    // Capture until told to stop.
    let stop_at = args
        .duration
        .map(|d| Instant::now() + Duration::from_secs_f64(d));
    let mut target_exited = false;
    loop {
        let read = session.drain().unwrap_or(0);
        if signals::take().is_some() || stop_at.is_some_and(|t| Instant::now() >= t) {
            break;
        }
        if session.stopped() {
            break;
        }
        if !target.alive() {
            target_exited = true;
            break;
        }
        if read == 0 {
            std::thread::sleep(Duration::from_micros(500));
        }
    }

    // Detach: the agent removes every hook and writes the end of the stream.
    let detach_started = Instant::now();
    session.ring().request_stop();
    let deadline = detach_started + STOP_TIMEOUT;
    while !session.stopped() && !target_exited {
        let read = session.drain().unwrap_or(0);
        if !target.alive() {
            target_exited = true;
        } else if Instant::now() > deadline {
            eprintln!("rprof: warning: PID {pid} did not confirm the detach within {STOP_TIMEOUT:?}; its hook stops by itself once rprof exits");
            break;
        } else if read == 0 {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    while session.drain().unwrap_or(0) > 0 {}
    let detach_latency = detach_started.elapsed();
    if target_exited {
        eprintln!("rprof: PID {pid} exited; writing what was captured");
    } else {
        eprintln!(
            "rprof: detached from PID {pid} in {:.1} ms",
            detach_latency.as_secs_f64() * 1e3
        );
    }
    let capture = session.finish();
    report::write_profile(&capture, &output, Some(pid as u32))?;
    let exact = report::summarize(&capture);
    report::warn_if_empty(&capture, false);
    drop(workdir);
    Ok(if exact {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(report::EXIT_INCOMPLETE)
    })
}
