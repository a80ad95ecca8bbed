//! pprof profiles: gzip, decoded by Python's protobuf against the published
//! message layout, with the right sample and period types, and values that
//! add up to the capture's totals.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use rprof_format::write_pprof;
use serde_json::Value;

use crate::capture::{self, Capture};
use crate::{tools, util};

fn pprof(c: &Capture) -> Vec<u8> {
    let mut out = Vec::new();
    write_pprof(&c.paths, &mut out).expect("write_pprof");
    out
}

/// The checks both decoders' summaries must pass.
fn check_summary(c: &Capture, summary: &Value) {
    assert_eq!(
        summary["sample_type"],
        serde_json::json!([["calls", "count"], ["wall", "nanoseconds"]])
    );
    assert_eq!(
        summary["period_type"],
        serde_json::json!(["wall", "nanoseconds"])
    );
    assert_eq!(summary["period"], 1);
    assert_eq!(summary["default_sample_type"], "wall");
    assert_eq!(
        summary["duration_nanos"],
        (c.paths.duration * 1e9).round() as u64
    );
    // Wall: the exact total self time, to the nanosecond.
    let wall = summary["total"][1].as_u64().unwrap();
    assert_eq!(wall, c.total_self(1e9));
    let pstats = c.profile.total_time() * 1e9;
    assert!(
        (wall as f64 - pstats).abs() <= 1.0,
        "{wall} ns vs {pstats} ns"
    );
    // Calls, per innermost function: the calls over its paths.
    let per_leaf: HashMap<String, u64> = summary["per_leaf"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v[0].as_u64().unwrap()))
        .filter(|(_, calls)| *calls > 0)
        .collect();
    assert_eq!(per_leaf, c.path_calls_by_label());
}

#[test]
fn totals_agree() {
    for c in [capture::full(), capture::truncated()] {
        let summary = decode(&gunzip(&pprof(&c)));
        check_summary(&c, &summary);
    }
    let c = capture::full();
    let summary = decode(&gunzip(&pprof(&c)));
    // Without limits, the calls are pstats' ncalls too.
    let per_leaf: HashMap<String, u64> = summary["per_leaf"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v[0].as_u64().unwrap()))
        .collect();
    assert_eq!(per_leaf, c.calls_by_label());
    let threads = summary["per_thread"].as_object().unwrap();
    let names: Vec<&String> = threads.keys().collect();
    assert_eq!(names, ["MainThread (tid 4242)", "Thread 4243"]);
}

#[test]
fn decodes_with_python_protobuf() {
    let check = "pprof decoding with Python's protobuf";
    let python = match tools::venv_python() {
        Ok(python) => python,
        Err(e) => return tools::skip(check, &e),
    };
    let dir = util::scratch("pprof-python");
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (name, c) in [
        ("full", capture::full()),
        ("truncated", capture::truncated()),
    ] {
        let file = dir.join(format!("{name}.pb.gz"));
        std::fs::write(&file, pprof(&c)).unwrap();
        let gen = dir.join(format!("gen-{name}"));
        std::fs::create_dir_all(&gen).unwrap();
        let out = util::python_command(&python)
            .arg(manifest.join("tests/scripts/check_pprof.py"))
            .arg(manifest.join("tests/resources/profile.proto"))
            .arg(&gen)
            .arg(&file)
            .output()
            .expect("run check_pprof.py");
        assert!(
            out.status.success(),
            "{name}: check_pprof.py failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let summary: Value = serde_json::from_slice(&out.stdout).expect("JSON summary");
        check_summary(&c, &summary);
        let comments = summary["comments"].as_array().unwrap();
        assert!(comments[0].as_str().unwrap().contains("every call counted"));
        if name == "truncated" {
            assert_eq!(comments.len(), 3, "{comments:?}");
        }
        // Python agrees with the Rust-side decoder on everything.
        let mine = decode(&gunzip(&std::fs::read(&file).unwrap()));
        for key in ["total", "per_leaf", "per_thread", "samples", "functions"] {
            assert_eq!(summary[key], mine[key], "{name}: {key}");
        }
        let functions = summary["functions"].as_array().unwrap();
        let get = functions
            .iter()
            .find(|f| f["name"] == "get (requests/api.py:62)")
            .expect("a function for requests.get");
        assert_eq!(get["system_name"], "get");
        assert_eq!(
            get["filename"],
            "/home/dev/.venv/lib/python3.11/site-packages/requests/api.py"
        );
        assert_eq!(get["start_line"], 62);
        let len = functions
            .iter()
            .find(|f| f["name"] == "<built-in method builtins.len>")
            .unwrap();
        assert_eq!(len["filename"], "");
        assert_eq!(
            summary["mapping"],
            serde_json::json!([{"filename": "python", "has_functions": true,
                "has_filenames": true, "has_line_numbers": true}])
        );
    }
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    assert_eq!(&bytes[..2], b"\x1f\x8b", "not gzip");
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .expect("valid gzip");
    out
}

// A small protobuf reader, independent of the writer, so that the totals
// are checked even where Python's protobuf cannot be installed.

enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

fn varint(buf: &mut &[u8]) -> u64 {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = buf.split_first().expect("truncated varint");
        *buf = rest;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return v;
        }
    }
    panic!("varint too long");
}

