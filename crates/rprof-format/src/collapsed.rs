//! Collapsed ("folded") stacks: the text format of Brendan Gregg's
//! `flamegraph.pl`, which inferno, speedscope, and most flame graph tools
//! read.
//!
//! One line per call path whose value is not zero:
//!
//! ```text
//! MainThread (tid 4242);<module> (app.py:1);main (app.py:10);<built-in method builtins.len> 1234
//! ```
//!
//! The first frame is the thread ([`thread_label`]), the others are the
//! calls from the outermost to the innermost ([`frame_label`]), and the
//! value is, by [`Metric`]:
//!
//! * [`Metric::SelfTime`] (the default): the time spent in the innermost
//!   function itself on that path, in integer **microseconds**. The times
//!   are rounded together so that nothing is lost in the sum: the values of
//!   all lines add up to the capture's total self time in microseconds,
//!   rounded to the nearest microsecond (largest-remainder rounding: every
//!   path's time is rounded down, then the paths with the largest
//!   remainders get one more microsecond each until the sum is right; so
//!   each line is its exact time rounded down or up). Paths with less than
//!   a microsecond may therefore get 0 and be left out, while others of the
//!   same size get 1.
//! * [`Metric::Calls`]: the number of completed calls through that path
//!   ([`PathNode::calls`](rprof_stats::PathNode::calls)), so the values
//!   whose innermost frame is a function add up to that function's call
//!   count.
//!
//! Lines come in the order of the call tree (threads in the order they were
//! seen, a caller before its callees); tools that need them sorted sort
//! them. Two lines can be the same path when two functions share a label
//! (see [`labels`](crate::labels)); readers add them up.
//!
//! The format has no escapes, so frames are made safe instead: `;` (the
//! frame separator) becomes `,`, and control characters such as newlines
//! become `?` ([`sanitize_frame`]). Python code never has these in function
//! names; they can appear in file paths and thread names.

use std::borrow::Cow;
use std::io::{self, BufWriter, Write};

use rprof_stats::CallPaths;

use crate::labels::{frame_label, thread_label};
use crate::round::apportion;
use crate::{validate, FormatError, ProfileData, ProfileWriter};

/// What the value of a call path measures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Metric {
    /// Time spent in the innermost function itself on the path, in
    /// microseconds.
    #[default]
    SelfTime,
    /// Completed calls through the path.
    Calls,
}

impl Metric {
    /// What it measures, in words ("self time", "calls").
    pub fn describe(self) -> &'static str {
        match self {
            Metric::SelfTime => "self time",
            Metric::Calls => "call count",
        }
    }
}

/// The collapsed-stacks writer (`.collapsed`, `.folded`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Collapsed {
    /// What each line's value measures.
    pub metric: Metric,
}

impl Collapsed {
    /// A writer whose values measure `metric`.
    pub fn new(metric: Metric) -> Self {
        Collapsed { metric }
    }
}

impl ProfileWriter for Collapsed {
    fn write(&self, data: ProfileData<'_>, out: &mut dyn Write) -> Result<(), FormatError> {
        write_collapsed(data.require_paths("collapsed")?, self.metric, out)
    }
}

/// Writes `paths` as collapsed stacks, one line per call path with a
/// nonzero value (see the [module docs](self)).
pub fn write_collapsed(
    paths: &CallPaths,
    metric: Metric,
    w: impl Write,
) -> Result<(), FormatError> {
    validate::check(paths)?;
    let mut w = BufWriter::new(w);
    for_each_line(paths, metric, |line| {
        w.write_all(line.as_bytes())?;
        w.write_all(b"\n")
    })?;
    w.flush()?;
    Ok(())
}

/// The lines [`write_collapsed`] writes, without their newlines.
pub fn collapsed_lines(paths: &CallPaths, metric: Metric) -> Result<Vec<String>, FormatError> {
    validate::check(paths)?;
    let mut lines = Vec::new();
    for_each_line(paths, metric, |line| {
        lines.push(line.to_string());
        Ok(())
    })?;
    Ok(lines)
}

/// A label made safe for a collapsed line: `;` becomes `,` and control
/// characters (newlines, tabs, ...) become `?`.
///
/// ```
/// use rprof_format::collapsed::sanitize_frame;
///
/// assert_eq!(sanitize_frame("f (a;b.py:1)"), "f (a,b.py:1)");
/// assert_eq!(sanitize_frame("worker\n1"), "worker?1");
/// assert_eq!(sanitize_frame("main (app.py:1)"), "main (app.py:1)");
/// ```
pub fn sanitize_frame(label: &str) -> Cow<'_, str> {
    if !label.chars().any(|c| c == ';' || c.is_control()) {
        return Cow::Borrowed(label);
    }
    Cow::Owned(
        label
            .chars()
            .map(|c| match c {
                ';' => ',',
                c if c.is_control() => '?',
                c => c,
            })
            .collect(),
    )
}

