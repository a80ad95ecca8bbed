//! Threads `threading` starts after a setprofile capture began, when
//! `threading` was not imported yet at its start.
//!
//! The setprofile hook reaches threads started later through
//! `threading.setprofile(bootstrap)` ([`crate::hooks`]). When the program
//! has not imported `threading`, importing it from the capture's start
//! would run the import machinery in the attach agent: every file the
//! import reads releases the GIL, and on a busy target each release costs
//! a whole 5 ms switch interval to get it back (130–156 ms attaches). On
//! 3.8–3.12 it would also make the agent thread `threading`'s "main
//! thread" (`_MainThread` takes the importing thread's identity).
//!
//! So nothing is imported: [`defer`] wraps `_thread.start_new_thread` and
//! `_thread.start_joinable_thread` (3.13+), in the builtin `_thread`
//! module, which is always loaded. `threading` binds them when it is
//! imported (`_start_new_thread = _thread.start_new_thread`), so every
//! thread it starts goes through the wrapper, which, on its first call
//! after `threading` has finished importing and *before* the thread exists,
//! sets `threading._profile_hook` to the bootstrap, exactly what
//! `threading.setprofile` does. The new thread then installs the native hook
//! from `_bootstrap_inner`, as when `threading` was hooked at start: a
//! thread started after the capture began is profiled from its first call
//! either way. If the program set a profile hook of its own in `threading`
//! meanwhile, it is left alone (as a program's hook set after an eager
//! install would have replaced rprof's).
//!
//! [`undefer`] (on stop, and in a forked child) puts the original functions
//! back in `_thread` and in `threading`, and takes the bootstrap out of
//! `threading` if it is still there. A module that copied the wrapper
//! meanwhile keeps it: it only forwards the call once no capture runs (the
//! shim is never unloaded).
//!
//! GIL builds only: on free-threaded builds several threads could run the
//! wrapper at once, so there `threading` is imported at start as before.

use crate::api::{Api, PyMethodDef, PyObj};
use crate::hooks::{GilCell, ACTIVE, API};
use core::ffi::{c_int, c_void, CStr};
use core::ptr;
use core::sync::atomic::{AtomicPtr, Ordering::Relaxed};

/// `METH_VARARGS | METH_KEYWORDS`.
const METH_VARARGS_KEYWORDS: c_int = 0x0001 | 0x0002;

/// The `_thread` functions `threading` binds at import.
const WRAPPED: [&CStr; 2] = [c"start_new_thread", c"start_joinable_thread"];

struct Defs([PyMethodDef; 2]);
// SAFETY: immutable after construction; CPython only reads them.
unsafe impl Sync for Defs {}

static DEFS: Defs = Defs([
    PyMethodDef {
        ml_name: c"start_new_thread".as_ptr(),
        ml_meth: wrapper as *const c_void,
        ml_flags: METH_VARARGS_KEYWORDS,
        ml_doc: ptr::null(),
    },
    PyMethodDef {
        ml_name: c"start_joinable_thread".as_ptr(),
        ml_meth: wrapper as *const c_void,
        ml_flags: METH_VARARGS_KEYWORDS,
        ml_doc: ptr::null(),
    },
]);

/// One wrapped function of `_thread`.
struct Wrapped {
    name: &'static CStr,
    /// Owned references.
    original: PyObj,
    wrapper: PyObj,
}

/// The deferred hooking of `threading`, while a capture runs.
struct Deferred {
    /// The `_thread` module (owned).
    thread_module: PyObj,
    wrapped: Vec<Wrapped>,
    /// The bootstrap to put in `threading` (owned).
    bootstrap: PyObj,
    /// `threading` once the bootstrap was put in it (owned), or NULL.
    threading: PyObj,
    /// `threading` was looked at and had a hook of the program's own.
    settled: bool,
}

static DEFERRED: GilCell<Option<Deferred>> = GilCell::new(None);

/// `PyObject_Call`, resolved on first use.
static OBJECT_CALL: AtomicPtr<c_void> = AtomicPtr::new(ptr::null_mut());

type ObjectCall = unsafe extern "C" fn(PyObj, PyObj, PyObj) -> PyObj;

