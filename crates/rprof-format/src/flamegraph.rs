//! Interactive flame graphs (`.svg`), drawn by
//! [inferno](https://github.com/jonhoo/inferno) from the
//! [collapsed stacks](crate::collapsed).
//!
//! Open the file in a browser: hovering shows a frame's value and share,
//! clicking zooms in, Ctrl-F searches. Each box is a call path (the thread
//! at the bottom, its outermost calls above it); its width is the time spent
//! on that path and below it (with [`Metric::SelfTime`], in microseconds) or
//! its calls and those of its callees (with [`Metric::Calls`]). Because
//! rprof counts every call, these are exact totals, not sample counts.
//!
//! The title says what the widths measure and the subtitle how much was
//! captured; if the recorder's limits cut anything
//! ([`Truncation`](rprof_stats::Truncation)), the subtitle says so.
//! Colours say where the code comes from ([`Origin`], judged from the full
//! path, as inferno's Python palette would if the labels kept it): red for
//! the program's own code, yellow for the standard library and builtins,
//! aqua for third-party packages, purple for threads. The shade comes from
//! a hash of the label, so the same function gets the same colour in every
//! graph and the output is reproducible byte for byte.

use std::io::Write;

use inferno::flamegraph::color::{Color, MultiPalette, Palette, PaletteMap};
use inferno::flamegraph::{self, Direction};
use rprof_stats::CallPaths;

use crate::collapsed::{collapsed_lines, sanitize_frame, Metric};
use crate::labels::{frame_label, origin, thread_label, Origin};
use crate::{FormatError, ProfileData, ProfileWriter};

/// The flame graph writer (`.svg`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Flamegraph {
    /// What the widths measure.
    pub metric: Metric,
    /// Draw an icicle graph: outermost calls at the top, callees below.
    pub icicle: bool,
    /// The title; by default one that says what was measured.
    pub title: Option<String>,
}

impl Flamegraph {
    /// A flame graph of `metric` (`icicle`: growing downwards).
    pub fn new(metric: Metric, icicle: bool) -> Self {
        Flamegraph {
            metric,
            icicle,
            title: None,
        }
    }

    /// The title the graph gets when [`title`](Self::title) is `None`.
    pub fn default_title(&self) -> &'static str {
        match self.metric {
            Metric::SelfTime => "rprof: wall-clock time by call path (every call counted)",
            Metric::Calls => "rprof: calls by call path (every call counted)",
        }
    }
}

impl ProfileWriter for Flamegraph {
    fn write(&self, data: ProfileData<'_>, out: &mut dyn Write) -> Result<(), FormatError> {
        write_flamegraph(data.require_paths("flamegraph")?, self, out)
    }
}

/// Writes `paths` as an interactive SVG flame graph.
///
/// Fails with [`FormatError::EmptyFlamegraph`] if no call path has a
/// nonzero value (a capture in which nothing ran): there is nothing to
/// draw.
pub fn write_flamegraph(
    paths: &CallPaths,
    options: &Flamegraph,
    mut w: impl Write,
) -> Result<(), FormatError> {
    let lines = collapsed_lines(paths, options.metric)?;
    if lines.is_empty() {
        return Err(FormatError::EmptyFlamegraph {
            metric: options.metric.describe(),
        });
    }
    let mut opt = flamegraph::Options::default();
    opt.title = options
        .title
        .clone()
        .unwrap_or_else(|| options.default_title().to_string());
    opt.subtitle = Some(subtitle(paths, options.metric));
    opt.count_name = match options.metric {
        Metric::SelfTime => "µs",
        Metric::Calls => "calls",
    }
    .to_string();
    opt.colors = Palette::Multi(MultiPalette::Python);
    opt.hash = true;
    let mut palette = palette(paths);
    opt.palette_map = Some(&mut palette);
    if options.icicle {
        opt.direction = Direction::Inverted;
    }
    let mut svg = Vec::new();
    flamegraph::from_lines(&mut opt, lines.iter().map(String::as_str), &mut svg)?;
    w.write_all(&svg)?;
    w.flush()?;
    Ok(())
}

