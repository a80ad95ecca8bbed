//! The replay of `_lsprof.c`'s enter/leave logic, with one stack per thread.
//!
//! Names follow `_lsprof.c` so the two can be read side by side:
//! `ptrace_enter_call` is [`Aggregator::enter`], `ptrace_leave_call` is
//! [`Aggregator::leave`], `Stop` is `stop`, `flush_unmatched` is the loop in
//! [`Aggregator::finish`]. Time is kept in integer ticks of the capture's
//! clock and converted to seconds once, at the end.

use crate::paths::{CallPaths, PathLimits, PathRecorder, NO_NODE};
use crate::{CallStats, FuncId, Function, FunctionStats, Profile};
use rustc_hash::FxHashMap;

/// Entries of the caller→callee edge cache (a power of two).
const SUB_CACHE: usize = 4096;

/// Marks a frame that had no caller on its thread's stack when it was entered.
const NO_SUBENTRY: u32 = u32::MAX;

/// Bounds on what a capture may make the aggregator hold. The events come
/// from another process that may be hostile (or broken); without bounds it
/// could make rprof allocate without limit. Real programs stay far below
/// every one of them; what goes beyond is refused and counted (see
/// [`Refused`]), and the profile is then reported as incomplete.
pub mod limits {
    /// Distinct functions.
    pub const FUNCTIONS: usize = 1 << 20;
    /// Distinct caller→callee edges.
    pub const EDGES: usize = 1 << 22;
    /// Threads with state (an open frame or a recursion level).
    pub const THREADS: usize = 1 << 14;
    /// Open frames on one thread.
    pub const DEPTH: usize = 1 << 20;
    /// Per-thread counters (one per function and per edge a thread has
    /// touched, summed over threads).
    pub const CELLS: usize = 1 << 26;
}

/// What the aggregator refused because a [`limits`] bound was reached.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Refused {
    /// Function definitions beyond [`limits::FUNCTIONS`].
    pub functions: u64,
    /// Thread switches to a new thread beyond [`limits::THREADS`].
    pub threads: u64,
    /// Calls not counted: beyond [`limits::DEPTH`], [`limits::EDGES`] or
    /// [`limits::CELLS`].
    pub frames: u64,
    /// Thread names beyond [`limits::THREADS`].
    pub names: u64,
}

impl Refused {
    /// Whether anything was refused.
    pub fn any(&self) -> bool {
        *self != Refused::default()
    }
}

/// Counters for one function or one caller→callee edge (`ProfilerEntry` /
/// `ProfilerSubEntry` in `_lsprof.c`).
#[derive(Clone, Copy, Default, Debug)]
struct Counters {
    /// Completed calls.
    callcount: u64,
    /// Completed calls that returned into an outer activation of the same
    /// function (or edge).
    recursivecalls: u64,
    /// Total (cumulative) ticks, counted at the outermost level.
    tt: i64,
    /// Inline (own) ticks.
    it: i64,
}

#[derive(Clone, Copy, Debug)]
struct Frame {
    entry: FuncId,
    t0: u64,
    /// Ticks spent in callees of this frame.
    subt: i64,
    /// Index of the (caller, entry) edge, or [`NO_SUBENTRY`].
    sub: u32,
    /// Call-path node, or [`NO_NODE`].
    node: u32,
    /// The call was folded into an ancestor's path node.
    folded: bool,
}

#[derive(Default, Debug)]
struct ThreadState {
    stack: Vec<Frame>,
    /// Recursion level per function on this thread (`recursionLevel`).
    /// Signed, as in `_lsprof.c`: unbalanced streams may drive it below zero.
    level: Vec<i32>,
    /// Recursion level per edge on this thread.
    sub_level: Vec<i32>,
    /// This thread's index in the path recorder, once it has one.
    path_thread: Option<u32>,
    /// Calls refused (beyond a limit) and still open: their returns are
    /// ignored, so the frames below them stay matched.
    overflow: u64,
}

impl ThreadState {
    #[inline]
    fn level(&mut self, f: FuncId) -> &mut i32 {
        let i = f as usize;
        if i >= self.level.len() {
            self.level.resize(i + 1, 0);
        }
        &mut self.level[i]
    }

