//! How functions and threads are named in the call-path formats (collapsed
//! stacks, flame graphs, speedscope, Chrome traces, pprof).
//!
//! pstats keys a function by its full `(file, line, name)`; a flame graph
//! has one line of text per frame, so the call-path formats use a shorter
//! label, the one py-spy users know:
//!
//! * Python code: `function (file:line)`, for example
//!   `get (requests/api.py:62)`, where `line` is the function's first line
//!   (`co_firstlineno`: rprof counts calls, it does not sample lines) and
//!   `file` is shortened by [`short_path`]: what follows the last
//!   `site-packages/` or `dist-packages/` (the import name of a third-party
//!   module), else what follows `lib/pythonX.Y/` (a standard-library
//!   module: `threading.py`, `json/decoder.py`), else the path as recorded.
//!   Pseudo-files such as `<frozen importlib._bootstrap>` and `<string>`
//!   are kept as they are. The full path is not lost: speedscope, Chrome
//!   traces and pprof carry it next to the label.
//! * Builtins: exactly cProfile's label, such as
//!   `<built-in method builtins.len>` or
//!   `<method 'append' of 'list' objects>` (pstats' table shows the same
//!   text in braces).
//! * Threads: Python's name and the native thread id,
//!   `MainThread (tid 4242)`, or `Thread 4242` if the name was not learned.
//! * Processes, in a profile merged from several (`--subprocesses`): the
//!   [`ProcessTag`](rprof_stats::ProcessTag)'s label, one frame above the
//!   thread (collapsed stacks, flame graphs), or before it in the name of a
//!   speedscope profile or pprof's `thread` label; Chrome traces give each
//!   process its own `pid`.
//!
//! Two different functions can end up with the same label (the same module
//! installed in two environments, say); the formats that key frames by label
//! (collapsed stacks, flame graphs) then add them up, the others keep them
//! apart.

use rprof_stats::Function;

/// The label of a function in call-path formats: `function (file:line)`
/// with the file shortened by [`short_path`], or cProfile's label for a
/// builtin.
///
/// ```
/// use rprof_format::labels::frame_label;
/// use rprof_stats::Function;
///
/// let get = Function::python("/srv/venv/lib/python3.12/site-packages/requests/api.py", 62, "get");
/// assert_eq!(frame_label(&get), "get (requests/api.py:62)");
/// let len = Function::builtin("<built-in method builtins.len>");
/// assert_eq!(frame_label(&len), "<built-in method builtins.len>");
/// ```
pub fn frame_label(func: &Function) -> String {
    if func.is_builtin() {
        func.name.clone()
    } else {
        format!("{} ({}:{})", func.name, short_path(&func.file), func.line)
    }
}

/// A source path as the call-path formats show it.
///
/// The first rule that applies wins:
///
/// 1. A pseudo-file (`<frozen importlib._bootstrap>`, `<string>`,
///    `<stdin>`) or an empty path is kept as it is.
/// 2. A path with a `site-packages` or `dist-packages` directory is shown
///    from just after the last one: `requests/api.py`.
/// 3. A path with a `lib/pythonX.Y` directory (also `lib64`, `pythonX.Yt`
///    and other ABI suffixes, `pypyX.Y`) is shown from just after the last
///    one: `json/decoder.py`.
/// 4. Anything else is kept as recorded (scripts and your own packages,
///    absolute or relative as Python saw them).
///
/// Only `/` separates directories (rprof profiles Linux processes).
///
/// ```
/// use rprof_format::labels::short_path;
///
/// assert_eq!(short_path("/usr/lib/python3.11/threading.py"), "threading.py");
/// assert_eq!(short_path("/usr/lib/python3/dist-packages/yaml/__init__.py"), "yaml/__init__.py");
/// assert_eq!(short_path("<frozen importlib._bootstrap>"), "<frozen importlib._bootstrap>");
/// assert_eq!(short_path("/srv/app/main.py"), "/srv/app/main.py");
/// ```
pub fn short_path(path: &str) -> &str {
    classify(path).1
}

