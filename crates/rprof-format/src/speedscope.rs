//! [speedscope](https://www.speedscope.app)'s file format
//! (`.speedscope.json`, schema at
//! <https://www.speedscope.app/file-format-schema.json>).
//!
//! One profile per thread, named by [`thread_label`], all sharing one
//! frame list: each frame's `name` is its [label](crate::labels) and, for
//! Python code, `file` is the full path as recorded and `line` the
//! function's first line. Times are in seconds from the start of the
//! capture, so every thread is on the same time axis.
//!
//! * With a timeline (the capture recorded
//!   [spans](rprof_stats::ThreadPaths::spans)), each thread is an
//!   **evented** profile: an open event when a call starts and a close event
//!   when it ends, in time order and properly nested, so speedscope's "Time
//!   Order" view shows every call exactly where it happened. The nesting
//!   comes from the recorded stack depths, not from sorting times, so calls
//!   that start or end on the same clock tick still nest correctly (an outer
//!   call opens before, and closes after, its callees); times never go
//!   backwards.
//! * Without one, each thread is a **sampled** profile built from the call
//!   tree: one "sample" per call path with its self time as the weight.
//!   "Left Heavy" and "Sandwich" are then exact; "Time Order" shows the
//!   paths in tree order, not when they ran.
//!
//! If the recorder's limits cut anything, the file's `name` says so
//! (speedscope shows it in its title bar).

use std::collections::HashMap;
use std::io::{BufWriter, Write};

use rprof_stats::{CallPaths, FuncId, ThreadPaths};

use crate::json;
use crate::labels::{frame_label, full_thread_label};
use crate::timeline::{edges, Edge};
use crate::{validate, FormatError, ProfileData, ProfileWriter};

/// The speedscope writer (`.speedscope.json`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Speedscope {
    /// The file's `name`, shown in speedscope's title bar; `rprof` by
    /// default.
    pub name: Option<String>,
}

impl ProfileWriter for Speedscope {
    fn write(&self, data: ProfileData<'_>, out: &mut dyn Write) -> Result<(), FormatError> {
        write_speedscope(data.require_paths("speedscope")?, self, out)
    }
}

/// True if the capture recorded a timeline (even if every call in it was
/// dropped).
pub(crate) fn has_timeline(paths: &CallPaths) -> bool {
    paths.truncation.spans_dropped > 0 || paths.threads.iter().any(|t| !t.spans.is_empty())
}

/// Writes `paths` in speedscope's format: evented profiles from the
/// timeline if there is one, sampled profiles from the call tree otherwise
/// (see the [module docs](self)).
pub fn write_speedscope(
    paths: &CallPaths,
    options: &Speedscope,
    w: impl Write,
) -> Result<(), FormatError> {
    validate::check(paths)?;
    let mut w = BufWriter::new(w);
    let evented = has_timeline(paths);
    let mut frames = Frames::default();

    // Profiles first (into memory), so that the frames they use are known.
    let mut profiles = Vec::new();
    for (i, thread) in paths.threads.iter().enumerate() {
        if i > 0 {
            profiles.push(b',');
        }
        if evented {
            evented_profile(&mut profiles, thread, paths.duration, &mut frames)?;
        } else {
            sampled_profile(&mut profiles, thread, &mut frames)?;
        }
    }

    w.write_all(b"{\"$schema\":\"https://www.speedscope.app/file-format-schema.json\"")?;
    w.write_all(b",\"exporter\":\"rprof\",\"name\":")?;
    json::string(&mut w, &file_name(paths, options, evented))?;
    w.write_all(b",\"activeProfileIndex\":0,\"shared\":{\"frames\":[")?;
    for (i, &func) in frames.order.iter().enumerate() {
        if i > 0 {
            w.write_all(b",")?;
        }
        let f = &paths.functions[func as usize];
        w.write_all(b"{\"name\":")?;
        json::string(&mut w, &frame_label(f))?;
        if !f.is_builtin() {
            w.write_all(b",\"file\":")?;
            json::string(&mut w, &f.file)?;
            write!(w, ",\"line\":{}", f.line)?;
        }
        w.write_all(b"}")?;
    }
    w.write_all(b"]},\"profiles\":[")?;
    w.write_all(&profiles)?;
    w.write_all(b"]}\n")?;
    w.flush()?;
    Ok(())
}

/// The frames used so far, in order of first use.
#[derive(Default)]
struct Frames {
    index: HashMap<FuncId, usize>,
    order: Vec<FuncId>,
}

impl Frames {
    fn get(&mut self, func: FuncId) -> usize {
        let next = self.order.len();
        *self.index.entry(func).or_insert_with(|| {
            self.order.push(func);
            next
        })
    }
}

fn file_name(paths: &CallPaths, options: &Speedscope, evented: bool) -> String {
    let mut name = options.name.clone().unwrap_or_else(|| "rprof".to_string());
    let t = paths.truncation;
    let mut cuts = Vec::new();
    if evented && t.spans_dropped > 0 {
        cuts.push(format!(
            "{} calls did not fit in the timeline and are not shown",
            t.spans_dropped
        ));
    }
    if !evented && t.depth_folded > 0 {
        cuts.push(format!(
            "{} calls past the depth limit are shown as their caller",
            t.depth_folded
        ));
    }
    if !evented && t.node_folded > 0 {
        cuts.push(format!(
            "{} calls made after the call tree was full are shown as their caller",
            t.node_folded
        ));
    }
    if !cuts.is_empty() {
        name.push_str(" (truncated: ");
        name.push_str(&cuts.join("; "));
        name.push(')');
    }
    name
}