    #[inline]
    fn sub_level(&mut self, s: u32) -> &mut i32 {
        let i = s as usize;
        if i >= self.sub_level.len() {
            self.sub_level.resize(i + 1, 0);
        }
        &mut self.sub_level[i]
    }
}

/// Aggregates enter/leave events into exact cProfile statistics.
///
/// Functions are registered with [`intern`](Self::intern), which returns the
/// same id for the same key, so two code objects with the same
/// `(file, line, name)` share one entry, as they share one key in pstats.
#[derive(Debug)]
pub struct Aggregator {
    functions: Vec<Function>,
    index: FxHashMap<Function, FuncId>,
    entries: Vec<Counters>,
    /// Whether a function was ever entered: `getEntry` in `_lsprof.c`
    /// returns NULL for functions that never were, and a leave for such a
    /// function only pops the stack.
    entered: Vec<bool>,
    sub_index: FxHashMap<(FuncId, FuncId), u32>,
    /// Direct-mapped cache in front of `sub_index`: (caller, callee, edge).
    sub_cache: Box<[(FuncId, FuncId, u32)]>,
    subs: Vec<(FuncId, FuncId, Counters)>,
    threads: FxHashMap<u64, ThreadState>,
    current_tid: u64,
    current: ThreadState,
    seconds_per_tick: f64,
    paths: Option<PathRecorder>,
    thread_names: FxHashMap<u64, String>,
    /// Per-thread counters allocated, summed over threads.
    cells: usize,
    refused: Refused,
    /// Caller→callee edges are kept (cProfile's `subcalls`).
    subcalls: bool,
}

impl Default for Aggregator {
    fn default() -> Self {
        Self::new()
    }
}

impl Aggregator {
    /// An aggregator whose timestamps are nanoseconds.
    pub fn new() -> Self {
        Self::with_tick_seconds(1e-9)
    }

    /// An aggregator whose timestamps are ticks of `seconds_per_tick`.
    pub fn with_tick_seconds(seconds_per_tick: f64) -> Self {
        Aggregator {
            functions: Vec::new(),
            index: FxHashMap::default(),
            entries: Vec::new(),
            entered: Vec::new(),
            sub_index: FxHashMap::default(),
            sub_cache: vec![(u32::MAX, u32::MAX, 0); SUB_CACHE].into_boxed_slice(),
            subs: Vec::new(),
            threads: FxHashMap::default(),
            current_tid: 0,
            current: ThreadState::default(),
            seconds_per_tick,
            paths: None,
            thread_names: FxHashMap::default(),
            cells: 0,
            refused: Refused::default(),
            subcalls: true,
        }
    }

    /// Whether caller→callee edges are kept: cProfile's `subcalls`. With
    /// `false`, as `_lsprof.c` without `POF_SUBCALLS`, no sub-entry is
    /// created or updated, and every function's callers are empty.
    pub fn set_subcalls(&mut self, on: bool) {
        self.subcalls = on;
    }

    /// What was refused because a bound was reached.
    pub fn refused(&self) -> Refused {
        self.refused
    }

    /// Like [`intern`](Self::intern), but refuses (and counts) a new
    /// function beyond [`limits::FUNCTIONS`].
    pub fn try_intern(&mut self, func: Function) -> Option<FuncId> {
        if self.functions.len() >= limits::FUNCTIONS && !self.index.contains_key(&func) {
            self.refused.functions += 1;
            return None;
        }
        Some(self.intern(func))
    }

    /// Also records exact call paths (and, if `limits.max_spans > 0`, the
    /// timeline), returned by [`finish_with_paths`](Self::finish_with_paths).
    pub fn record_paths(&mut self, limits: PathLimits) {
        self.paths = Some(PathRecorder::new(limits));
    }

    /// Names a thread (as Python names it).
    pub fn name_thread(&mut self, tid: u64, name: String) {
        if self.thread_names.len() >= limits::THREADS && !self.thread_names.contains_key(&tid) {
            self.refused.names += 1;
            return;
        }
        self.thread_names.insert(tid, name);
    }

