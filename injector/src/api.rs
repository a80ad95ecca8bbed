//! The slice of CPython's C API the shim uses, resolved at run time.
//!
//! The shim links against no libpython: one build serves every CPython from
//! 3.8 on, shared-library builds (pyenv) and executables with libpython
//! linked in (Debian's `python3.11`) alike. Every symbol is looked up with
//! `dlsym(RTLD_DEFAULT, …)` in the process the shim was loaded into.
//!
//! Struct layouts are avoided wherever a function can do the job. Three
//! fields are read directly because the hot path cannot afford a call, and
//! none of them at an offset fixed per version: each is *probed* when the
//! API is resolved, on objects whose value the C API gives, and the probe
//! must agree on two objects (see [`Layout`]).
//!
//! * `ob_type`: located on `None` and on a fresh `str` (the object header
//!   is 16 bytes in GIL builds, 32 in free-threaded ones). An interpreter
//!   where it cannot be found is refused with a clear error.
//! * `m_ml` of a builtin function object, which cProfile keys builtins by
//!   and which no API exposes: located on `builtins.len` and checked on
//!   `builtins.abs`; if it cannot be, builtins are keyed by their C function
//!   (coarser, but stable).
//! * `f_code` of a 3.8–3.10 frame, and on 3.11 that of the interpreter
//!   frame it points to, checked on the first frame against
//!   `PyFrame_GetCode` or the frame's `f_code` attribute; from 3.12 on the
//!   API is used (and only by `--hook setprofile`).

use core::ffi::{c_char, c_int, c_long, c_void, CStr};
use core::ptr;
use core::sync::atomic::{AtomicU8, Ordering::Relaxed};

/// A `PyObject *`.
pub type PyObj = *mut c_void;

/// `Py_tracefunc`.
pub type TraceFunc = unsafe extern "C" fn(PyObj, PyObj, c_int, PyObj) -> c_int;

/// `PyMethodDef`, part of the stable ABI.
#[repr(C)]
pub struct PyMethodDef {
    pub ml_name: *const c_char,
    pub ml_meth: *const c_void,
    pub ml_flags: c_int,
    pub ml_doc: *const c_char,
}

pub const METH_VARARGS: c_int = 0x0001;
pub const METH_FASTCALL: c_int = 0x0080;

pub const PY_TRACE_CALL: c_int = 0;
pub const PY_TRACE_RETURN: c_int = 3;
pub const PY_TRACE_C_CALL: c_int = 4;
pub const PY_TRACE_C_EXCEPTION: c_int = 5;
pub const PY_TRACE_C_RETURN: c_int = 6;

/// How many words into an object the probes look.
const PROBE_WORDS: usize = 8;
/// Byte offset of `f_code` in a 3.8–3.10 `PyFrameObject` (after
/// `PyObject_VAR_HEAD` and `f_back`).
const F_CODE_OFFSET_38: usize = 32;
/// Byte offset of `f_frame` (the `_PyInterpreterFrame *`) in a 3.11
/// `PyFrameObject`, and of `f_code` in that `_PyInterpreterFrame` (after
/// `f_func`, `f_globals`, `f_builtins`, `f_locals`).
const F_FRAME_OFFSET_311: usize = 24;
const F_CODE_IN_FRAME_311: usize = 32;
const DIRECT_UNKNOWN: u8 = 0;
const DIRECT_YES: u8 = 1;
const DIRECT_NO: u8 = 2;
/// 3.11: `f_code` read through `f_frame`.
const DIRECT_311: u8 = 3;

