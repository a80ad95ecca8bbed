//! Merging the captures of several processes (`--subprocesses`) into one
//! profile, with pstats' own semantics.
//!
//! [`merge_profiles`] is `pstats.Stats(p1, p2, ..., pn)`, that is
//! `Stats(p1).add(p2, ..., pn)` (`Lib/pstats.py`, `add`, `add_func_stats`
//! and `add_callers`): per function key the primitive calls, calls,
//! tottime and cumtime are added, and per caller edge the four numbers are
//! added element by element (cProfile's caller values are tuples).
//! `Stats.add` adds its arguments in *reverse* order (`for item in
//! reversed(arg_list)`), so the profiles are folded in pstats' order —
//! p1, then pn, ..., p2 — and functions appear in the order pstats' dict
//! has them (each new key as the fold meets it): the floats are bit for
//! bit the ones pstats computes, not just close.
//!
//! [`merge_paths`] keeps the processes apart instead: call paths have no
//! meaning across processes, so every thread keeps its own tree and is
//! tagged with its process ([`ProcessTag`]), which the call-path formats
//! show as the outermost frame.

use crate::paths::{CallPaths, ProcessTag, Truncation};
use crate::{CallStats, FuncId, Function, FunctionStats, Profile};
use std::collections::HashMap;

fn add(into: &mut CallStats, s: &CallStats) {
    // pstats computes `source + target`; float addition is commutative,
    // so this is the same number.
    into.ncalls += s.ncalls;
    into.primitive += s.primitive;
    into.tottime += s.tottime;
    into.cumtime += s.cumtime;
}

/// `pstats.Stats(*parts)`: see the [module docs](self).
///
/// ```
/// use rprof_stats::{merge_profiles, CallStats, Function, FunctionStats, Profile};
///
/// let one = |t| CallStats { ncalls: 1, primitive: 1, tottime: t, cumtime: t };
/// let worker = |t| Profile {
///     functions: vec![FunctionStats {
///         func: Function::python("/srv/app.py", 3, "view"),
///         totals: one(t),
///         callers: vec![],
///     }],
/// };
/// let merged = merge_profiles([&worker(0.5), &worker(0.25)]);
/// let view = merged.get(&Function::python("/srv/app.py", 3, "view")).unwrap();
/// assert_eq!((view.totals.ncalls, view.totals.tottime), (2, 0.75));
/// ```
pub fn merge_profiles<'a>(parts: impl IntoIterator<Item = &'a Profile>) -> Profile {
    let mut merged = Profile::default();
    let mut index: HashMap<Function, FuncId> = HashMap::new();
    let parts: Vec<&Profile> = parts.into_iter().collect();
    // pstats: the first, then `add(*rest)`, which goes through `rest`
    // backwards.
    let order = parts.first().into_iter().chain(parts.iter().skip(1).rev());
    for part in order {
        // Every key of this part gets its merged id first, so that caller
        // edges can name functions listed later in the part.
        let ids: Vec<FuncId> = part
            .functions
            .iter()
            .map(|f| {
                *index.entry(f.func.clone()).or_insert_with(|| {
                    merged.functions.push(FunctionStats {
                        func: f.func.clone(),
                        totals: CallStats::default(),
                        callers: Vec::new(),
                    });
                    (merged.functions.len() - 1) as FuncId
                })
            })
            .collect();
        for (f, &id) in part.functions.iter().zip(&ids) {
            let target = &mut merged.functions[id as usize];
            add(&mut target.totals, &f.totals);
            for (caller, stats) in &f.callers {
                // A caller id outside the part is a broken profile; the
                // edge is dropped rather than attached to a wrong key.
                let Some(&c) = ids.get(*caller as usize) else {
                    continue;
                };
                match target.callers.iter_mut().find(|(k, _)| *k == c) {
                    Some((_, into)) => add(into, stats),
                    None => target.callers.push((c, *stats)),
                }
            }
        }
    }
    merged
}