    /// Changes the tick length; only meaningful before [`finish`](Self::finish).
    pub fn set_tick_seconds(&mut self, seconds_per_tick: f64) {
        self.seconds_per_tick = seconds_per_tick;
    }

    /// Registers a function and returns its id; the same key always yields
    /// the same id.
    pub fn intern(&mut self, func: Function) -> FuncId {
        if let Some(&id) = self.index.get(&func) {
            return id;
        }
        let id = self.functions.len() as FuncId;
        self.functions.push(func.clone());
        self.entries.push(Counters::default());
        self.entered.push(false);
        self.index.insert(func, id);
        id
    }

    /// Number of interned functions.
    pub fn function_count(&self) -> usize {
        self.functions.len()
    }

    /// The thread whose events follow. Thread ids are opaque. Returns
    /// false, and switches nothing, if `tid` would be a thread beyond
    /// [`limits::THREADS`]: the caller must drop that thread's events.
    pub fn switch_thread(&mut self, tid: u64) -> bool {
        if tid == self.current_tid {
            return true;
        }
        if self.threads.len() >= limits::THREADS && !self.threads.contains_key(&tid) {
            self.refused.threads += 1;
            return false;
        }
        let next = self.threads.remove(&tid).unwrap_or_default();
        let prev = std::mem::replace(&mut self.current, next);
        if !prev.stack.is_empty() || !prev.level.is_empty() {
            self.threads.insert(self.current_tid, prev);
        }
        self.current_tid = tid;
        true
    }

    /// Whether entering `func` (from the current top of the stack) stays
    /// within every bound; counts the refusal if not.
    #[cold]
    fn over_limit(&mut self, func: FuncId) -> bool {
        let st = &self.current;
        let mut grow = (func as usize + 1).saturating_sub(st.level.len());
        if let Some(caller) = st.stack.last() {
            if self.subs.len() >= limits::EDGES
                && !self.sub_index.contains_key(&(caller.entry, func))
            {
                grow = usize::MAX;
            }
        }
        if st.stack.len() >= limits::DEPTH || grow > limits::CELLS - self.cells.min(limits::CELLS) {
            self.refused.frames += 1;
            return true;
        }
        self.cells += grow;
        false
    }

    /// Depth of the current thread's stack.
    pub fn depth(&self) -> usize {
        self.current.stack.len()
    }

    /// A call to `func` starts at tick `t` on the current thread
    /// (`ptrace_enter_call` + `initContext`).
    ///
    /// # Panics
    /// If `func` was not returned by [`intern`](Self::intern).
    #[inline]
    pub fn enter(&mut self, func: FuncId, t: u64) {
        if self.current.overflow > 0
            || (func as usize >= self.current.level.len()
                || self.current.stack.len() >= limits::DEPTH
                || self.subs.len() >= limits::EDGES)
                && self.over_limit(func)
        {
            if self.current.overflow > 0 {
                self.refused.frames += 1;
            }
            self.current.overflow += 1;
            return;
        }
        let sub = match self.current.stack.last().filter(|_| self.subcalls) {
            Some(caller) => {
                let s = self.subentry(caller.entry, func);
                let grow = (s as usize + 1).saturating_sub(self.current.sub_level.len());
                if grow > 0 {
                    if grow > limits::CELLS - self.cells.min(limits::CELLS) {
                        self.refused.frames += 1;
                        self.current.overflow += 1;
                        return;
                    }
                    self.cells += grow;
                }
                s
            }
            None => NO_SUBENTRY,
        };
        self.entered[func as usize] = true;
        let level = self.current.level(func);
        *level = level.saturating_add(1);
        if sub != NO_SUBENTRY {
            let level = self.current.sub_level(sub);
            *level = level.saturating_add(1);
        }
        let (node, folded) = match &mut self.paths {
            None => (NO_NODE, false),
            Some(p) => {
                let th = match self.current.path_thread {
                    Some(th) => th,
                    None => {
                        let th = p.thread(self.current_tid);
                        self.current.path_thread = Some(th);
                        th
                    }
                };
                let parent = self.current.stack.last().map_or(NO_NODE, |f| f.node);
                let n = p.enter(th, parent, func, self.current.stack.len(), t);
                (n, n == parent)
            }
        };
        self.current.stack.push(Frame {
            entry: func,
            t0: t,
            subt: 0,
            sub,
            node,
            folded,
        });
    }