macro_rules! api {
    (required { $( $field:ident : $name:literal => fn($($arg:ty),*) $(-> $ret:ty)? ;)* }
     optional { $( $ofield:ident : $oname:literal => fn($($oarg:ty),*) $(-> $oret:ty)? ;)* }
     data { $( $dfield:ident : $dname:literal ;)* }
    ) => {
        /// Function pointers and type objects of the running interpreter.
        pub struct Api {
            /// `(major, minor, micro)`.
            pub version: (u32, u32, u32),
            /// Probed field offsets.
            layout: Layout,
            /// Whether `f_code` is read at [`F_CODE_OFFSET_38`] (checked on
            /// the first frame).
            f_code_direct: AtomicU8,
            $( pub $field: unsafe extern "C" fn($($arg),*) $(-> $ret)?, )*
            $( pub $ofield: Option<unsafe extern "C" fn($($oarg),*) $(-> $oret)?>, )*
            $( pub $dfield: PyObj, )*
        }

        impl Api {
            /// Resolves every symbol.
            ///
            /// # Safety
            /// Must run in a process that hosts a CPython interpreter, with
            /// the GIL held (it calls into Python to validate offsets).
            pub unsafe fn resolve() -> Result<Api, &'static str> {
                let mut api = Api {
                    version: (0, 0, 0),
                    layout: Layout::default(),
                    f_code_direct: AtomicU8::new(DIRECT_UNKNOWN),
                    $( $field: {
                        let p = sym(concat!($name, "\0"));
                        if p.is_null() {
                            return Err(concat!("symbol ", $name, " not found: is this CPython?"));
                        }
                        // SAFETY: the symbol is CPython's function of this
                        // name, whose C signature is the one declared here.
                        unsafe { core::mem::transmute::<*mut c_void, unsafe extern "C" fn($($arg),*) $(-> $ret)?>(p) }
                    }, )*
                    $( $ofield: {
                        let p = sym(concat!($oname, "\0"));
                        if p.is_null() {
                            None
                        } else {
                            // SAFETY: as above.
                            Some(unsafe { core::mem::transmute::<*mut c_void, unsafe extern "C" fn($($oarg),*) $(-> $oret)?>(p) })
                        }
                    }, )*
                    $( $dfield: {
                        let p = sym(concat!($dname, "\0"));
                        if p.is_null() {
                            return Err(concat!("symbol ", $dname, " not found: is this CPython?"));
                        }
                        p
                    }, )*
                };
                // SAFETY: Py_GetVersion returns a static NUL-terminated string.
                let v = unsafe { CStr::from_ptr((api.py_get_version)()) };
                api.version = parse_version(v.to_bytes()).ok_or("cannot parse Py_GetVersion()")?;
                // SAFETY: the caller holds the GIL.
                api.layout.ob_type_words = unsafe { api.probe_ob_type() }.ok_or(
                    "unknown object layout: ob_type was not found in the header of None or of a str; this CPython build is not supported",
                )?;
                // SAFETY: the caller holds the GIL; ob_type is now known.
                api.layout.m_ml_words = unsafe { api.probe_m_ml() };
                Ok(api)
            }
        }
    };
}