/// `sys.modules[name]` if that module exists and has finished importing
/// (its `__spec__._initializing` is not true), as a new reference.
///
/// # Safety
/// GIL held. Runs no Python code (attribute reads of a module and of its
/// `ModuleSpec`, which define no `__getattr__` of their own).
pub unsafe fn loaded_module(api: &Api, name: &CStr) -> Option<PyObj> {
    // SAFETY: GIL held (caller); the dict item is borrowed and increfed
    // before anything else runs; errors are cleared.
    unsafe {
        let modules = (api.import_get_module_dict)();
        if modules.is_null() {
            return None;
        }
        let m = (api.dict_get_item_string)(modules, name.as_ptr());
        if m.is_null() {
            return None;
        }
        (api.py_incref)(m);
        let spec = (api.getattr_string)(m, c"__spec__".as_ptr());
        let mut initializing = false;
        if spec.is_null() {
            (api.err_clear)();
        } else {
            let flag = (api.getattr_string)(spec, c"_initializing".as_ptr());
            if flag.is_null() {
                (api.err_clear)();
            } else {
                // A bool: 1 while the module's code runs.
                initializing = (api.long_as_long)(flag) == 1;
                (api.err_clear)();
                (api.py_decref)(flag);
            }
            (api.py_decref)(spec);
        }
        if initializing {
            (api.py_decref)(m);
            return None;
        }
        Some(m)
    }
}

/// Wraps `_thread`'s thread-starting functions so that `threading`, when
/// the program imports it, gets `bootstrap` as its profile hook before its
/// first thread starts. Returns false (and changes nothing) where that
/// cannot be done: the caller then imports `threading` itself.
///
/// # Safety
/// GIL held; a GIL build; no deferred hooking is in place.
pub unsafe fn defer(api: &Api, bootstrap: PyObj) -> bool {
    if api.free_threaded() {
        return false;
    }
    // SAFETY: GIL held (caller); references are owned by `Deferred` or
    // released here.
    unsafe {
        let Some(thread_module) = loaded_module(api, c"_thread") else {
            return false;
        };
        let mut wrapped = Vec::new();
        for (i, name) in WRAPPED.iter().enumerate() {
            let original = (api.getattr_string)(thread_module, name.as_ptr());
            if original.is_null() {
                (api.err_clear)();
                continue;
            }
            let def = ptr::addr_of!(DEFS.0[i]).cast_mut();
            let w = (api.cfunction_new_ex)(def, original, ptr::null_mut());
            if w.is_null() || (api.setattr_string)(thread_module, name.as_ptr(), w) < 0 {
                (api.err_clear)();
                if !w.is_null() {
                    (api.py_decref)(w);
                }
                (api.py_decref)(original);
                continue;
            }
            wrapped.push(Wrapped {
                name,
                original,
                wrapper: w,
            });
        }
        if wrapped.is_empty() {
            (api.py_decref)(thread_module);
            return false;
        }
        (api.py_incref)(bootstrap);
        *DEFERRED.get() = Some(Deferred {
            thread_module,
            wrapped,
            bootstrap,
            threading: ptr::null_mut(),
            settled: false,
        });
    }
    true
}

/// Whether a deferred hooking is in place (for the capture's owner).
///
/// # Safety
/// GIL held.
pub unsafe fn deferred() -> bool {
    // SAFETY: GIL held (caller).
    unsafe { DEFERRED.get_ref().is_some() }
}