/// The colour of every frame, by where its code comes from.
fn palette(paths: &CallPaths) -> PaletteMap {
    let mut map = PaletteMap::default();
    for func in &paths.functions {
        let label = sanitize_frame(&frame_label(func)).into_owned();
        let kind = match origin(func) {
            Origin::Builtin | Origin::Stdlib => Kind::Stdlib,
            Origin::ThirdParty => Kind::ThirdParty,
            _ => Kind::Program,
        };
        if map.get(&label).is_none() {
            let color = color(&label, kind);
            map.insert(label, color);
        }
    }
    for thread in &paths.threads {
        let label = sanitize_frame(&thread_label(thread.tid, thread.name.as_deref())).into_owned();
        let c = color(&label, Kind::Thread);
        map.insert(label, c);
        if let Some(p) = &thread.process {
            let label = sanitize_frame(&p.label).into_owned();
            let c = color(&label, Kind::Thread);
            map.insert(label, c);
        }
    }
    map
}

#[derive(Clone, Copy)]
enum Kind {
    Program,
    Stdlib,
    ThirdParty,
    Thread,
}

/// inferno's red, yellow, aqua and purple ranges, at a shade given by an
/// FNV-1a hash of the label.
fn color(label: &str, kind: Kind) -> Color {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in label.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let v = (hash >> 11) as f32 / (1u64 << 53) as f32;
    let c = |base: u8, range: f32| base.saturating_add((range * v) as u8);
    let (r, g, b) = match kind {
        Kind::Program => (c(200, 55.0), c(50, 80.0), c(50, 80.0)),
        Kind::Stdlib => (c(175, 55.0), c(175, 55.0), c(50, 20.0)),
        Kind::ThirdParty => (c(50, 60.0), c(165, 55.0), c(165, 55.0)),
        Kind::Thread => (c(190, 65.0), c(80, 60.0), c(190, 65.0)),
    };
    Color { r, g, b }
}

/// What was captured, and what the limits cut.
fn subtitle(paths: &CallPaths, metric: Metric) -> String {
    let threads = paths.threads.len();
    let captured = format!(
        "{threads} thread{}, {} captured.",
        if threads == 1 { "" } else { "s" },
        seconds(paths.duration)
    );
    let t = paths.truncation;
    if t.is_empty() {
        let width = match metric {
            Metric::SelfTime => "time in µs",
            Metric::Calls => "number of calls",
        };
        return format!("Width: {width}; {captured}");
    }
    // One line of a 1200-pixel graph: keep it short.
    let mut folded = Vec::new();
    if t.depth_folded > 0 {
        folded.push(format!("{} calls past the depth limit", t.depth_folded));
    }
    if t.node_folded > 0 {
        folded.push(format!("{} past the node limit", t.node_folded));
    }
    let mut cuts = Vec::new();
    if !folded.is_empty() {
        cuts.push(format!("{} shown as their callers", folded.join(" and ")));
    }
    if t.spans_dropped > 0 {
        cuts.push(format!("{} calls not in the timeline", t.spans_dropped));
    }
    format!("Truncated: {}; {captured}", cuts.join(", "))
}

