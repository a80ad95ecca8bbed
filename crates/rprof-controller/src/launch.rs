//! `rprof run`: starts a script or module under the shim, the way
//! `python -m cProfile` runs it.
//!
//! The interpreter is started with a small bootstrap (`-c`) that loads the
//! shim with `ctypes.PyDLL` (so the GIL is held while it installs its
//! hooks), sets `sys.argv` and `sys.path[0]` as Python itself would for
//! the script or module, compiles it, starts the capture and `exec`s it,
//! and stops the capture in a `finally`. The profiled part is thus shaped
//! exactly like cProfile's: a call to `builtins.exec` running the script's
//! `<module>` (or, with `-m`, `runpy.run_module` called from `<string>`).
//!
//! Where `python -m cProfile` and `python` itself disagree, rprof does what
//! `python` does, so the program behaves as it does unprofiled: the main
//! script's `__file__` and code filenames are absolute from 3.9 on, it runs
//! in a real `__main__` module, and `-m` runs with `alter_sys=True`
//! (`sys.argv[0]` is the module's file, as with `python -m`).

use crate::ControllerError;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

/// What to run.
#[derive(Clone, Debug)]
pub enum Target {
    /// A script file.
    Script(PathBuf),
    /// A module, as with `python -m`.
    Module(String),
}

/// Everything needed to start the target.
#[derive(Clone, Debug)]
pub struct Launch {
    /// The interpreter.
    pub python: OsString,
    /// The script or module.
    pub target: Target,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// `--subprocesses`: the environment that makes children announce
    /// their rings ([`crate::follow::Children::env`]).
    pub follow_env: Vec<(OsString, OsString)>,
}

/// Exit status the bootstrap uses when the shim cannot start.
pub const SHIM_FAILED_EXIT: i32 = 121;

const BOOTSTRAP: &str = r#"
import sys
def _rprof_main():
    ours = {sys._getframe(1).f_code, _rprof_main.__code__}
    shim, ring, mode, target = sys.argv[1:5]
    args = sys.argv[5:]
    if mode == "module":
        import runpy  # `python -m` imports it too
    before = set(sys.modules)
    import ctypes, io, os
    lib = ctypes.PyDLL(shim)
    start, stop, last_error = lib.rprof_start, lib.rprof_stop, lib.rprof_last_error
    sys.argv[:] = [target] + args
    if hasattr(sys, "orig_argv"):
        sys.orig_argv[1:] = (["-m"] if mode == "module" else []) + sys.argv
    if mode == "module":
        sys.path[0] = os.getcwd()
        code = compile("run_module(modname, run_name='__main__', alter_sys=True)", "<string>", "exec")
        ours.add(code)
        globs = {"run_module": runpy.run_module, "modname": target}
    else:
        sys.path[0] = os.path.dirname(os.path.realpath(target))
        # Python makes the main script's path absolute from 3.9 on.
        filename = os.path.abspath(target) if sys.version_info >= (3, 9) else target
        with io.open_code(target) as f:
            code = compile(f.read(), filename, "exec")
        # `__main__` as python makes it for a script, key order included:
        # a SourceFileLoader, `__annotations__` where the interpreter puts
        # it, the builtins module (not its dict, which exec would insert).
        real = vars(sys.modules["__main__"])
        main = type(sys)("__main__")
        main.__loader__ = sys.modules["_frozen_importlib_external"].SourceFileLoader("__main__", filename)
        if "__annotations__" in real:
            main.__annotations__ = {}
        main.__builtins__ = sys.modules["builtins"]
        main.__file__ = filename
        if sys.version_info < (3, 15):
            main.__cached__ = None
        sys.modules["__main__"] = main
        globs = main.__dict__
    loaded = set(sys.modules) - before
    os.environ.pop("RPROF_FOLLOW_MAIN", None)  # for children: they are not the main process
    follow = os.environ.get("RPROF_FOLLOW")
    if follow and lib.rprof_follow(os.fsencode(follow)) != 0:
        sys.stderr.write("rprof: warning: cannot follow the children of PID %d: rprof's socket is unreachable\n" % os.getpid())
    if start(os.fsencode(ring)) != 0:
        buf = ctypes.create_string_buffer(256)
        last_error(buf, 256)
        sys.stderr.write("rprof: the profiler could not start: %s\n" % buf.value.decode("utf-8", "replace"))
        sys.stderr.flush()
        os._exit(SHIM_FAILED_EXIT)
    # What only this bootstrap needed (ctypes and its helpers) is taken out
    # of sys.modules, so that the program finds what plain python has. What
    # the shim imported for its hook (threading, with setprofile on a
    # free-threaded build) stays.
    for name in loaded:
        sys.modules.pop(name, None)
    # From 3.13 on, `python -c` imports linecache (to show -c source in
    # tracebacks); `python SCRIPT` does not.
    if sys.version_info >= (3, 13) and "traceback" not in sys.modules:
        sys.modules.pop("linecache", None)
    try:
        exec(code, globs)
    except SystemExit:
        raise
    except BaseException:
        # The traceback python prints must not show this bootstrap.
        previous = sys.excepthook
        def excepthook(t, v, tb):
            sys.excepthook = previous
            while tb is not None and tb.tb_frame.f_code in ours:
                tb = tb.tb_next
            if isinstance(v, BaseException):
                v.__traceback__ = tb
            previous(t, v, tb)
        ours.add(excepthook.__code__)
        sys.excepthook = excepthook
        raise
    finally:
        stop()
_rprof_main()
"#;

impl Launch {
    /// Starts the interpreter on the target with the shim at `shim`
    /// recording into the ring at `ring`.
    pub fn spawn(&self, shim: &Path, ring: &Path) -> Result<Child, ControllerError> {
        let (mode, target): (&str, OsString) = match &self.target {
            Target::Script(p) => {
                std::fs::File::open(p).map_err(|e| ControllerError::Script {
                    path: p.display().to_string(),
                    source: e,
                })?;
                ("script", p.clone().into_os_string())
            }
            Target::Module(m) => ("module", m.into()),
        };
        let code = BOOTSTRAP.replace("SHIM_FAILED_EXIT", &SHIM_FAILED_EXIT.to_string());
        let mut cmd = Command::new(&self.python);
        if self.follow_env.is_empty() {
            // Not following: an outer `rprof run --subprocesses` must not
            // pick up this one's processes through the bootstrap.
            for var in [
                crate::follow::ENV_SPEC,
                crate::follow::ENV_SHIM,
                crate::follow::ENV_MAIN,
            ] {
                cmd.env_remove(var);
            }
        }
        cmd.arg("-c")
            .arg(code)
            .arg(shim)
            .arg(ring)
            .arg(mode)
            .arg(target)
            .args(&self.args)
            .envs(self.follow_env.iter().map(|(k, v)| (k, v)))
            .spawn()
            .map_err(|e| ControllerError::Python {
                python: self.python.to_string_lossy().into_owned(),
                source: e,
            })
    }
}
