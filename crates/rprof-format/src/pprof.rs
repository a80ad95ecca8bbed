//! pprof's `profile.proto` (`.pb.gz`), which `go tool pprof`, `pprof`,
//! Grafana Pyroscope, Parca and many others read.
//!
//! The message layout is the public one from
//! <https://github.com/google/pprof/blob/main/proto/profile.proto>; it is
//! encoded here by hand (a few varints and length-delimited fields, see
//! the private `proto` module) rather than through a protobuf library, and
//! gzipped as pprof expects.
//!
//! * `sample_type` is `[calls/count, wall/nanoseconds]` and
//!   `default_sample_type` is `wall`; `period_type` is `wall/nanoseconds`
//!   with `period` 1 (nothing is sampled).
//! * One sample per call path with a nonzero value: `location_id` from the
//!   innermost call outwards, `value` = `[calls, self time in ns]`, and the
//!   labels `thread` (the [thread label](crate::labels::thread_label)) and
//!   `tid` (the native id, as a number). The self times are rounded to
//!   nanoseconds together, like the
//!   [collapsed stacks'](crate::collapsed) microseconds, so that the `wall`
//!   values add up to the capture's total self time exactly (to the
//!   nearest nanosecond). Summed over the samples whose innermost location
//!   is a function, `calls` is that function's call count.
//! * One function per profiled function: `name` is its
//!   [label](crate::labels::frame_label) (`fib (app/fib.py:10)`: pprof's
//!   reports group by name alone, and Python's bare names repeat across
//!   modules), `system_name` Python's own name (`fib`) or cProfile's label
//!   for a builtin, `filename` the full path as recorded (empty for
//!   builtins) and `start_line` the first line. One location per function,
//!   whose one line is that first line, in a single mapping that declares
//!   functions, file names and line numbers present so that pprof does not
//!   try to symbolize anything.
//! * `duration_nanos` is the capture's length; `comment`s say what was
//!   measured and what the recorder's limits cut, if anything.

use std::collections::HashMap;
use std::io::Write;

use flate2::write::GzEncoder;
use flate2::Compression;
use rprof_stats::{CallPaths, FuncId};

use crate::labels::{frame_label, full_thread_label};
use crate::round::apportion;
use crate::{validate, FormatError, ProfileData, ProfileWriter};

/// The pprof writer (`.pb.gz`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Pprof {}

impl ProfileWriter for Pprof {
    fn write(&self, data: ProfileData<'_>, out: &mut dyn Write) -> Result<(), FormatError> {
        write_pprof(data.require_paths("pprof")?, out)
    }
}

/// Writes `paths` as a gzipped pprof profile (see the [module docs](self)).
pub fn write_pprof(paths: &CallPaths, w: impl Write) -> Result<(), FormatError> {
    let bytes = encode(paths)?;
    let mut gz = GzEncoder::new(w, Compression::default());
    gz.write_all(&bytes)?;
    gz.finish()?.flush()?;
    Ok(())
}