/// Where a function's code comes from, judged from its recorded path by
/// the rules of [`short_path`]. Flame graphs colour frames by it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Origin {
    /// A builtin (cProfile's `('~', 0, label)`).
    Builtin,
    /// The standard library: under `lib/pythonX.Y/`, or a frozen module
    /// (`<frozen importlib._bootstrap>`).
    Stdlib,
    /// A third-party package: under `site-packages/` or `dist-packages/`.
    ThirdParty,
    /// Everything else: the program's own code, `<string>`, `<stdin>`.
    Program,
}

/// Where `func`'s code comes from (see [`Origin`]).
///
/// ```
/// use rprof_format::labels::{origin, Origin};
/// use rprof_stats::Function;
///
/// assert_eq!(origin(&Function::python("/usr/lib/python3.12/json/decoder.py", 332, "decode")), Origin::Stdlib);
/// assert_eq!(origin(&Function::python("/srv/app/main.py", 1, "main")), Origin::Program);
/// ```
pub fn origin(func: &Function) -> Origin {
    if func.is_builtin() {
        Origin::Builtin
    } else {
        classify(&func.file).0
    }
}

/// The origin of a path and its short form.
fn classify(path: &str) -> (Origin, &str) {
    if path.starts_with("<frozen ") {
        return (Origin::Stdlib, path);
    }
    if path.is_empty() || path.starts_with('<') {
        return (Origin::Program, path);
    }
    // The byte offsets just after the last `site-packages/` (or
    // `dist-packages/`) and the last `lib/pythonX.Y/`.
    let mut packages = None;
    let mut stdlib = None;
    let mut offset = 0;
    let mut previous = "";
    for dir in path.split('/') {
        let after = offset + dir.len() + 1;
        // Only directories: a `/` follows.
        if after <= path.len() {
            if dir == "site-packages" || dir == "dist-packages" {
                packages = Some(after);
            }
            if (previous == "lib" || previous == "lib64") && is_python_dir(dir) {
                stdlib = Some(after);
            }
        }
        previous = dir;
        offset = after;
    }
    let rest = |after: usize| (after < path.len()).then(|| &path[after..]);
    if let Some(short) = packages.and_then(rest) {
        (Origin::ThirdParty, short)
    } else if let Some(short) = stdlib.and_then(rest) {
        (Origin::Stdlib, short)
    } else {
        (Origin::Program, path)
    }
}

/// `python3.11`, `python3.13t`, `python3`, `pypy3.10`: an interpreter's
/// library directory.
fn is_python_dir(dir: &str) -> bool {
    let Some(version) = dir
        .strip_prefix("python")
        .or_else(|| dir.strip_prefix("pypy"))
    else {
        return false;
    };
    let digits = version.trim_end_matches(|c: char| c.is_ascii_lowercase());
    !digits.is_empty()
        && digits.starts_with(|c: char| c.is_ascii_digit())
        && digits.chars().all(|c| c.is_ascii_digit() || c == '.')
}

/// The label of a thread: `MainThread (tid 4242)`, or `Thread 4242` if
/// Python's name for it is unknown (or empty).
///
/// ```
/// use rprof_format::labels::thread_label;
///
/// assert_eq!(thread_label(4242, Some("MainThread")), "MainThread (tid 4242)");
/// assert_eq!(thread_label(4243, None), "Thread 4243");
/// ```
pub fn thread_label(tid: u64, name: Option<&str>) -> String {
    match name {
        Some(name) if !name.is_empty() => format!("{name} (tid {tid})"),
        _ => format!("Thread {tid}"),
    }
}