    /// A call to `func` ends at tick `t` on the current thread
    /// (`ptrace_leave_call`). Like cProfile, this pops the top of the stack
    /// whatever it is, and ignores a return when the stack is empty (frames
    /// that were already running when the capture started).
    ///
    /// # Panics
    /// If `func` was not returned by [`intern`](Self::intern).
    #[inline]
    pub fn leave(&mut self, func: FuncId, t: u64) {
        if self.current.overflow > 0 {
            self.current.overflow -= 1;
            return;
        }
        let Some(frame) = self.current.stack.pop() else {
            return;
        };
        // A return for another function than the frame's (only a broken or
        // hostile stream does that) must not grow this thread's counters
        // beyond the bound either.
        let func = if func != frame.entry
            && func as usize >= self.current.level.len()
            && self.cells.saturating_add(func as usize) >= limits::CELLS
        {
            self.refused.frames += 1;
            frame.entry
        } else {
            func
        };
        if self.entered[func as usize] {
            self.stop(frame, func, t);
        }
    }

    /// `Stop` in `_lsprof.c`: the frame on top of the stack (already popped)
    /// ends, charged to `func`.
    #[inline]
    fn stop(&mut self, frame: Frame, func: FuncId, t: u64) {
        let tt = (t as i64).wrapping_sub(frame.t0 as i64);
        let it = tt.saturating_sub(frame.subt);
        if let Some(p) = &mut self.paths {
            let span = match (p.wants_spans(), self.current.path_thread) {
                (true, Some(th)) => Some((
                    th,
                    frame.entry,
                    frame.t0,
                    t,
                    self.current.stack.len() as u32,
                )),
                _ => None,
            };
            p.stop(frame.node, frame.folded, tt, it, span);
        }
        let caller = match self.current.stack.last_mut() {
            Some(prev) => {
                prev.subt = prev.subt.saturating_add(tt);
                Some(prev.entry)
            }
            None => None,
        };
        let level = self.current.level(func);
        *level = level.saturating_sub(1);
        let outermost = *level == 0;
        let entry = &mut self.entries[func as usize];
        if outermost {
            entry.tt = entry.tt.saturating_add(tt);
        } else {
            entry.recursivecalls += 1;
        }
        entry.it = entry.it.saturating_add(it);
        entry.callcount += 1;
        if let Some(caller) = caller.filter(|_| self.subcalls) {
            let s = if frame.entry == func && frame.sub != NO_SUBENTRY {
                frame.sub
            } else {
                self.subentry(caller, func)
            };
            let level = self.current.sub_level(s);
            *level = level.saturating_sub(1);
            let outermost = *level == 0;
            let sub = &mut self.subs[s as usize].2;
            if outermost {
                sub.tt = sub.tt.saturating_add(tt);
            } else {
                sub.recursivecalls += 1;
            }
            sub.it = sub.it.saturating_add(it);
            sub.callcount += 1;
        }
    }

    #[inline]
    fn subentry(&mut self, caller: FuncId, callee: FuncId) -> u32 {
        let slot = (caller.wrapping_mul(0x9e37_79b1) ^ callee) as usize & (SUB_CACHE - 1);
        let (c, e, s) = self.sub_cache[slot];
        if c == caller && e == callee {
            return s;
        }
        let s = self.subentry_slow(caller, callee);
        self.sub_cache[slot] = (caller, callee, s);
        s
    }

    #[inline(never)]
    fn subentry_slow(&mut self, caller: FuncId, callee: FuncId) -> u32 {
        let next = self.subs.len() as u32;
        let subs = &mut self.subs;
        *self.sub_index.entry((caller, callee)).or_insert_with(|| {
            subs.push((caller, callee, Counters::default()));
            next
        })
    }