/// The call paths of several processes side by side: one function table
/// (each key once), every thread of every process kept apart and tagged
/// with its [`ProcessTag`], the truncation counters added up, and the
/// longest duration.
pub fn merge_paths<'a>(parts: impl IntoIterator<Item = (ProcessTag, &'a CallPaths)>) -> CallPaths {
    let mut merged = CallPaths::default();
    let mut index: HashMap<Function, FuncId> = HashMap::new();
    for (tag, paths) in parts {
        let ids: Vec<FuncId> = paths
            .functions
            .iter()
            .map(|f| {
                *index.entry(f.clone()).or_insert_with(|| {
                    merged.functions.push(f.clone());
                    (merged.functions.len() - 1) as FuncId
                })
            })
            .collect();
        // Ids outside the table stay out of range, for the writers'
        // validation to reject, rather than naming another function.
        let map = |f: FuncId| ids.get(f as usize).copied().unwrap_or(FuncId::MAX);
        for t in &paths.threads {
            let mut t = t.clone();
            for n in &mut t.nodes {
                n.func = map(n.func);
            }
            for s in &mut t.spans {
                s.func = map(s.func);
            }
            t.process = Some(tag.clone());
            merged.threads.push(t);
        }
        let (a, b) = (&mut merged.truncation, paths.truncation);
        *a = Truncation {
            depth_folded: a.depth_folded + b.depth_folded,
            node_folded: a.node_folded + b.node_folded,
            spans_dropped: a.spans_dropped + b.spans_dropped,
        };
        merged.duration = merged.duration.max(paths.duration);
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paths::{PathNode, ThreadPaths};

    fn cs(n: u64, p: u64, t: f64, c: f64) -> CallStats {
        CallStats {
            ncalls: n,
            primitive: p,
            tottime: t,
            cumtime: c,
        }
    }

    #[test]
    fn adds_per_key_and_per_edge_in_pstats_order() {
        let main = Function::python("a.py", 1, "main");
        let f = Function::python("a.py", 5, "f");
        let g = Function::python("b.py", 9, "g");
        let p1 = Profile {
            functions: vec![
                FunctionStats {
                    func: f.clone(),
                    totals: cs(3, 2, 0.1, 0.3),
                    callers: vec![(1, cs(2, 1, 0.05, 0.2)), (0, cs(1, 1, 0.05, 0.1))],
                },
                FunctionStats {
                    func: main.clone(),
                    totals: cs(1, 1, 0.2, 0.5),
                    callers: vec![],
                },
            ],
        };
        let p2 = Profile {
            functions: vec![
                FunctionStats {
                    func: g.clone(),
                    totals: cs(1, 1, 1.0, 1.0),
                    callers: vec![(1, cs(1, 1, 1.0, 1.0))],
                },
                FunctionStats {
                    func: f.clone(),
                    totals: cs(4, 4, 0.7, 0.9),
                    callers: vec![(2, cs(4, 4, 0.7, 0.9))],
                },
                FunctionStats {
                    func: main.clone(),
                    totals: cs(1, 1, 0.3, 2.0),
                    callers: vec![],
                },
            ],
        };
        let m = merge_profiles([&p1, &p2]);
        let keys: Vec<_> = m.functions.iter().map(|s| s.func.clone()).collect();
        assert_eq!(keys, vec![f.clone(), main.clone(), g.clone()]);
        let fs = m.get(&f).unwrap();
        assert_eq!(fs.totals, cs(7, 6, 0.7 + 0.1, 0.9 + 0.3));
        // main's edge: 1 from p1 plus 4 from p2; f's recursive edge kept.
        assert_eq!(
            fs.callers,
            vec![
                (1, cs(6, 5, 0.7 + 0.05, 0.9 + 0.2)),
                (0, cs(1, 1, 0.05, 0.1))
            ]
        );
        assert_eq!(m.get(&g).unwrap().callers, vec![(0, cs(1, 1, 1.0, 1.0))]);
        assert_eq!(m.total_calls(), 7 + 2 + 1);
        assert_eq!(merge_profiles([&p1]), p1);
        assert_eq!(merge_profiles(std::iter::empty()), Profile::default());
    }

    #[test]
    fn paths_keep_processes_apart() {
        let thread = |tid, func| ThreadPaths {
            tid,
            process: None,
            name: Some("MainThread".into()),
            nodes: vec![PathNode {
                func,
                parent: None,
                calls: 1,
                self_time: 1.0,
                total_time: 1.0,
            }],
            spans: vec![],
        };
        let a = CallPaths {
            functions: vec![
                Function::python("a.py", 1, "x"),
                Function::python("a.py", 2, "y"),
            ],
            threads: vec![thread(10, 1)],
            truncation: Truncation {
                depth_folded: 1,
                ..Truncation::default()
            },
            duration: 2.0,
        };
        let b = CallPaths {
            functions: vec![Function::python("a.py", 2, "y")],
            threads: vec![thread(20, 0), thread(21, 7)],
            truncation: Truncation {
                depth_folded: 2,
                ..Truncation::default()
            },
            duration: 1.0,
        };
        let tag = |pid: u32| ProcessTag {
            pid,
            label: format!("worker {pid}"),
        };
        let m = merge_paths([(tag(10), &a), (tag(20), &b)]);
        assert_eq!(m.functions.len(), 2);
        assert_eq!(m.threads.len(), 3);
        assert_eq!(m.threads[0].nodes[0].func, 1);
        assert_eq!(m.threads[1].nodes[0].func, 1);
        assert_eq!(m.threads[2].nodes[0].func, FuncId::MAX);
        assert_eq!(m.threads[1].process, Some(tag(20)));
        assert_eq!(m.truncation.depth_folded, 3);
        assert_eq!(m.duration, 2.0);
    }
}
