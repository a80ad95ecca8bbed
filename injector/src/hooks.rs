//! The profile hooks and the capture they feed.
//!
//! Two hooks produce the same events with cProfile's semantics:
//!
//! * **setprofile**: a native `Py_tracefunc` installed with
//!   `PyEval_SetProfile` on every thread that exists at start, and on every
//!   thread `threading` starts later through a `threading.setprofile`
//!   bootstrap that replaces itself with the native hook on its first event
//!   (as yappi does); if the program has not imported `threading` yet, the
//!   bootstrap goes in when it does ([`crate::threads`]).
//!   `_lsprof.c`'s `profiler_callback` is the model.
//! * **monitoring** (3.12+): a `sys.monitoring` tool whose callbacks are
//!   builtin functions implemented here. It sees every thread, including
//!   threads started later and natively, and costs about half of
//!   setprofile's compatibility layer. `_lsprof.c`'s `pystart_callback`,
//!   `pyreturn_callback`, `ccall_callback` and `creturn_callback` are the
//!   model.
//!
//! All state lives in [`CAPTURE`] and is touched only with the GIL held:
//! every hook runs under the GIL, and so do `rprof_start` / `rprof_stop`.
//!
//! **Callbacks that call into Python.** Labelling a builtin can run Python
//! code (cProfile's label is `repr()` of a class attribute, which a class
//! may define in Python), and Python code can release the GIL; meanwhile
//! the capture may stop, and a new one may even start. So no callback
//! keeps a reference to the capture across a call into Python: it records
//! the capture's [`GENERATION`] first, computes what needs Python with no
//! borrow held, and then looks the capture up again through [`capture`],
//! which answers only if that same capture is still recording. A callback
//! that resumes after its capture ended writes nothing and touches nothing
//! the capture owned (ring, table), so `stop` can free them at once.
//!
//! **Fork.** A child forked during a capture must neither write into its
//! parent's ring nor stay instrumented. The shim's `pthread_atfork` child
//! handler ([`after_fork_in_child`]) marks the capture dead; the child's
//! first event (the first Python code it runs) then removes every hook and
//! unmaps the ring without writing to it ([`forget_in_child`]).

use crate::api::{self, Api, PyMethodDef, PyObj};
use crate::intern::{self, Table};
use crate::ring::Writer;
use core::cell::UnsafeCell;
use core::ffi::{c_char, c_int, c_long, CStr};
use core::ptr;
use core::sync::atomic::{
    AtomicBool, AtomicU64, AtomicUsize, Ordering::Acquire, Ordering::Relaxed, Ordering::Release,
};
use rprof_abi::{state, Hook, Kind};

/// A value only touched with the GIL held.
pub struct GilCell<T>(UnsafeCell<T>);

// SAFETY: every access happens with the GIL held, which serialises them.
unsafe impl<T> Sync for GilCell<T> {}

impl<T> GilCell<T> {
    pub const fn new(v: T) -> Self {
        GilCell(UnsafeCell::new(v))
    }

    /// # Safety
    /// GIL held, and no other reference obtained from this cell is alive.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn get(&self) -> &mut T {
        // SAFETY: the caller holds the GIL and no other borrow exists.
        unsafe { &mut *self.0.get() }
    }

    /// # Safety
    /// GIL held, and no mutable reference obtained from this cell is alive.
    pub unsafe fn get_ref(&self) -> &T {
        // SAFETY: the caller holds the GIL and no mutable borrow exists.
        unsafe { &*self.0.get() }
    }
}

/// The interpreter's API, resolved once; the shim is never unloaded, so a
/// later capture reuses it.
pub static API: GilCell<Option<Api>> = GilCell::new(None);
/// The capture in progress, if any.
pub static CAPTURE: GilCell<Option<Capture>> = GilCell::new(None);
/// Fast check for the hooks: false when no capture records.
pub static ACTIVE: AtomicBool = AtomicBool::new(false);
/// Changes whenever a capture starts or stops, so that a callback resumed
/// after a call into Python can tell whether its capture still records.
static GENERATION: AtomicU64 = AtomicU64::new(0);
/// Set in a forked child whose parent was recording: the child's first
/// event removes the inherited hooks (see [`after_fork_in_child`]).
static FORKED_DIRTY: AtomicBool = AtomicBool::new(false);
/// The capture installs do-nothing callbacks ([`rprof_abi::Mode::Floor`]
/// or [`rprof_abi::Mode::FloorClock`]).
static FLOOR: AtomicBool = AtomicBool::new(false);
/// With [`FLOOR`]: the callbacks of recorded events read the clock
/// ([`rprof_abi::Mode::FloorClock`]).
static FLOOR_CLOCK: AtomicBool = AtomicBool::new(false);
/// The capture leaves builtins out ([`rprof_abi::flags::NO_BUILTINS`]):
/// no C event is registered (monitoring), or the setprofile hook that
/// ignores them first thing is installed.
pub(crate) static NO_BUILTINS: AtomicBool = AtomicBool::new(false);

