//! `rprof attach PID`: inject into a running process, capture until asked
//! to stop, detach, and report.

use crate::cli::{AttachArgs, CaptureConfig, OutputConfig};
use crate::procs::Ending;
use crate::report;
use anyhow::{bail, Result};
use rprof_abi::state;
use rprof_controller::{attach, shim, signals, testing};
use rprof_reader::{clock, Capture, Ring, RingConfig, Session};
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

/// How process `pid`, gone during a capture, ended: from its zombie's
/// wait status while its parent has not collected it.
pub(crate) fn ending(pid: i32) -> Ending {
    for _ in 0..20 {
        if let Some(ws) = attach::exit_status(pid) {
            let sig = ws & 0x7f;
            return if sig == 0 {
                Ending::Exited((ws >> 8) & 0xff)
            } else {
                Ending::Killed(sig)
            };
        }
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ending::Unknown
}

pub fn attach(args: &AttachArgs) -> Result<ExitCode> {
    if args.subprocesses {
        return crate::subprocesses::attach_tree(args);
    }
    let output = args.output.output_config()?;
    let config = args.output.capture_config()?;
    check_duration(args.duration)?;
    // From here on, SIGINT/SIGTERM/SIGHUP/SIGQUIT only set a flag: the
    // attach is undone or the capture ended cleanly, never cut in half.
    signals::catch_interrupts();
    let pid = args.pid;
    let mut live = start(pid, &config, &output, &signals::pending, false)?;
    eprintln!("{}", live.attached_line());

    testing::pause_at("recording", None);

    // Capture until told to stop.
    let stop_at = args
        .duration
        .map(|d| Instant::now() + Duration::from_secs_f64(d));
    let target_exited = live.record_until(
        &|| signals::take().is_some() || stop_at.is_some_and(|t| Instant::now() >= t),
        Duration::from_micros(500),
    );
    let (capture, ending, detach_latency) = live.detach(target_exited, false);
    let mut killed = false;
    match ending {
        Ending::Detached => eprintln!(
            "rprof: detached from PID {pid} in {:.1} ms",
            detach_latency.as_secs_f64() * 1e3
        ),
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
                crate::procs::signal_name(sig)
            );
        }
        Ending::Unknown => {
            killed = true;
            eprintln!("rprof: PID {pid} ended during the capture, how is unknown (its parent collected its exit status first); writing what was captured");
        }
    }
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

/// Refuses a `--duration` that is not a positive number.
pub(crate) fn check_duration(d: Option<f64>) -> Result<()> {
    if let Some(d) = d {
        if !(d > 0.0 && d.is_finite()) {
            bail!("--duration must be a positive number of seconds");
        }
    }
    Ok(())
}

/// A process rprof is attached to, recording.
pub(crate) struct Live {
    pub pid: i32,
    target: attach::Target,
    session: Session,
    ring_link: String,
    /// From the start of [`start`] to the agent's RECORDING state.
    pub latency: Duration,
    /// With `follow`: rprof's end of the channel on which the children
    /// the process forks from now on announce their rings.
    pub channel: Option<std::os::fd::OwnedFd>,
}