/// A duration in the unit that suits it: `2.500 s`, `12.345 ms`, `0.800 µs`.
fn seconds(s: f64) -> String {
    if s >= 1.0 {
        format!("{s:.3} s")
    } else if s >= 1e-3 {
        format!("{:.3} ms", s * 1e3)
    } else {
        format!("{:.3} µs", s * 1e6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rprof_stats::{Function, PathNode, ThreadPaths, Truncation};

    fn paths(self_time: f64) -> CallPaths {
        CallPaths {
            functions: vec![Function::python("/srv/app.py", 1, "main")],
            threads: vec![ThreadPaths {
                tid: 1,
                process: None,
                name: Some("MainThread".into()),
                nodes: vec![PathNode {
                    func: 0,
                    parent: None,
                    calls: 1,
                    self_time,
                    total_time: self_time,
                }],
                spans: vec![],
            }],
            truncation: Truncation {
                depth_folded: 3,
                node_folded: 0,
                spans_dropped: 0,
            },
            duration: 2.0,
        }
    }

    #[test]
    fn draws_with_title_and_truncation() {
        let mut svg = Vec::new();
        write_flamegraph(&paths(0.5), &Flamegraph::default(), &mut svg).unwrap();
        let svg = String::from_utf8(svg).unwrap();
        assert!(svg.contains(">rprof: wall-clock time by call path (every call counted)<"));
        assert!(svg.contains(
            ">Truncated: 3 calls past the depth limit shown as their callers; \
             1 thread, 2.000 s captured.<"
        ));
        assert!(svg.contains("main (/srv/app.py:1) (500,000 µs, 100.00%)"));
        // Reproducible.
        let mut again = Vec::new();
        write_flamegraph(&paths(0.5), &Flamegraph::default(), &mut again).unwrap();
        assert_eq!(svg.as_bytes(), &again[..]);
    }

    #[test]
    fn subtitles() {
        let mut p = paths(1.0);
        p.truncation = Truncation::default();
        assert_eq!(
            subtitle(&p, Metric::SelfTime),
            "Width: time in µs; 1 thread, 2.000 s captured."
        );
        assert_eq!(
            subtitle(&p, Metric::Calls),
            "Width: number of calls; 1 thread, 2.000 s captured."
        );
        p.truncation = Truncation {
            depth_folded: 67,
            node_folded: 5,
            spans_dropped: 92,
        };
        assert_eq!(
            subtitle(&p, Metric::SelfTime),
            "Truncated: 67 calls past the depth limit and 5 past the node limit shown as their \
             callers, 92 calls not in the timeline; 1 thread, 2.000 s captured."
        );
        p.truncation = Truncation {
            depth_folded: 0,
            node_folded: 5,
            spans_dropped: 0,
        };
        assert_eq!(
            subtitle(&p, Metric::SelfTime),
            "Truncated: 5 past the node limit shown as their callers; 1 thread, 2.000 s captured."
        );
    }

    #[test]
    fn colours_say_where_code_comes_from() {
        let mut p = paths(1.0);
        p.functions = vec![
            Function::python("/srv/app.py", 1, "main"),
            Function::python("/usr/lib/python3.12/json/decoder.py", 332, "decode"),
            Function::python("/v/lib/python3.12/site-packages/requests/api.py", 62, "get"),
            Function::builtin("<built-in method builtins.len>"),
        ];
        let map = palette(&p);
        let rgb = |label: &str| {
            let c = map.get(label).unwrap();
            (c.r, c.g, c.b)
        };
        let (r, g, b) = rgb("main (/srv/app.py:1)");
        assert!(r >= 200 && g < 130 && b < 130, "red: {r} {g} {b}");
        let (r, g, b) = rgb("decode (json/decoder.py:332)");
        assert!(r >= 175 && g >= 175 && b < 70, "yellow: {r} {g} {b}");
        assert!(rgb("<built-in method builtins.len>").2 < 70);
        let (r, g, b) = rgb("get (requests/api.py:62)");
        assert!(r < 110 && g >= 165 && b >= 165, "aqua: {r} {g} {b}");
        let (r, g, b) = rgb("MainThread (tid 1)");
        assert!(r >= 190 && g < 140 && b >= 190, "purple: {r} {g} {b}");
    }

    #[test]
    fn durations() {
        assert_eq!(seconds(12.0), "12.000 s");
        assert_eq!(seconds(0.0125), "12.500 ms");
        assert_eq!(seconds(0.000_000_8), "0.800 µs");
        assert_eq!(seconds(0.0), "0.000 µs");
    }

    #[test]
    fn nothing_to_draw() {
        let err = write_flamegraph(&paths(0.0), &Flamegraph::default(), Vec::new()).unwrap_err();
        assert!(matches!(err, FormatError::EmptyFlamegraph { .. }), "{err}");
    }
}
