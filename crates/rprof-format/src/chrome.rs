//! Chrome's Trace Event Format (`.trace.json`), which Perfetto
//! (<https://ui.perfetto.dev>), `chrome://tracing` and speedscope open.
//!
//! The JSON object form, `{"traceEvents": [...], ...}`, with:
//!
//! * metadata events (`"ph":"M"`): `process_name` (the
//!   [`ChromeTrace::process_name`], `python` by default), and per thread
//!   `thread_name` (Python's name for it, or `Thread TID`) and
//!   `thread_sort_index` (threads in the order they were seen);
//! * one complete event (`"ph":"X"`) per recorded call: `name` is the
//!   function's [label](crate::labels), `cat` is `python` or `builtin`,
//!   `ts` and `dur` are microseconds from the start of the capture (with
//!   nanosecond decimals), `pid` is [`ChromeTrace::pid`], `tid` the native
//!   thread id, and `args` has the full `file` and first `line` of Python
//!   code. Events come per thread in call order, a caller before its
//!   callees; rounding to nanoseconds never breaks their nesting;
//! * `otherData` with the exporter and what the recorder's limits cut.
//!
//! If the timeline was full and calls were left out
//! ([`Truncation::spans_dropped`](rprof_stats::Truncation::spans_dropped)),
//! the trace says so twice: in `otherData`, and as a global instant event
//! (`"ph":"i"`, `"s":"g"`) named `rprof: timeline truncated (N calls not
//! recorded)` at the end of the last recorded call, after which the trace is
//! incomplete.

use std::io::{BufWriter, Write};

use rprof_stats::{CallPaths, Span};

use crate::json;
use crate::labels::frame_label;
use crate::timeline::{edges, Edge};
use crate::{validate, FormatError, ProfileData, ProfileWriter};

/// The Chrome trace writer (`.trace.json`).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChromeTrace {
    /// The `pid` of every event: the profiled process's id if known.
    pub pid: u32,
    /// The process's name in the viewer; `python` by default.
    pub process_name: Option<String>,
}

impl Default for ChromeTrace {
    /// `pid` 1, process name `python`.
    fn default() -> Self {
        ChromeTrace {
            pid: 1,
            process_name: None,
        }
    }
}

impl ChromeTrace {
    /// A writer for the process `pid`.
    pub fn new(pid: u32) -> Self {
        ChromeTrace {
            pid,
            process_name: None,
        }
    }
}

impl ProfileWriter for ChromeTrace {
    fn write(&self, data: ProfileData<'_>, out: &mut dyn Write) -> Result<(), FormatError> {
        write_chrome_trace(data.require_paths("chrome")?, self, out)
    }
}

/// Nanoseconds, rounded to the nearest.
fn nanos(seconds: f64) -> i64 {
    if seconds.is_finite() {
        (seconds * 1e9).round() as i64
    } else {
        0
    }
}