    /// Ends the capture at tick `t`: every frame still open on any thread
    /// returns now (`flush_unmatched`), and the statistics are built.
    pub fn finish(self, t: u64) -> Profile {
        self.finish_with_paths(t).0
    }

    /// Like [`finish`](Self::finish), and also returns the call paths if
    /// [`record_paths`](Self::record_paths) was called.
    pub fn finish_with_paths(mut self, t: u64) -> (Profile, Option<CallPaths>) {
        let mut tids: Vec<u64> = self.threads.keys().copied().collect();
        tids.push(self.current_tid);
        tids.sort_unstable();
        tids.dedup();
        for tid in tids {
            self.switch_thread(tid);
            while let Some(frame) = self.current.stack.pop() {
                self.stop(frame, frame.entry, t);
            }
        }
        let paths = self.paths.take().map(|p| {
            let mut paths = p.finish(self.functions.clone(), self.seconds_per_tick, t);
            for th in &mut paths.threads {
                th.name = self.thread_names.get(&th.tid).cloned();
            }
            paths
        });
        (self.build(), paths)
    }

    fn build(self) -> Profile {
        let spt = self.seconds_per_tick;
        let stats = |c: &Counters| CallStats {
            ncalls: c.callcount,
            primitive: c.callcount - c.recursivecalls,
            tottime: c.it as f64 * spt,
            cumtime: c.tt as f64 * spt,
        };
        // Functions with no completed call are left out, as cProfile does.
        let mut remap = vec![u32::MAX; self.functions.len()];
        let mut functions = Vec::new();
        for (i, (func, entry)) in self.functions.into_iter().zip(&self.entries).enumerate() {
            if entry.callcount == 0 {
                continue;
            }
            remap[i] = functions.len() as u32;
            functions.push(FunctionStats {
                func,
                totals: stats(entry),
                callers: Vec::new(),
            });
        }
        for (caller, callee, counters) in &self.subs {
            if counters.callcount == 0 {
                continue;
            }
            let (caller, callee) = (remap[*caller as usize], remap[*callee as usize]);
            if caller == u32::MAX || callee == u32::MAX {
                continue;
            }
            functions[callee as usize]
                .callers
                .push((caller, stats(counters)));
        }
        Profile { functions }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PathNode;

    fn f(name: &str) -> Function {
        Function::python("t.py", 1, name)
    }

    fn agg() -> (Aggregator, FuncId, FuncId, FuncId) {
        let mut a = Aggregator::new();
        let x = a.intern(f("x"));
        let y = a.intern(f("y"));
        let z = a.intern(f("z"));
        a.switch_thread(1);
        (a, x, y, z)
    }

    fn callers(p: &Profile, callee: &str) -> Vec<(String, CallStats)> {
        let s = p.get(&f(callee)).unwrap();
        let mut v: Vec<_> = s
            .callers
            .iter()
            .map(|(c, st)| (p.functions[*c as usize].func.name.clone(), *st))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    #[test]
    fn simple_call_times() {
        let (mut a, x, y, _) = agg();
        a.enter(x, 0);
        a.enter(y, 10);
        a.leave(y, 30);
        a.leave(x, 100);
        let p = a.finish(100);
        let xs = p.get(&f("x")).unwrap().totals;
        let ys = p.get(&f("y")).unwrap().totals;
        assert_eq!((xs.ncalls, xs.primitive), (1, 1));
        assert!((xs.cumtime - 100e-9).abs() < 1e-15);
        assert!((xs.tottime - 80e-9).abs() < 1e-15);
        assert!((ys.tottime - 20e-9).abs() < 1e-15);
        let c = callers(&p, "y");
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].0, "x");
        assert_eq!(c[0].1.ncalls, 1);
        assert!(p.get(&f("x")).unwrap().callers.is_empty());
    }

