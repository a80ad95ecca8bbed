//! Function identities: the first time the shim sees a code object or a
//! builtin it gives it a small id, announces the id with its label in the
//! ring, and from then on writes only the id.
//!
//! Keys are what cProfile keys by: the code object, or a builtin's
//! `PyMethodDef *`. Code objects (and method descriptors, which stand for
//! their `PyMethodDef` on 3.12+) are kept alive with a strong reference for
//! as long as the capture runs, so an address can never be reused by a
//! different object during a capture; the references are dropped on stop.

use crate::api::{Api, PyObj, SavedError};
use core::ffi::CStr;

/// Extra facts about a key.
#[derive(Clone, Copy)]
pub struct Entry {
    key: usize,
    /// The id written to the ring.
    pub id: u32,
    /// An object we hold a reference to (code object, descriptor), or NULL.
    owned: PyObj,
    /// For a method descriptor: the type its first argument must be an
    /// instance of (`__objclass__`, owned), else NULL.
    pub objclass: PyObj,
}

const EMPTY: Entry = Entry {
    key: 0,
    id: 0,
    owned: core::ptr::null_mut(),
    objclass: core::ptr::null_mut(),
};

/// Entries of [`Table`]'s front cache.
const FRONT: usize = 1024;
/// A key no object or `PyMethodDef` can have: marks an empty front entry.
const NO_KEY: usize = usize::MAX;

/// Open-addressing map from key address to [`Entry`], behind a
/// direct-mapped front cache of ids.
///
/// The front cache answers the hot lookups (a code object's id on every
/// PY_START and PY_RETURN) with one probe at a fixed place: the table
/// lives inside the static capture, so the cache's address needs no load,
/// and a miss costs one probe of the table, which then fills the entry.
/// It holds copies of entries without an `objclass` only (code objects and
/// builtins), so it can answer [`id`](Self::id) but never stands in for
/// [`get`](Self::get).
pub struct Table {
    front_keys: [usize; FRONT],
    front_ids: [u32; FRONT],
    slots: Vec<Entry>,
    len: usize,
    next_id: u32,
}

#[inline(always)]
fn hash(key: usize, mask: usize) -> usize {
    ((key as u64 >> 4).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize & mask
}

/// The front cache entry of `key` (the hash's top bits, so that it differs
/// from the table's own probe start).
#[inline(always)]
fn front_index(key: usize) -> usize {
    ((key as u64 >> 4).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - FRONT.trailing_zeros()))
        as usize
}

impl Default for Table {
    fn default() -> Self {
        Self::new()
    }
}

impl Table {
    pub fn new() -> Table {
        Table {
            front_keys: [NO_KEY; FRONT],
            front_ids: [0; FRONT],
            slots: vec![EMPTY; 1024],
            len: 0,
            next_id: 0,
        }
    }

    #[inline(always)]
    pub fn get(&self, key: usize) -> Option<&Entry> {
        let mask = self.slots.len() - 1;
        let mut i = hash(key, mask);
        loop {
            // SAFETY: `i` is masked by `len - 1` and the length is a power
            // of two, so it is in bounds.
            let e = unsafe { self.slots.get_unchecked(i) };
            if e.key == key {
                return Some(e);
            }
            if e.key == 0 {
                return None;
            }
            i = (i + 1) & mask;
        }
    }

    /// The id of `key` if the front cache has it: the callbacks' fast
    /// path, which leaves a miss to their slow path (and [`id`](Self::id)).
    #[inline(always)]
    pub fn cached(&self, key: usize) -> Option<u32> {
        let i = front_index(key);
        // SAFETY: front_index is below FRONT (a 10-bit shift result).
        unsafe {
            if *self.front_keys.get_unchecked(i) == key {
                return Some(*self.front_ids.get_unchecked(i));
            }
        }
        None
    }

    /// The id of a key that has no `objclass` (a code object, a builtin's
    /// `PyMethodDef`): the front cache, then the table, which fills the
    /// front cache's entry.
    pub fn id(&mut self, key: usize) -> Option<u32> {
        if let Some(id) = self.cached(key) {
            return Some(id);
        }
        let i = front_index(key);
        let e = self.get(key)?;
        let id = e.id;
        if e.objclass.is_null() {
            self.front_keys[i] = key;
            self.front_ids[i] = id;
        }
        Some(id)
    }

