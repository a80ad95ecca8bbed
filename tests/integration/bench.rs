//! `scripts/bench.py` stays runnable: its options parse and one tiny row of
//! the workload matrix runs end to end (cProfile, cProfile(builtins=False),
//! rprof, the floor with a clock read). The benchmarks themselves never run
//! in the test suite.

use crate::util;
use std::process::Command;

fn bench(py: &util::Python) -> Command {
    let mut c = Command::new(&py.path);
    c.arg(util::root().join("scripts/bench.py"))
        .env_remove("PYTHONPATH")
        .env_remove("RPROF_TEST_PYTHON");
    c
}

#[test]
fn bench_py_parses_its_options_and_runs_one_tiny_row() {
    let py = util::interpreters()
        .iter()
        .rev()
        .find(|p| !p.free_threaded)
        .expect("a GIL build of Python");
    let help = util::run(bench(py).arg("--help"));
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.status.success() && text.contains("--sections") && text.contains("rprof-no-builtins"),
        "bench.py --help\n{}",
        util::describe(&help)
    );
    let bad = util::run(bench(py).args(["--sections", "nonsense"]));
    assert!(
        !bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("unknown section"),
        "bench.py --sections nonsense must be refused\n{}",
        util::describe(&bad)
    );
    let rprof = env!("CARGO_BIN_EXE_rprof");
    let row = util::run(bench(py).args([
        "--workloads",
        "call_heavy",
        "--configs",
        "cprofile,cprofile-nobuiltins,rprof-auto,rprof-no-builtins,floor-clock",
        "--reps",
        "1",
        "--scale",
        "0.01",
        "--no-warmup",
        "--python",
        &py.path.to_string_lossy(),
        "--rprof",
        rprof,
    ]));
    let text = String::from_utf8_lossy(&row.stdout);
    assert!(
        row.status.success()
            && text.contains("rprof-auto / cProfile")
            && text.contains("floor+clock / cProfile")
            && !text.contains("Problems"),
        "one tiny row of bench.py\n{}",
        util::describe(&row)
    );
}
