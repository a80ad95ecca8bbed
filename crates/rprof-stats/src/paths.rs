//! Exact call paths: the call tree of every thread (calls, self and total
//! time per path) and, optionally, the timeline of every call.
//!
//! pstats keeps only caller→callee edges; these keep the whole path, which
//! is what flame graphs, speedscope and Chrome traces show. Both are fed by
//! the [`Aggregator`](crate::Aggregator) from the same stack it keeps for
//! the pstats numbers, so the totals agree: per function, the calls summed
//! over its paths equal its pstats `ncalls`, and the self times summed over
//! all paths equal the total `tottime`.
//!
//! Memory is bounded: paths deeper than [`PathLimits::max_depth`] are
//! folded into their ancestor at that depth, a tree that reaches
//! [`PathLimits::max_nodes`] folds new paths into their parent, and the
//! timeline keeps at most [`PathLimits::max_spans`] calls. Each of these is
//! counted in [`Truncation`], so writers can say so.

use crate::FuncId;
use rustc_hash::FxHashMap;

/// Bounds on the memory the call paths may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PathLimits {
    /// Deepest path kept; deeper calls are charged to their ancestor at
    /// this depth.
    pub max_depth: u32,
    /// Most tree nodes, over all threads.
    pub max_nodes: u32,
    /// Most calls kept in the timeline (0: no timeline).
    pub max_spans: usize,
}

impl Default for PathLimits {
    fn default() -> Self {
        PathLimits {
            max_depth: 512,
            max_nodes: 4_000_000,
            max_spans: 0,
        }
    }
}

/// How much the limits cut.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Truncation {
    /// Calls charged to an ancestor because they were deeper than
    /// `max_depth`.
    pub depth_folded: u64,
    /// Calls charged to their parent because the tree was full.
    pub node_folded: u64,
    /// Calls left out of the timeline because it was full.
    pub spans_dropped: u64,
}

impl Truncation {
    /// True if nothing was cut.
    pub fn is_empty(&self) -> bool {
        *self == Truncation::default()
    }
}

/// A node of a call tree.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PathNode {
    /// The function (an index into [`CallPaths::functions`]).
    pub func: FuncId,
    /// The parent node, `None` for a thread's outermost calls.
    pub parent: Option<u32>,
    /// Completed calls through this path.
    pub calls: u64,
    /// Time spent in the function itself on this path, in seconds.
    pub self_time: f64,
    /// Time spent in the function and its callees on this path, in seconds.
    pub total_time: f64,
}

/// One completed call on the timeline.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Span {
    /// The function (an index into [`CallPaths::functions`]).
    pub func: FuncId,
    /// Start, in seconds since the capture started.
    pub start: f64,
    /// End, in seconds since the capture started.
    pub end: f64,
    /// Depth on its thread's stack (0 = outermost).
    pub depth: u32,
}

/// One thread's paths.
#[derive(Clone, Debug, PartialEq)]
pub struct ThreadPaths {
    /// The native thread id.
    pub tid: u64,
    /// The thread's name as Python knows it, if it was learned.
    pub name: Option<String>,
    /// The call tree: nodes in creation order (a parent before its
    /// children).
    pub nodes: Vec<PathNode>,
    /// Completed calls in the order they ended (only with a timeline).
    pub spans: Vec<Span>,
    /// The process the thread belongs to, in a profile merged from several
    /// processes ([`merge_paths`](crate::merge_paths)); `None` in a
    /// single-process capture. Call-path formats then show the process as
    /// the outermost frame, above the thread.
    pub process: Option<ProcessTag>,
}

/// Which process a thread of a merged profile belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ProcessTag {
    /// The process id.
    pub pid: u32,
    /// How the call-path formats name it: the process's title or command
    /// line, already bounded and made printable by whoever made the tag,
    /// e.g. `gunicorn: worker [app:app] (pid 1234)`.
    pub label: String,
}

/// The call paths of a capture.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CallPaths {
    /// Every function the paths refer to, by [`FuncId`] (the aggregator's
    /// interned functions, including any with no completed call).
    pub functions: Vec<crate::Function>,
    /// Per thread, in the order threads were first seen.
    pub threads: Vec<ThreadPaths>,
    /// What the limits cut.
    pub truncation: Truncation,
    /// Length of the capture in seconds (first to last recorded moment).
    pub duration: f64,
}

pub(crate) const NO_NODE: u32 = u32::MAX;
/// Entries of the parent→child cache (a power of two).
const CHILD_CACHE: usize = 8192;

#[derive(Clone, Copy, Debug)]
struct RawNode {
    func: FuncId,
    parent: u32,
    thread: u32,
    calls: u64,
    self_ticks: i64,
    total_ticks: i64,
}

#[derive(Clone, Copy, Debug)]
struct RawSpan {
    func: FuncId,
    start: u64,
    end: u64,
    depth: u32,
}