fn fields(mut buf: &[u8]) -> Vec<(u64, Field<'_>)> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let key = varint(&mut buf);
        let field = match key & 7 {
            0 => Field::Varint(varint(&mut buf)),
            2 => {
                let len = varint(&mut buf) as usize;
                let (data, rest) = buf.split_at(len);
                buf = rest;
                Field::Bytes(data)
            }
            wire => panic!("unexpected wire type {wire}"),
        };
        out.push((key >> 3, field));
    }
    out
}

fn int(f: &Field<'_>) -> u64 {
    match f {
        Field::Varint(v) => *v,
        Field::Bytes(_) => panic!("expected a varint"),
    }
}

fn bytes<'a>(f: &Field<'a>) -> &'a [u8] {
    match f {
        Field::Bytes(b) => b,
        Field::Varint(_) => panic!("expected bytes"),
    }
}

/// Repeated scalars, packed or not.
fn repeated(out: &mut Vec<u64>, f: &Field<'_>) {
    match f {
        Field::Varint(v) => out.push(*v),
        Field::Bytes(mut b) => {
            while !b.is_empty() {
                out.push(varint(&mut b));
            }
        }
    }
}

fn get(fields: &[(u64, Field<'_>)], n: u64) -> u64 {
    fields.iter().find(|f| f.0 == n).map_or(0, |f| int(&f.1))
}

/// The same summary `check_pprof.py` prints.
fn decode(profile: &[u8]) -> Value {
    let top = fields(profile);
    let strings: Vec<String> = top
        .iter()
        .filter(|f| f.0 == 6)
        .map(|f| String::from_utf8(bytes(&f.1).to_vec()).unwrap())
        .collect();
    assert_eq!(strings[0], "");
    let s = |i: u64| strings[i as usize].clone();
    let messages = |n: u64| {
        top.iter()
            .filter(move |f| f.0 == n)
            .map(|f| fields(bytes(&f.1)))
    };
    let value_type = |m: Vec<(u64, Field<'_>)>| serde_json::json!([s(get(&m, 1)), s(get(&m, 2))]);
    let sample_type: Vec<Value> = messages(1).map(value_type).collect();
    let mut functions = Vec::new();
    let mut function_names = HashMap::new();
    for f in messages(5) {
        function_names.insert(get(&f, 1), s(get(&f, 2)));
        functions.push(serde_json::json!({
            "name": s(get(&f, 2)), "system_name": s(get(&f, 3)),
            "filename": s(get(&f, 4)), "start_line": get(&f, 5),
        }));
    }
    let mut location_function = HashMap::new();
    for l in messages(4) {
        let lines: Vec<_> = l.iter().filter(|f| f.0 == 4).collect();
        assert_eq!(lines.len(), 1);
        location_function.insert(get(&l, 1), get(&fields(bytes(&lines[0].1)), 1));
    }
    let mut total = vec![0u64; sample_type.len()];
    let mut per_leaf: HashMap<String, Vec<u64>> = HashMap::new();
    let mut per_thread: HashMap<String, Vec<u64>> = HashMap::new();
    let mut samples = 0;
    for sample in messages(2) {
        samples += 1;
        let (mut locations, mut values) = (Vec::new(), Vec::new());
        let mut thread = "None".to_string();
        for (n, f) in &sample {
            match n {
                1 => repeated(&mut locations, f),
                2 => repeated(&mut values, f),
                3 => {
                    let label = fields(bytes(f));
                    if s(get(&label, 1)) == "thread" {
                        thread = s(get(&label, 2));
                    }
                }
                _ => panic!("unexpected sample field {n}"),
            }
        }
        assert_eq!(values.len(), total.len());
        let leaf = function_names[&location_function[&locations[0]]].clone();
        let leaf = per_leaf
            .entry(leaf)
            .or_insert_with(|| vec![0; values.len()]);
        let thread = per_thread
            .entry(thread)
            .or_insert_with(|| vec![0; values.len()]);
        for (i, v) in values.iter().enumerate() {
            total[i] += v;
            leaf[i] += v;
            thread[i] += v;
        }
    }
    let period_type = messages(11).map(value_type).next().unwrap();
    serde_json::json!({
        "sample_type": sample_type,
        "period_type": period_type,
        "period": get(&top, 12),
        "default_sample_type": s(get(&top, 14)),
        "duration_nanos": get(&top, 10),
        "samples": samples,
        "total": total,
        "per_leaf": per_leaf,
        "per_thread": per_thread,
        "functions": functions,
    })
}
