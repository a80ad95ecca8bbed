//! Clocks: `CLOCK_MONOTONIC`, the time-stamp counter, and the calibration
//! that turns the shim's TSC ticks into seconds.
//!
//! The shim reads the TSC with `rdtsc` (0–5 ns per event against 17–29 ns
//! for `clock_gettime`), which is only sound where the TSC is invariant:
//! the same rate on every core whatever the power state. Linux says so with
//! the `constant_tsc` and `nonstop_tsc` CPU flags. The rate is measured
//! here, against `CLOCK_MONOTONIC`, over the whole capture.

use rprof_abi::Clock;
use std::time::Duration;

/// `CLOCK_MONOTONIC` in nanoseconds (the clock the shim compares the
/// reader's heartbeat with).
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The time-stamp counter, or 0 where there is none.
pub fn tsc() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: rdtsc exists on every x86_64 CPU and has no side effects.
        unsafe { core::arch::x86_64::_rdtsc() }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        0
    }
}

/// Whether `/proc/cpuinfo` declares an invariant TSC.
pub fn tsc_is_invariant() -> bool {
    if !cfg!(target_arch = "x86_64") {
        return false;
    }
    let Ok(info) = std::fs::read_to_string("/proc/cpuinfo") else {
        return false;
    };
    info.lines()
        .find(|l| l.starts_with("flags"))
        .is_some_and(|flags| {
            let has = |f: &str| flags.split_whitespace().any(|w| w == f);
            has("constant_tsc") && has("nonstop_tsc")
        })
}

/// The clock rprof asks the shim to use: the TSC where it is invariant.
pub fn preferred() -> Clock {
    if tsc_is_invariant() {
        Clock::Tsc
    } else {
        Clock::Monotonic
    }
}

/// A pair of simultaneous readings of the TSC and `CLOCK_MONOTONIC`.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    tsc: u64,
    ns: u64,
}

impl Sample {
    /// Takes a sample, keeping the reading with the tightest bracket.
    pub fn now() -> Sample {
        let mut best = (u64::MAX, Sample { tsc: 0, ns: 0 });
        for _ in 0..5 {
            let a = tsc();
            let ns = monotonic_ns();
            let b = tsc();
            let width = b.wrapping_sub(a);
            if width < best.0 {
                best = (
                    width,
                    Sample {
                        tsc: a + width / 2,
                        ns,
                    },
                );
            }
        }
        best.1
    }
}

/// Shortest span the calibration is measured over.
const MIN_SPAN: Duration = Duration::from_millis(50);

/// Seconds per tick of `clock`, given a sample from the start of the
/// capture. For the TSC it takes a second sample now, waiting first if the
/// capture was too short for a precise ratio.
pub fn seconds_per_tick(clock: Clock, start: Sample) -> f64 {
    match clock {
        Clock::Monotonic => 1e-9,
        Clock::Tsc => {
            let elapsed = monotonic_ns().saturating_sub(start.ns);
            if elapsed < MIN_SPAN.as_nanos() as u64 {
                std::thread::sleep(MIN_SPAN - Duration::from_nanos(elapsed));
            }
            let end = Sample::now();
            let ticks = end.tsc.wrapping_sub(start.tsc) as f64;
            let ns = end.ns.saturating_sub(start.ns) as f64;
            if ticks <= 0.0 || ns <= 0.0 {
                1e-9
            } else {
                ns / ticks * 1e-9
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The calibration converts ticks into the seconds CLOCK_MONOTONIC
    /// measures, to within 1 %, over an interval it did not calibrate on.
    #[test]
    fn tsc_calibration_matches_the_monotonic_clock() {
        if preferred() != Clock::Tsc {
            // A machine without an invariant TSC records nanoseconds.
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true and this machine has no invariant TSC: the TSC calibration is untested"
            );
            eprintln!("SKIP: no invariant TSC here: the TSC calibration is untested");
            return;
        }
        let spt = seconds_per_tick(Clock::Tsc, Sample::now());
        let a = Sample::now();
        std::thread::sleep(Duration::from_millis(100));
        let b = Sample::now();
        let measured = b.tsc.wrapping_sub(a.tsc) as f64 * spt;
        let truth = b.ns.saturating_sub(a.ns) as f64 * 1e-9;
        assert!(
            (measured - truth).abs() <= 0.01 * truth,
            "ticks say {measured:.6} s, CLOCK_MONOTONIC {truth:.6} s"
        );
    }

    #[test]
    fn monotonic_advances() {
        let a = monotonic_ns();
        std::thread::sleep(Duration::from_millis(1));
        assert!(monotonic_ns() > a);
    }
}