/// Events of a `sys.monitoring` tool, by the names of `sys.monitoring.events`.
const MONITORED: [(&CStr, Callback); 9] = [
    (c"PY_START", Callback::Start),
    (c"PY_RESUME", Callback::Start),
    (c"PY_THROW", Callback::Start),
    (c"PY_RETURN", Callback::Return),
    (c"PY_YIELD", Callback::Return),
    (c"PY_UNWIND", Callback::Return),
    (c"CALL", Callback::Call),
    (c"C_RETURN", Callback::CReturn),
    (c"C_RAISE", Callback::CRaise),
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Callback {
    Start = 0,
    Return = 1,
    Call = 2,
    CReturn = 3,
    CRaise = 4,
}

struct Defs([PyMethodDef; 9]);
// SAFETY: the method definitions are immutable after construction; CPython
// only reads them.
unsafe impl Sync for Defs {}

static DEFS: Defs = Defs([
    def(
        c"rprof_py_start",
        mon_start as *const (),
        api::METH_FASTCALL,
    ),
    def(
        c"rprof_py_return",
        mon_return as *const (),
        api::METH_FASTCALL,
    ),
    def(c"rprof_call", mon_call as *const (), api::METH_FASTCALL),
    def(
        c"rprof_c_return",
        mon_c_return as *const (),
        api::METH_FASTCALL,
    ),
    def(
        c"rprof_c_raise",
        mon_c_raise as *const (),
        api::METH_FASTCALL,
    ),
    def(
        c"rprof_thread_bootstrap",
        thread_bootstrap as *const (),
        api::METH_VARARGS,
    ),
    def(c"rprof_floor", mon_floor as *const (), api::METH_FASTCALL),
    def(
        c"rprof_floor_clock",
        mon_floor_clock as *const (),
        api::METH_FASTCALL,
    ),
    def(
        c"rprof_floor_clock_c",
        mon_floor_clock_c as *const (),
        api::METH_FASTCALL,
    ),
]);
const BOOTSTRAP_DEF: usize = 5;
const FLOOR_DEF: usize = 6;
const FLOOR_CLOCK_DEF: usize = 7;
const FLOOR_CLOCK_C_DEF: usize = 8;

const fn def(name: &'static CStr, f: *const (), flags: c_int) -> PyMethodDef {
    PyMethodDef {
        ml_name: name.as_ptr(),
        ml_meth: f.cast(),
        ml_flags: flags,
        ml_doc: ptr::null(),
    }
}

fn def_ptr(i: usize) -> *mut PyMethodDef {
    // CPython takes `PyMethodDef *` but never writes through it.
    ptr::addr_of!(DEFS.0[i]).cast_mut()
}

struct Monitoring {
    module: PyObj,
    tool: PyObj,
    missing: PyObj,
    events: Vec<PyObj>,
    callbacks: Vec<PyObj>,
    /// The callbacks' own type (see [`crate::callback`]), or NULL when
    /// they are `PyCFunction`s.
    callback_type: PyObj,
}

struct SetProfile {
    /// `threading`, or NULL while its hooking is deferred (crate::threads).
    threading: PyObj,
    previous_thread_hook: PyObj,
    bootstrap: PyObj,
    /// Where thread states keep their profile function, if found.
    fields: Option<ProfileFields>,
    /// Profile functions threads had before, put back on stop.
    previous: Vec<Previous>,
}

/// One capture: the ring, the interned functions and what was installed.
pub struct Capture {
    writer: Writer,
    table: Table,
    monitoring: Option<Monitoring>,
    setprofile: Option<SetProfile>,
    /// The announce channel when the capture started (closed when it
    /// ends; see `crate::follow`).
    channel: c_int,
}

/// Failure to start, with a message for the user.
pub type StartError = &'static str;

/// [`start`]'s error when a capture is running already.
pub const ALREADY_RUNNING: StartError = "a capture is already running in this process";

/// Starts a capture writing to the ring at `path`.
///
/// # Safety
/// GIL held; no capture running.
/// `agent` says the caller is the attach agent, whose own (temporary)
/// thread state is not one of the target's threads.
pub unsafe fn start(path: &CStr, agent: bool) -> Result<(), StartError> {
    // SAFETY: GIL held (caller), and no hook runs while we hold it, so this
    // is the only borrow of API.
    unsafe {
        let api_slot = API.get();
        if api_slot.is_none() {
            *api_slot = Some(Api::resolve()?);
        }
    }
    // SAFETY: GIL held; API is no longer borrowed mutably.
    let api = unsafe { API.get_ref() }.as_ref().ok_or("no API")?;
    if api.version < (3, 8, 0) {
        return Err("CPython older than 3.8 is not supported");
    }
    // A child forked from a recording parent that never ran a hook yet:
    // this new capture replaces the inherited one.
    // SAFETY: GIL held.
    unsafe { leave_parent(false) };
    // SAFETY: GIL held (caller); the borrow ends before any Python call.
    if unsafe { CAPTURE.get_ref() }.is_some() {
        return Err(ALREADY_RUNNING);
    }
    // SAFETY: the path names a ring file the reader created.
    let mut writer = unsafe { Writer::open(path) }?;
    let requested = Hook::from_u32(writer.header().hook).unwrap_or(Hook::Auto);
    let hook = match requested {
        Hook::Auto if api.at_least(3, 12) => Hook::Monitoring,
        Hook::Auto => Hook::SetProfile,
        Hook::Monitoring if !api.at_least(3, 12) => {
            writer.fail("the monitoring hook needs Python 3.12 or newer; use --hook setprofile");
            return Err("monitoring hook needs 3.12+");
        }
        h => h,
    };
    let h = writer.header();
    h.python_version.store(api.version_hex(), Relaxed);
    h.hook_used.store(hook as u32, Relaxed);
    // SAFETY: GIL held.
    let threads = unsafe { count_threads(api) }.saturating_sub(u32::from(agent));
    h.threads_hooked.store(threads, Relaxed);
    let mode = writer.header().mode;
    FLOOR.store(
        mode == rprof_abi::Mode::Floor as u32 || mode == rprof_abi::Mode::FloorClock as u32,
        Relaxed,
    );
    FLOOR_CLOCK.store(mode == rprof_abi::Mode::FloorClock as u32, Relaxed);
    NO_BUILTINS.store(
        writer.header().flags & rprof_abi::flags::NO_BUILTINS != 0,
        Relaxed,
    );
    NONE.store(api.none, Relaxed);
    writer.marker(Kind::Start);
    let generation = GENERATION.fetch_add(1, Relaxed) + 1;
    // SAFETY: GIL held; this borrow ends at once.
    unsafe {
        *CAPTURE.get() = Some(Capture {
            writer,
            table: Table::new(),
            monitoring: None,
            setprofile: None,
            channel: crate::follow::channel(),
        });
        if api.free_threaded() {
            // Several threads record at once: each into a segment of its
            // own.
            if let Some(cap) = CAPTURE.get_ref().as_ref() {
                crate::ft::begin(&cap.writer);
            }
        }
    }
    // Events may arrive while hooks are being installed (audit hooks, the
    // import of `threading`): record from now on. Installing runs Python
    // code, so what it installs is kept in locals until it is done, and
    // the capture is not borrowed meanwhile.
    ACTIVE.store(true, Release);
    let mut monitoring = None;
    let mut setprofile = None;
    // SAFETY: GIL held.
    let installed = unsafe {
        match hook {
            Hook::Monitoring => install_monitoring(api, &mut monitoring),
            _ => install_setprofile(api, &mut setprofile),
        }
    };
    if let Err(e) = installed {
        ACTIVE.store(false, Release);
        GENERATION.fetch_add(1, Relaxed);
        // SAFETY: GIL held.
        unsafe {
            uninstall(api, setprofile, monitoring);
            crate::ft::end(api);
        }
        // SAFETY: GIL held; the uninstall above is done with Python.
        if let Some(mut cap) = unsafe { CAPTURE.get() }.take() {
            cap.writer.fail(e);
            // SAFETY: GIL held.
            unsafe { cap.table.clear(api) };
        }
        return Err(e);
    }
    // SAFETY: GIL held; no Python call while the capture is borrowed.
    match unsafe { capture(generation) } {
        Some(cap) => {
            cap.monitoring = monitoring;
            cap.setprofile = setprofile;
            cap.writer
                .header()
                .shim_state
                .store(state::RECORDING, Release);
            Ok(())
        }
        None => {
            // Stopped while installing (by an audit hook calling
            // rprof_stop): take back what was installed.
            // SAFETY: GIL held.
            unsafe { uninstall(api, setprofile, monitoring) };
            Err("the capture was stopped while it started")
        }
    }
}

/// Ends the capture: removes every hook, writes the Stop record, releases
/// every reference and unmaps the ring. Safe to call when none runs.
///
/// # Safety
/// GIL held.
pub unsafe fn stop() {
    ACTIVE.store(false, Release);
    GENERATION.fetch_add(1, Relaxed);
    // SAFETY: GIL held (caller). The capture is moved out of its slot
    // before anything below calls into Python: callbacks suspended in
    // Python find no capture when they resume (and the generation moved
    // on), so freeing it here cannot pull anything from under them.
    let (api, cap) = unsafe { (API.get_ref(), CAPTURE.get().take()) };
    let (Some(api), Some(mut cap)) = (api.as_ref(), cap) else {
        return;
    };
    // SAFETY: GIL held.
    unsafe {
        uninstall(api, cap.setprofile.take(), cap.monitoring.take());
        // Removing the hooks stopped the world: no hook runs any more but
        // those suspended in Python code (a builtin's label), which find
        // their capture ended when they resume (ft::end waits for any that
        // resumed before it), and every segment's events are published.
        crate::ft::end(api);
        name_threads(api, &mut cap);
    }
    // A free-threaded segment that gave up on the reader marked the whole
    // capture ABANDONED (ft.rs): that must stay what the reader sees, not
    // be covered by a clean Stop.
    let given_up = cap.writer.is_abandoned()
        || cap.writer.header().shim_state.load(Acquire) == state::ABANDONED;
    if !given_up {
        cap.writer.marker(Kind::Stop);
        cap.writer
            .header()
            .shim_state
            .store(state::STOPPED, Release);
    }
    // SAFETY: GIL held.
    unsafe { cap.table.clear(api) };
    // Children forked from now on are not profiled: nothing more to
    // announce.
    crate::follow::close_channel(cap.channel);
    drop(cap);
}

/// The pthread_atfork child handler's part: in the child of a recording
/// process, stop recording at once (the parent is the ring's only
/// producer) and leave the removal of the hooks to the child's first
/// event, which holds the GIL. Async-signal-safe: two atomic stores.
pub fn after_fork_in_child() {
    if ACTIVE.swap(false, Relaxed) {
        FORKED_DIRTY.store(true, Relaxed);
    }
    GENERATION.fetch_add(1, Relaxed);
}

/// In a forked child of a recording process: removes every hook the
/// parent installed (the monitoring tool and its events, the profile
/// function of the thread, `threading`'s hook), drops the references, and
/// unmaps the ring and the agent's view of it, without writing a byte
/// into them. Does nothing anywhere else.
///
/// # Safety
/// GIL held.
pub unsafe fn forget_in_child() {
    // SAFETY: GIL held (caller).
    unsafe { leave_parent(true) }
}

/// [`forget_in_child`]; with `follow`, a child with an announce channel is
/// moved to a ring of its own instead (see [`follow_in_child`]).
///
/// # Safety
/// GIL held.
unsafe fn leave_parent(follow: bool) {
    if !FORKED_DIRTY.swap(false, Acquire) {
        return;
    }
    // SAFETY: GIL held (caller).
    if follow && crate::follow::following() && unsafe { follow_in_child() } {
        return;
    }
    // SAFETY: GIL held (caller); the capture is moved out before the
    // uninstall calls into Python.
    let (api, cap) = unsafe { (API.get_ref(), CAPTURE.get().take()) };
    crate::agent::forget_in_child();
    let (Some(api), Some(mut cap)) = (api.as_ref(), cap) else {
        return;
    };
    // SAFETY: GIL held.
    unsafe {
        let _saved = api::SavedError::save(api);
        crate::ft::forget_in_child(api);
        uninstall(api, cap.setprofile.take(), cap.monitoring.take());
        crate::ft::forget_in_child(api);
        cap.table.clear(api);
    }
    // Unmaps the ring; the writer's Drop writes nothing.
    drop(cap);
}

/// With `--subprocesses` (an announce channel is set), in a forked child of
/// a recording process: gives the child a ring of its own (see
/// [`crate::follow`]), announces it, and moves the capture over to it: the
/// hooks stay, the parent's ring is unmapped unwritten, the function table
/// starts afresh, and an agent thread watches the new ring. Returns false,
/// having changed nothing, if the ring could not be made or announced (the
/// caller then removes the hooks).
///
/// # Safety
/// GIL held.
unsafe fn follow_in_child() -> bool {
    // SAFETY: GIL held (caller); the capture is borrowed only while no
    // Python code runs (table.clear only drops references to code objects
    // and builtins, whose deallocation runs no Python code).
    let (Some(api), Some(cap)) = (unsafe { API.get_ref() }.as_ref(), unsafe {
        CAPTURE.get().as_mut()
    }) else {
        return false;
    };
    let parent = cap.writer.header();
    let spec = crate::follow::RingSpec::of(parent);
    let hook_used = parent.hook_used.load(Relaxed);
    let fd = match crate::follow::create_ring(&spec) {
        Ok(fd) => fd,
        Err(e) => {
            crate::follow::announce_failure(e);
            return false;
        }
    };
    if !crate::follow::announce(fd) {
        // SAFETY: the fd is ours.
        unsafe { libc::close(fd) };
        return false;
    }
    let path = std::ffi::CString::new(format!("/proc/self/fd/{fd}")).unwrap_or_default();
    // SAFETY: the path names the ring we just made, mapped for as long as
    // the writer lives.
    let writer = match unsafe { Writer::open(&path) } {
        Ok(w) => w,
        Err(e) => {
            crate::agent::report_failure(fd, e);
            // SAFETY: the fd is ours.
            unsafe { libc::close(fd) };
            return false;
        }
    };
    // SAFETY: GIL held; the parent's segment state is forgotten unwritten
    // and the references of its table released.
    unsafe {
        crate::ft::forget_in_child(api);
        cap.table.clear(api);
    }
    cap.table = Table::new();
    // Unmaps the parent's ring (the writer's Drop writes nothing).
    drop(core::mem::replace(&mut cap.writer, writer));
    cap.writer.register();
    let h = cap.writer.header();
    h.python_version.store(api.version_hex(), Relaxed);
    h.hook_used.store(hook_used, Relaxed);
    h.threads_hooked.store(1, Relaxed);
    cap.writer.marker(Kind::Start);
    if api.free_threaded() {
        crate::ft::begin(&cap.writer);
    }
    cap.writer
        .header()
        .shim_state
        .store(state::RECORDING, Release);
    GENERATION.fetch_add(1, Relaxed);
    ACTIVE.store(true, Release);
    // The agent owns the fd from here (and closes it).
    crate::agent::spawn_watching(fd);
    true
}

/// [`forget_in_child`] if this is a forked child that has not done it yet;
/// for the hooks' slow path (free-threaded ones included).
///
/// # Safety
/// GIL held (thread attached).
#[cold]
pub unsafe fn forget_if_forked() {
    if FORKED_DIRTY.load(Relaxed) {
        // SAFETY: as the caller's.
        unsafe { forget_in_child() };
    }
}

/// The capture of generation `generation`, if it is still recording.
///
/// # Safety
/// GIL held, and the returned borrow must end before the caller calls
/// into Python (which may release the GIL and let another callback
/// borrow the capture).
#[inline(always)]
unsafe fn capture(generation: u64) -> Option<&'static mut Capture> {
    if !ACTIVE.load(Relaxed) || GENERATION.load(Relaxed) != generation {
        return None;
    }
    // SAFETY: GIL held; the caller keeps the borrow short (see above).
    unsafe { CAPTURE.get().as_mut() }
}

