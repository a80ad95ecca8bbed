#!/usr/bin/env python3
"""A per-thread reference profiler with cProfile's exact counting rules.

Usage:
    python reference.py --hook setprofile|monitoring -o OUT.prof SCRIPT [ARGS...]
    python reference.py --hook setprofile|monitoring -o OUT.prof -m MODULE [ARGS...]

It replays what CPython's ``Modules/_lsprof.c`` does on every profile event
(``ptrace_enter_call`` / ``ptrace_leave_call`` / ``Stop`` / ``flush_unmatched``,
recursion levels on entries and on caller sub-entries, builtin labels from
``normalizeUserObj``) and writes a ``.prof`` file in the same format as
``cProfile.Profile.dump_stats`` (``Lib/cProfile.py`` ``snapshot_stats``).

The one deliberate difference from cProfile: every thread has its own
context stack and its own recursion levels, as rprof does.  (cProfile before
3.12 only sees the thread that enabled it; from 3.12 on it sees every thread
but pushes them all onto one stack, CPython PR #138229.)  For single-threaded
code the two are identical, and the differential suite checks that this file
reproduces cProfile's statistics for every non-threaded workload.

Hooks:
  setprofile  ``sys.setprofile`` in the main thread plus ``threading.setprofile``
              for threads started by ``threading`` afterwards: events of a new
              thread begin after ``Thread._bootstrap_inner`` installs the hook
              (the frames already running then -- ``_bootstrap``,
              ``_bootstrap_inner`` -- are never entered, so their returns are
              ignored, exactly like frames running when cProfile is enabled).
  monitoring  (3.12+) a ``sys.monitoring`` tool registered for the same events
              and with the same callbacks as ``_lsprof.c`` 3.12+:
              PY_START/PY_RESUME/PY_THROW -> enter code; PY_RETURN/PY_YIELD/
              PY_UNWIND -> leave code; CALL whose callable is a builtin
              function, or a method descriptor bound to arg0 -> enter builtin;
              C_RETURN/C_RAISE -> leave builtin.  It sees every thread from
              its first event.

The script runs like ``python -m cProfile`` runs it: ``sys.argv`` set to
``[SCRIPT, ARGS...]``, the script's directory inserted at ``sys.path[0]``, and
``exec(compile(source, SCRIPT, 'exec'), globs)`` with fresh ``__main__``
globals; ``-m MODULE`` runs ``exec("run_module(modname, run_name='__main__')")``
exactly as cProfile does.  Nothing of the reference itself appears in the
output: events after the script's ``exec`` returns are dropped (rprof has no
counterpart of cProfile's ``{method 'disable' of '_lsprof.Profiler'
objects}`` entry either).  A ``SystemExit`` from the script is passed
through as this process's exit status after the profile is written (cProfile
swallows it and exits 0).

Only ``sys``, ``os``, ``marshal``, ``time``, ``_thread``, ``types`` and
``ctypes`` (plus ``threading`` for the setprofile hook) are imported before
the script runs.
"""
import marshal
import os
import sys
import time
import types
from _thread import allocate_lock, get_ident

try:
    import ctypes
except ImportError:  # pragma: no cover - ctypes is always there on CPython
    ctypes = None

_BuiltinFunctionType = types.BuiltinFunctionType  # PyCFunction_Type (and subclasses)
_MethodDescriptorType = types.MethodDescriptorType  # PyMethodDescr_Type
_now = time.perf_counter_ns
_NS = 1e-9


# --------------------------------------------------------------------------
# Keys and labels
#
# _lsprof.c keys a Python entry by its code object's address and a builtin by
# its PyMethodDef* (``m_ml``), and labels the builtin from the first call's
# function object (normalizeUserObj).  We key code by id(code) (the entry
# keeps the code alive so the id is never reused) and builtins by the m_ml
# pointer read with ctypes, so two builtins that share a PyMethodDef (e.g.
# every type's ``__new__``, whose label can differ per metatype) share an
# entry exactly as in cProfile.

def _m_ml_reader():
    """Return a function reading PyCFunctionObject.m_ml, or None when the
    object layout is not the expected one (then builtins are keyed by
    label, which only differs from cProfile in contrived cases)."""
    if ctypes is None:
        return None
    head = object.__basicsize__  # sizeof(PyObject): refcnt + type
    ptr = ctypes.sizeof(ctypes.c_void_p)
    try:
        # Layout check: PyCFunctionObject is {PyObject_HEAD; PyMethodDef *m_ml;
        # PyObject *m_self; PyObject *m_module; ...}.  m_self of len is the
        # builtins module; of a bound method it is the instance.
        probe = [].append
        self_of_len = ctypes.c_void_p.from_address(id(len) + head + ptr).value
        self_of_append = ctypes.c_void_p.from_address(id(probe) + head + ptr).value
        if self_of_len != id(len.__self__) or self_of_append != id(probe.__self__):
            return None
        ml1 = ctypes.c_void_p.from_address(id([].append) + head).value
        ml2 = ctypes.c_void_p.from_address(id([1].append) + head).value
        if not ml1 or ml1 != ml2:
            return None
    except Exception:
        return None
    from_address = ctypes.c_void_p.from_address

    def read(fn):
        return from_address(id(fn) + head).value

    return read