api! {
    required {
    py_get_version: "Py_GetVersion" => fn() -> *const c_char;
    py_incref: "Py_IncRef" => fn(PyObj);
    py_decref: "Py_DecRef" => fn(PyObj);
    eval_set_profile: "PyEval_SetProfile" => fn(Option<TraceFunc>, PyObj);
    interp_head: "PyInterpreterState_Head" => fn() -> PyObj;
    interp_next: "PyInterpreterState_Next" => fn(PyObj) -> PyObj;
    thread_get: "PyThreadState_Get" => fn() -> PyObj;
    interp_thread_head: "PyInterpreterState_ThreadHead" => fn(PyObj) -> PyObj;
    thread_next: "PyThreadState_Next" => fn(PyObj) -> PyObj;
    thread_swap: "PyThreadState_Swap" => fn(PyObj) -> PyObj;
    type_is_subtype: "PyType_IsSubtype" => fn(PyObj, PyObj) -> c_int;
    getattr_string: "PyObject_GetAttrString" => fn(PyObj, *const c_char) -> PyObj;
    setattr_string: "PyObject_SetAttrString" => fn(PyObj, *const c_char, PyObj) -> c_int;
    unicode_as_utf8_and_size: "PyUnicode_AsUTF8AndSize" => fn(PyObj, *mut isize) -> *const c_char;
    unicode_from_string: "PyUnicode_FromString" => fn(*const c_char) -> PyObj;
    unicode_compare_ascii: "PyUnicode_CompareWithASCIIString" => fn(PyObj, *const c_char) -> c_int;
    long_as_long: "PyLong_AsLong" => fn(PyObj) -> c_long;
    long_from_long: "PyLong_FromLong" => fn(c_long) -> PyObj;
    object_repr: "PyObject_Repr" => fn(PyObj) -> PyObj;
    object_str: "PyObject_Str" => fn(PyObj) -> PyObj;
    object_call_object: "PyObject_CallObject" => fn(PyObj, PyObj) -> PyObj;
    tuple_new: "PyTuple_New" => fn(isize) -> PyObj;
    tuple_set_item: "PyTuple_SetItem" => fn(PyObj, isize, PyObj) -> c_int;
    tuple_get_item: "PyTuple_GetItem" => fn(PyObj, isize) -> PyObj;
    tuple_size: "PyTuple_Size" => fn(PyObj) -> isize;
    err_fetch: "PyErr_Fetch" => fn(*mut PyObj, *mut PyObj, *mut PyObj);
    err_restore: "PyErr_Restore" => fn(PyObj, PyObj, PyObj);
    err_clear: "PyErr_Clear" => fn();
    err_occurred: "PyErr_Occurred" => fn() -> PyObj;
    type_lookup: "_PyType_Lookup" => fn(PyObj, PyObj) -> PyObj;
    module_get_name_object: "PyModule_GetNameObject" => fn(PyObj) -> PyObj;
    import_module: "PyImport_ImportModule" => fn(*const c_char) -> PyObj;
    cfunction_new_ex: "PyCFunction_NewEx" => fn(*mut PyMethodDef, PyObj, PyObj) -> PyObj;
    cfunction_get_self: "PyCFunction_GetSelf" => fn(PyObj) -> PyObj;
    cfunction_get_function: "PyCFunction_GetFunction" => fn(PyObj) -> *const c_void;
    gil_ensure: "PyGILState_Ensure" => fn() -> c_int;
    import_get_module_dict: "PyImport_GetModuleDict" => fn() -> PyObj;
    dict_get_item_string: "PyDict_GetItemString" => fn(PyObj, *const c_char) -> PyObj;
    dict_next: "PyDict_Next" => fn(PyObj, *mut isize, *mut PyObj, *mut PyObj) -> c_int;
    gil_release: "PyGILState_Release" => fn(c_int);
    }
    optional {
        frame_get_code: "PyFrame_GetCode" => fn(PyObj) -> PyObj;
        eval_set_profile_tstate: "_PyEval_SetProfile" => fn(PyObj, Option<TraceFunc>, PyObj) -> c_int;
        eval_set_profile_all: "PyEval_SetProfileAllThreads" => fn(Option<TraceFunc>, PyObj);
        interp_main: "PyInterpreterState_Main" => fn() -> PyObj;
        thread_get_id: "PyThreadState_GetID" => fn(PyObj) -> u64;
        // Exported only by free-threaded builds (Py_GIL_DISABLED).
        dec_ref_shared: "_Py_DecRefShared" => fn(PyObj);
        // The monitoring callbacks' own type (see `callback`).
        type_from_spec: "PyType_FromSpec" => fn(*mut crate::callback::PyTypeSpec) -> PyObj;
        type_generic_alloc: "PyType_GenericAlloc" => fn(PyObj, isize) -> PyObj;
        vectorcall_call: "PyVectorcall_Call" => fn(PyObj, PyObj, PyObj) -> PyObj;
    }
    data {
        none: "_Py_NoneStruct";
        none_type: "_PyNone_Type";
        cfunction_type: "PyCFunction_Type";
        method_descr_type: "PyMethodDescr_Type";
        function_type: "PyFunction_Type";
        type_type: "PyType_Type";
        method_type: "PyMethod_Type";
        unicode_type: "PyUnicode_Type";
        module_type: "PyModule_Type";
    }
}

fn sym(name: &str) -> *mut c_void {
    // SAFETY: `name` is NUL-terminated (every caller uses concat!(.., "\0"))
    // and dlsym with RTLD_DEFAULT only reads it.
    unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr().cast()) }
}