/// Writes the name of every thread `threading` knows (its `_active` map:
/// `_native_id` and `_name`, plain attributes, so no Python code runs), for
/// the outputs that show threads by name.
unsafe fn name_threads(api: &Api, cap: &mut Capture) {
    // SAFETY: GIL held (caller); every reference is borrowed (module dict,
    // dict items) or released; the current exception is saved.
    unsafe {
        let _saved = api::SavedError::save(api);
        let modules = (api.import_get_module_dict)();
        if modules.is_null() {
            return;
        }
        let threading = (api.dict_get_item_string)(modules, c"threading".as_ptr());
        if threading.is_null() {
            return;
        }
        let active = (api.getattr_string)(threading, c"_active".as_ptr());
        if active.is_null() {
            (api.err_clear)();
            return;
        }
        let mut pos: isize = 0;
        let mut key = ptr::null_mut();
        let mut thread = ptr::null_mut();
        while (api.dict_next)(active, &mut pos, &mut key, &mut thread) != 0 {
            // A Thread subclass may compute these in Python: keep the
            // thread alive meanwhile.
            (api.py_incref)(thread);
            let (tid, name) = (
                api.attr_long(thread, c"_native_id"),
                api.attr_str(thread, c"_name"),
            );
            (api.py_decref)(thread);
            let (Some(tid), Some(name)) = (tid, name) else {
                continue;
            };
            cap.writer.thread_name(tid as u64, &name);
        }
        (api.py_decref)(active);
    }
}

/// The main interpreter: `PyInterpreterState_Main()`, or, where it is not
/// exported, the last of the interpreter list (new interpreters are put at
/// its head, so the oldest, the main one, is last). Sub-interpreters are
/// not profiled: their threads run with no hook, as they would unprofiled.
///
/// # Safety
/// GIL held.
unsafe fn main_interpreter(api: &Api) -> PyObj {
    // SAFETY: GIL held (caller); the list cannot change while it is held.
    unsafe {
        if let Some(main) = api.interp_main {
            return main();
        }
        let mut interp = (api.interp_head)();
        while !interp.is_null() {
            let next = (api.interp_next)(interp);
            if next.is_null() {
                break;
            }
            interp = next;
        }
        interp
    }
}

/// The thread states of the main interpreter.
///
/// # Safety
/// GIL held; the list cannot change while it is held.
unsafe fn thread_states(api: &Api) -> Vec<PyObj> {
    let mut out = Vec::new();
    // SAFETY: GIL held (caller).
    unsafe {
        let interp = main_interpreter(api);
        let mut t = if interp.is_null() {
            ptr::null_mut()
        } else {
            (api.interp_thread_head)(interp)
        };
        while !t.is_null() {
            out.push(t);
            t = (api.thread_next)(t);
        }
    }
    out
}

/// Number of thread states of the main interpreter.
unsafe fn count_threads(api: &Api) -> u32 {
    // SAFETY: GIL held (caller).
    unsafe { thread_states(api) }.len() as u32
}

/// Sets the profile function of thread state `t`.
///
/// Where CPython has `_PyEval_SetProfile(tstate, ...)` (3.9+) that is used.
/// On 3.8, `PyEval_SetProfile` only acts on the current thread state, and
/// making another thread's state current would run the `sys.setprofile`
/// audit hooks on a foreign thread state; so when the fields were located
/// (see [`probe_offsets`]) they are written directly, exactly as
/// `PyEval_SetProfile` writes them, and the swap is only a fallback.
///
/// # Safety
/// GIL held; `t` is in the interpreter's thread list.
unsafe fn set_thread_profile(
    api: &Api,
    t: PyObj,
    func: Option<api::TraceFunc>,
    obj: PyObj,
    fields: Option<ProfileFields>,
) {
    // SAFETY: GIL held (caller). Without _PyEval_SetProfile (3.8), the
    // fields are written at offsets verified on this interpreter's own
    // thread state (every thread state has the same layout); failing that,
    // the thread state is made current only for the duration of
    // PyEval_SetProfile, which merely stores the function in it; its real
    // owner is blocked waiting for the GIL we hold.
    unsafe {
        match (api.eval_set_profile_tstate, fields) {
            (Some(set), _) => {
                if set(t, func, obj) < 0 {
                    (api.err_clear)();
                }
            }
            (None, Some(f)) if f.use_tracing.is_some() => {
                let w = t as *mut usize;
                let old = *w.add(f.obj) as PyObj;
                if !obj.is_null() {
                    (api.py_incref)(obj);
                }
                *w.add(f.func) = func.map_or(0, |p| p as usize);
                *w.add(f.obj) = obj as usize;
                let tracing = *w.add(f.func + 1) != 0;
                if let Some(u) = f.use_tracing {
                    *(t.cast::<u8>().add(u) as *mut c_int) = c_int::from(func.is_some() || tracing);
                }
                if !old.is_null() {
                    (api.py_decref)(old);
                }
            }
            _ => {
                let me = (api.thread_swap)(t);
                (api.eval_set_profile)(func, obj);
                (api.thread_swap)(me);
            }
        }
    }
}

