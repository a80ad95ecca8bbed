//! pstats' text report: what `Stats(...).sort_stats(*keys).print_stats()`
//! prints, byte for byte.
//!
//! With [`TableOptions::default`] the output is exactly what
//! `python -m cProfile script.py` prints after the script's own output (the
//! CLI runs `Stats(prof).strip_dirs().sort_stats(-1).print_stats()`):
//!
//! ```text
//!          4 function calls (2 primitive calls) in 0.001 seconds
//!
//!    Ordered by: standard name
//!
//!    ncalls  tottime  percall  cumtime  percall filename:lineno(function)
//!       3/1    0.001    0.000    0.001    0.001 fib.py:1(fib)
//!         1    0.000    0.000    0.000    0.000 {built-in method builtins.len}
//!
//!
//! ```
//!
//! Two things `print_stats` can print are never printed here:
//!
//! * For stats loaded from files, pstats starts with one line per file,
//!   `time.ctime(mtime) + "    " + path`, and a blank line. Stats built from
//!   a live profiler (as `python -m cProfile` builds them) have no files, and
//!   neither does a [`Profile`].
//! * One line per function whose callers include `("jprofile", 0,
//!   "profiler")`. Neither cProfile nor rprof produces that caller, and
//!   pstats prints those lines in `set` order, which is not reproducible.
//!
//! Sorting is pstats' `TupleComp` over `(cc, nc, tt, ct, file, line, name,
//! std_string)` with Python's stable sort, so ties keep the order of
//! [`Profile::functions`] (the dict order pstats sees after loading a file
//! written by [`write_pstats`](crate::pstats::write_pstats)). The one
//! deliberate difference: pstats' comparisons are inconsistent for NaN
//! times and the result depends on Timsort's internals; here NaN sorts as
//! larger than every number.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write;

use rprof_stats::Profile;

use crate::sort::{Field, SortKey};
use crate::FormatError;

/// How to render the table: the arguments of pstats' `strip_dirs`,
/// `sort_stats` and `print_stats`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TableOptions {
    /// Like `Stats.strip_dirs()`: show file names without their directory.
    /// Functions whose `(basename, line, name)` then coincide are merged into
    /// one row by adding their numbers, as pstats does.
    pub strip_dirs: bool,
    /// Like `Stats.sort_stats(*sort)`: most significant key first. Empty
    /// means no `sort_stats` call: rows keep profile order and the header
    /// says "Random listing order was used".
    pub sort: Vec<SortKey>,
    /// Like `Stats.print_stats(limit)`: print only the first `limit` rows
    /// (and say so), if there are more.
    pub limit: Option<usize>,
    /// A line printed above the totals, followed by an empty line, where
    /// pstats prints the names of the files it loaded: rprof says there
    /// how many processes a merged profile adds up.
    pub header: Option<String>,
}

impl Default for TableOptions {
    /// What `python -m cProfile` prints: directories stripped, sorted by
    /// standard name, no limit.
    fn default() -> Self {
        TableOptions {
            strip_dirs: true,
            sort: vec![SortKey::Stdname],
            limit: None,
            header: None,
        }
    }
}

impl TableOptions {
    /// The default options (see [`TableOptions::default`]) sorted by `sort`
    /// instead, like `python -m cProfile -s KEY`.
    pub fn sorted_by(sort: impl IntoIterator<Item = SortKey>) -> Self {
        TableOptions {
            sort: sort.into_iter().collect(),
            ..TableOptions::default()
        }
    }
}

/// Writes the table for `profile` to `w`. See the [module docs](self) for
/// exactly what is printed.
pub fn write_table(
    profile: &Profile,
    options: &TableOptions,
    mut w: impl Write,
) -> Result<(), FormatError> {
    w.write_all(render_table(profile, options).as_bytes())?;
    w.flush()?;
    Ok(())
}

/// One function's line, before formatting.
struct Row<'a> {
    file: &'a str,
    line: u32,
    name: &'a str,
    // Python ints do not overflow; sums of u64s fit in u128.
    primitive: u128,
    calls: u128,
    tottime: f64,
    cumtime: f64,
    std_name: String,
}