/// Parses the `3.12.1` at the start of `Py_GetVersion()`.
pub fn parse_version(s: &[u8]) -> Option<(u32, u32, u32)> {
    let end = s
        .iter()
        .position(|b| !(b.is_ascii_digit() || *b == b'.'))
        .unwrap_or(s.len());
    let s = core::str::from_utf8(&s[..end]).ok()?;
    let mut it = s.split('.').map(|p| p.parse::<u32>().ok());
    let major = it.next()??;
    let minor = it.next()??;
    let micro = it.next().flatten().unwrap_or(0);
    Some((major, minor, micro))
}

impl Api {
    /// `PY_VERSION_HEX` without the release level.
    pub fn version_hex(&self) -> u32 {
        let (a, b, c) = self.version;
        (a << 24) | (b << 16) | (c << 8)
    }

    /// A free-threaded build (`Py_GIL_DISABLED`): several threads run
    /// Python at once, and the object header is larger.
    pub fn free_threaded(&self) -> bool {
        self.dec_ref_shared.is_some()
    }

    /// The word of the object header that holds `ob_type` (the header
    /// ends right after it).
    pub fn ob_type_words(&self) -> usize {
        self.layout.ob_type_words
    }

    /// True from 3.12 on.
    pub fn at_least(&self, major: u32, minor: u32) -> bool {
        self.version >= (major, minor, 0)
    }

    /// `Py_TYPE(o)`.
    ///
    /// # Safety
    /// `o` is a live object.
    #[inline(always)]
    pub unsafe fn type_of(&self, o: PyObj) -> PyObj {
        // SAFETY: `o` is live, and probe_ob_type() found ob_type at this
        // word of the header, which every object has.
        unsafe { *(o as *const PyObj).add(self.layout.ob_type_words) }
    }

    /// Whether a CALL event (3.12+) of a callable of exact type `t` is
    /// never recorded, so a callback can answer it without reading any
    /// capture state: cProfile records builtin functions and method
    /// descriptors only (`get_cfunc_from_callable`). A plain function's
    /// PY_START follows; a class and a bound method are neither (`type` and
    /// `method` are not subtypes of `builtin_function_or_method`, and these
    /// are exact type comparisons).
    #[inline(always)]
    pub fn call_never_recorded(&self, t: PyObj) -> bool {
        t == self.function_type || t == self.type_type || t == self.method_type
    }

    /// `PyCFunction_Check(o)`.
    ///
    /// # Safety
    /// `o` is a live object, GIL held.
    #[inline(always)]
    pub unsafe fn is_cfunction(&self, o: PyObj) -> bool {
        // SAFETY: `o` is live.
        let t = unsafe { self.type_of(o) };
        // SAFETY: both are type objects.
        t == self.cfunction_type || unsafe { (self.type_is_subtype)(t, self.cfunction_type) } != 0
    }