/// Sets (or clears, with `None`) the profile function of every thread.
unsafe fn set_profile_everywhere(
    api: &Api,
    func: Option<api::TraceFunc>,
    fields: Option<ProfileFields>,
) {
    // SAFETY: GIL held (caller).
    unsafe {
        if let Some(all) = api.eval_set_profile_all {
            all(func, ptr::null_mut());
            return;
        }
        for t in thread_states(api) {
            set_thread_profile(api, t, func, ptr::null_mut(), fields);
        }
    }
}

/// Where a `PyThreadState` keeps its profile function and object, in
/// words, found by probing the calling thread (see [`probe_offsets`]).
#[derive(Clone, Copy)]
struct ProfileFields {
    func: usize,
    obj: usize,
    /// Byte offset of the `use_tracing` flag, located on 3.8 only (an
    /// `int` shortly before `c_profilefunc`, after which `c_tracefunc`
    /// follows), where the fields are written directly.
    use_tracing: Option<usize>,
}

/// A profile function a thread had before the capture.
struct Previous {
    /// Which thread: `PyThreadState_GetID` (unique for the life of the
    /// interpreter) from 3.9 on; the thread state's address on 3.8, which
    /// has no such function.
    thread: u64,
    func: Option<api::TraceFunc>,
    /// Owned reference (or NULL).
    obj: PyObj,
}

/// Identity of a thread state that a later thread cannot share: its
/// unique id where CPython has one (3.9+), else its address.
///
/// # Safety
/// GIL held; `t` is a live thread state.
unsafe fn thread_key(api: &Api, t: PyObj) -> u64 {
    match api.thread_get_id {
        // SAFETY: t is live (caller).
        Some(get_id) => unsafe { get_id(t) },
        None => t as u64,
    }
}

/// Locates the profile function fields of `PyThreadState`. No API reads
/// another thread's profile function, so the two fields are located at
/// run time instead of from a per-version table: the calling thread
/// installs a probe function with a fresh sentinel object, and the words
/// of its own `PyThreadState` that hold them give the offsets. `None` if
/// the probe fails.
unsafe fn probe_offsets(api: &Api) -> Option<ProfileFields> {
    // SAFETY: GIL held (caller). The probe is installed and removed on the
    // calling thread only; we read at most PROBE_WORDS words of our own
    // thread state, which is larger than that.
    unsafe {
        let me = (api.thread_get)();
        // A fresh object (ints this large are never cached).
        let sentinel = (api.long_from_long)(0x7270_726f);
        if me.is_null() || sentinel.is_null() {
            (api.err_clear)();
            return None;
        }
        (api.eval_set_profile)(Some(probe_cb), sentinel);
        let words = me as *const usize;
        let mut off_func = None;
        let mut off_obj = None;
        for i in 0..PROBE_WORDS {
            let w = *words.add(i);
            if w == probe_cb as *const () as usize && off_func.is_none() {
                off_func = Some(i);
            }
            if w == sentinel as usize && off_obj.is_none() {
                off_obj = Some(i);
            }
        }
        // 3.8: `int use_tracing` sits in the word or two before
        // `c_profilefunc` (then padding), and `c_tracefunc`, `c_traceobj`
        // follow the two profile fields. It is the one int there that is 1
        // with the probe installed and 0 once it is removed (with no trace
        // function set); if there is not exactly one, nothing is written
        // directly.
        let int_at = |byte: usize| *((me as *const u8).add(byte) as *const c_int);
        let mut candidates = Vec::new();
        if let (Some(f), Some(o), true) = (off_func, off_obj, api.version < (3, 9, 0)) {
            if f >= 2 && o == f + 2 && *words.add(f + 1) == 0 {
                for byte in (f * 8 - 16..f * 8).step_by(4) {
                    if int_at(byte) == 1 {
                        candidates.push(byte);
                    }
                }
            }
        }
        (api.eval_set_profile)(None, ptr::null_mut());
        (api.py_decref)(sentinel);
        candidates.retain(|&b| int_at(b) == 0);
        let use_tracing = (candidates.len() == 1).then(|| candidates[0]);
        Some(ProfileFields {
            func: off_func?,
            obj: off_obj?,
            use_tracing,
        })
    }
}

/// The profile function of thread state `t`, read at `fields`.
///
/// # Safety
/// GIL held; `t` is a live thread state; `fields` came from
/// [`probe_offsets`].
unsafe fn profile_of(t: PyObj, fields: ProfileFields) -> (usize, PyObj) {
    let w = t as *const usize;
    // SAFETY: the offsets were verified on a thread state of this very
    // interpreter, and every thread state has the same layout.
    unsafe { (*w.add(fields.func), *w.add(fields.obj) as PyObj) }
}

/// The profile functions every thread but the caller's has now
/// (`sys.setprofile` ones or C-level ones alike), so that they can be put
/// back on stop.
unsafe fn previous_profilers(api: &Api, fields: ProfileFields) -> Vec<Previous> {
    let mut found = Vec::new();
    // SAFETY: GIL held (caller); only live thread states are read.
    unsafe {
        let me = (api.thread_get)();
        for t in thread_states(api) {
            let (func, obj) = profile_of(t, fields);
            if func != 0 && t != me {
                if !obj.is_null() {
                    (api.py_incref)(obj);
                }
                let func: api::TraceFunc = core::mem::transmute::<usize, api::TraceFunc>(func);
                found.push(Previous {
                    thread: thread_key(api, t),
                    func: Some(func),
                    obj,
                });
            }
        }
    }
    found
}

/// How far into a `PyThreadState` the probe looks for the profile fields
/// (they are within the first few dozen words in every CPython 3).
const PROBE_WORDS: usize = 64;

unsafe extern "C" fn probe_cb(_obj: PyObj, _frame: PyObj, _what: c_int, _arg: PyObj) -> c_int {
    0
}

/// Whether `func` is one of the shim's own setprofile hooks.
fn is_ours(func: usize) -> bool {
    func == profile_cb::<true> as *const () as usize
        || func == profile_cb::<false> as *const () as usize
        || func == floor_cb as *const () as usize
        || func == floor_clock_cb::<true> as *const () as usize
        || func == floor_clock_cb::<false> as *const () as usize
        || func == crate::ft::profile_cb::<true> as *const () as usize
        || func == crate::ft::profile_cb::<false> as *const () as usize
}

/// Takes the shim's hook off every thread that still has it, putting back
/// the profile function that thread had before the capture (matched by
/// [`thread_key`], so a new thread never inherits an old thread's
/// function), and leaves alone every thread whose profile function the
/// program changed during the capture. Releases the saved references.
unsafe fn restore_profilers(api: &Api, fields: Option<ProfileFields>, previous: Vec<Previous>) {
    // SAFETY: GIL held (caller); thread states are only used while they
    // are still in the interpreter's list; a swap (3.8 only) is undone.
    unsafe {
        match fields {
            Some(fields) => {
                for t in thread_states(api) {
                    let (func, _) = profile_of(t, fields);
                    if !is_ours(func) {
                        continue;
                    }
                    let key = thread_key(api, t);
                    match previous.iter().find(|p| p.thread == key) {
                        Some(p) => set_thread_profile(api, t, p.func, p.obj, Some(fields)),
                        None => set_thread_profile(api, t, None, ptr::null_mut(), Some(fields)),
                    }
                }
            }
            // Nothing could be read: take the hook off everywhere.
            None => set_profile_everywhere(api, None, None),
        }
        for p in previous {
            if !p.obj.is_null() {
                (api.py_decref)(p.obj);
            }
        }
    }
}