/// Renders the table for `profile` as a string. See the
/// [module docs](self) for exactly what is printed.
pub fn render_table(profile: &Profile, options: &TableOptions) -> String {
    // pstats totals the loaded dict before strip_dirs, in dict order.
    let mut total_calls: u128 = 0;
    let mut primitive_calls: u128 = 0;
    let mut total_time = 0.0;
    for f in &profile.functions {
        total_calls += u128::from(f.totals.ncalls);
        primitive_calls += u128::from(f.totals.primitive);
        total_time += f.totals.tottime;
    }

    let mut rows: Vec<Row<'_>> = Vec::with_capacity(profile.functions.len());
    let mut index: HashMap<(&str, u32, &str), usize> = HashMap::new();
    for f in &profile.functions {
        let file = if options.strip_dirs {
            basename(&f.func.file)
        } else {
            &f.func.file
        };
        let (line, name) = (f.func.line, f.func.name.as_str());
        let t = &f.totals;
        // Without strip_dirs keys are unique (a dict's), so only merge after.
        let merge_into = if options.strip_dirs {
            index.get(&(file, line, name)).copied()
        } else {
            None
        };
        if let Some(i) = merge_into {
            let row = &mut rows[i];
            row.primitive += u128::from(t.primitive);
            row.calls += u128::from(t.ncalls);
            row.tottime += t.tottime;
            row.cumtime += t.cumtime;
            continue;
        }
        index.insert((file, line, name), rows.len());
        rows.push(Row {
            file,
            line,
            name,
            primitive: t.primitive.into(),
            calls: t.ncalls.into(),
            tottime: t.tottime,
            cumtime: t.cumtime,
            std_name: std_string(file, line, name),
        });
    }

    let mut msg = String::new();
    if options.sort.is_empty() {
        msg.push_str("   Random listing order was used\n");
    } else {
        let fields: Vec<(Field, bool)> = options
            .sort
            .iter()
            .flat_map(|key| key.fields().iter().copied())
            .collect();
        // Stable, like Python's list.sort.
        rows.sort_by(|a, b| compare(a, b, &fields));
        let described: Vec<&str> = options.sort.iter().map(|k| k.description()).collect();
        let _ = writeln!(msg, "   Ordered by: {}", described.join(", "));
    }
    if let Some(limit) = options.limit {
        if limit < rows.len() {
            let _ = writeln!(
                msg,
                "   List reduced from {} to {limit} due to restriction <{limit}>",
                rows.len()
            );
            rows.truncate(limit);
        }
    }

    let mut out = String::with_capacity(256 + rows.len() * 100);
    if let Some(h) = &options.header {
        out.push_str(h);
        out.push_str("\n\n");
    }
    let _ = write!(out, "         {total_calls} function calls ");
    if total_calls != primitive_calls {
        let _ = write!(out, "({primitive_calls} primitive calls) ");
    }
    let _ = writeln!(out, "in {} seconds\n", fixed3(total_time, 0));
    if rows.is_empty() {
        return out;
    }
    out.push_str(&msg);
    out.push('\n');
    out.push_str("   ncalls  tottime  percall  cumtime  percall filename:lineno(function)\n");
    for row in &rows {
        let calls = if row.calls == row.primitive {
            row.calls.to_string()
        } else {
            format!("{}/{}", row.calls, row.primitive)
        };
        let _ = write!(out, "{calls:>9} {} ", f8(row.tottime));
        if row.calls == 0 {
            out.push_str("         ");
        } else {
            // `as` rounds to nearest, like Python's int-to-float division.
            let _ = write!(out, "{} ", f8(row.tottime / row.calls as f64));
        }
        let _ = write!(out, "{} ", f8(row.cumtime));
        if row.primitive == 0 {
            out.push_str("         ");
        } else {
            let _ = write!(out, "{} ", f8(row.cumtime / row.primitive as f64));
        }
        push_escaped(&mut out, &row.std_name);
        out.push('\n');
    }
    out.push_str("\n\n");
    out
}

/// Appends `s` with every character that could drive a terminal or
/// reorder what it shows escaped: C0 and C1 control characters and DEL
/// (`\x1b`, `\u{9b}`) and the bidirectional formatting characters
/// (`\u{202e}`). File and function names come from the profiled program,
/// which may be hostile; printed raw, they could move the cursor, rewrite
/// earlier lines or disguise a name.
pub fn push_escaped(out: &mut String, s: &str) {
    for c in s.chars() {
        let u = c as u32;
        let bidi = matches!(u, 0x061c | 0x200e | 0x200f | 0x202a..=0x202e | 0x2066..=0x2069);
        if u < 0x20 || u == 0x7f {
            let _ = write!(out, "\\x{u:02x}");
        } else if (0x80..0xa0).contains(&u) || bidi {
            let _ = write!(out, "\\u{{{u:x}}}");
        } else {
            out.push(c);
        }
    }
}

