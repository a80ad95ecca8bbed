//! `rprof attach PID`: inject into a running process, capture until asked
//! to stop, detach, and report.

use crate::cli::AttachArgs;
use crate::report;
use anyhow::{bail, Result};
use rprof_abi::state;
use rprof_controller::{attach, shim, signals, testing};
use rprof_reader::{clock, Ring, RingConfig, Session};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// How long rprof looks for a thread at a safe point. (A call, once
/// started, is waited for as long as it runs.)
const INJECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the shim's agent may take over taking the GIL and installing
/// the hooks.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the shim may take to remove its hooks once asked.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the shim may take to unmap the ring after its Stop record.
const UNMAP_TIMEOUT: Duration = Duration::from_secs(2);

/// Exit status when the target was killed (or crashed) during a capture.
pub const EXIT_TARGET_KILLED: u8 = 4;

/// How the target ended during a capture.
enum Ending {
    Exited(i32),
    Killed(i32),
    Unknown,
}

fn ending(target: &attach::Target) -> Ending {
    // The zombie holds its wait status until its parent collects it.
    for _ in 0..20 {
        if let Some(ws) = target.exit_status() {
            let sig = ws & 0x7f;
            return if sig == 0 {
                Ending::Exited((ws >> 8) & 0xff)
            } else {
                Ending::Killed(sig)
            };
        }
        if !std::path::Path::new(&format!("/proc/{}", target.pid)).exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ending::Unknown
}

fn signal_name(sig: i32) -> String {
    let name = match sig {
        1 => "HUP",
        2 => "INT",
        3 => "QUIT",
        4 => "ILL",
        5 => "TRAP",
        6 => "ABRT",
        7 => "BUS",
        8 => "FPE",
        9 => "KILL",
        10 => "USR1",
        11 => "SEGV",
        12 => "USR2",
        13 => "PIPE",
        14 => "ALRM",
        15 => "TERM",
        _ => return format!("signal {sig}"),
    };
    format!("SIG{name}")
}

pub fn attach(args: &AttachArgs) -> Result<ExitCode> {
    let output = args.output.output_config()?;
    let config = args.output.capture_config()?;
    if let Some(d) = args.duration {
        if !(d > 0.0 && d.is_finite()) {
            bail!("--duration must be a positive number of seconds");
        }
    }
    // From here on, SIGINT/SIGTERM/SIGHUP/SIGQUIT only set a flag: the
    // attach is undone or the capture ended cleanly, never cut in half.
    signals::catch_interrupts();
    let started = Instant::now();
    let pid = args.pid;
    let target = attach::inspect(pid)?;
    if let Some(w) = target
        .version
        .and_then(|(a, b)| rprof_controller::untested_version_warning(a, b))
    {
        eprintln!("{w}");
    }
    let t_inspect = started.elapsed();
    let ring_config = RingConfig {
        bytes: config.ring_bytes,
        clock: clock::preferred(),
        hook: config.hook,
        full_policy: config.full_policy,
        mode: config.mode,
        flags: config.flags,
    };
    let (ring, report) = target.inject(
        shim::RingBytes {
            total: Ring::file_len(&ring_config),
            reserved: Ring::reserved_len(&ring_config),
        },
        |file| {
            Ring::create_in(file, Path::new("the ring memfd"), ring_config)
                .map_err(|e| e.to_string())
        },
        INJECT_TIMEOUT,
    )?;
    let t_injected = started.elapsed();
    let mut session = Session::new(ring);
    report::prepare(&mut session, &output);

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
        if signals::pending() {
            // The agent may still start: tell it to stop at once.
            session.ring().request_stop();
            wait_unmapped(&target, &report.ring_link);
            bail!(attach::AttachError::Interrupted(pid));
        }
        if Instant::now() > deadline {
            session.ring().request_stop();
            if session.shim_state() == state::WAITING_FOR_GIL {
                bail!("the profiler did not start in PID {pid} within {START_TIMEOUT:?}: its interpreter never released the GIL (a long computation in C holds it); try again");
            }
            bail!("the profiler's agent in PID {pid} did not start within {START_TIMEOUT:?}; try again, and report it if it persists");
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    let attach_latency = started.elapsed();
    if std::env::var_os("RPROF_DEBUG").is_some() {
        eprintln!(
            "rprof: debug: inspect {:?}, inject {:?} ({}; thread {}; {} calls; reused shim: {}), start {:?}",
            t_inspect,
            t_injected - t_inspect,
            report.safe_point,
            report.thread,
            report.calls,
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

    testing::pause_at("recording", None);

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
    testing::pause_at("stopping", None);
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
    if !target_exited {
        // rprof is done only once the shim has let go of the ring: an
        // attach right after this one must find nothing of this one.
        wait_unmapped(&target, &report.ring_link);
    }
    let detach_latency = detach_started.elapsed();
    let mut killed = false;
    if target_exited {
        match ending(&target) {
            Ending::Exited(0) => {
                eprintln!("rprof: PID {pid} exited; writing what was captured")
            }
            Ending::Exited(s) => {
                eprintln!("rprof: PID {pid} exited with status {s}; writing what was captured")
            }
            Ending::Killed(sig) => {
                killed = true;
                let how = if matches!(sig, 4 | 6 | 7 | 8 | 11) {
                    "crashed with"
                } else {
                    "was killed by"
                };
                eprintln!(
                    "rprof: PID {pid} {how} {} during the capture; writing what was captured",
                    signal_name(sig)
                );
            }
            Ending::Unknown => {
                killed = true;
                eprintln!("rprof: PID {pid} ended during the capture, how is unknown (its parent collected its exit status first); writing what was captured");
            }
        }
    } else {
        eprintln!(
            "rprof: detached from PID {pid} in {:.1} ms",
            detach_latency.as_secs_f64() * 1e3
        );
    }
    let capture = session.finish();
    report::write_profile(&capture, &output, Some(pid as u32))?;
    let exact = report::summarize(&capture);
    if config.mode == rprof_abi::Mode::Record {
        report::warn_if_empty(&capture, false);
    }
    Ok(if killed {
        ExitCode::from(EXIT_TARGET_KILLED)
    } else if exact {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(report::EXIT_INCOMPLETE)
    })
}

/// Waits, bounded, until the target no longer maps the ring `link`.
fn wait_unmapped(target: &attach::Target, link: &str) {
    let deadline = Instant::now() + UNMAP_TIMEOUT;
    while target.alive() && target.maps_memfd(link) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_micros(500));
    }
}