unsafe fn install_setprofile(api: &Api, out: &mut Option<SetProfile>) -> Result<(), StartError> {
    // SAFETY: GIL held (caller); every object is NULL-checked.
    unsafe {
        let bootstrap =
            (api.cfunction_new_ex)(def_ptr(BOOTSTRAP_DEF), ptr::null_mut(), ptr::null_mut());
        if bootstrap.is_null() {
            (api.err_clear)();
            return Err("cannot create the thread bootstrap");
        }
        // `threading` is used if the program imported it; otherwise it is
        // hooked when the program imports it (crate::threads): importing
        // it here would run Python code and I/O in the attach agent.
        let threading = match crate::threads::loaded_module(api, c"threading") {
            Some(t) => t,
            None if crate::threads::defer(api, bootstrap) => ptr::null_mut(),
            None => (api.import_module)(c"threading".as_ptr()),
        };
        if threading.is_null() && !crate::threads::deferred() {
            (api.err_clear)();
            (api.py_decref)(bootstrap);
            return Err("cannot import threading");
        }
        let mut previous = if threading.is_null() {
            ptr::null_mut()
        } else {
            (api.getattr_string)(threading, c"_profile_hook".as_ptr())
        };
        if previous.is_null() {
            (api.err_clear)();
            previous = api.new_none();
        }
        let fields = probe_offsets(api);
        let found = match fields {
            Some(f) => previous_profilers(api, f),
            None => Vec::new(),
        };
        *out = Some(SetProfile {
            threading,
            previous_thread_hook: previous,
            bootstrap,
            fields,
            previous: found,
        });
        if !threading.is_null() && !api.call_method(threading, c"setprofile", &[bootstrap]) {
            return Err("threading.setprofile failed");
        }
        set_profile_everywhere(api, Some(native_hook()), fields);
    }
    Ok(())
}

/// `sys.monitoring` tool ids the shim may take, in order of preference:
/// 3 and 4 have no assigned role, so the program keeps the profiler id (2,
/// which cProfile takes) for itself; 2 is the last resort. The debugger
/// (0), coverage (1) and optimizer (5) ids are never taken: the program's
/// own debugger or coverage tool must still get them.
const TOOL_IDS: [c_long; 3] = [3, 4, 2];

unsafe fn install_monitoring(api: &Api, out: &mut Option<Monitoring>) -> Result<(), StartError> {
    // SAFETY: GIL held (caller); every object is NULL-checked and owned
    // references end up in `Monitoring`, released by `uninstall`.
    unsafe {
        let sys = (api.import_module)(c"sys".as_ptr());
        if sys.is_null() {
            (api.err_clear)();
            return Err("cannot import sys");
        }
        let module = (api.getattr_string)(sys, c"monitoring".as_ptr());
        (api.py_decref)(sys);
        if module.is_null() {
            (api.err_clear)();
            return Err("sys.monitoring is missing");
        }
        let mon = out.insert(Monitoring {
            module,
            tool: ptr::null_mut(),
            missing: ptr::null_mut(),
            events: Vec::new(),
            callbacks: Vec::new(),
            callback_type: ptr::null_mut(),
        });
        mon.missing = (api.getattr_string)(module, c"MISSING".as_ptr());
        crate::ft::set_missing(mon.missing);
        if mon.missing.is_null() {
            (api.err_clear)();
            return Err("sys.monitoring.MISSING is missing");
        }
        let get_tool = (api.getattr_string)(module, c"get_tool".as_ptr());
        if get_tool.is_null() {
            (api.err_clear)();
            return Err("sys.monitoring.get_tool is missing");
        }
        let name = (api.unicode_from_string)(c"rprof".as_ptr());
        for id in TOOL_IDS {
            let pid = (api.long_from_long)(id);
            let owner = api.call(get_tool, &[pid]);
            let free = owner == api.none;
            if !owner.is_null() {
                (api.py_decref)(owner);
            }
            if free && api.call_method(module, c"use_tool_id", &[pid, name]) {
                mon.tool = pid;
                break;
            }
            (api.py_decref)(pid);
        }
        (api.py_decref)(name);
        (api.py_decref)(get_tool);
        if mon.tool.is_null() {
            return Err("sys.monitoring tool ids 2, 3 and 4 are all taken by other tools; free one, or use --hook setprofile");
        }
        let events = (api.getattr_string)(module, c"events".as_ptr());
        if events.is_null() {
            (api.err_clear)();
            return Err("sys.monitoring.events is missing");
        }
        // Objects with their own vectorcall slot where the interpreter
        // lets us build them (every 3.12+ does), PyCFunctions otherwise.
        let vectorcalls = if FLOOR_CLOCK.load(Relaxed) {
            // The clock where any exact recorder reads it: on PY_START and
            // PY_RETURN, and on the C events of builtins.
            [
                vc_floor_clock,
                vc_floor_clock,
                vc_floor_clock_c,
                vc_floor_clock_c,
                vc_floor_clock_c,
            ]
        } else if FLOOR.load(Relaxed) {
            [vc_floor as crate::callback::Vectorcall; 5]
        } else if crate::ft::ENABLED.load(Relaxed) {
            crate::ft::VECTORCALLS
        } else {
            VECTORCALLS
        };
        let mut callbacks = [ptr::null_mut(); 5];
        if let Some((ty, objs)) = crate::callback::new_callbacks(api, &vectorcalls) {
            mon.callback_type = ty;
            callbacks.copy_from_slice(&objs);
        } else {
            for (i, cb) in callbacks.iter_mut().enumerate() {
                let d = if FLOOR_CLOCK.load(Relaxed) {
                    def_ptr(if i < 2 {
                        FLOOR_CLOCK_DEF
                    } else {
                        FLOOR_CLOCK_C_DEF
                    })
                } else if FLOOR.load(Relaxed) {
                    def_ptr(FLOOR_DEF)
                } else if crate::ft::ENABLED.load(Relaxed) {
                    crate::ft::def_ptr(i)
                } else {
                    def_ptr(i)
                };
                *cb = (api.cfunction_new_ex)(d, ptr::null_mut(), ptr::null_mut());
                if cb.is_null() {
                    (api.err_clear)();
                }
            }
        }
        mon.callbacks = callbacks.iter().copied().filter(|c| !c.is_null()).collect();
        if mon.callbacks.len() != callbacks.len() {
            (api.py_decref)(events);
            return Err("cannot create the monitoring callbacks");
        }
        let no_builtins = NO_BUILTINS.load(Relaxed);
        let mut mask: c_long = 0;
        let mut failed = None;
        for (ev_name, which) in MONITORED {
            // builtins=False: the C events are not even asked for, so call
            // sites keep their specialisation.
            if no_builtins && matches!(which, Callback::Call | Callback::CReturn | Callback::CRaise)
            {
                continue;
            }
            let Some(bit) = api.attr_long(events, ev_name) else {
                failed = Some("a sys.monitoring event is missing");
                break;
            };
            let ev = (api.long_from_long)(bit as c_long);
            mon.events.push(ev);
            if !api.call_method(
                module,
                c"register_callback",
                &[mon.tool, ev, callbacks[which as usize]],
            ) {
                failed = Some("sys.monitoring.register_callback failed");
                break;
            }
            mask |= bit as c_long;
        }
        (api.py_decref)(events);
        let tool = mon.tool;
        if let Some(e) = failed {
            return Err(e);
        }
        let m = (api.long_from_long)(mask);
        let ok = api.call_method(module, c"set_events", &[tool, m]);
        (api.py_decref)(m);
        if !ok {
            return Err("sys.monitoring.set_events failed");
        }
    }
    Ok(())
}