_read_m_ml = _m_ml_reader()


def builtin_label(fn):
    """normalizeUserObj() from Modules/_lsprof.c, for a PyCFunction."""
    name = fn.__name__  # m_ml->ml_name
    self = fn.__self__  # m_self (None when NULL)
    if self is None:
        # built-in function: look up the module name
        mod = fn.__module__  # m_module
        modname = None
        if isinstance(mod, str):
            modname = mod
        elif isinstance(mod, types.ModuleType):
            try:
                modname = mod.__name__
            except Exception:
                modname = None
            if not isinstance(modname, str):
                modname = None
        if modname is not None and modname != "builtins":
            return "<%s.%s>" % (modname, name)
        return "<%s>" % (name,)
    # built-in method: try repr(_PyType_Lookup(type(self), name))
    tp = type(self)
    try:
        for klass in type.__dict__["__mro__"].__get__(tp):
            d = type.__dict__["__dict__"].__get__(klass)
            if name in d:
                return repr(d[name])
    except Exception:
        pass
    modname = fn.__module__
    if isinstance(modname, str):
        return "<built-in method %s.%s>" % (modname, name)
    return "<built-in method %s>" % (name,)


def builtin_key(fn):
    if _read_m_ml is not None:
        # Negative, so it can never collide with an id(code) key.
        return -_read_m_ml(fn)
    return builtin_label(fn)


# --------------------------------------------------------------------------
# _lsprof.c's data structures

class Entry(object):
    """ProfilerEntry."""
    __slots__ = ("key", "userobj", "label", "tt", "it", "callcount",
                 "recursivecallcount", "calls")

    def __init__(self, key, userobj, label):
        self.key = key
        self.userobj = userobj  # keeps a code object alive (stable id)
        self.label = label      # pstats key
        self.tt = 0
        self.it = 0
        self.callcount = 0
        self.recursivecallcount = 0
        self.calls = {}         # callee key -> SubEntry (insertion-ordered)


class SubEntry(object):
    """ProfilerSubEntry (the callee's counters under one caller)."""
    __slots__ = ("callee", "tt", "it", "callcount", "recursivecallcount")

    def __init__(self, callee):
        self.callee = callee
        self.tt = 0
        self.it = 0
        self.callcount = 0
        self.recursivecallcount = 0


class Context(object):
    """ProfilerContext."""
    __slots__ = ("entry", "t0", "subt")

    def __init__(self, entry):
        self.entry = entry
        self.subt = 0
        self.t0 = 0


class ThreadState(object):
    """What _lsprof.c keeps once per profiler and we keep once per thread:
    the context stack and the recursion levels (entry->recursionLevel and
    subentry->recursionLevel)."""
    __slots__ = ("stack", "level", "sublevel")

    def __init__(self):
        self.stack = []
        self.level = {}     # entry key -> recursionLevel
        self.sublevel = {}  # (caller key, callee key) -> recursionLevel