    #[test]
    fn direct_recursion_counts_primitive_calls() {
        // x -> x -> x, as in a factorial of depth 3.
        let (mut a, x, _, _) = agg();
        a.enter(x, 0);
        a.enter(x, 10);
        a.enter(x, 20);
        a.leave(x, 30);
        a.leave(x, 40);
        a.leave(x, 50);
        let p = a.finish(50);
        let xs = p.get(&f("x")).unwrap().totals;
        assert_eq!((xs.ncalls, xs.primitive), (3, 1));
        // cumtime only counted at the outermost level.
        assert!((xs.cumtime - 50e-9).abs() < 1e-15);
        assert!((xs.tottime - 50e-9).abs() < 1e-15);
        // The self-edge x->x: 2 calls, 1 primitive (the inner one is
        // recursive relative to the edge).
        let c = callers(&p, "x");
        assert_eq!(c.len(), 1);
        assert_eq!((c[0].1.ncalls, c[0].1.primitive), (2, 1));
    }

    #[test]
    fn mutual_recursion() {
        // x -> y -> x -> y
        let (mut a, x, y, _) = agg();
        a.enter(x, 0);
        a.enter(y, 1);
        a.enter(x, 2);
        a.enter(y, 3);
        a.leave(y, 4);
        a.leave(x, 5);
        a.leave(y, 6);
        a.leave(x, 7);
        let p = a.finish(7);
        let xs = p.get(&f("x")).unwrap().totals;
        let ys = p.get(&f("y")).unwrap().totals;
        assert_eq!((xs.ncalls, xs.primitive), (2, 1));
        assert_eq!((ys.ncalls, ys.primitive), (2, 1));
        let cy = callers(&p, "y");
        assert_eq!((cy[0].1.ncalls, cy[0].1.primitive), (2, 1));
        let cx = callers(&p, "x");
        assert_eq!(
            (cx[0].0.as_str(), cx[0].1.ncalls, cx[0].1.primitive),
            ("y", 1, 1)
        );
    }

    #[test]
    fn returns_of_frames_running_before_start_are_ignored() {
        let (mut a, x, y, z) = agg();
        // z was running before the capture: its return arrives first.
        a.leave(z, 5);
        a.enter(x, 10);
        a.leave(x, 20);
        a.leave(y, 30); // y's frame predates the capture too
        let p = a.finish(40);
        assert!(p.get(&f("z")).is_none());
        assert!(p.get(&f("y")).is_none());
        assert_eq!(p.get(&f("x")).unwrap().totals.ncalls, 1);
    }

    #[test]
    fn open_frames_are_flushed_at_finish() {
        let (mut a, x, y, _) = agg();
        a.enter(x, 0);
        a.enter(y, 10);
        let p = a.finish(100);
        let ys = p.get(&f("y")).unwrap().totals;
        let xs = p.get(&f("x")).unwrap().totals;
        assert_eq!(ys.ncalls, 1);
        assert_eq!(xs.ncalls, 1);
        assert!((ys.cumtime - 90e-9).abs() < 1e-15);
        assert!((xs.tottime - 10e-9).abs() < 1e-15);
    }

    #[test]
    fn threads_have_their_own_stacks_and_levels() {
        let (mut a, x, y, _) = agg();
        a.enter(x, 0); // thread 1
        a.switch_thread(2);
        a.enter(x, 1); // same function on thread 2 is not recursion
        a.enter(y, 2);
        a.switch_thread(1);
        a.leave(x, 3);
        a.switch_thread(2);
        a.leave(y, 4);
        a.leave(x, 5);
        let p = a.finish(5);
        let xs = p.get(&f("x")).unwrap().totals;
        assert_eq!((xs.ncalls, xs.primitive), (2, 2));
        assert!((xs.cumtime - 7e-9).abs() < 1e-15);
        assert_eq!(callers(&p, "y")[0].0, "x");
    }

    #[test]
    fn same_key_same_id() {
        let mut a = Aggregator::new();
        let one = a.intern(f("x"));
        let two = a.intern(f("x"));
        assert_eq!(one, two);
        assert_eq!(a.function_count(), 1);
    }

    #[test]
    fn never_completed_functions_are_omitted_but_flushed_ones_are_not() {
        let (mut a, x, _, z) = agg();
        a.enter(x, 0);
        a.leave(x, 1);
        let _ = z;
        let p = a.finish(2);
        assert_eq!(p.functions.len(), 1);
        assert_eq!(p.total_calls(), 1);
    }

