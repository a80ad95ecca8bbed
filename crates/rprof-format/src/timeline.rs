//! Turning a thread's completed calls back into properly nested open and
//! close events.
//!
//! [`ThreadPaths::spans`](rprof_stats::ThreadPaths::spans) lists calls in
//! the order they *ended*, each with its stack depth: a post-order walk of
//! the thread's call forest. Sorting the opens and closes by time cannot
//! recover the nesting when times tie (a call and its callee starting on the
//! same clock tick, or a zero-length call ending exactly when the next one
//! starts), so [`edges`] rebuilds the forest from the depths instead and
//! walks it in pre-order: a call opens before its callees and closes after
//! them, whatever the clock says.
//!
//! A span whose caller is not in the list (the timeline filled up before
//! the caller ended) becomes a root of the forest.

use rprof_stats::Span;

/// A call starting or ending, by index into the thread's spans.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Edge {
    /// The call starts.
    Open(usize),
    /// The call ends.
    Close(usize),
}

const NONE: usize = usize::MAX;

/// The open and close events of `spans` (one thread's, in end order), in
/// time order and properly nested: every close matches the most recent
/// unclosed open.
pub(crate) fn edges(spans: &[Span]) -> Vec<Edge> {
    let n = spans.len();
    let mut first_child = vec![NONE; n];
    let mut next_sibling = vec![NONE; n];
    // Completed calls whose caller has not ended yet, in end order.
    let mut pending: Vec<usize> = Vec::new();
    for (i, span) in spans.iter().enumerate() {
        // Everything deeper that ended since the last call at this depth or
        // above was called by this one.
        let keep = pending
            .iter()
            .rposition(|&p| spans[p].depth <= span.depth)
            .map_or(0, |k| k + 1);
        link(&pending[keep..], &mut first_child[i], &mut next_sibling);
        pending.truncate(keep);
        pending.push(i);
    }
    let mut root = NONE;
    link(&pending, &mut root, &mut next_sibling);

    let mut out = Vec::with_capacity(2 * n);
    // Depth-first: the calls opened and not yet closed.
    let mut stack: Vec<usize> = Vec::new();
    let mut next = root;
    loop {
        if next != NONE {
            out.push(Edge::Open(next));
            stack.push(next);
            next = first_child[next];
            continue;
        }
        let Some(call) = stack.pop() else { break };
        out.push(Edge::Close(call));
        next = next_sibling[call];
    }
    out
}

/// Chains `calls` as siblings and points `head` at the first.
fn link(calls: &[usize], head: &mut usize, next_sibling: &mut [usize]) {
    if let Some(&first) = calls.first() {
        *head = first;
    }
    for pair in calls.windows(2) {
        next_sibling[pair[0]] = pair[1];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(func: u32, start: f64, end: f64, depth: u32) -> Span {
        Span {
            func,
            start,
            end,
            depth,
        }
    }

    #[test]
    fn nests_by_depth_not_by_time() {
        // a [0,2] calls b [0,0] and c [0,2] (same ticks), then d [2,3] at
        // the top level.
        let spans = [
            span(1, 0.0, 0.0, 1),
            span(2, 0.0, 2.0, 1),
            span(0, 0.0, 2.0, 0),
            span(3, 2.0, 3.0, 0),
        ];
        use Edge::*;
        assert_eq!(
            edges(&spans),
            vec![
                Open(2),
                Open(0),
                Close(0),
                Open(1),
                Close(1),
                Close(2),
                Open(3),
                Close(3)
            ]
        );
    }

    #[test]
    fn deep_recursion_and_orphans() {
        // f calls f calls f; then a call at depth 2 whose callers never
        // ended (timeline full).
        let spans = [
            span(0, 2.0, 3.0, 2),
            span(0, 1.0, 4.0, 1),
            span(0, 0.0, 5.0, 0),
            span(1, 6.0, 7.0, 2),
        ];
        use Edge::*;
        assert_eq!(
            edges(&spans),
            vec![
                Open(2),
                Open(1),
                Open(0),
                Close(0),
                Close(1),
                Close(2),
                Open(3),
                Close(3)
            ]
        );
        assert_eq!(edges(&[]), vec![]);
    }
}