class Profiler(object):
    def __init__(self):
        self.entries = {}   # key -> Entry, in creation order
        self.threads = {}   # thread ident -> ThreadState
        self.active = False

    def _state(self):
        tid = get_ident()
        ts = self.threads.get(tid)
        if ts is None:
            ts = self.threads[tid] = ThreadState()
        return ts

    # ptrace_enter_call + initContext.  The hooks are Python code, so another
    # thread can take the GIL in the middle of one; _lsprof.c (and rprof's
    # native hook) never lets that happen inside its bookkeeping.  The lock
    # restores that atomicity (its methods are called from inside the hook,
    # so they are never profiled).
    def enter(self, key, userobj, is_code):
        with _LOCK:
            self._enter(key, userobj, is_code)

    def leave(self, key):
        with _LOCK:
            self._leave(key)

    def _enter(self, key, userobj, is_code):
        entry = self.entries.get(key)
        if entry is None:
            if is_code:
                label = (userobj.co_filename, userobj.co_firstlineno, userobj.co_name)
            else:
                label = ("~", 0, builtin_label(userobj))
                userobj = None
            entry = self.entries[key] = Entry(key, userobj, label)
        ts = self._state()
        stack = ts.stack
        ctx = Context(entry)
        level = ts.level
        level[key] = level.get(key, 0) + 1
        if stack:
            caller = stack[-1].entry
            calls = caller.calls
            if key not in calls:
                calls[key] = SubEntry(entry)
            sk = (caller.key, key)
            sublevel = ts.sublevel
            sublevel[sk] = sublevel.get(sk, 0) + 1
        stack.append(ctx)
        ctx.t0 = _now()

    # ptrace_leave_call
    def _leave(self, key):
        ts = self._state()
        stack = ts.stack
        if not stack:
            return
        ctx = stack.pop()
        entry = self.entries.get(key)
        if entry is not None:
            self._stop(ts, ctx, entry)
        # else: only pop, as _lsprof.c does when getEntry() finds nothing

    # Stop(): ``ctx`` has already been popped; ``entry`` is the entry of the
    # function that left (normally ctx.entry).
    def _stop(self, ts, ctx, entry):
        tt = _now() - ctx.t0
        it = tt - ctx.subt
        stack = ts.stack
        key = entry.key
        if stack:
            stack[-1].subt += tt
        level = ts.level
        lv = level.get(key, 0) - 1
        level[key] = lv
        if lv == 0:
            entry.tt += tt
        else:
            entry.recursivecallcount += 1
        entry.it += it
        entry.callcount += 1
        if stack:
            caller = stack[-1].entry
            sub = caller.calls.get(key)
            if sub is not None:
                sk = (caller.key, key)
                sublevel = ts.sublevel
                slv = sublevel.get(sk, 0) - 1
                sublevel[sk] = slv
                if slv == 0:
                    sub.tt += tt
                else:
                    sub.recursivecallcount += 1
                sub.it += it
                sub.callcount += 1

    # flush_unmatched, for every thread
    def flush(self):
        for tid in sorted(self.threads, key=lambda t: t != MAIN_IDENT):
            ts = self.threads[tid]
            while ts.stack:
                ctx = ts.stack.pop()
                self._stop(ts, ctx, ctx.entry)

    # Lib/cProfile.py Profile.snapshot_stats() over _lsprof getstats():
    # entries with callcount == 0 are skipped; sub-entries are not; an entry
    # whose label repeats overwrites the earlier one while caller edges with
    # the same caller label are summed.
    def snapshot(self):
        stats = {}
        callersdicts = {}
        live = [e for e in self.entries.values() if e.callcount != 0]
        for e in live:
            callers = {}
            callersdicts[id(e)] = callers
            stats[e.label] = (e.callcount - e.recursivecallcount, e.callcount,
                              e.it * _NS, e.tt * _NS, callers)
        for e in live:
            func = e.label
            for sub in e.calls.values():
                callers = callersdicts.get(id(sub.callee))
                if callers is None:
                    continue
                nc = sub.callcount
                cc = nc - sub.recursivecallcount
                tt = sub.it * _NS
                ct = sub.tt * _NS
                if func in callers:
                    prev = callers[func]
                    nc += prev[0]
                    cc += prev[1]
                    tt += prev[2]
                    ct += prev[3]
                callers[func] = nc, cc, tt, ct
        return stats


MAIN_IDENT = get_ident()
_LOCK = allocate_lock()
PROF = Profiler()
_enter = PROF.enter
_leave = PROF.leave


# --------------------------------------------------------------------------
# Hook: sys.setprofile (+ threading.setprofile)

def _profile_cb(frame, event, arg):
    # _lsprof.c profiler_callback (pre-3.12); on 3.12+ the same events come
    # through Python/legacy_tracing.c.
    if not PROF.active:
        return
    if event == "call":
        code = frame.f_code
        _enter(id(code), code, True)
    elif event == "return":
        _leave(id(frame.f_code))
    elif event == "c_call":
        if isinstance(arg, _BuiltinFunctionType):
            _enter(builtin_key(arg), arg, False)
    elif event == "c_return" or event == "c_exception":
        if isinstance(arg, _BuiltinFunctionType):
            _leave(builtin_key(arg))


# --------------------------------------------------------------------------
# Hook: sys.monitoring (3.12+)

_MISSING = getattr(getattr(sys, "monitoring", None), "MISSING", object())


def _get_cfunc(callable_, self_arg):
    # get_cfunc_from_callable() in _lsprof.c 3.12+
    if isinstance(callable_, _BuiltinFunctionType):
        return callable_
    if type(callable_) is _MethodDescriptorType:
        if self_arg is _MISSING:
            return None
        try:
            meth = callable_.__get__(self_arg, type(self_arg))
        except Exception:
            return None
        if isinstance(meth, _BuiltinFunctionType):
            return meth
    return None


def _mon_start(code, offset, *rest):  # PY_START, PY_RESUME, PY_THROW
    if PROF.active:
        _enter(id(code), code, True)


def _mon_return(code, offset, *rest):  # PY_RETURN, PY_YIELD, PY_UNWIND
    if PROF.active:
        _leave(id(code))


