//! Checks rprof-format against the real consumers of its formats: every
//! CPython the tests can find loads the pstats files and prints the same
//! tables; inferno, speedscope's schema, Python's XML parser and Python's
//! protobuf read the call-path formats, and their numbers add up to the
//! capture's.

mod capture;
mod chrome;
mod collapsed;
mod flamegraph;
mod output;
mod pprof;
mod pstats;
mod speedscope;
mod table;
mod tools;
mod util;