/// Removes whatever `install_*` installed and releases its references.
/// What the program changed meanwhile (a profile function it set itself,
/// its own `threading.setprofile` hook) is left as the program set it.
unsafe fn uninstall(api: &Api, setprofile: Option<SetProfile>, monitoring: Option<Monitoring>) {
    // SAFETY: GIL held (caller); we release exactly the references the
    // install functions stored.
    unsafe {
        if let Some(sp) = setprofile {
            restore_profilers(api, sp.fields, sp.previous);
            crate::threads::undefer(api);
            let current = match sp.threading.is_null() {
                true => ptr::null_mut(),
                false => (api.getattr_string)(sp.threading, c"_profile_hook".as_ptr()),
            };
            if current.is_null() {
                (api.err_clear)();
            }
            if current == sp.bootstrap {
                api.call_method(sp.threading, c"setprofile", &[sp.previous_thread_hook]);
            }
            if !current.is_null() {
                (api.py_decref)(current);
            }
            (api.py_decref)(sp.previous_thread_hook);
            (api.py_decref)(sp.bootstrap);
            if !sp.threading.is_null() {
                (api.py_decref)(sp.threading);
            }
        }
        if let Some(mon) = monitoring {
            if !mon.tool.is_null() {
                let zero = (api.long_from_long)(0);
                api.call_method(mon.module, c"set_events", &[mon.tool, zero]);
                (api.py_decref)(zero);
                for ev in &mon.events {
                    api.call_method(mon.module, c"register_callback", &[mon.tool, *ev, api.none]);
                }
                api.call_method(mon.module, c"free_tool_id", &[mon.tool]);
                (api.py_decref)(mon.tool);
            }
            for o in mon.events.iter().chain(&mon.callbacks) {
                (api.py_decref)(*o);
            }
            if !mon.callback_type.is_null() {
                (api.py_decref)(mon.callback_type);
            }
            if !mon.missing.is_null() {
                (api.py_decref)(mon.missing);
            }
            (api.py_decref)(mon.module);
        }
    }
}

impl Capture {
    #[inline(always)]
    fn emit(&mut self, kind: Kind, id: u32) {
        // A writer that gives up clears ACTIVE itself (Writer::abandon).
        self.writer.event(kind, id);
    }

    /// The id of `key` if it is known (no Python call): the table's front
    /// cache, then the table.
    #[inline(always)]
    fn known(&mut self, key: usize) -> Option<u32> {
        self.table.id(key)
    }
}

/// Writes `kind(id)` if capture `generation` still records.
///
/// # Safety
/// GIL held.
#[inline(always)]
unsafe fn emit(generation: u64, kind: Kind, id: u32) {
    // SAFETY: GIL held (caller); no Python call while borrowed.
    if let Some(cap) = unsafe { capture(generation) } {
        cap.emit(kind, id);
    }
}

/// Id of a code object, announcing it on first sight.
///
/// # Safety
/// GIL held, `code` live.
#[inline(always)]
unsafe fn code_id(api: &Api, generation: u64, code: PyObj) -> Option<u32> {
    // SAFETY: GIL held; the borrow ends before intern_code.
    if let Some(id) = unsafe { capture(generation) }?.known(code as usize) {
        return Some(id);
    }
    // SAFETY: as above.
    unsafe { intern_code(api, generation, code) }
}

#[cold]
unsafe fn intern_code(api: &Api, generation: u64, code: PyObj) -> Option<u32> {
    // SAFETY: GIL held, code live (caller). The label is read with no
    // borrow of the capture; the capture is looked up again afterwards.
    // The reference taken is released by Table::clear.
    unsafe {
        let (file, line, name) = intern::code_label(api, code);
        let cap = capture(generation)?;
        if let Some(id) = cap.known(code as usize) {
            return Some(id);
        }
        let id = cap.table.next_id();
        if !cap.writer.def_python(id, &file, line, &name) {
            return None;
        }
        (api.py_incref)(code);
        cap.table.insert(code as usize, code, ptr::null_mut());
        Some(id)
    }
}

/// Id of a builtin function object, keyed by its `PyMethodDef`.
///
/// # Safety
/// GIL held, `f` a live `PyCFunction`.
#[inline(always)]
unsafe fn cfunc_id(api: &Api, generation: u64, f: PyObj) -> Option<u32> {
    // SAFETY: f is a live PyCFunction (caller).
    let key = unsafe { api.m_ml(f) } as usize;
    // SAFETY: GIL held; the borrow ends before the label is built.
    if let Some(id) = unsafe { capture(generation) }?.known(key) {
        return Some(id);
    }
    // SAFETY: as above.
    unsafe { intern_cfunc(api, generation, f, key) }
}

#[cold]
unsafe fn intern_cfunc(api: &Api, generation: u64, f: PyObj, key: usize) -> Option<u32> {
    // SAFETY: GIL held, f live (caller). Building the label may run Python
    // code (a `__repr__`), which may release the GIL: no borrow of the
    // capture is held across it, and the capture is looked up again after.
    unsafe {
        (api.py_incref)(f);
        let label = intern::builtin_label(api, f);
        (api.py_decref)(f);
        let cap = capture(generation)?;
        if let Some(id) = cap.known(key) {
            return Some(id);
        }
        let id = cap.table.next_id();
        if !cap.writer.def_builtin(id, &label) {
            return None;
        }
        cap.table.insert(key, ptr::null_mut(), ptr::null_mut());
        Some(id)
    }
}

/// What cProfile 3.12+ records for a CALL/C_RETURN/C_RAISE event
/// (`get_cfunc_from_callable`): builtin functions, and method descriptors
/// called with a matching first argument, which it binds into builtin
/// methods. Others are not recorded.
///
/// # Safety
/// GIL held; objects live.
#[inline(always)]
unsafe fn callable_id(
    api: &Api,
    generation: u64,
    callable: PyObj,
    arg0: PyObj,
    missing: PyObj,
) -> Option<u32> {
    // SAFETY: callable and arg0 are live (CPython passes them to the
    // callback); GIL held.
    unsafe {
        let t = api.type_of(callable);
        if api.call_never_recorded(t) {
            return None;
        }
        if t == api.cfunction_type || (api.type_is_subtype)(t, api.cfunction_type) != 0 {
            return cfunc_id(api, generation, callable);
        }
        if t != api.method_descr_type || arg0 == missing {
            return None;
        }
        let cap = capture(generation)?;
        if let Some(e) = cap.table.get(callable as usize) {
            let (id, objclass) = (e.id, e.objclass);
            if !objclass.is_null() {
                let at = api.type_of(arg0);
                if at != objclass && (api.type_is_subtype)(at, objclass) == 0 {
                    return None;
                }
            }
            return Some(id);
        }
        intern_descriptor(api, generation, callable, arg0)
    }
}

#[cold]
unsafe fn intern_descriptor(api: &Api, generation: u64, descr: PyObj, arg0: PyObj) -> Option<u32> {
    // SAFETY: GIL held, objects live (caller) and kept alive by our own
    // references while Python code may run (the label's `__repr__`); the
    // current exception is saved; no borrow of the capture is held until
    // the label is built. References stored are released by Table::clear.
    unsafe {
        let _saved = api::SavedError::save(api);
        let objclass = (api.getattr_string)(descr, c"__objclass__".as_ptr());
        if objclass.is_null() {
            (api.err_clear)();
            return None;
        }
        let at = api.type_of(arg0);
        if at != objclass && (api.type_is_subtype)(at, objclass) == 0 {
            (api.py_decref)(objclass);
            return None;
        }
        // Bind it once, as cProfile does on every call, to label it.
        let get = (api.getattr_string)(descr, c"__get__".as_ptr());
        if get.is_null() {
            (api.err_clear)();
            (api.py_decref)(objclass);
            return None;
        }
        (api.py_incref)(descr);
        let bound = api.call(get, &[arg0, at]);
        (api.py_decref)(get);
        if bound.is_null() || !api.is_cfunction(bound) {
            if !bound.is_null() {
                (api.py_decref)(bound);
            }
            (api.py_decref)(objclass);
            (api.py_decref)(descr);
            return None;
        }
        let label = intern::builtin_label(api, bound);
        (api.py_decref)(bound);
        let Some(cap) = capture(generation) else {
            (api.py_decref)(objclass);
            (api.py_decref)(descr);
            return None;
        };
        if let Some(e) = cap.table.get(descr as usize) {
            let id = e.id;
            (api.py_decref)(objclass);
            (api.py_decref)(descr);
            return Some(id);
        }
        let id = cap.table.next_id();
        if !cap.writer.def_builtin(id, &label) {
            (api.py_decref)(objclass);
            (api.py_decref)(descr);
            return None;
        }
        // The references to descr and objclass now belong to the table.
        cap.table.insert(descr as usize, descr, objclass);
        Some(id)
    }
}