/// A thread's label with its process's in front, `PROCESS / THREAD`, for
/// formats that name a thread with one string; just the thread's label in
/// a single-process profile.
///
/// ```
/// use rprof_format::labels::full_thread_label;
/// use rprof_stats::{ProcessTag, ThreadPaths};
///
/// let mut t = ThreadPaths { tid: 7, name: Some("MainThread".into()), nodes: vec![], spans: vec![], process: None };
/// assert_eq!(full_thread_label(&t), "MainThread (tid 7)");
/// t.process = Some(ProcessTag { pid: 7, label: "worker (pid 7)".into() });
/// assert_eq!(full_thread_label(&t), "worker (pid 7) / MainThread (tid 7)");
/// ```
pub fn full_thread_label(thread: &rprof_stats::ThreadPaths) -> String {
    let t = thread_label(thread.tid, thread.name.as_deref());
    match &thread.process {
        Some(p) => format!("{} / {t}", p.label),
        None => t,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_paths() {
        let cases = [
            ("", ""),
            ("<string>", "<string>"),
            ("<frozen runpy>", "<frozen runpy>"),
            ("<ipython-input-3-abc>", "<ipython-input-3-abc>"),
            ("/usr/lib/python3.11/json/decoder.py", "json/decoder.py"),
            ("/usr/lib64/python3.9/threading.py", "threading.py"),
            (
                "/root/.pyenv/versions/3.13.0/lib/python3.13t/asyncio/events.py",
                "asyncio/events.py",
            ),
            ("/opt/pypy/lib/pypy3.10/os.py", "os.py"),
            (
                "/home/u/.venv/lib/python3.12/site-packages/requests/api.py",
                "requests/api.py",
            ),
            (
                "/usr/lib/python3/dist-packages/yaml/__init__.py",
                "yaml/__init__.py",
            ),
            // The last site-packages wins (vendored environments).
            (
                "/x/site-packages/pip/_vendor/site-packages/rich/text.py",
                "rich/text.py",
            ),
            ("site-packages/six.py", "six.py"),
            // Not a stdlib directory: no `lib/` before it, or not a version.
            ("/srv/python3.11/app.py", "/srv/python3.11/app.py"),
            ("/srv/lib/pythonista/app.py", "/srv/lib/pythonista/app.py"),
            ("/srv/lib/python/app.py", "/srv/lib/python/app.py"),
            // Nothing after the directory: keep the whole path.
            ("/x/site-packages/", "/x/site-packages/"),
            ("/usr/lib/python3.11/", "/usr/lib/python3.11/"),
            ("app/main.py", "app/main.py"),
            ("/srv/app/main.py", "/srv/app/main.py"),
        ];
        for (path, short) in cases {
            assert_eq!(short_path(path), short, "{path}");
        }
    }

    #[test]
    fn labels() {
        let f = Function::python("/usr/lib/python3.11/threading.py", 1002, "_bootstrap");
        assert_eq!(frame_label(&f), "_bootstrap (threading.py:1002)");
        let b = Function::builtin("<method 'append' of 'list' objects>");
        assert_eq!(frame_label(&b), "<method 'append' of 'list' objects>");
        // `~` with a nonzero line is a Python file named `~`, not a builtin.
        let tilde = Function::python("~", 1, "<not a builtin>");
        assert_eq!(frame_label(&tilde), "<not a builtin> (~:1)");
        assert_eq!(thread_label(7, Some("")), "Thread 7");
        let o = |file: &str| origin(&Function::python(file, 1, "f"));
        assert_eq!(o("<frozen runpy>"), Origin::Stdlib);
        assert_eq!(o("<string>"), Origin::Program);
        assert_eq!(
            o("/usr/lib/python3/dist-packages/yaml/__init__.py"),
            Origin::ThirdParty
        );
        assert_eq!(o("/usr/lib64/python3.9/threading.py"), Origin::Stdlib);
        assert_eq!(o("/x/site-packages/"), Origin::Program);
        assert_eq!(origin(&b), Origin::Builtin);
        assert_eq!(thread_label(7, Some("w;1")), "w;1 (tid 7)");
    }
}