    /// The id the next [`insert`](Self::insert) gives.
    pub fn next_id(&self) -> u32 {
        self.next_id
    }

    /// Adds a key with a fresh id.
    pub fn insert(&mut self, key: usize, owned: PyObj, objclass: PyObj) -> Entry {
        if (self.len + 1) * 2 > self.slots.len() {
            self.grow();
        }
        let e = Entry {
            key,
            id: self.next_id,
            owned,
            objclass,
        };
        self.next_id += 1;
        self.place(e);
        self.len += 1;
        e
    }

    fn place(&mut self, e: Entry) {
        let mask = self.slots.len() - 1;
        let mut i = hash(e.key, mask);
        while self.slots[i].key != 0 {
            i = (i + 1) & mask;
        }
        self.slots[i] = e;
    }

    fn grow(&mut self) {
        let bigger = vec![EMPTY; self.slots.len() * 2];
        let old = core::mem::replace(&mut self.slots, bigger);
        for e in old {
            if e.key != 0 {
                self.place(e);
            }
        }
    }

    /// Drops every reference the table holds and empties it.
    ///
    /// # Safety
    /// GIL held.
    pub unsafe fn clear(&mut self, api: &Api) {
        for o in self.empty() {
            // SAFETY: we took this reference in `insert`'s caller.
            unsafe { (api.py_decref)(o) };
        }
    }

    /// Empties the table and its front cache, handing back the references
    /// it held (code objects, descriptors and their `objclass`es).
    fn empty(&mut self) -> Vec<PyObj> {
        let mut refs = Vec::new();
        for e in &mut self.slots {
            refs.extend([e.owned, e.objclass].into_iter().filter(|o| !o.is_null()));
            *e = EMPTY;
        }
        self.front_keys = [NO_KEY; FRONT];
        self.len = 0;
        refs
    }
}

/// `(co_filename, co_firstlineno, co_name)` of a code object.
///
/// # Safety
/// `code` is a live code object, GIL held.
pub unsafe fn code_label(api: &Api, code: PyObj) -> (Vec<u8>, u64, Vec<u8>) {
    // SAFETY: GIL held; the current exception is saved and restored.
    unsafe {
        let _saved = SavedError::save(api);
        let file = api
            .attr_str(code, c"co_filename")
            .unwrap_or_else(|| b"?".to_vec());
        let line = api.attr_long(code, c"co_firstlineno").unwrap_or(0).max(0) as u64;
        let name = api
            .attr_str(code, c"co_name")
            .unwrap_or_else(|| b"?".to_vec());
        (file, line, name)
    }
}