/// The value of every node of every thread, in thread then node order.
pub(crate) fn node_values(paths: &CallPaths, metric: Metric) -> Vec<u64> {
    let nodes = paths.threads.iter().flat_map(|t| &t.nodes);
    match metric {
        Metric::Calls => nodes.map(|n| n.calls).collect(),
        Metric::SelfTime => {
            let micros: Vec<f64> = nodes.map(|n| n.self_time * 1e6).collect();
            apportion(&micros)
        }
    }
}

/// Calls `f` with every line, without its newline. `paths` must have been
/// checked.
fn for_each_line(
    paths: &CallPaths,
    metric: Metric,
    mut f: impl FnMut(&str) -> io::Result<()>,
) -> io::Result<()> {
    let values = node_values(paths, metric);
    let mut labels: Vec<Option<String>> = vec![None; paths.functions.len()];
    let mut chain = Vec::new();
    let mut line = String::new();
    let mut values = values.into_iter();
    for thread in &paths.threads {
        let mut thread_frame = String::new();
        if let Some(p) = &thread.process {
            thread_frame.push_str(&sanitize_frame(&p.label));
            thread_frame.push(';');
        }
        thread_frame.push_str(&sanitize_frame(&thread_label(
            thread.tid,
            thread.name.as_deref(),
        )));
        for (i, value) in (0..thread.nodes.len()).zip(values.by_ref()) {
            if value == 0 {
                continue;
            }
            validate::path_to(&thread.nodes, i, &mut chain);
            line.clear();
            line.push_str(&thread_frame);
            for &n in &chain {
                let func = thread.nodes[n].func as usize;
                let label = labels[func].get_or_insert_with(|| {
                    sanitize_frame(&frame_label(&paths.functions[func])).into_owned()
                });
                line.push(';');
                line.push_str(label);
            }
            line.push(' ');
            line.push_str(&value.to_string());
            f(&line)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rprof_stats::{Function, PathNode, ThreadPaths, Truncation};

    fn node(func: u32, parent: Option<u32>, calls: u64, self_time: f64) -> PathNode {
        PathNode {
            func,
            parent,
            calls,
            self_time,
            total_time: self_time,
        }
    }

    fn paths() -> CallPaths {
        CallPaths {
            functions: vec![
                Function::python("/srv/a;b/app.py", 1, "main"),
                Function::builtin("<built-in method builtins.len>"),
            ],
            threads: vec![
                ThreadPaths {
                    tid: 1,
                    process: None,
                    name: Some("Main\nThread".into()),
                    nodes: vec![
                        node(0, None, 1, 0.000_000_7),
                        node(1, Some(0), 3, 0.000_000_4),
                        node(0, Some(0), 2, 0.000_002_2),
                    ],
                    spans: vec![],
                },
                ThreadPaths {
                    tid: 2,
                    process: None,
                    name: None,
                    nodes: vec![node(1, None, 0, 0.0)],
                    spans: vec![],
                },
            ],
            truncation: Truncation::default(),
            duration: 1.0,
        }
    }

    #[test]
    fn lines() {
        let paths = paths();
        assert_eq!(
            collapsed_lines(&paths, Metric::SelfTime).unwrap(),
            vec![
                "Main?Thread (tid 1);main (/srv/a,b/app.py:1) 1",
                "Main?Thread (tid 1);main (/srv/a,b/app.py:1);main (/srv/a,b/app.py:1) 2",
            ]
        );
        let mut out = Vec::new();
        write_collapsed(&paths, Metric::Calls, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "Main?Thread (tid 1);main (/srv/a,b/app.py:1) 1\n\
             Main?Thread (tid 1);main (/srv/a,b/app.py:1);<built-in method builtins.len> 3\n\
             Main?Thread (tid 1);main (/srv/a,b/app.py:1);main (/srv/a,b/app.py:1) 2\n"
        );
    }

    #[test]
    fn a_process_is_a_frame_above_its_threads() {
        let mut paths = paths();
        paths.threads[0].process = Some(rprof_stats::ProcessTag {
            pid: 42,
            label: "gunicorn: worker [app;x] (pid 42)".into(),
        });
        assert_eq!(
            collapsed_lines(&paths, Metric::Calls).unwrap()[0],
            "gunicorn: worker [app,x] (pid 42);Main?Thread (tid 1);main (/srv/a,b/app.py:1) 1"
        );
    }

    #[test]
    fn rejects_broken_paths() {
        let mut paths = paths();
        paths.threads[0].nodes[1].parent = Some(2);
        let err = collapsed_lines(&paths, Metric::Calls).unwrap_err();
        assert!(err.to_string().contains("does not come before it"), "{err}");
        paths.threads[0].nodes[1].parent = Some(0);
        paths.threads[1].nodes[0].func = 9;
        assert!(matches!(
            collapsed_lines(&paths, Metric::Calls),
            Err(FormatError::InvalidProfile { .. })
        ));
    }
}