/// The uncompressed `Profile` message.
pub(crate) fn encode(paths: &CallPaths) -> Result<Vec<u8>, FormatError> {
    validate::check(paths)?;
    let mut strings = Strings::default();
    let mut profile = Vec::new();

    // sample_type = 1, period_type = 11
    let calls = strings.get("calls");
    let count = strings.get("count");
    let wall = strings.get("wall");
    let nanoseconds = strings.get("nanoseconds");
    for (kind, unit) in [(calls, count), (wall, nanoseconds)] {
        let mut vt = Vec::new();
        proto::int(&mut vt, 1, kind);
        proto::int(&mut vt, 2, unit);
        proto::bytes(&mut profile, 1, &vt);
    }

    // sample = 2
    let walls: Vec<f64> = paths
        .threads
        .iter()
        .flat_map(|t| &t.nodes)
        .map(|n| n.self_time * 1e9)
        .collect();
    let walls = apportion(&walls);
    let mut walls = walls.into_iter();
    let mut locations: HashMap<FuncId, u64> = HashMap::new();
    let mut location_order: Vec<FuncId> = Vec::new();
    let thread_key = strings.get("thread");
    let tid_key = strings.get("tid");
    let mut chain = Vec::new();
    let mut sample = Vec::new();
    let mut packed = Vec::new();
    for thread in &paths.threads {
        let label = strings.get(&full_thread_label(thread));
        for (i, wall_ns) in (0..thread.nodes.len()).zip(walls.by_ref()) {
            let node = &thread.nodes[i];
            if node.calls == 0 && wall_ns == 0 {
                continue;
            }
            validate::path_to(&thread.nodes, i, &mut chain);
            sample.clear();
            packed.clear();
            for &n in chain.iter().rev() {
                let func = thread.nodes[n].func;
                let next = location_order.len() as u64 + 1;
                let id = *locations.entry(func).or_insert_with(|| {
                    location_order.push(func);
                    next
                });
                proto::varint(&mut packed, id);
            }
            proto::bytes(&mut sample, 1, &packed);
            packed.clear();
            proto::varint(&mut packed, node.calls);
            proto::varint(&mut packed, wall_ns);
            proto::bytes(&mut sample, 2, &packed);
            let mut l = Vec::new();
            proto::int(&mut l, 1, thread_key);
            proto::int(&mut l, 2, label);
            proto::bytes(&mut sample, 3, &l);
            l.clear();
            proto::int(&mut l, 1, tid_key);
            proto::uint(&mut l, 3, thread.tid);
            proto::bytes(&mut sample, 3, &l);
            proto::bytes(&mut profile, 2, &sample);
        }
    }

    // mapping = 3
    let mut mapping = Vec::new();
    proto::uint(&mut mapping, 1, 1);
    proto::int(&mut mapping, 5, strings.get("python"));
    for field in 7..=9 {
        proto::uint(&mut mapping, field, 1);
    }
    proto::bytes(&mut profile, 3, &mapping);

    // location = 4, function = 5: one of each per function, same id.
    let mut functions = Vec::new();
    for (i, &func) in location_order.iter().enumerate() {
        let id = i as u64 + 1;
        let f = &paths.functions[func as usize];
        let mut line = Vec::new();
        proto::uint(&mut line, 1, id);
        proto::int(&mut line, 2, i64::from(f.line));
        let mut location = Vec::new();
        proto::uint(&mut location, 1, id);
        proto::uint(&mut location, 2, 1);
        proto::bytes(&mut location, 4, &line);
        proto::bytes(&mut profile, 4, &location);

        let mut function = Vec::new();
        proto::uint(&mut function, 1, id);
        proto::int(&mut function, 2, strings.get(&frame_label(f)));
        proto::int(&mut function, 3, strings.get(&f.name));
        let file = if f.is_builtin() { "" } else { &f.file };
        proto::int(&mut function, 4, strings.get(file));
        proto::int(&mut function, 5, i64::from(f.line));
        proto::bytes(&mut functions, 5, &function);
    }
    profile.extend_from_slice(&functions);

    // comment = 13 (interned before the string table is written)
    let mut comments = vec![strings.get(
        "rprof: exact wall-clock self time and call counts per call path \
         (every call counted, not sampled)",
    )];
    let t = paths.truncation;
    if t.depth_folded > 0 {
        comments.push(strings.get(&format!(
            "truncated: {} calls past the depth limit are charged to their caller at the limit",
            t.depth_folded
        )));
    }
    if t.node_folded > 0 {
        comments.push(strings.get(&format!(
            "truncated: {} calls made after the call tree was full are charged to their caller",
            t.node_folded
        )));
    }

    // string_table = 6
    for s in &strings.list {
        proto::bytes(&mut profile, 6, s.as_bytes());
    }
    // duration_nanos = 10
    let duration = if paths.duration.is_finite() && paths.duration > 0.0 {
        (paths.duration * 1e9).round() as i64
    } else {
        0
    };
    proto::int(&mut profile, 10, duration);
    // period_type = 11, period = 12
    let mut period_type = Vec::new();
    proto::int(&mut period_type, 1, wall);
    proto::int(&mut period_type, 2, nanoseconds);
    proto::bytes(&mut profile, 11, &period_type);
    proto::int(&mut profile, 12, 1);
    packed.clear();
    for c in comments {
        proto::varint(&mut packed, c as u64);
    }
    proto::bytes(&mut profile, 13, &packed);
    // default_sample_type = 14
    proto::int(&mut profile, 14, wall);
    Ok(profile)
}

/// The string table: `""` first, each string once.
struct Strings {
    index: HashMap<String, i64>,
    list: Vec<String>,
}

impl Default for Strings {
    fn default() -> Self {
        Strings {
            index: HashMap::from([(String::new(), 0)]),
            list: vec![String::new()],
        }
    }
}

impl Strings {
    fn get(&mut self, s: &str) -> i64 {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = self.list.len() as i64;
        self.list.push(s.to_string());
        self.index.insert(s.to_string(), i);
        i
    }
}

/// Just enough of the protobuf wire format: varints and length-delimited
/// fields, with proto3's rule that scalar fields equal to 0 are left out.
mod proto {
    /// Appends `v` as a base-128 varint.
    pub(super) fn varint(buf: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            buf.push((v as u8) | 0x80);
            v >>= 7;
        }
        buf.push(v as u8);
    }

    fn key(buf: &mut Vec<u8>, field: u32, wire_type: u8) {
        varint(buf, (u64::from(field) << 3) | u64::from(wire_type));
    }

    /// A `uint64` (or `bool`) field, left out if 0.
    pub(super) fn uint(buf: &mut Vec<u8>, field: u32, v: u64) {
        if v != 0 {
            key(buf, field, 0);
            varint(buf, v);
        }
    }

    /// An `int64` field, left out if 0 (negative values take ten bytes, as
    /// protobuf encodes them).
    pub(super) fn int(buf: &mut Vec<u8>, field: u32, v: i64) {
        uint(buf, field, v as u64);
    }

    /// A length-delimited field: a string, bytes, an embedded message or a
    /// packed repeated scalar. Always written (repeated elements count even
    /// when empty).
    pub(super) fn bytes(buf: &mut Vec<u8>, field: u32, data: &[u8]) {
        key(buf, field, 2);
        varint(buf, data.len() as u64);
        buf.extend_from_slice(data);
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn wire_format() {
            let mut b = Vec::new();
            varint(&mut b, 300);
            assert_eq!(b, [0xac, 0x02]);
            b.clear();
            uint(&mut b, 1, 0);
            assert!(b.is_empty());
            int(&mut b, 2, -1);
            assert_eq!(
                b,
                [0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]
            );
            b.clear();
            bytes(&mut b, 6, b"");
            bytes(&mut b, 6, b"ab");
            assert_eq!(b, [0x32, 0x00, 0x32, 0x02, b'a', b'b']);
        }
    }
}