/// The recorder the aggregator drives.
#[derive(Debug)]
pub(crate) struct PathRecorder {
    limits: PathLimits,
    nodes: Vec<RawNode>,
    children: FxHashMap<(u32, FuncId), u32>,
    /// Direct-mapped cache in front of `children`: (parent key, func, node).
    child_cache: Box<[(u32, FuncId, u32)]>,
    /// Thread index → (tid, outermost-call lookup parent key, spans).
    threads: Vec<(u64, Vec<RawSpan>)>,
    thread_index: FxHashMap<u64, u32>,
    spans: usize,
    truncation: Truncation,
    first_ts: Option<u64>,
}

impl PathRecorder {
    pub(crate) fn new(limits: PathLimits) -> Self {
        PathRecorder {
            limits,
            nodes: Vec::new(),
            children: FxHashMap::default(),
            child_cache: vec![(u32::MAX, u32::MAX, 0); CHILD_CACHE].into_boxed_slice(),
            threads: Vec::new(),
            thread_index: FxHashMap::default(),
            spans: 0,
            truncation: Truncation::default(),
            first_ts: None,
        }
    }

    pub(crate) fn thread(&mut self, tid: u64) -> u32 {
        let next = self.threads.len() as u32;
        let threads = &mut self.threads;
        *self.thread_index.entry(tid).or_insert_with(|| {
            threads.push((tid, Vec::new()));
            next
        })
    }

    /// The node for a call of `func` below `parent` (or at the top of
    /// `thread` when `parent` is [`NO_NODE`]), at stack depth `depth`.
    #[inline]
    pub(crate) fn enter(
        &mut self,
        thread: u32,
        parent: u32,
        func: FuncId,
        depth: usize,
        t: u64,
    ) -> u32 {
        if self.first_ts.is_none() {
            self.first_ts = Some(t);
        }
        if depth >= self.limits.max_depth as usize && parent != NO_NODE {
            self.truncation.depth_folded += 1;
            return parent;
        }
        // Outermost calls hang off a per-thread pseudo parent.
        let key_parent = if parent == NO_NODE {
            NO_NODE - 1 - thread
        } else {
            parent
        };
        let slot = (key_parent.wrapping_mul(0x9e37_79b1) ^ func) as usize & (CHILD_CACHE - 1);
        let (p, f, n) = self.child_cache[slot];
        if p == key_parent && f == func {
            return n;
        }
        if let Some(&n) = self.children.get(&(key_parent, func)) {
            self.child_cache[slot] = (key_parent, func, n);
            return n;
        }
        if self.nodes.len() >= self.limits.max_nodes as usize {
            self.truncation.node_folded += 1;
            return parent;
        }
        let n = self.nodes.len() as u32;
        self.nodes.push(RawNode {
            func,
            parent,
            thread,
            calls: 0,
            self_ticks: 0,
            total_ticks: 0,
        });
        self.children.insert((key_parent, func), n);
        self.child_cache[slot] = (key_parent, func, n);
        n
    }

    /// A call through `node` ended; `node` is what [`enter`](Self::enter)
    /// returned (a folded call reports its ancestor's node, whose self time
    /// then includes it and whose count does not).
    #[inline]
    pub(crate) fn stop(
        &mut self,
        node: u32,
        folded: bool,
        tt: i64,
        it: i64,
        span: Option<(u32, FuncId, u64, u64, u32)>,
    ) {
        if node != NO_NODE {
            let n = &mut self.nodes[node as usize];
            n.self_ticks = n.self_ticks.saturating_add(it);
            if !folded {
                n.calls += 1;
                n.total_ticks = n.total_ticks.saturating_add(tt);
            }
        }
        if let Some((thread, func, start, end, depth)) = span {
            if self.spans < self.limits.max_spans {
                self.spans += 1;
                self.threads[thread as usize].1.push(RawSpan {
                    func,
                    start,
                    end,
                    depth,
                });
            } else {
                self.truncation.spans_dropped += 1;
            }
        }
    }

    pub(crate) fn wants_spans(&self) -> bool {
        self.limits.max_spans > 0
    }

    pub(crate) fn finish(self, functions: Vec<crate::Function>, spt: f64, end: u64) -> CallPaths {
        let origin = self.first_ts.unwrap_or(end);
        let secs = |t: u64| t.saturating_sub(origin) as f64 * spt;
        let mut threads: Vec<ThreadPaths> = self
            .threads
            .iter()
            .map(|(tid, spans)| ThreadPaths {
                tid: *tid,
                name: None,
                nodes: Vec::new(),
                process: None,
                spans: spans
                    .iter()
                    .map(|s| Span {
                        func: s.func,
                        start: secs(s.start),
                        end: secs(s.end),
                        depth: s.depth,
                    })
                    .collect(),
            })
            .collect();
        // Renumber nodes per thread, keeping creation order.
        let mut local = vec![0u32; self.nodes.len()];
        for (i, n) in self.nodes.iter().enumerate() {
            let t = &mut threads[n.thread as usize];
            local[i] = t.nodes.len() as u32;
            t.nodes.push(PathNode {
                func: n.func,
                parent: (n.parent != NO_NODE).then(|| local[n.parent as usize]),
                calls: n.calls,
                self_time: n.self_ticks as f64 * spt,
                total_time: n.total_ticks as f64 * spt,
            });
        }
        CallPaths {
            functions,
            threads,
            truncation: self.truncation,
            duration: secs(end),
        }
    }
}