/// The API and the current capture's generation, if recording. Only for
/// hooks (GIL held). In a forked child of a recording process, the first
/// call removes the inherited hooks.
#[inline(always)]
unsafe fn recording() -> Option<(&'static Api, u64)> {
    if !ACTIVE.load(Relaxed) {
        if !FORKED_DIRTY.load(Relaxed) {
            return None;
        }
        // SAFETY: hooks run with the GIL held.
        unsafe { forget_in_child() };
        // A followed child records from this very event on.
        if !ACTIVE.load(Relaxed) {
            return None;
        }
    }
    let generation = GENERATION.load(Relaxed);
    // SAFETY: hooks run with the GIL held; API is only written by start()
    // before any hook is installed.
    let api = unsafe { API.get_ref() }.as_ref()?;
    Some((api, generation))
}

/// The setprofile hook (`Py_tracefunc`). The fast path (a function
/// already interned and in the table's front cache, an exact builtin
/// function) reads the capture once and calls nothing; everything else
/// goes through [`profile_slow`].
///
/// # Safety
/// Called by CPython with the GIL held and live `frame`/`arg`.
pub unsafe extern "C" fn profile_cb<const BUILTINS: bool>(
    _obj: PyObj,
    frame: PyObj,
    what: c_int,
    arg: PyObj,
) -> c_int {
    // builtins=False: C events are ignored before anything else.
    if !BUILTINS && what >= api::PY_TRACE_C_CALL {
        return 0;
    }
    if !ACTIVE.load(Relaxed) {
        // In a forked child of a recording process, the slow path removes
        // the inherited hooks (or, followed, records from this event on).
        if FORKED_DIRTY.load(Relaxed) {
            // SAFETY: as below.
            return unsafe { profile_slow(frame, what, arg) };
        }
        return 0;
    }
    // SAFETY: GIL held by CPython's contract for profile functions; API is
    // only written by start() before any hook is installed; CPython passes
    // a live frame, and for C events a live callable. No Python code runs
    // while the capture is borrowed.
    unsafe {
        let Some(api) = API.get_ref().as_ref() else {
            return 0;
        };
        let (kind, key) = match what {
            api::PY_TRACE_CALL => (Kind::Call, api.frame_code(frame) as usize),
            api::PY_TRACE_RETURN => (Kind::Return, api.frame_code(frame) as usize),
            api::PY_TRACE_C_CALL | api::PY_TRACE_C_RETURN | api::PY_TRACE_C_EXCEPTION
                if api.type_of(arg) == api.cfunction_type =>
            {
                let kind = match what {
                    api::PY_TRACE_C_CALL => Kind::CCall,
                    api::PY_TRACE_C_RETURN => Kind::CReturn,
                    _ => Kind::CException,
                };
                (kind, api.m_ml(arg) as usize)
            }
            _ => return profile_slow(frame, what, arg),
        };
        if let Some(cap) = CAPTURE.get().as_mut() {
            if let Some(id) = cap.table.cached(key) {
                cap.writer.event(kind, id);
                return 0;
            }
        }
        profile_slow(frame, what, arg)
    }
}

/// [`profile_cb`] for what its fast path does not cover: a function seen
/// for the first time (interning may call into Python) or not in the front
/// cache, a builtin of a subclass of the builtin function type.
#[cold]
#[inline(never)]
unsafe fn profile_slow(frame: PyObj, what: c_int, arg: PyObj) -> c_int {
    // SAFETY: GIL held by CPython's contract for profile functions.
    let Some((api, g)) = (unsafe { recording() }) else {
        return 0;
    };
    // SAFETY: CPython passes a live frame, and for C events a live callable.
    unsafe {
        let (kind, id) = match what {
            api::PY_TRACE_CALL => (Kind::Call, code_id(api, g, api.frame_code(frame))),
            api::PY_TRACE_RETURN => (Kind::Return, code_id(api, g, api.frame_code(frame))),
            api::PY_TRACE_C_CALL if api.is_cfunction(arg) => (Kind::CCall, cfunc_id(api, g, arg)),
            api::PY_TRACE_C_RETURN if api.is_cfunction(arg) => {
                (Kind::CReturn, cfunc_id(api, g, arg))
            }
            api::PY_TRACE_C_EXCEPTION if api.is_cfunction(arg) => {
                (Kind::CException, cfunc_id(api, g, arg))
            }
            _ => return 0,
        };
        if let Some(id) = id {
            emit(g, kind, id);
        }
    }
    0
}

/// The setprofile hook of this capture.
fn native_hook() -> api::TraceFunc {
    let builtins = !NO_BUILTINS.load(Relaxed);
    if FLOOR_CLOCK.load(Relaxed) {
        return if builtins {
            floor_clock_cb::<true>
        } else {
            floor_clock_cb::<false>
        };
    }
    match (
        FLOOR.load(Relaxed),
        crate::ft::ENABLED.load(Relaxed),
        builtins,
    ) {
        (true, _, _) => floor_cb,
        (_, true, true) => crate::ft::profile_cb::<true>,
        (_, true, false) => crate::ft::profile_cb::<false>,
        (_, false, true) => profile_cb::<true>,
        (_, false, false) => profile_cb::<false>,
    }
}

/// The floor's setprofile hook: does nothing.
unsafe extern "C" fn floor_cb(_obj: PyObj, _frame: PyObj, _what: c_int, _arg: PyObj) -> c_int {
    0
}

/// The floor's monitoring callback: does nothing.
unsafe extern "C" fn mon_floor(_m: PyObj, _args: *const PyObj, _nargs: isize) -> PyObj {
    // SAFETY: called by CPython with the GIL held.
    unsafe { none() }
}

/// Where the clock floor's callbacks store their word: 32 KiB of the
/// shim's own (it fits the L1 cache, which makes the store as cheap as a
/// store of 8 bytes an event can be), written in sequence.
static FLOOR_SINK: [AtomicU64; FLOOR_SINK_WORDS] = [const { AtomicU64::new(0) }; FLOOR_SINK_WORDS];
const FLOOR_SINK_WORDS: usize = 4096;
/// The next word of [`FLOOR_SINK`] (racy on a free-threaded build, which
/// only makes two threads share a word: every index is masked in bounds).
/// Shared by every thread: with several threads recording at once this
/// line would bounce between cores, which rprof's per-thread segments do
/// not, so the bound is meant for single-threaded workloads there.
static FLOOR_SINK_AT: AtomicUsize = AtomicUsize::new(0);

/// The clock floor's work: read the clock, store one word.
#[inline(always)]
fn floor_clock() {
    let ts = crate::ring::timestamp(rprof_abi::Clock::Tsc);
    let i = FLOOR_SINK_AT.load(Relaxed);
    FLOOR_SINK[i & (FLOOR_SINK_WORDS - 1)].store(ts, Relaxed);
    FLOOR_SINK_AT.store(i.wrapping_add(1), Relaxed);
}

/// The clock floor's setprofile hook: every event is one cProfile records
/// (with `builtins=False`, the C events are not).
unsafe extern "C" fn floor_clock_cb<const BUILTINS: bool>(
    _obj: PyObj,
    _frame: PyObj,
    what: c_int,
    _arg: PyObj,
) -> c_int {
    if BUILTINS || what < api::PY_TRACE_C_CALL {
        floor_clock();
    }
    0
}

/// The clock floor's PY_START/PY_RETURN callback.
#[inline(always)]
unsafe extern "C" fn mon_floor_clock(_m: PyObj, _args: *const PyObj, _nargs: isize) -> PyObj {
    floor_clock();
    // SAFETY: called by CPython with the GIL held.
    unsafe { none() }
}

/// The clock floor's CALL/C_RETURN/C_RAISE callback: the clock for the
/// callables cProfile records (exact builtin functions and method
/// descriptors; subtypes, rare, are left out of this lower bound).
#[inline(always)]
unsafe extern "C" fn mon_floor_clock_c(_m: PyObj, args: *const PyObj, nargs: isize) -> PyObj {
    // SAFETY: CPython passes (code, offset, callable, arg0), all live, with
    // the GIL held (or the thread attached); API is read-only while hooks
    // run.
    unsafe {
        if nargs >= 4 {
            if let Some(api) = API.get_ref().as_ref() {
                let t = api.type_of(*args.add(2));
                if t == api.cfunction_type || t == api.method_descr_type {
                    floor_clock();
                }
            }
        }
        none()
    }
}

/// `None`, as a new reference, for the monitoring callbacks to return.
#[inline(always)]
unsafe fn none() -> PyObj {
    // sys.monitoring exists from 3.12 on, where None is immortal (PEP 683):
    // its reference count is never changed, so no Py_IncRef call is needed.
    NONE.load(Relaxed)
}