/// cProfile's label for a builtin function object (`normalizeUserObj` in
/// `Modules/_lsprof.c`).
///
/// # Safety
/// `f` is a live `PyCFunction`, GIL held.
pub unsafe fn builtin_label(api: &Api, f: PyObj) -> Vec<u8> {
    // SAFETY: GIL held throughout; every object is NULL-checked and every
    // new reference released; the current exception is saved and restored.
    unsafe {
        let _saved = SavedError::save(api);
        let name = builtin_name(api, f);
        let module = (api.getattr_string)(f, c"__module__".as_ptr());
        if module.is_null() {
            (api.err_clear)();
        }
        let self_ = (api.cfunction_get_self)(f);
        let mut out = Vec::new();
        if self_.is_null() {
            // A plain builtin function: "<module.name>", or "<name>" for
            // the builtins module.
            let mut modname = Vec::new();
            let have_mod = !module.is_null() && module != api.none && {
                if api.type_of(module) == api.unicode_type {
                    api.push_str(module, &mut modname)
                } else if api.type_of(module) == api.module_type
                    || (api.type_is_subtype)(api.type_of(module), api.module_type) != 0
                {
                    let n = (api.module_get_name_object)(module);
                    if n.is_null() {
                        (api.err_clear)();
                        false
                    } else {
                        let ok = api.push_str(n, &mut modname);
                        (api.py_decref)(n);
                        ok
                    }
                } else {
                    false
                }
            };
            out.push(b'<');
            if have_mod && modname != b"builtins" {
                out.extend_from_slice(&modname);
                out.push(b'.');
            }
            out.extend_from_slice(&name);
            out.push(b'>');
        } else {
            // A bound builtin method: repr(type(self).__dict__ lookup of
            // the name), else "<built-in method module.name>".
            let mut done = false;
            let cname = std::ffi::CString::new(name.clone()).ok();
            let pyname = match &cname {
                Some(c) => (api.unicode_from_string)(c.as_ptr()),
                None => core::ptr::null_mut(),
            };
            if !pyname.is_null() {
                let mo = (api.type_lookup)(api.type_of(self_), pyname);
                (api.py_decref)(pyname);
                if !mo.is_null() {
                    (api.py_incref)(mo);
                    let r = (api.object_repr)(mo);
                    (api.py_decref)(mo);
                    if !r.is_null() {
                        done = api.push_str(r, &mut out);
                        (api.py_decref)(r);
                    }
                }
            }
            (api.err_clear)();
            if !done {
                out.clear();
                out.extend_from_slice(b"<built-in method ");
                if !module.is_null() && api.type_of(module) == api.unicode_type {
                    api.push_str(module, &mut out);
                    out.push(b'.');
                }
                out.extend_from_slice(&name);
                out.push(b'>');
            }
        }
        if !module.is_null() {
            (api.py_decref)(module);
        }
        out
    }
}

/// `ml_name` of a builtin.
///
/// # Safety
/// `f` is a live `PyCFunction`, GIL held.
unsafe fn builtin_name(api: &Api, f: PyObj) -> Vec<u8> {
    if api.has_m_ml() {
        // SAFETY: m_ml is the function's PyMethodDef (checked at start-up),
        // whose ml_name is a NUL-terminated string.
        unsafe {
            let def = api.m_ml(f);
            if !def.is_null() && !(*def).ml_name.is_null() {
                return CStr::from_ptr((*def).ml_name).to_bytes().to_vec();
            }
        }
    }
    // SAFETY: f is live, GIL held.
    unsafe { api.attr_str(f, c"__name__") }.unwrap_or_else(|| b"?".to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_grows_and_finds() {
        let mut t = Table::new();
        for k in 1..5000usize {
            let e = t.insert(k * 16, core::ptr::null_mut(), core::ptr::null_mut());
            assert_eq!(e.id as usize, k - 1);
        }
        for k in 1..5000usize {
            assert_eq!(t.get(k * 16).unwrap().id as usize, k - 1);
        }
        assert!(t.get(5000 * 16).is_none());
    }

    /// The front cache answers what the table answers, keys that share a
    /// front entry included, and never an `objclass` entry or a dropped key.
    #[test]
    fn front_cache_agrees_with_the_table() {
        let mut t = Table::new();
        // 4 × FRONT keys: every front entry is shared by several of them.
        let keys: Vec<usize> = (1..=4 * FRONT).map(|k| 0x7f00_0000_0000 + k * 48).collect();
        for &k in &keys {
            t.insert(k, core::ptr::null_mut(), core::ptr::null_mut());
        }
        let descr = 0x5500_0000_0000usize;
        let objclass = 0x10 as PyObj;
        t.insert(descr, core::ptr::null_mut(), objclass);
        for _ in 0..3 {
            for &k in keys.iter().chain(keys.iter().rev()) {
                assert_eq!(t.id(k), Some(t.get(k).unwrap().id), "key {k:#x}");
            }
        }
        assert_eq!(t.id(descr), Some(t.get(descr).unwrap().id));
        assert_ne!(t.front_keys[front_index(descr)], descr);
        assert_eq!(t.id(0x1234_5670), None);
        assert_eq!(t.id(usize::MAX), None);
        assert_eq!(t.empty(), vec![objclass]);
        for &k in keys.iter().chain([&descr]) {
            assert_eq!(t.id(k), None);
        }
    }
}
