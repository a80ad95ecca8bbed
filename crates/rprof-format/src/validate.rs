//! Checking a [`CallPaths`] before writing it, so that a broken invariant
//! becomes an error message instead of a panic or a silently wrong file.

use rprof_stats::CallPaths;

use crate::FormatError;

/// Checks that every function id is in range and that every node's parent
/// comes before it (which also rules out cycles).
pub(crate) fn check(paths: &CallPaths) -> Result<(), FormatError> {
    let functions = paths.functions.len();
    let invalid = |reason: String| FormatError::InvalidProfile { reason };
    for thread in &paths.threads {
        for (i, node) in thread.nodes.iter().enumerate() {
            if node.func as usize >= functions {
                return Err(invalid(format!(
                    "node {i} of thread {} refers to function {}, but there are only {functions}",
                    thread.tid, node.func
                )));
            }
            if let Some(parent) = node.parent {
                if parent as usize >= i {
                    return Err(invalid(format!(
                        "node {i} of thread {} has parent {parent}, which does not come before it",
                        thread.tid
                    )));
                }
            }
        }
        for (i, span) in thread.spans.iter().enumerate() {
            if span.func as usize >= functions {
                return Err(invalid(format!(
                    "span {i} of thread {} refers to function {}, but there are only {functions}",
                    thread.tid, span.func
                )));
            }
        }
    }
    Ok(())
}

/// The nodes from the root to `node`, root first. Valid after [`check`].
pub(crate) fn path_to(nodes: &[rprof_stats::PathNode], node: usize, out: &mut Vec<usize>) {
    out.clear();
    let mut next = Some(node);
    while let Some(n) = next {
        out.push(n);
        next = nodes[n].parent.map(|p| p as usize);
    }
    out.reverse();
}
