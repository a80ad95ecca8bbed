//! rprof's integration tests: the `rprof` binary against real CPython
//! interpreters.
//!
//! Every test runs on every interpreter found (see [`util::interpreters`]):
//! pyenv's versions and the system's `python3.N`, or only those named in
//! `RPROF_TEST_PYTHON` (colon-separated). Versions before 3.8 are left out
//! (only the too-old tests use them); finding none at all fails. A check
//! that cannot run calls `util::skip`: a failure under `CI=true`, otherwise
//! counted in the `N skipped: reasons` line printed at exit.

mod adversarial_attach;
mod adversarial_shim;
mod attach;
mod bench;
mod cli;
mod differential;
mod dist;
mod formats;
mod free_threaded;
mod subprocesses_attach;
mod subprocesses_run;
mod util;