/// Attaches to `pid` and waits until its agent records. `interrupted`
/// is polled while waiting (a signal, or another reason to give up).
/// `follow`: children it forks from now on get rings of their own and
/// announce them on [`Live::channel`].
pub(crate) fn start(
    pid: i32,
    config: &CaptureConfig,
    output: &OutputConfig,
    interrupted: &dyn Fn() -> bool,
    follow: bool,
) -> Result<Live> {
    let started = Instant::now();
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
    let bytes = shim::RingBytes {
        total: Ring::file_len(&ring_config),
        reserved: Ring::reserved_len(&ring_config),
    };
    let make_ring = |file| {
        Ring::create_in(file, Path::new("the ring memfd"), ring_config).map_err(|e| e.to_string())
    };
    let (ring, report, channel) = if follow {
        let (ring, report, fd) = target.inject_following(bytes, make_ring, INJECT_TIMEOUT)?;
        (ring, report, Some(fd))
    } else {
        let (ring, report) = target.inject(bytes, make_ring, INJECT_TIMEOUT)?;
        (ring, report, None)
    };
    let t_injected = started.elapsed();
    let mut session = Session::new(ring);
    report::prepare(&mut session, output);

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
        if interrupted() {
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
    let latency = started.elapsed();
    if std::env::var_os("RPROF_DEBUG").is_some() {
        eprintln!(
            "rprof: debug: PID {pid}: inspect {:?}, inject {:?} ({}; thread {}; {} calls; reused shim: {}), start {:?}",
            t_inspect,
            t_injected - t_inspect,
            report.safe_point,
            report.thread,
            report.calls,
            report.reused,
            latency - t_injected
        );
    }
    Ok(Live {
        pid,
        target,
        session,
        ring_link: report.ring_link,
        latency,
        channel,
    })
}

impl Live {
    /// `rprof: attached to PID N (Python X.Y.Z, T threads) in M ms`.
    pub fn attached_line(&self) -> String {
        let h = self.session.ring().header();
        let v = h.python_version.load(std::sync::atomic::Ordering::Relaxed);
        let threads = h.threads_hooked.load(std::sync::atomic::Ordering::Relaxed);
        format!(
            "rprof: attached to PID {} (Python {}.{}.{}, {threads} thread{}) in {:.0} ms",
            self.pid,
            v >> 24,
            (v >> 16) & 0xff,
            (v >> 8) & 0xff,
            if threads == 1 { "" } else { "s" },
            self.latency.as_secs_f64() * 1e3,
        )
    }

    /// Drains the ring until `stop()` says so, the shim stops, or the
    /// target ends; returns true in the last case. While the ring stays
    /// empty, rprof sleeps 0.5 ms between looks, doubling up to
    /// `max_idle` (with many processes, idle ones should not each wake
    /// rprof 2000 times a second).
    pub fn record_until(&mut self, stop: &dyn Fn() -> bool, max_idle: Duration) -> bool {
        record_until(&mut self.session, self.pid, stop, max_idle)
    }

    /// Detaches (unless the target is gone) and returns the capture, how
    /// the target ended, and how long the detach took. `take_tail`: if the
    /// target is gone, also read what it wrote but had not published.
    pub fn detach(mut self, target_exited: bool, take_tail: bool) -> (Capture, Ending, Duration) {
        let detach_started = Instant::now();
        let exited = stop_session(&mut self.session, self.pid, target_exited);
        if exited && take_tail {
            self.session.take_unpublished();
        }
        if !exited {
            // rprof is done only once the shim has let go of the ring: an
            // attach right after this one must find nothing of this one.
            wait_unmapped(&self.target, &self.ring_link);
        }
        let detach_latency = detach_started.elapsed();
        let how = if exited {
            ending(self.pid)
        } else {
            Ending::Detached
        };
        (self.session.finish(), how, detach_latency)
    }
}

/// Drains `session` (of process `pid`) until `stop()` says so, the shim
/// stops, or the process ends; returns true in the last case.
pub(crate) fn record_until(
    session: &mut Session,
    pid: i32,
    stop: &dyn Fn() -> bool,
    max_idle: Duration,
) -> bool {
    let mut idle = Duration::from_micros(500);
    loop {
        let read = session.drain().unwrap_or(0);
        if stop() || session.stopped() {
            return false;
        }
        if !attach::alive(pid) {
            return true;
        }
        if read == 0 {
            std::thread::sleep(idle);
            idle = (idle * 2).min(max_idle.max(Duration::from_micros(500)));
        } else {
            idle = Duration::from_micros(500);
        }
    }
}

/// Asks the shim to stop and drains until its Stop record (or the
/// process's end); returns whether the process ended.
pub(crate) fn stop_session(session: &mut Session, pid: i32, mut target_exited: bool) -> bool {
    // The agent removes every hook and writes the end of the stream.
    let detach_started = Instant::now();
    session.ring().request_stop();
    testing::pause_at("stopping", None);
    let deadline = detach_started + STOP_TIMEOUT;
    while !session.stopped() && !target_exited {
        let read = session.drain().unwrap_or(0);
        if !attach::alive(pid) {
            target_exited = true;
        } else if Instant::now() > deadline {
            eprintln!("rprof: warning: PID {pid} did not confirm the detach within {STOP_TIMEOUT:?}; its hook stops by itself once rprof exits");
            break;
        } else if read == 0 {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    while session.drain().unwrap_or(0) > 0 {}
    target_exited
}

/// Waits, bounded, until the target no longer maps the ring `link`.
fn wait_unmapped(target: &attach::Target, link: &str) {
    let deadline = Instant::now() + UNMAP_TIMEOUT;
    while target.alive() && target.maps_memfd(link) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_micros(500));
    }
}
