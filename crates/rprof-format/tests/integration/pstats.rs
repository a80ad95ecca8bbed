//! `write_pstats` output loads in real `pstats`, and `read_pstats` reads
//! what real cProfile writes.

use std::path::Path;

use rprof_format::{read_pstats, render_table, write_pstats, SortKey, TableOptions};

use crate::util::{self, Python};

fn write_file(path: &Path, profile: &rprof_stats::Profile) {
    let mut bytes = Vec::new();
    write_pstats(profile, &mut bytes).expect("write_pstats");
    std::fs::write(path, bytes).expect("write stats file");
}

/// rprof's file loads in every interpreter as exactly the dict intended,
/// in order, and is exactly `marshal.dumps(that_dict, 2)`.
#[test]
fn pstats_loads_what_rprof_writes() {
    let dir = util::scratch("loads");
    let profile = util::tricky_profile();
    let stats = dir.join("tricky.prof");
    write_file(&stats, &profile);
    let expected = dir.join("expected.py");
    std::fs::write(&expected, util::python_expected(&profile)).unwrap();

    let failures: Vec<String> = util::pythons()
        .iter()
        .filter_map(|py| util::run_script(py, "check_pstats.py", &[&stats, &expected]).err())
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn rust_round_trip() {
    let profile = util::tricky_profile();
    let mut bytes = Vec::new();
    write_pstats(&profile, &mut bytes).unwrap();
    assert_eq!(read_pstats(&bytes).unwrap(), profile);
}

/// A real cProfile dump (marshal version 4, with back-references) reads
/// into a profile that rprof writes back as the same stats, and whose
/// tables are the ones cProfile printed for that very run.
#[test]
fn reads_real_cprofile_dumps() {
    let dir = util::scratch("real");
    let mut failures = Vec::new();
    for py in util::pythons() {
        if let Err(e) = check_real_dump(&py, &dir) {
            failures.push(e);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

fn check_real_dump(py: &Python, dir: &Path) -> Result<(), String> {
    let (major, minor) = py.version;
    // A non-ASCII directory, so that file names exercise marshal's
    // non-ASCII string type.
    let sub = dir.join(format!("dönnées-{major}.{minor}"));
    std::fs::create_dir_all(&sub).unwrap();
    let original = sub.join("cprofile.prof");
    let printed = util::records(&util::run_script(py, "make_profile.py", &[&original])?);

    let bytes = std::fs::read(&original).unwrap();
    let profile = read_pstats(&bytes).map_err(|e| format!("{py}: read_pstats: {e}"))?;
    let fib = profile
        .functions
        .iter()
        .find(|f| f.func.name == "fib")
        .ok_or_else(|| format!("{py}: no fib in {profile:?}"))?;
    if fib.totals.ncalls <= fib.totals.primitive {
        return Err(format!("{py}: fib should be recursive: {fib:?}"));
    }
    if !profile.functions.iter().any(|f| f.func.name == "café") {
        return Err(format!("{py}: no café in {profile:?}"));
    }

    let rewritten = sub.join("rprof.prof");
    write_file(&rewritten, &profile);
    util::run_script(py, "compare_dumps.py", &[&original, &rewritten])?;

    let mut sorts = vec![
        vec![SortKey::Stdname],
        vec![SortKey::Cumulative],
        vec![SortKey::Time],
    ];
    if printed.len() == 4 {
        sorts.push(vec![SortKey::Calls, SortKey::Name]);
    }
    if printed.len() != sorts.len() {
        return Err(format!(
            "{py}: expected {} tables, got {}",
            sorts.len(),
            printed.len()
        ));
    }
    for (sort, want) in sorts.into_iter().zip(printed) {
        let got = render_table(&profile, &TableOptions::sorted_by(sort.clone()));
        if got != want {
            return Err(format!(
                "{py}: table sorted by {sort:?} differs from cProfile's print_stats:\n\
                 --- cProfile\n{want}--- rprof\n{got}"
            ));
        }
    }
    Ok(())
}