    /// The code object of a frame, as a *borrowed* reference (the frame
    /// keeps it alive while the profile callback runs).
    ///
    /// # Safety
    /// `frame` is a live frame object, GIL held.
    #[inline(always)]
    pub unsafe fn frame_code(&self, frame: PyObj) -> PyObj {
        // SAFETY: frame is a live frame object (caller).
        let direct = || unsafe { *(frame.cast::<u8>().add(F_CODE_OFFSET_38) as *const PyObj) };
        // SAFETY: on 3.11 (checked once below), the frame of a running
        // function (the only kind a profile function is given) points to
        // its live interpreter frame, whose f_code is at this offset.
        let direct_311 = || unsafe {
            let f = *(frame.cast::<u8>().add(F_FRAME_OFFSET_311) as *const *const u8);
            if f.is_null() {
                return ptr::null_mut();
            }
            *(f.add(F_CODE_IN_FRAME_311) as *const PyObj)
        };
        match self.f_code_direct.load(Relaxed) {
            DIRECT_YES => return direct(),
            DIRECT_311 => {
                let code = direct_311();
                if !code.is_null() {
                    return code;
                }
            }
            DIRECT_UNKNOWN => {
                // 3.8–3.10 frames have f_code at a fixed offset, 3.11 ones
                // one pointer away; reading it saves two calls per event.
                // Check once against the API.
                let found = match self.frame_get_code {
                    Some(get) if self.version < (3, 12, 0) => {
                        // SAFETY: as below.
                        let code = unsafe { get(frame) };
                        // SAFETY: we own the reference PyFrame_GetCode gave.
                        unsafe { (self.py_decref)(code) };
                        if self.version < (3, 11, 0) && code == direct() {
                            DIRECT_YES
                        } else if self.version >= (3, 11, 0) && code == direct_311() {
                            DIRECT_311
                        } else {
                            DIRECT_NO
                        }
                    }
                    // 3.8: no PyFrame_GetCode; the attribute tells.
                    // SAFETY: frame live, GIL held (caller).
                    None if (unsafe { self.frame_code_attr(frame) }) == direct() => DIRECT_YES,
                    _ => DIRECT_NO,
                };
                self.f_code_direct.store(found, Relaxed);
                match found {
                    DIRECT_YES => return direct(),
                    DIRECT_311 => return direct_311(),
                    _ => {}
                }
            }
            _ => {}
        }
        match self.frame_get_code {
            Some(get) => {
                // SAFETY: PyFrame_GetCode returns a new reference to the
                // frame's code object, which the frame itself keeps alive, so
                // dropping our reference at once leaves a valid borrow.
                unsafe {
                    let code = get(frame);
                    (self.py_decref)(code);
                    code
                }
            }
            // SAFETY: frame live, GIL held (caller).
            None => unsafe { self.frame_code_attr(frame) },
        }
    }

    /// `frame.f_code`, borrowed (the frame keeps its code alive); NULL if
    /// it cannot be read.
    ///
    /// # Safety
    /// `frame` is a live frame object, GIL held.
    #[cold]
    unsafe fn frame_code_attr(&self, frame: PyObj) -> PyObj {
        // SAFETY: GIL held (caller); the exception state is saved around
        // the lookup, which runs no Python code (a member descriptor).
        unsafe {
            let _saved = SavedError::save(self);
            let code = (self.getattr_string)(frame, c"f_code".as_ptr());
            if code.is_null() {
                (self.err_clear)();
            } else {
                (self.py_decref)(code);
            }
            code
        }
    }

    /// The `PyMethodDef *` of a builtin function object, which is how
    /// cProfile identifies builtins; or, if the layout check failed, its C
    /// function pointer (coarser, but still stable).
    ///
    /// # Safety
    /// `f` is a live `PyCFunction`, GIL held.
    #[inline(always)]
    pub unsafe fn m_ml(&self, f: PyObj) -> *const PyMethodDef {
        if self.layout.m_ml_words != 0 {
            // SAFETY: probe_m_ml verified that this word is the PyMethodDef
            // pointer of two known builtins; `f` is a PyCFunction.
            unsafe { *(f as *const *const PyMethodDef).add(self.layout.m_ml_words) }
        } else {
            // SAFETY: f is a PyCFunction.
            unsafe { (self.cfunction_get_function)(f).cast() }
        }
    }

    /// Whether [`m_ml`](Self::m_ml) returns real `PyMethodDef` pointers.
    pub fn has_m_ml(&self) -> bool {
        self.layout.m_ml_words != 0
    }

    /// Finds the word of the object header that holds `ob_type`: the one
    /// that is `&_PyNone_Type` in `None` and `&PyUnicode_Type` in a fresh
    /// string. None if no single word is both.
    unsafe fn probe_ob_type(&self) -> Option<usize> {
        // SAFETY: GIL held (caller); both objects are live and larger than
        // PROBE_WORDS words (None is a static object followed by other
        // runtime data; a str object has its header, length, hash, state
        // and data), and only read.
        unsafe {
            let s = (self.unicode_from_string)(c"rprof probe string".as_ptr());
            if s.is_null() {
                (self.err_clear)();
                return None;
            }
            let none = self.none as *const PyObj;
            let text = s as *const PyObj;
            let found = (0..PROBE_WORDS)
                .find(|&i| *none.add(i) == self.none_type && *text.add(i) == self.unicode_type);
            (self.py_decref)(s);
            found
        }
    }

