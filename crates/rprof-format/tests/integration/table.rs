//! `render_table` prints what real `pstats` prints, and `SortKey` accepts
//! what real `pstats` accepts.

use std::fmt::Write as _;

use rprof_format::{render_table, write_pstats, SortKey, TableOptions};

use crate::util;

/// `(strip_dirs, limit, keys as passed to sort_stats)`; "-1" is the integer
/// `python -m cProfile` passes by default.
const CASES: &[(bool, Option<usize>, &[&str])] = &[
    (true, None, &["-1"]),
    (true, None, &["cumulative"]),
    (true, None, &["calls", "name"]),
    (true, None, &["tottime"]),
    (false, None, &["-1"]),
    (false, None, &["cumulative"]),
    (false, None, &["calls", "name"]),
    (false, None, &["tottime"]),
    (true, None, &[]),
    (false, None, &[]),
    (true, None, &["nfl"]),
    (false, None, &["nfl"]),
    (true, None, &["pcalls", "line"]),
    (true, None, &["filename", "stdname"]),
    (false, None, &["module", "ncalls", "time"]),
    (true, None, &["cumtime", "pcalls"]),
    (true, None, &["line", "name"]),
    (true, None, &["stdname"]),
    (false, None, &["name", "line"]),
    // Abbreviations pstats accepts.
    (true, None, &["cu", "na"]),
    (true, None, &["ti", "f", "l"]),
    // Row limits.
    (true, Some(3), &["cumulative"]),
    (true, Some(0), &["cumulative"]),
    (false, Some(13), &["-1"]),
    (false, Some(14), &["-1"]),
    (false, Some(1000), &["calls"]),
];

fn options(strip_dirs: bool, limit: Option<usize>, keys: &[&str]) -> TableOptions {
    let sort: Vec<SortKey> = keys
        .iter()
        .map(|&k| match k {
            "-1" => SortKey::from_legacy(-1).unwrap(),
            _ => SortKey::parse(k).unwrap(),
        })
        .collect();
    let mut options = TableOptions::sorted_by(sort);
    options.strip_dirs = strip_dirs;
    options.limit = limit;
    options
}

#[test]
fn tables_match_pstats_byte_for_byte() {
    let dir = util::scratch("tables");
    let profile = util::tricky_profile();
    let stats = dir.join("tricky.prof");
    let mut bytes = Vec::new();
    write_pstats(&profile, &mut bytes).unwrap();
    std::fs::write(&stats, bytes).unwrap();

    let mut cases = String::new();
    for (strip, limit, keys) in CASES {
        let limit = limit.map_or("-".to_string(), |l| l.to_string());
        let _ = writeln!(cases, "{} {limit} {}", u8::from(*strip), keys.join(" "));
    }
    let cases_file = dir.join("cases.txt");
    std::fs::write(&cases_file, cases).unwrap();

    let mut failures = Vec::new();
    for py in util::pythons() {
        let printed = match util::run_script(&py, "print_tables.py", &[&stats, &cases_file]) {
            Ok(out) => util::records(&out),
            Err(e) => {
                failures.push(e);
                continue;
            }
        };
        assert_eq!(printed.len(), CASES.len(), "{py}");
        for (&(strip, limit, keys), want) in CASES.iter().zip(printed) {
            let got = render_table(&profile, &options(strip, limit, keys));
            if got != want {
                failures.push(format!(
                    "{py}: strip_dirs={strip} limit={limit:?} sort={keys:?}:\n\
                     --- pstats\n{want}--- rprof\n{got}"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Every prefix of every key is accepted or rejected as pstats'
/// `get_sort_arg_defs` decides, with the same meaning. Python 3.6 had an
/// extra "file" key that changed the abbreviations; rprof follows 3.7+.
#[test]
fn sort_keys_match_pstats() {
    let words = [
        "calls",
        "ncalls",
        "cumtime",
        "cumulative",
        "file",
        "filename",
        "line",
        "module",
        "name",
        "nfl",
        "pcalls",
        "stdname",
        "time",
        "tottime",
    ];
    let mut prefixes: Vec<&str> = words
        .iter()
        .flat_map(|w| (1..=w.len()).map(move |n| &w[..n]))
        .collect();
    prefixes.extend(["", "x", "callsx", "Calls", "-1"]);
    prefixes.sort_unstable();
    prefixes.dedup();

    let mut failures = Vec::new();
    for py in util::pythons()
        .into_iter()
        .filter(|py| py.version >= (3, 7))
    {
        let out = match util::run_script(&py, "sort_keys.py", &[]) {
            Ok(out) => String::from_utf8(out).unwrap(),
            Err(e) => {
                failures.push(e);
                continue;
            }
        };
        let accepted: Vec<(&str, &str)> = out
            .lines()
            .map(|l| l.split_once('\t').expect("word\\tdescription"))
            .collect();
        for &word in &prefixes {
            let want = accepted.iter().find(|(w, _)| *w == word).map(|&(_, d)| d);
            let got = SortKey::parse(word).ok().map(SortKey::description);
            if got != want {
                failures.push(format!("{py}: {word:?}: pstats {want:?}, rprof {got:?}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