/// Writes the timeline of `paths` as a Chrome trace (see the
/// [module docs](self)). A capture without a timeline gives a trace with
/// the metadata events only.
pub fn write_chrome_trace(
    paths: &CallPaths,
    options: &ChromeTrace,
    w: impl Write,
) -> Result<(), FormatError> {
    validate::check(paths)?;
    let mut w = BufWriter::new(w);
    // A merged profile's threads carry their own process.
    let pid_of = |t: &rprof_stats::ThreadPaths| t.process.as_ref().map_or(options.pid, |p| p.pid);
    let labels: Vec<String> = paths.functions.iter().map(frame_label).collect();

    w.write_all(b"{\"traceEvents\":[\n")?;
    let mut processes: Vec<(u32, &str)> = Vec::new();
    if paths.threads.is_empty() || paths.threads.iter().any(|t| t.process.is_none()) {
        processes.push((
            options.pid,
            options.process_name.as_deref().unwrap_or("python"),
        ));
    }
    for t in &paths.threads {
        if let Some(p) = &t.process {
            if !processes.iter().any(|(pid, _)| *pid == p.pid) {
                processes.push((p.pid, &p.label));
            }
        }
    }
    for (i, (pid, name)) in processes.iter().enumerate() {
        if i > 0 {
            w.write_all(b",\n")?;
        }
        write!(
            w,
            "{{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":{pid},\"tid\":0,\"args\":{{\"name\":"
        )?;
        json::string(&mut w, name)?;
        w.write_all(b"}}")?;
    }
    for (i, thread) in paths.threads.iter().enumerate() {
        let pid = pid_of(thread);
        let tid = thread.tid;
        let name = match thread.name.as_deref() {
            Some(name) if !name.is_empty() => name.to_string(),
            _ => format!("Thread {tid}"),
        };
        write!(
            w,
            ",\n{{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":{pid},\"tid\":{tid},\"args\":{{\"name\":"
        )?;
        json::string(&mut w, &name)?;
        write!(
            w,
            "}}}},\n{{\"name\":\"thread_sort_index\",\"ph\":\"M\",\"pid\":{pid},\"tid\":{tid},\
             \"args\":{{\"sort_index\":{i}}}}}"
        )?;
    }

    let mut last_end: Option<(i64, u64)> = None;
    for thread in &paths.threads {
        let pid = pid_of(thread);
        let tid = thread.tid;
        let mut at = 0i64;
        // Rounded start of each call, so that its end is rounded from the
        // same origin.
        for edge in edges(&thread.spans) {
            let Edge::Open(s) = edge else { continue };
            let span: &Span = &thread.spans[s];
            // Never before the caller's start (or the previous call's).
            let start = nanos(span.start).max(at);
            at = start;
            let end = nanos(span.end).max(start);
            match last_end {
                Some((t, _)) if t >= end => {}
                _ => last_end = Some((end, tid)),
            }
            let f = &paths.functions[span.func as usize];
            w.write_all(b",\n{\"name\":")?;
            json::string(&mut w, &labels[span.func as usize])?;
            let cat = if f.is_builtin() { "builtin" } else { "python" };
            write!(w, ",\"cat\":\"{cat}\",\"ph\":\"X\",\"ts\":")?;
            json::micros(&mut w, start)?;
            w.write_all(b",\"dur\":")?;
            json::micros(&mut w, end - start)?;
            write!(w, ",\"pid\":{pid},\"tid\":{tid},\"args\":{{")?;
            if !f.is_builtin() {
                w.write_all(b"\"file\":")?;
                json::string(&mut w, &f.file)?;
                write!(w, ",\"line\":{}", f.line)?;
            }
            w.write_all(b"}}")?;
        }
    }

    let t = paths.truncation;
    if t.spans_dropped > 0 {
        let (ts, tid) = last_end.unwrap_or((0, paths.threads.first().map_or(0, |t| t.tid)));
        let pid = paths
            .threads
            .iter()
            .find(|t| t.tid == tid)
            .map_or(options.pid, pid_of);
        write!(
            w,
            ",\n{{\"name\":\"rprof: timeline truncated ({} calls not recorded)\",\"cat\":\"rprof\",\
             \"ph\":\"i\",\"s\":\"g\",\"ts\":",
            t.spans_dropped
        )?;
        json::micros(&mut w, ts)?;
        write!(
            w,
            ",\"pid\":{pid},\"tid\":{tid},\"args\":{{\"spans_dropped\":{},\"message\":\
             \"the timeline was full: calls that ended after this point are missing\"}}}}",
            t.spans_dropped
        )?;
    }
    w.write_all(b"\n],\"displayTimeUnit\":\"ms\",\"otherData\":{\"exporter\":\"rprof\"")?;
    write!(
        w,
        ",\"spans_dropped\":{},\"depth_folded\":{},\"node_folded\":{},\"duration_seconds\":",
        t.spans_dropped, t.depth_folded, t.node_folded
    )?;
    json::number(&mut w, paths.duration)?;
    if t.spans_dropped > 0 {
        w.write_all(
            b",\"warning\":\"timeline truncated: calls that ended after the last recorded one \
              are missing\"",
        )?;
    }
    w.write_all(b"}}\n")?;
    w.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rprof_stats::{Function, ThreadPaths, Truncation};

    #[test]
    fn events() {
        let paths = CallPaths {
            functions: vec![
                Function::python("/srv/app.py", 1, "main"),
                Function::builtin("<built-in method builtins.len>"),
            ],
            threads: vec![ThreadPaths {
                tid: 7,
                process: None,
                name: Some("MainThread".into()),
                nodes: vec![],
                spans: vec![
                    Span {
                        func: 1,
                        start: 0.000_001,
                        end: 0.000_001_5,
                        depth: 1,
                    },
                    Span {
                        func: 0,
                        start: 0.000_000_5,
                        end: 0.002,
                        depth: 0,
                    },
                ],
            }],
            truncation: Truncation {
                spans_dropped: 4,
                ..Truncation::default()
            },
            duration: 0.003,
        };
        let mut out = Vec::new();
        write_chrome_trace(&paths, &ChromeTrace::new(42), &mut out).unwrap();
        let out = String::from_utf8(out).unwrap();
        assert_eq!(
            out,
            "{\"traceEvents\":[\n\
             {\"name\":\"process_name\",\"ph\":\"M\",\"pid\":42,\"tid\":0,\"args\":{\"name\":\"python\"}},\n\
             {\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":42,\"tid\":7,\"args\":{\"name\":\"MainThread\"}},\n\
             {\"name\":\"thread_sort_index\",\"ph\":\"M\",\"pid\":42,\"tid\":7,\"args\":{\"sort_index\":0}},\n\
             {\"name\":\"main (/srv/app.py:1)\",\"cat\":\"python\",\"ph\":\"X\",\"ts\":0.500,\"dur\":1999.500,\
             \"pid\":42,\"tid\":7,\"args\":{\"file\":\"/srv/app.py\",\"line\":1}},\n\
             {\"name\":\"<built-in method builtins.len>\",\"cat\":\"builtin\",\"ph\":\"X\",\"ts\":1.000,\
             \"dur\":0.500,\"pid\":42,\"tid\":7,\"args\":{}},\n\
             {\"name\":\"rprof: timeline truncated (4 calls not recorded)\",\"cat\":\"rprof\",\"ph\":\"i\",\
             \"s\":\"g\",\"ts\":2000.000,\"pid\":42,\"tid\":7,\"args\":{\"spans_dropped\":4,\"message\":\
             \"the timeline was full: calls that ended after this point are missing\"}}\n\
             ],\"displayTimeUnit\":\"ms\",\"otherData\":{\"exporter\":\"rprof\",\"spans_dropped\":4,\
             \"depth_folded\":0,\"node_folded\":0,\"duration_seconds\":0.003,\"warning\":\
             \"timeline truncated: calls that ended after the last recorded one are missing\"}}\n"
        );
    }

    #[test]
    fn merged_processes_keep_their_pids() {
        let thread = |tid: u64, pid: u32| ThreadPaths {
            tid,
            process: Some(rprof_stats::ProcessTag {
                pid,
                label: format!("worker (pid {pid})"),
            }),
            name: Some("MainThread".into()),
            nodes: vec![],
            spans: vec![Span {
                func: 0,
                start: 0.0,
                end: 0.001,
                depth: 0,
            }],
        };
        let paths = CallPaths {
            functions: vec![Function::python("/srv/app.py", 1, "main")],
            threads: vec![thread(10, 10), thread(11, 10), thread(20, 20)],
            truncation: Truncation::default(),
            duration: 0.001,
        };
        let mut out = Vec::new();
        write_chrome_trace(&paths, &ChromeTrace::new(1), &mut out).unwrap();
        let out = String::from_utf8(out).unwrap();
        assert!(out.starts_with(
            "{\"traceEvents\":[\n\
             {\"name\":\"process_name\",\"ph\":\"M\",\"pid\":10,\"tid\":0,\"args\":{\"name\":\"worker (pid 10)\"}},\n\
             {\"name\":\"process_name\",\"ph\":\"M\",\"pid\":20,\"tid\":0,\"args\":{\"name\":\"worker (pid 20)\"}},\n"
        ), "{out}");
        assert!(!out.contains("\"pid\":1,"), "{out}");
        assert!(
            out.contains("\"pid\":10,\"tid\":11,\"args\":{\"file\""),
            "{out}"
        );
        assert!(
            out.contains("\"pid\":20,\"tid\":20,\"args\":{\"file\""),
            "{out}"
        );
    }
}
