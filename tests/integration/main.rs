//! rprof's integration tests: the `rprof` binary against real CPython
//! interpreters.
//!
//! Every test runs on every interpreter found (see [`util::interpreters`]):
//! pyenv's versions and the system's `python3.N`, or only those named in
//! `RPROF_TEST_PYTHON` (colon-separated). Unsupported versions are skipped
//! with a message; finding none at all fails.

mod adversarial_attach;
mod adversarial_shim;
mod attach;
mod cli;
mod differential;
mod dist;
mod formats;
mod free_threaded;
mod util;