/// pstats' `TupleComp.compare`: per field, `<` gives -direction and `>`
/// gives +direction.
fn compare(a: &Row<'_>, b: &Row<'_>, fields: &[(Field, bool)]) -> Ordering {
    for &(field, descending) in fields {
        let ord = match field {
            Field::Primitive => a.primitive.cmp(&b.primitive),
            Field::Calls => a.calls.cmp(&b.calls),
            Field::TotTime => compare_floats(a.tottime, b.tottime),
            Field::CumTime => compare_floats(a.cumtime, b.cumtime),
            // Rust compares UTF-8 bytewise, which is code point order, as
            // Python compares str.
            Field::File => a.file.cmp(b.file),
            Field::Line => a.line.cmp(&b.line),
            Field::Name => a.name.cmp(b.name),
            Field::StdName => a.std_name.cmp(&b.std_name),
        };
        let ord = if descending { ord.reverse() } else { ord };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    Ordering::Equal
}

/// Python's `<`/`>` on floats (so -0.0 == 0.0), made total by putting NaN
/// after every number: `sort_by` needs a total order.
fn compare_floats(a: f64, b: f64) -> Ordering {
    a.partial_cmp(&b)
        .unwrap_or_else(|| a.is_nan().cmp(&b.is_nan()))
}

/// `os.path.basename` on POSIX: everything after the last `/`.
fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// pstats' `func_std_string`: `file:line(name)`, or for builtins
/// (`('~', 0, label)`) the label with `<…>` turned into `{…}`.
fn std_string(file: &str, line: u32, name: &str) -> String {
    if file == "~" && line == 0 {
        if name.starts_with('<') && name.ends_with('>') {
            // `name[1:-1]`; the two checks imply at least two bytes.
            format!("{{{}}}", &name[1..name.len() - 1])
        } else {
            name.to_owned()
        }
    } else {
        format!("{file}:{line}({name})")
    }
}

/// pstats' `f8`: `"%8.3f" % x`.
fn f8(x: f64) -> String {
    fixed3(x, 8)
}

/// Python's `"%*.3f" % (width, x)`. Rust's fixed-point formatting rounds
/// the exact binary value half-to-even like Python's; only the spelling of
/// infinities and NaN differs.
fn fixed3(x: f64, width: usize) -> String {
    if x.is_nan() {
        format!("{:>width$}", "nan")
    } else if x.is_infinite() {
        format!("{:>width$}", if x > 0.0 { "inf" } else { "-inf" })
    } else {
        format!("{x:>width$.3}")
    }
}

#[cfg(test)]
mod tests {
    use rprof_stats::{CallStats, Function, FunctionStats};

    use super::*;

    fn function(
        func: Function,
        ncalls: u64,
        primitive: u64,
        tottime: f64,
        cumtime: f64,
    ) -> FunctionStats {
        FunctionStats {
            func,
            totals: CallStats {
                ncalls,
                primitive,
                tottime,
                cumtime,
            },
            callers: vec![],
        }
    }

    #[test]
    fn std_strings() {
        assert_eq!(std_string("/a/b.py", 3, "f"), "/a/b.py:3(f)");
        assert_eq!(
            std_string("~", 0, "<built-in method builtins.len>"),
            "{built-in method builtins.len}"
        );
        assert_eq!(std_string("~", 0, "plain"), "plain");
        assert_eq!(std_string("~", 0, "<"), "<");
        assert_eq!(std_string("~", 0, "<>"), "{}");
        assert_eq!(std_string("~", 1, "<x>"), "~:1(<x>)");
    }

    #[test]
    fn basenames() {
        assert_eq!(basename("/a/b/c.py"), "c.py");
        assert_eq!(basename("c.py"), "c.py");
        assert_eq!(basename("/a/dir/"), "");
        assert_eq!(basename("~"), "~");
    }

    /// Expected strings from CPython's `"%8.3f" % x`.
    #[test]
    fn fixed_point_matches_python() {
        let cases = [
            (0.0625, "   0.062"),
            (0.0015, "   0.002"),
            (1.0005, "   1.000"),
            (-0.0, "  -0.000"),
            (-0.0001, "  -0.000"),
            (123456789.0625, "123456789.062"),
            (f64::NAN, "     nan"),
            (-f64::NAN, "     nan"),
            (f64::INFINITY, "     inf"),
            (f64::NEG_INFINITY, "    -inf"),
        ];
        for (x, want) in cases {
            assert_eq!(f8(x), want, "{x}");
        }
        assert_eq!(fixed3(f64::INFINITY, 0), "inf");
    }

    #[test]
    fn default_table_is_cprofile_cli_output() {
        let profile = Profile {
            functions: vec![
                function(Function::python("/x/fib.py", 1, "fib"), 3, 1, 0.001, 0.002),
                function(
                    Function::builtin("<built-in method builtins.len>"),
                    1,
                    1,
                    0.0,
                    0.0,
                ),
                function(
                    Function::python("/y/fib.py", 1, "fib"),
                    2,
                    2,
                    0.0005,
                    0.0005,
                ),
            ],
        };
        let text = render_table(&profile, &TableOptions::default());
        let want = "         6 function calls (4 primitive calls) in 0.002 seconds\n\
                    \n\
                    \x20  Ordered by: standard name\n\
                    \n\
                    \x20  ncalls  tottime  percall  cumtime  percall filename:lineno(function)\n\
                    \x20     5/3    0.002    0.000    0.003    0.001 fib.py:1(fib)\n\
                    \x20       1    0.000    0.000    0.000    0.000 {built-in method builtins.len}\n\
                    \n\n";
        assert_eq!(text, want);
    }

    #[test]
    fn limits_and_empty_profiles() {
        let profile = Profile {
            functions: (0..5)
                .map(|i| function(Function::python("a.py", i, "f"), 1, 0, 0.0, 0.0))
                .collect(),
        };
        let mut options = TableOptions::sorted_by([SortKey::Line]);
        options.limit = Some(2);
        let text = render_table(&profile, &options);
        assert!(
            text.contains("   List reduced from 5 to 2 due to restriction <2>\n\n"),
            "{text}"
        );
        assert!(text.contains("      1/0    0.000    0.000    0.000          a.py:1(f)\n"));
        assert!(!text.contains("a.py:2(f)"));
        options.limit = Some(0);
        let text = render_table(&profile, &options);
        assert_eq!(
            text,
            "         5 function calls (0 primitive calls) in 0.000 seconds\n\n"
        );
        let empty = render_table(&Profile::default(), &TableOptions::default());
        assert_eq!(empty, "         0 function calls in 0.000 seconds\n\n");
    }

    #[test]
    fn hostile_names_are_escaped() {
        let f = Function::python("/tmp/\x1b[2J\r.py", 1, "f\u{202e}gpj.exe\u{9b}\x07");
        let p = Profile {
            functions: vec![function(f, 1, 1, 0.0, 0.0)],
        };
        let t = render_table(&p, &TableOptions::default());
        assert!(!t.chars().any(|c| (c as u32) < 0x20 && c != '\n'), "{t:?}");
        assert!(!t.contains('\u{202e}') && !t.contains('\u{9b}') && !t.contains('\x7f'));
        assert!(
            t.contains("\\x1b[2J\\x0d.py:1(f\\u{202e}gpj.exe\\u{9b}\\x07)"),
            "{t}"
        );
    }

    #[test]
    fn nan_times_do_not_panic() {
        let profile = Profile {
            functions: (0..40)
                .map(|i| {
                    let t = if i % 3 == 0 { f64::NAN } else { f64::from(i) };
                    function(Function::python("a.py", i, "f"), 1, 1, t, -t)
                })
                .collect(),
        };
        for key in SortKey::ALL {
            let text = render_table(&profile, &TableOptions::sorted_by([key]));
            assert_eq!(text.lines().count(), 4 + 1 + 40 + 2, "{text}");
        }
    }

    #[test]
    fn write_table_writes_render_table() {
        let profile = Profile {
            functions: vec![function(Function::python("a.py", 1, "f"), 1, 1, 0.5, 0.5)],
        };
        let mut out = Vec::new();
        write_table(&profile, &TableOptions::default(), &mut out).unwrap();
        assert_eq!(
            out,
            render_table(&profile, &TableOptions::default()).as_bytes()
        );
    }
}
