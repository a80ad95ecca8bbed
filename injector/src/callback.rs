//! The `sys.monitoring` callbacks as objects with their own vectorcall
//! slot (3.12+).
//!
//! CPython calls a monitoring callback with `PyObject_Vectorcall`. A
//! `PyCFunction` callback goes through `cfunction_vectorcall_FASTCALL`,
//! which adds a C-recursion check and a second indirect call to every
//! event. CPython's own legacy-tracing handlers (`Python/legacy_tracing.c`)
//! are instead instances of a type whose `tp_vectorcall_offset` points at a
//! function pointer in the instance, so the interpreter calls the handler
//! directly. This module builds such a type at run time, with
//! `PyType_FromSpec` (the shim links no libpython and knows no struct
//! layout but the object header size the API probe found): one pointer-
//! sized field after the header holds the callback, and the
//! `__vectorcalloffset__` member tells the type where it is.
//!
//! Where the symbols are missing, the caller falls back to `PyCFunction`s.

use crate::api::{Api, PyObj};
use core::cell::UnsafeCell;
use core::ffi::{c_char, c_int, c_uint, c_void};
use core::ptr;

/// `vectorcallfunc`.
pub type Vectorcall = unsafe extern "C" fn(PyObj, *const PyObj, usize, PyObj) -> PyObj;

/// `PY_VECTORCALL_ARGUMENTS_OFFSET`: a flag in `nargsf`, not a count.
pub const ARGUMENTS_OFFSET: usize = 1 << (usize::BITS - 1);

/// Makes a vectorcall entry point out of a `METH_FASTCALL` style callback
/// `f(self, args, nargs)`; the two inline into one function.
macro_rules! vectorcall {
    ($name:ident => $f:path) => {
        unsafe extern "C" fn $name(
            callable: $crate::api::PyObj,
            args: *const $crate::api::PyObj,
            nargsf: usize,
            _kwnames: $crate::api::PyObj,
        ) -> $crate::api::PyObj {
            // SAFETY: CPython's vectorcall contract: `args` holds the
            // argument count encoded in `nargsf` (without the offset
            // flag), all live, and the thread is attached; that is the
            // FASTCALL callback's contract too.
            unsafe {
                $f(
                    callable,
                    args,
                    (nargsf & !$crate::callback::ARGUMENTS_OFFSET) as isize,
                )
            }
        }
    };
}
pub(crate) use vectorcall;

#[repr(C)]
struct PyMemberDef {
    name: *const c_char,
    kind: c_int,
    offset: isize,
    flags: c_int,
    doc: *const c_char,
}

#[repr(C)]
struct PyTypeSlot {
    slot: c_int,
    pfunc: *mut c_void,
}

/// `PyType_Spec`, part of the stable ABI.
#[repr(C)]
pub struct PyTypeSpec {
    name: *const c_char,
    basicsize: c_int,
    itemsize: c_int,
    flags: c_uint,
    slots: *mut PyTypeSlot,
}

const PY_T_PYSSIZET: c_int = 19;
const PY_READONLY: c_int = 1;
const PY_TP_CALL: c_int = 50;
const PY_TP_MEMBERS: c_int = 72;
const TPFLAGS_DISALLOW_INSTANTIATION: c_uint = 1 << 7;
const TPFLAGS_IMMUTABLETYPE: c_uint = 1 << 8;
const TPFLAGS_HAVE_VECTORCALL: c_uint = 1 << 11;
const TPFLAGS_HAVE_VERSION_TAG: c_uint = 1 << 18;

/// The spec's arrays, filled in under the GIL before each use
/// (`PyType_FromSpec` copies what it keeps).
struct Spec {
    members: [PyMemberDef; 2],
    slots: [PyTypeSlot; 3],
    spec: PyTypeSpec,
}

struct SpecCell(UnsafeCell<Spec>);
// SAFETY: only touched with the GIL held (see `new_callbacks`).
unsafe impl Sync for SpecCell {}

static SPEC: SpecCell = SpecCell(UnsafeCell::new(Spec {
    members: [
        PyMemberDef {
            name: c"__vectorcalloffset__".as_ptr(),
            kind: PY_T_PYSSIZET,
            offset: 0,
            flags: PY_READONLY,
            doc: ptr::null(),
        },
        PyMemberDef {
            name: ptr::null(),
            kind: 0,
            offset: 0,
            flags: 0,
            doc: ptr::null(),
        },
    ],
    slots: [
        PyTypeSlot {
            slot: PY_TP_CALL,
            pfunc: ptr::null_mut(),
        },
        PyTypeSlot {
            slot: PY_TP_MEMBERS,
            pfunc: ptr::null_mut(),
        },
        PyTypeSlot {
            slot: 0,
            pfunc: ptr::null_mut(),
        },
    ],
    spec: PyTypeSpec {
        name: c"rprof.MonitoringCallback".as_ptr(),
        basicsize: 0,
        itemsize: 0,
        flags: TPFLAGS_HAVE_VERSION_TAG
            | TPFLAGS_HAVE_VECTORCALL
            | TPFLAGS_IMMUTABLETYPE
            | TPFLAGS_DISALLOW_INSTANTIATION,
        slots: ptr::null_mut(),
    },
}));

/// A new type and one instance of it per function in `funcs`, each calling
/// its function through its own vectorcall slot. The caller owns the
/// references (type first, then the instances, in order). None, with the
/// error cleared, if the interpreter lacks the API or refuses the type.
///
/// # Safety
/// GIL held (thread attached); 3.12+.
pub unsafe fn new_callbacks(api: &Api, funcs: &[Vectorcall]) -> Option<(PyObj, Vec<PyObj>)> {
    let (Some(from_spec), Some(alloc), Some(call)) = (
        api.type_from_spec,
        api.type_generic_alloc,
        api.vectorcall_call,
    ) else {
        return None;
    };
    // The object header (16 bytes, 32 on free-threaded builds) ends right
    // after ob_type, whose word the API probe located.
    let header = (api.ob_type_words() + 1) * core::mem::size_of::<PyObj>();
    // SAFETY: GIL held, so no other thread uses SPEC; the pointers stored
    // are to SPEC itself (static) and to CPython's PyVectorcall_Call.
    let ty = unsafe {
        let s = &mut *SPEC.0.get();
        s.members[0].offset = header as isize;
        s.slots[0].pfunc = call as *mut c_void;
        s.slots[1].pfunc = s.members.as_mut_ptr().cast();
        s.spec.basicsize = (header + core::mem::size_of::<Vectorcall>()) as c_int;
        s.spec.slots = s.slots.as_mut_ptr();
        from_spec(&mut s.spec)
    };
    if ty.is_null() {
        // SAFETY: GIL held.
        unsafe { (api.err_clear)() };
        return None;
    }
    let mut out = Vec::with_capacity(funcs.len());
    for f in funcs {
        // SAFETY: GIL held; `ty` is a live type of basicsize header + one
        // pointer, so the instance has room for the pointer at `header`,
        // where tp_vectorcall_offset says it is.
        let o = unsafe { alloc(ty, 0) };
        if o.is_null() {
            // SAFETY: GIL held; we own every reference released here.
            unsafe {
                (api.err_clear)();
                for o in out {
                    (api.py_decref)(o);
                }
                (api.py_decref)(ty);
            }
            return None;
        }
        // SAFETY: as above: the slot lies inside the new instance.
        unsafe { *(o.cast::<u8>().add(header) as *mut Vectorcall) = *f };
        out.push(o);
    }
    Some((ty, out))
}