    /// Finds the word of a builtin function object that holds its
    /// `PyMethodDef *`: the first after `ob_type` that points to a
    /// definition named `len` whose C function is `builtins.len`'s, checked
    /// the same way on `builtins.abs`. 0 if not found.
    unsafe fn probe_m_ml(&self) -> usize {
        // SAFETY: GIL held (caller); every object used is checked for NULL
        // and for being a PyCFunction (whose object is larger than
        // PROBE_WORDS words) before its words are read; a candidate word is
        // dereferenced only if it is non-NULL, and it is a PyMethodDef
        // whenever it is m_ml.
        unsafe {
            let builtins = (self.import_module)(c"builtins".as_ptr());
            if builtins.is_null() {
                (self.err_clear)();
                return 0;
            }
            let mut funcs = [ptr::null_mut(); 2];
            for (f, name) in funcs.iter_mut().zip([c"len", c"abs"]) {
                *f = (self.getattr_string)(builtins, name.as_ptr());
                if f.is_null() {
                    (self.err_clear)();
                }
            }
            (self.py_decref)(builtins);
            let is_def_of = |f: PyObj, name: &[u8], i: usize| -> bool {
                let def = *(f as *const *const PyMethodDef).add(i);
                !def.is_null()
                    && (*def).ml_meth == (self.cfunction_get_function)(f)
                    && !(*def).ml_name.is_null()
                    && CStr::from_ptr((*def).ml_name).to_bytes() == name
            };
            let ok = funcs.iter().all(|f| !f.is_null() && self.is_cfunction(*f));
            let found = if ok {
                (self.layout.ob_type_words + 1..PROBE_WORDS)
                    .find(|&i| is_def_of(funcs[0], b"len", i) && is_def_of(funcs[1], b"abs", i))
                    .unwrap_or(0)
            } else {
                0
            };
            for f in funcs {
                if !f.is_null() {
                    (self.py_decref)(f);
                }
            }
            found
        }
    }

    /// A new reference to `None`.
    ///
    /// # Safety
    /// GIL held.
    #[inline(always)]
    pub unsafe fn new_none(&self) -> PyObj {
        // SAFETY: None is a live static object.
        unsafe { (self.py_incref)(self.none) };
        self.none
    }

    /// `str(o)` (or the string itself) as UTF-8 bytes, appended to `out`.
    /// Returns false (with the error cleared) if it fails.
    ///
    /// # Safety
    /// `o` is a live object, GIL held.
    pub unsafe fn push_str(&self, o: PyObj, out: &mut Vec<u8>) -> bool {
        // SAFETY: GIL held, NULL checked, the UTF-8 buffer is owned by `s`
        // and copied before `s` is released.
        unsafe {
            let s = if (self.type_of(o)) == self.unicode_type {
                (self.py_incref)(o);
                o
            } else {
                (self.object_str)(o)
            };
            if s.is_null() {
                (self.err_clear)();
                return false;
            }
            let mut n: isize = 0;
            let p = (self.unicode_as_utf8_and_size)(s, &mut n);
            let ok = !p.is_null() && n >= 0;
            if ok {
                out.extend_from_slice(core::slice::from_raw_parts(p.cast::<u8>(), n as usize));
            } else {
                (self.err_clear)();
            }
            (self.py_decref)(s);
            ok
        }
    }

    /// `getattr(o, name)` as UTF-8 text.
    ///
    /// # Safety
    /// `o` is a live object, GIL held.
    pub unsafe fn attr_str(&self, o: PyObj, name: &CStr) -> Option<Vec<u8>> {
        // SAFETY: GIL held; NULL checked.
        unsafe {
            let a = (self.getattr_string)(o, name.as_ptr());
            if a.is_null() {
                (self.err_clear)();
                return None;
            }
            let mut out = Vec::new();
            let ok = self.push_str(a, &mut out);
            (self.py_decref)(a);
            ok.then_some(out)
        }
    }