    fn paths_agree_with(p: &Profile, paths: &CallPaths) {
        use std::collections::HashMap;
        let mut calls: HashMap<&Function, u64> = HashMap::new();
        let mut self_total = 0.0;
        for th in &paths.threads {
            for n in &th.nodes {
                *calls.entry(&paths.functions[n.func as usize]).or_default() += n.calls;
                self_total += n.self_time;
            }
        }
        for f in &p.functions {
            assert_eq!(
                calls.get(&f.func).copied().unwrap_or(0),
                f.totals.ncalls,
                "{:?}",
                f.func
            );
        }
        assert!(
            (self_total - p.total_time()).abs() < 1e-12,
            "{self_total} vs {}",
            p.total_time()
        );
    }

    #[test]
    fn call_paths_split_a_function_by_caller_and_keep_totals() {
        let (mut a, x, y, z) = agg();
        a.record_paths(PathLimits {
            max_spans: 100,
            ..PathLimits::default()
        });
        // x -> y -> z, then x -> z directly, then y -> y -> y (recursion).
        a.enter(x, 0);
        a.enter(y, 1);
        a.enter(z, 2);
        a.leave(z, 4);
        a.leave(y, 5);
        a.enter(z, 6);
        a.leave(z, 9);
        a.leave(x, 10);
        a.enter(y, 20);
        a.enter(y, 21);
        a.enter(y, 22);
        a.leave(y, 23);
        a.leave(y, 24);
        a.leave(y, 25);
        let (p, paths) = a.finish_with_paths(30);
        let paths = paths.unwrap();
        paths_agree_with(&p, &paths);
        let th = &paths.threads[0];
        // Paths: x, x;y, x;y;z, x;z, y, y;y, y;y;y
        assert_eq!(th.nodes.len(), 7);
        let name = |n: &PathNode| paths.functions[n.func as usize].name.clone();
        let z_paths: Vec<_> = th.nodes.iter().filter(|n| name(n) == "z").collect();
        assert_eq!(z_paths.len(), 2);
        assert!(z_paths.iter().all(|n| n.calls == 1));
        // The timeline holds every call, properly nested.
        assert_eq!(th.spans.len(), 7);
        let outer = th
            .spans
            .iter()
            .find(|s| s.depth == 0 && name(&th.nodes[0]) == "x")
            .unwrap();
        assert!((outer.end - outer.start - 10e-9).abs() < 1e-15);
    }

    #[test]
    fn path_limits_fold_and_say_so() {
        let (mut a, x, _, _) = agg();
        a.record_paths(PathLimits {
            max_depth: 3,
            max_nodes: 100,
            max_spans: 2,
        });
        for i in 0..10 {
            a.enter(x, i);
        }
        for i in 0..10 {
            a.leave(x, 10 + i);
        }
        let (p, paths) = a.finish_with_paths(20);
        let paths = paths.unwrap();
        assert_eq!(paths.threads[0].nodes.len(), 3);
        assert_eq!(paths.truncation.depth_folded, 7);
        assert_eq!(paths.truncation.spans_dropped, 8);
        // Self time is kept even where calls are folded.
        let self_total: f64 = paths.threads[0].nodes.iter().map(|n| n.self_time).sum();
        assert!((self_total - p.total_time()).abs() < 1e-12);
    }

    #[test]
    fn without_subcalls_no_caller_is_kept() {
        let mut a = Aggregator::new();
        a.set_subcalls(false);
        let x = a.intern(f("x"));
        let y = a.intern(f("y"));
        a.enter(x, 0);
        a.enter(y, 1);
        a.enter(y, 2);
        a.leave(y, 3);
        a.leave(y, 5);
        a.leave(x, 10);
        let p = a.finish(10);
        let ys = p.get(&f("y")).unwrap();
        assert_eq!((ys.totals.ncalls, ys.totals.primitive), (2, 1));
        assert!(ys.callers.is_empty());
        assert!(p.get(&f("x")).unwrap().callers.is_empty());
    }
}
