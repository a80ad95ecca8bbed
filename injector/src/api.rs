//! The slice of CPython's C API the shim uses, resolved at run time.
//!
//! The shim links against no libpython: one build serves every CPython from
//! 3.8 on, shared-library builds (pyenv) and executables with libpython
//! linked in (Debian's `python3.11`) alike. Every symbol is looked up with
//! `dlsym(RTLD_DEFAULT, …)` in the process the shim was loaded into.
//!
//! Struct layouts are avoided wherever a function can do the job. The two
//! places that read memory directly are `ob_type` (offset 8 in every
//! non-free-threaded build, part of the stable ABI) and `m_ml` of a builtin
//! function object, which cProfile itself keys builtins by and which no API
//! exposes; that offset is checked against `builtins.len` before use (see
//! [`Api::m_ml`]), and the 3.8 frame's `f_code`, the one version without
//! `PyFrame_GetCode`.

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

/// Byte offset of `m_ml` in `PyCFunctionObject` (right after `PyObject_HEAD`).
const M_ML_OFFSET: usize = 16;
/// Byte offset of `f_code` in a 3.8–3.10 `PyFrameObject` (after
/// `PyObject_VAR_HEAD` and `f_back`).
const F_CODE_OFFSET_38: usize = 32;
const DIRECT_UNKNOWN: u8 = 0;
const DIRECT_YES: u8 = 1;
const DIRECT_NO: u8 = 2;

macro_rules! api {
    (required { $( $field:ident : $name:literal => fn($($arg:ty),*) $(-> $ret:ty)? ;)* }
     optional { $( $ofield:ident : $oname:literal => fn($($oarg:ty),*) $(-> $oret:ty)? ;)* }
     data { $( $dfield:ident : $dname:literal ;)* }
    ) => {
        /// Function pointers and type objects of the running interpreter.
        pub struct Api {
            /// `(major, minor, micro)`.
            pub version: (u32, u32, u32),
            /// Whether `m_ml` can be read at [`M_ML_OFFSET`].
            m_ml_ok: bool,
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
                    m_ml_ok: false,
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
                api.m_ml_ok = unsafe { api.check_m_ml() };
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
    }
    data {
        none: "_Py_NoneStruct";
        cfunction_type: "PyCFunction_Type";
        method_descr_type: "PyMethodDescr_Type";
        function_type: "PyFunction_Type";
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
        // SAFETY: ob_type is the second word of every object in
        // non-free-threaded builds (stable ABI), and `o` is live.
        unsafe { *(o as *const PyObj).add(1) }
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
        match self.f_code_direct.load(Relaxed) {
            DIRECT_YES => return direct(),
            DIRECT_UNKNOWN => {
                // 3.8–3.10 frames have f_code at a fixed offset; reading it
                // saves two calls per event. Check once against the API.
                let ok = match self.frame_get_code {
                    Some(get) if self.version < (3, 11, 0) => {
                        // SAFETY: as below.
                        let code = unsafe { get(frame) };
                        // SAFETY: we own the reference PyFrame_GetCode gave.
                        unsafe { (self.py_decref)(code) };
                        code == direct()
                    }
                    None => true,
                    Some(_) => false,
                };
                self.f_code_direct
                    .store(if ok { DIRECT_YES } else { DIRECT_NO }, Relaxed);
                if ok {
                    return direct();
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
            // Only 3.8 lacks PyFrame_GetCode, and it takes the direct path.
            None => direct(),
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
        if self.m_ml_ok {
            // SAFETY: check_m_ml verified that this word is the PyMethodDef
            // pointer of a known builtin.
            unsafe { *(f.cast::<u8>().add(M_ML_OFFSET) as *const *const PyMethodDef) }
        } else {
            // SAFETY: f is a PyCFunction.
            unsafe { (self.cfunction_get_function)(f).cast() }
        }
    }

    /// Whether [`m_ml`](Self::m_ml) returns real `PyMethodDef` pointers.
    pub fn has_m_ml(&self) -> bool {
        self.m_ml_ok
    }

    /// Verifies on `builtins.len` that `m_ml` sits at [`M_ML_OFFSET`].
    unsafe fn check_m_ml(&self) -> bool {
        // SAFETY: GIL held (caller); every object used is checked for NULL.
        unsafe {
            let builtins = (self.import_module)(c"builtins".as_ptr());
            if builtins.is_null() {
                (self.err_clear)();
                return false;
            }
            let len = (self.getattr_string)(builtins, c"len".as_ptr());
            (self.py_decref)(builtins);
            if len.is_null() {
                (self.err_clear)();
                return false;
            }
            let ok = self.is_cfunction(len) && {
                let def = *(len.cast::<u8>().add(M_ML_OFFSET) as *const *const PyMethodDef);
                !def.is_null()
                    && (*def).ml_meth == (self.cfunction_get_function)(len)
                    && CStr::from_ptr((*def).ml_name).to_bytes() == b"len"
            };
            (self.py_decref)(len);
            ok
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