def _mon_call(code, offset, callable_, self_arg):  # CALL
    if PROF.active:
        cf = _get_cfunc(callable_, self_arg)
        if cf is not None:
            _enter(builtin_key(cf), cf, False)


def _mon_creturn(code, offset, callable_, self_arg):  # C_RETURN, C_RAISE
    if PROF.active:
        cf = _get_cfunc(callable_, self_arg)
        if cf is not None:
            _leave(builtin_key(cf))


class Hook(object):
    def __init__(self, kind):
        self.kind = kind
        self.tool = None
        self.threading = None

    def install(self):
        if self.kind == "setprofile":
            import threading
            self.threading = threading
            threading.setprofile(_profile_cb)
            PROF.active = True
            sys.setprofile(_profile_cb)
        else:
            mon = sys.monitoring
            E = mon.events
            table = [
                (E.PY_START, _mon_start), (E.PY_RESUME, _mon_start),
                (E.PY_THROW, _mon_start),
                (E.PY_RETURN, _mon_return), (E.PY_YIELD, _mon_return),
                (E.PY_UNWIND, _mon_return),
                (E.CALL, _mon_call),
                (E.C_RETURN, _mon_creturn), (E.C_RAISE, _mon_creturn),
            ]
            for tool in (mon.PROFILER_ID, 3, 4, 5):
                if mon.get_tool(tool) is None:
                    break
            else:
                raise SystemExit("reference.py: no free sys.monitoring tool id")
            mon.use_tool_id(tool, "rprof-reference")
            self.tool = tool
            mask = 0
            for event, cb in table:
                mon.register_callback(tool, event, cb)
                mask |= event
            PROF.active = True
            mon.set_events(tool, mask)

    def uninstall(self):
        # Everything from here on belongs to the reference, not the script
        # (PROF.active is already False).
        if self.kind == "setprofile":
            sys.setprofile(None)
            self.threading.setprofile(None)
        else:
            mon = sys.monitoring
            mon.set_events(self.tool, 0)
            for event in (1 << i for i in range(17)):
                try:
                    mon.register_callback(self.tool, event, None)
                except ValueError:
                    pass
            mon.free_tool_id(self.tool)


# --------------------------------------------------------------------------

USAGE = ("usage: reference.py --hook setprofile|monitoring -o OUT.prof "
         "(-m MODULE | SCRIPT) [ARGS...]")


def parse(argv):
    hook = None
    out = None
    module = False
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--hook" and i + 1 < len(argv):
            hook = argv[i + 1]
            i += 2
        elif a.startswith("--hook="):
            hook = a.split("=", 1)[1]
            i += 1
        elif a in ("-o", "--outfile") and i + 1 < len(argv):
            out = argv[i + 1]
            i += 2
        elif a == "-m":
            module = True
            i += 1
        elif a in ("-h", "--help"):
            print(USAGE)
            sys.exit(0)
        else:
            break
    rest = argv[i:]
    if hook not in ("setprofile", "monitoring") or not out or not rest:
        sys.stderr.write(USAGE + "\n")
        sys.exit(2)
    if hook == "monitoring" and not hasattr(sys, "monitoring"):
        sys.stderr.write("reference.py: --hook monitoring needs Python 3.12+\n")
        sys.exit(2)
    return hook, os.path.abspath(out), module, rest


def main():
    hook_kind, outfile, module, args = parse(sys.argv[1:])
    sys.argv[:] = args
    # `python -m cProfile` starts with the current directory in sys.path[0]
    # (that is how `-m` works); `python reference.py` starts with this file's
    # directory there.  Mirror cProfile's sys.path so that imports resolve
    # the same way (and `-m MODULE` finds MODULE in the current directory).
    sys.path[0] = os.getcwd()
    if module:
        import runpy
        code = "run_module(modname, run_name='__main__')"
        globs = {"run_module": runpy.run_module, "modname": args[0]}
    else:
        progname = args[0]
        sys.path.insert(0, os.path.dirname(progname))
        with open(progname, "rb") as fp:
            code = compile(fp.read(), progname, "exec")
        spec = type(sys.__spec__)(name="__main__", loader=None, origin=progname)
        globs = {
            "__spec__": spec,
            "__file__": spec.origin,
            "__name__": spec.name,
            "__package__": None,
            "__cached__": None,
        }
    hook = Hook(hook_kind)
    exit_code = None
    hook.install()
    try:
        exec(code, globs, None)
    except SystemExit as exc:
        exit_code = exc.code
    finally:
        # Stop recording before anything else is called: the call to
        # uninstall() itself must not be entered.
        PROF.active = False
        hook.uninstall()
        with _LOCK:
            PROF.flush()
        stats = PROF.snapshot()
        with open(outfile, "wb") as f:
            marshal.dump(stats, f)
    if exit_code is not None:
        sys.exit(exit_code)


if __name__ == "__main__":
    main()