fn profile_header(out: &mut Vec<u8>, thread: &ThreadPaths, kind: &str) -> std::io::Result<()> {
    write!(out, "{{\"type\":\"{kind}\",\"name\":")?;
    json::string(out, &full_thread_label(thread))?;
    out.write_all(b",\"unit\":\"seconds\",\"startValue\":0")
}

fn evented_profile(
    out: &mut Vec<u8>,
    thread: &ThreadPaths,
    duration: f64,
    frames: &mut Frames,
) -> std::io::Result<()> {
    profile_header(out, thread, "evented")?;
    out.write_all(b",\"events\":[")?;
    // Times never go backwards, and never before the start.
    let mut at = 0.0f64;
    for (i, edge) in edges(&thread.spans).into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let (kind, span) = match edge {
            Edge::Open(s) => ("O", &thread.spans[s]),
            Edge::Close(s) => ("C", &thread.spans[s]),
        };
        let t = if kind == "O" { span.start } else { span.end };
        if t > at {
            at = t;
        }
        write!(
            out,
            "{{\"type\":\"{kind}\",\"frame\":{},\"at\":",
            frames.get(span.func)
        )?;
        json::number(out, at)?;
        out.push(b'}');
    }
    out.write_all(b"],\"endValue\":")?;
    json::number(out, if duration > at { duration } else { at })?;
    out.push(b'}');
    Ok(())
}

fn sampled_profile(
    out: &mut Vec<u8>,
    thread: &ThreadPaths,
    frames: &mut Frames,
) -> std::io::Result<()> {
    profile_header(out, thread, "sampled")?;
    let mut weights = Vec::new();
    let mut chain = Vec::new();
    out.write_all(b",\"samples\":[")?;
    for (i, node) in thread.nodes.iter().enumerate() {
        if node.self_time.is_nan() || node.self_time <= 0.0 {
            continue;
        }
        if !weights.is_empty() {
            out.push(b',');
        }
        weights.push(node.self_time);
        validate::path_to(&thread.nodes, i, &mut chain);
        out.push(b'[');
        for (k, &n) in chain.iter().enumerate() {
            if k > 0 {
                out.push(b',');
            }
            write!(out, "{}", frames.get(thread.nodes[n].func))?;
        }
        out.push(b']');
    }
    out.write_all(b"],\"weights\":[")?;
    for (i, &weight) in weights.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        json::number(out, weight)?;
    }
    out.write_all(b"],\"endValue\":")?;
    json::number(out, weights.iter().sum())?;
    out.push(b'}');
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rprof_stats::{Function, PathNode, Span, Truncation};

    fn paths(spans: Vec<Span>) -> CallPaths {
        CallPaths {
            functions: vec![
                Function::python("/srv/app.py", 1, "main"),
                Function::builtin("<built-in method builtins.len>"),
            ],
            threads: vec![ThreadPaths {
                tid: 7,
                process: None,
                name: None,
                nodes: vec![
                    PathNode {
                        func: 0,
                        parent: None,
                        calls: 1,
                        self_time: 1.5,
                        total_time: 2.0,
                    },
                    PathNode {
                        func: 1,
                        parent: Some(0),
                        calls: 1,
                        self_time: 0.5,
                        total_time: 0.5,
                    },
                ],
                spans,
            }],
            truncation: Truncation::default(),
            duration: 3.0,
        }
    }

    fn write(paths: &CallPaths) -> String {
        let mut out = Vec::new();
        write_speedscope(paths, &Speedscope::default(), &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn evented() {
        let spans = vec![
            Span {
                func: 1,
                start: 0.5,
                end: 1.0,
                depth: 1,
            },
            Span {
                func: 0,
                start: 0.5,
                end: 2.5,
                depth: 0,
            },
        ];
        assert_eq!(
            write(&paths(spans)),
            "{\"$schema\":\"https://www.speedscope.app/file-format-schema.json\",\
             \"exporter\":\"rprof\",\"name\":\"rprof\",\"activeProfileIndex\":0,\
             \"shared\":{\"frames\":[{\"name\":\"main (/srv/app.py:1)\",\
             \"file\":\"/srv/app.py\",\"line\":1},\
             {\"name\":\"<built-in method builtins.len>\"}]},\
             \"profiles\":[{\"type\":\"evented\",\"name\":\"Thread 7\",\"unit\":\"seconds\",\
             \"startValue\":0,\"events\":[{\"type\":\"O\",\"frame\":0,\"at\":0.5},\
             {\"type\":\"O\",\"frame\":1,\"at\":0.5},{\"type\":\"C\",\"frame\":1,\"at\":1.0},\
             {\"type\":\"C\",\"frame\":0,\"at\":2.5}],\"endValue\":3.0}]}\n"
        );
    }

    #[test]
    fn sampled_without_timeline() {
        let out = write(&paths(vec![]));
        assert!(
            out.contains(
                "{\"type\":\"sampled\",\"name\":\"Thread 7\",\"unit\":\"seconds\",\
                 \"startValue\":0,\"samples\":[[0],[0,1]],\"weights\":[1.5,0.5],\
                 \"endValue\":2.0}"
            ),
            "{out}"
        );
    }
}