    /// `getattr(o, name)` as an integer.
    ///
    /// # Safety
    /// `o` is a live object, GIL held.
    pub unsafe fn attr_long(&self, o: PyObj, name: &CStr) -> Option<c_long> {
        // SAFETY: GIL held; NULL and error checked.
        unsafe {
            let a = (self.getattr_string)(o, name.as_ptr());
            if a.is_null() {
                (self.err_clear)();
                return None;
            }
            let v = (self.long_as_long)(a);
            (self.py_decref)(a);
            if v == -1 && !(self.err_occurred)().is_null() {
                (self.err_clear)();
                return None;
            }
            Some(v)
        }
    }

    /// Calls `callable(*args)`; the args are borrowed. Returns a new
    /// reference or NULL with the error cleared.
    ///
    /// # Safety
    /// All objects live, GIL held.
    pub unsafe fn call(&self, callable: PyObj, args: &[PyObj]) -> PyObj {
        // SAFETY: GIL held; PyTuple_SetItem steals the extra reference we
        // take for each argument.
        unsafe {
            let t = (self.tuple_new)(args.len() as isize);
            if t.is_null() {
                (self.err_clear)();
                return ptr::null_mut();
            }
            for (i, a) in args.iter().enumerate() {
                (self.py_incref)(*a);
                (self.tuple_set_item)(t, i as isize, *a);
            }
            let r = (self.object_call_object)(callable, t);
            (self.py_decref)(t);
            if r.is_null() {
                (self.err_clear)();
            }
            r
        }
    }

    /// `getattr(o, name)(*args)`, result discarded. Returns success.
    ///
    /// # Safety
    /// All objects live, GIL held.
    pub unsafe fn call_method(&self, o: PyObj, name: &CStr, args: &[PyObj]) -> bool {
        // SAFETY: GIL held; NULL checked.
        unsafe {
            let m = (self.getattr_string)(o, name.as_ptr());
            if m.is_null() {
                (self.err_clear)();
                return false;
            }
            let r = self.call(m, args);
            (self.py_decref)(m);
            if r.is_null() {
                return false;
            }
            (self.py_decref)(r);
            true
        }
    }
}

/// Field offsets found by probing (see the module docs), in words.
#[derive(Clone, Copy, Debug, Default)]
pub struct Layout {
    /// `ob_type` in every object.
    pub ob_type_words: usize,
    /// `m_ml` in a `PyCFunctionObject`; 0 if not found.
    pub m_ml_words: usize,
}

/// Saves the current exception on creation and restores it on drop, so that
/// nothing the shim does disturbs an exception in flight.
pub struct SavedError<'a> {
    api: &'a Api,
    t: PyObj,
    v: PyObj,
    tb: PyObj,
}

impl<'a> SavedError<'a> {
    /// # Safety
    /// GIL held for the guard's whole life.
    pub unsafe fn save(api: &'a Api) -> SavedError<'a> {
        let mut s = SavedError {
            api,
            t: ptr::null_mut(),
            v: ptr::null_mut(),
            tb: ptr::null_mut(),
        };
        // SAFETY: GIL held; PyErr_Fetch moves the error into our fields.
        unsafe { (api.err_fetch)(&mut s.t, &mut s.v, &mut s.tb) };
        s
    }
}

impl Drop for SavedError<'_> {
    fn drop(&mut self) {
        // SAFETY: GIL held (see `save`); PyErr_Restore takes back the
        // references PyErr_Fetch gave us, clearing anything set meanwhile.
        unsafe { (self.api.err_restore)(self.t, self.v, self.tb) };
    }
}

#[cfg(test)]
mod tests {
    use super::parse_version;

    #[test]
    fn versions() {
        assert_eq!(parse_version(b"3.12.1 (main, Jan 1)"), Some((3, 12, 1)));
        assert_eq!(parse_version(b"3.13.0rc1"), Some((3, 13, 0)));
        assert_eq!(parse_version(b"3.8"), Some((3, 8, 0)));
        assert_eq!(parse_version(b"x"), None);
    }
}
