//! Checks rprof-format against real CPython `pstats`: every interpreter the
//! tests can find loads what rprof writes, and prints the same tables.

mod pstats;
mod table;
mod util;