/// `Py_None`, for the monitoring callbacks.
static NONE: core::sync::atomic::AtomicPtr<core::ffi::c_void> =
    core::sync::atomic::AtomicPtr::new(ptr::null_mut());

#[inline(always)]
unsafe extern "C" fn mon_start(_m: PyObj, args: *const PyObj, nargs: isize) -> PyObj {
    // SAFETY: CPython calls this with the GIL held and `nargs` live args.
    unsafe {
        mon_py_event(args, nargs, Kind::Call);
        none()
    }
}

#[inline(always)]
unsafe extern "C" fn mon_return(_m: PyObj, args: *const PyObj, nargs: isize) -> PyObj {
    // SAFETY: as in mon_start.
    unsafe {
        mon_py_event(args, nargs, Kind::Return);
        none()
    }
}

/// PY_START/RESUME/THROW and PY_RETURN/YIELD/UNWIND: `args[0]` is the code
/// object. The fast path (a code object in the table's front cache) reads
/// the capture once.
#[inline(always)]
unsafe fn mon_py_event(args: *const PyObj, nargs: isize, kind: Kind) {
    if nargs < 1 {
        return;
    }
    if !ACTIVE.load(Relaxed) {
        // In a forked child of a recording process, the slow path removes
        // the inherited hooks (or, followed, records from this event on).
        if FORKED_DIRTY.load(Relaxed) {
            // SAFETY: GIL held; args[0] is live.
            unsafe { mon_py_slow(*args, kind) };
        }
        return;
    }
    // SAFETY: GIL held (CPython's contract for callbacks); args[0] is a
    // live code object; no Python code runs while the capture is borrowed.
    unsafe {
        let code = *args;
        if let Some(cap) = CAPTURE.get().as_mut() {
            if let Some(id) = cap.table.cached(code as usize) {
                cap.writer.event(kind, id);
                return;
            }
        }
        mon_py_slow(code, kind);
    }
}

/// A code object not in the front cache: looked up in the table (which
/// caches it in front), or on first sight interned (which calls into
/// Python), then recorded if the capture still records.
#[cold]
#[inline(never)]
unsafe fn mon_py_slow(code: PyObj, kind: Kind) {
    // SAFETY: GIL held; code live (caller).
    unsafe {
        if let Some((api, g)) = recording() {
            if let Some(id) = code_id(api, g, code) {
                emit(g, kind, id);
            }
        }
    }
}

/// CALL, C_RETURN, C_RAISE: `args` are (code, offset, callable, arg0). A
/// callable that is never recorded (a plain function, whose PY_START
/// follows; a class; a bound method) is answered first, with three type
/// comparisons ([`Api::call_never_recorded`]). A known
/// exact builtin function or method descriptor reads the capture once;
/// the rest goes to [`mon_c_slow`].
#[inline(always)]
unsafe fn mon_c_event(args: *const PyObj, nargs: isize, kind: Kind) {
    if nargs < 4 {
        return;
    }
    if !ACTIVE.load(Relaxed) {
        // As in mon_py_event.
        if FORKED_DIRTY.load(Relaxed) {
            // SAFETY: GIL held; the args are live.
            unsafe { mon_c_slow(args, kind) };
        }
        return;
    }
    // SAFETY: GIL held (CPython's contract); the args are live; API is
    // read-only while hooks run; no Python code runs while the capture is
    // borrowed.
    unsafe {
        let Some(api) = API.get_ref().as_ref() else {
            return;
        };
        let callable = *args.add(2);
        let t = api.type_of(callable);
        if api.call_never_recorded(t) {
            return;
        }
        let Some(cap) = CAPTURE.get().as_mut() else {
            return;
        };
        if t == api.cfunction_type {
            if let Some(id) = cap.table.cached(api.m_ml(callable) as usize) {
                cap.writer.event(kind, id);
                return;
            }
        } else if t == api.method_descr_type {
            let arg0 = *args.add(3);
            if arg0 != crate::ft::missing() {
                if let Some(e) = cap.table.get(callable as usize) {
                    let (id, objclass) = (e.id, e.objclass);
                    if !objclass.is_null() {
                        let at = api.type_of(arg0);
                        if at != objclass && (api.type_is_subtype)(at, objclass) == 0 {
                            return;
                        }
                    }
                    cap.writer.event(kind, id);
                    return;
                }
            }
        }
        mon_c_slow(args, kind);
    }
}

/// [`mon_c_event`] for a callable seen for the first time (labelling it
/// may call into Python), not in the front cache, or of a subtype.
#[cold]
#[inline(never)]
unsafe fn mon_c_slow(args: *const PyObj, kind: Kind) {
    // SAFETY: as in mon_c_event.
    unsafe {
        if let Some((api, g)) = recording() {
            let Some(missing) =
                capture(g).map(|c| c.monitoring.as_ref().map_or(ptr::null_mut(), |m| m.missing))
            else {
                return;
            };
            if let Some(id) = callable_id(api, g, *args.add(2), *args.add(3), missing) {
                emit(g, kind, id);
            }
        }
    }
}

#[inline(always)]
unsafe extern "C" fn mon_call(_m: PyObj, args: *const PyObj, nargs: isize) -> PyObj {
    // SAFETY: as in mon_start.
    unsafe {
        mon_c_event(args, nargs, Kind::CCall);
        none()
    }
}

#[inline(always)]
unsafe extern "C" fn mon_c_return(_m: PyObj, args: *const PyObj, nargs: isize) -> PyObj {
    // SAFETY: as in mon_start.
    unsafe {
        mon_c_event(args, nargs, Kind::CReturn);
        none()
    }
}

#[inline(always)]
unsafe extern "C" fn mon_c_raise(_m: PyObj, args: *const PyObj, nargs: isize) -> PyObj {
    // SAFETY: as in mon_start.
    unsafe {
        mon_c_event(args, nargs, Kind::CException);
        none()
    }
}

crate::callback::vectorcall!(vc_start => mon_start);
crate::callback::vectorcall!(vc_return => mon_return);
crate::callback::vectorcall!(vc_call => mon_call);
crate::callback::vectorcall!(vc_c_return => mon_c_return);
crate::callback::vectorcall!(vc_c_raise => mon_c_raise);
crate::callback::vectorcall!(vc_floor => mon_floor);
crate::callback::vectorcall!(vc_floor_clock => mon_floor_clock);
crate::callback::vectorcall!(vc_floor_clock_c => mon_floor_clock_c);

/// The monitoring callbacks as vectorcall functions, in [`Callback`] order.
const VECTORCALLS: [crate::callback::Vectorcall; 5] =
    [vc_start, vc_return, vc_call, vc_c_return, vc_c_raise];

/// Installed as `threading`'s profile hook: runs as a Python-level profile
/// function on the first event of each new thread, swaps itself for the
/// native hook and hands that first event over.
unsafe extern "C" fn thread_bootstrap(_m: PyObj, args: PyObj) -> PyObj {
    // SAFETY: called by CPython with the GIL held and a tuple of
    // (frame, event, arg), all borrowed.
    unsafe {
        let Some(api) = API.get_ref().as_ref() else {
            return ptr::null_mut();
        };
        if !ACTIVE.load(Relaxed) {
            forget_in_child();
            (api.eval_set_profile)(None, ptr::null_mut());
            return api.new_none();
        }
        (api.eval_set_profile)(Some(native_hook()), ptr::null_mut());
        if (api.tuple_size)(args) == 3 {
            let frame = (api.tuple_get_item)(args, 0);
            let event = (api.tuple_get_item)(args, 1);
            let arg = (api.tuple_get_item)(args, 2);
            if let Some(what) = event_code(api, event) {
                native_hook()(ptr::null_mut(), frame, what, arg);
            }
        }
        (api.err_clear)();
        api.new_none()
    }
}

unsafe fn event_code(api: &Api, event: PyObj) -> Option<c_int> {
    const NAMES: [(&CStr, c_int); 5] = [
        (c"call", api::PY_TRACE_CALL),
        (c"return", api::PY_TRACE_RETURN),
        (c"c_call", api::PY_TRACE_C_CALL),
        (c"c_return", api::PY_TRACE_C_RETURN),
        (c"c_exception", api::PY_TRACE_C_EXCEPTION),
    ];
    if event.is_null() {
        return None;
    }
    for (name, code) in NAMES {
        // SAFETY: event is a live object; GIL held.
        if unsafe { (api.unicode_compare_ascii)(event, name.as_ptr() as *const c_char) } == 0 {
            return Some(code);
        }
    }
    None
}