/// Undoes [`defer`]: the original functions go back into `_thread` and
/// `threading` (where they are still the wrappers), and the bootstrap out
/// of `threading` (where it is still the hook). Does nothing if nothing
/// was deferred.
///
/// # Safety
/// GIL held.
pub unsafe fn undefer(api: &Api) {
    // SAFETY: GIL held (caller); the state is moved out before any call
    // that could run Python code (a dict store may free an object).
    unsafe {
        let Some(d) = DEFERRED.get().take() else {
            return;
        };
        let threading = match d.threading.is_null() {
            true => loaded_module(api, c"threading").unwrap_or(ptr::null_mut()),
            false => {
                (api.py_incref)(d.threading);
                d.threading
            }
        };
        for w in &d.wrapped {
            put_back(api, d.thread_module, w.name, w.wrapper, w.original);
            if !threading.is_null() {
                let bound = if w.name == c"start_new_thread" {
                    c"_start_new_thread"
                } else {
                    c"_start_joinable_thread"
                };
                put_back(api, threading, bound, w.wrapper, w.original);
            }
        }
        if !d.threading.is_null() {
            let current = (api.getattr_string)(d.threading, c"_profile_hook".as_ptr());
            if current.is_null() {
                (api.err_clear)();
            } else {
                if current == d.bootstrap
                    && (api.setattr_string)(d.threading, c"_profile_hook".as_ptr(), api.none) < 0
                {
                    (api.err_clear)();
                }
                (api.py_decref)(current);
            }
            (api.py_decref)(d.threading);
        }
        if !threading.is_null() {
            (api.py_decref)(threading);
        }
        for w in d.wrapped {
            (api.py_decref)(w.wrapper);
            (api.py_decref)(w.original);
        }
        (api.py_decref)(d.bootstrap);
        (api.py_decref)(d.thread_module);
    }
}

/// `module.name = original` if `module.name` is `wrapper`.
///
/// # Safety
/// GIL held; live objects.
unsafe fn put_back(api: &Api, module: PyObj, name: &CStr, wrapper: PyObj, original: PyObj) {
    // SAFETY: GIL held (caller); the attribute read is released.
    unsafe {
        let current = (api.getattr_string)(module, name.as_ptr());
        if current.is_null() {
            (api.err_clear)();
            return;
        }
        if current == wrapper && (api.setattr_string)(module, name.as_ptr(), original) < 0 {
            (api.err_clear)();
        }
        (api.py_decref)(current);
    }
}

/// Before a thread starts: hooks `threading` if it is now imported and not
/// hooked yet.
///
/// # Safety
/// GIL held.
unsafe fn hook_threading_now(api: &Api) {
    // SAFETY: GIL held (caller). The borrow of DEFERRED ends before the
    // one call that may run Python code (freeing the old `_profile_hook`
    // value, which is None here: immortal or static).
    unsafe {
        let Some(d) = DEFERRED.get().as_mut() else {
            return;
        };
        if !d.threading.is_null() || d.settled {
            return;
        }
        let Some(threading) = loaded_module(api, c"threading") else {
            return;
        };
        let current = (api.getattr_string)(threading, c"_profile_hook".as_ptr());
        if current.is_null() {
            (api.err_clear)();
            (api.py_decref)(threading);
            return;
        }
        let free = current == api.none;
        (api.py_decref)(current);
        if !free {
            // The program set a hook of its own: leave it.
            d.settled = true;
            (api.py_decref)(threading);
            return;
        }
        if (api.setattr_string)(threading, c"_profile_hook".as_ptr(), d.bootstrap) < 0 {
            (api.err_clear)();
            (api.py_decref)(threading);
            return;
        }
        d.threading = threading;
    }
}

/// The wrapper of `_thread.start_new_thread` / `start_joinable_thread`:
/// `self` is the original function.
unsafe extern "C" fn wrapper(original: PyObj, args: PyObj, kwargs: PyObj) -> PyObj {
    let mut call = OBJECT_CALL.load(Relaxed);
    if call.is_null() {
        // SAFETY: dlsym only reads the name.
        call = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"PyObject_Call".as_ptr()) };
        OBJECT_CALL.store(call, Relaxed);
    }
    // SAFETY: called by CPython with the GIL held; API is only written by
    // hooks::start (under the GIL), and the shim's wrappers exist only
    // after it resolved the API. PyObject_Call is CPython's, with this
    // signature; `args` is a tuple and `kwargs` a dict or NULL.
    unsafe {
        if ACTIVE.load(Relaxed) {
            if let Some(api) = API.get_ref().as_ref() {
                hook_threading_now(api);
            }
        }
        if call.is_null() {
            return ptr::null_mut();
        }
        let call = core::mem::transmute::<*mut c_void, ObjectCall>(call);
        call(original, args, kwargs)
    }
}
