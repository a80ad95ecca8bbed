//! cProfile's `.prof` files: what `Profile.dump_stats` writes and
//! `pstats.Stats(path)` loads.
//!
//! The file is `marshal.dump(stats)` of one dict:
//!
//! ```text
//! {(filename, lineno, funcname): (cc, nc, tt, ct, callers), ...}
//! callers = {(filename, lineno, funcname): (nc, cc, tt, ct), ...}
//! ```
//!
//! where `cc` counts primitive (non-recursive) calls, `nc` all calls, `tt`
//! is the time in the function itself and `ct` the time including callees.
//! Note that the entry tuple starts `cc, nc` but the caller tuple starts
//! `nc, cc`: that is how `_lsprof` has always laid them out.
//!
//! [`write_pstats`] writes the dict in marshal version 2 —
//! byte-for-byte `marshal.dumps(stats, 2)` — which every Python 3 reads.
//! cProfile itself writes version 4, whose back-references depend on the
//! writing interpreter's reference counts, so its bytes are not a stable
//! target; the *loaded dict* is identical, including its order.
//! [`read_pstats`] reads rprof's files and cProfile's (any marshal version).

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::rc::Rc;

use rprof_stats::{CallStats, FuncId, Function, FunctionStats, Profile};

use crate::marshal::{self, Encoder, Value};
use crate::FormatError;

/// The items of a decoded marshal dict.
type DictItems = [(Rc<Value>, Rc<Value>)];

/// Writes `profile` as a pstats file that `pstats.Stats(path)` loads on
/// every Python 3.
///
/// Functions are written in [`Profile::functions`] order and callers in
/// their [`FunctionStats::callers`] order: the dict order pstats will see,
/// and so the order in which pstats breaks sort ties. The whole file is encoded in memory and
/// handed to `w` with a single `write_all`, so `w` need not be buffered.
///
/// Fails with [`FormatError::InvalidProfile`] if the profile repeats a
/// function, repeats a caller of one function, or names a caller that is not
/// in the profile: Python would silently merge or drop those.
pub fn write_pstats(profile: &Profile, mut w: impl Write) -> Result<(), FormatError> {
    let bytes = encode(profile)?;
    w.write_all(&bytes)?;
    w.flush()?;
    Ok(())
}

fn encode(profile: &Profile) -> Result<Vec<u8>, FormatError> {
    let functions = &profile.functions;
    let mut seen_funcs = HashSet::with_capacity(functions.len());
    // `seen_callers[id] == i + 1` once function `i` listed caller `id`.
    let mut seen_callers = vec![0usize; functions.len()];
    let mut e = Encoder::default();
    e.dict_start();
    for (i, stats) in functions.iter().enumerate() {
        if !seen_funcs.insert(&stats.func) {
            return Err(invalid(format!("{} appears twice", describe(&stats.func))));
        }
        key(&mut e, &stats.func)?;
        let t = &stats.totals;
        e.tuple(5)?;
        e.int(t.primitive);
        e.int(t.ncalls);
        e.float(t.tottime);
        e.float(t.cumtime);
        e.dict_start();
        for (caller, c) in &stats.callers {
            let caller_stats = usize::try_from(*caller)
                .ok()
                .and_then(|id| Some((id, functions.get(id)?)));
            let Some((id, caller_stats)) = caller_stats else {
                return Err(invalid(format!(
                    "caller {caller} of {} is not a function of the profile (it has {})",
                    describe(&stats.func),
                    functions.len()
                )));
            };
            if seen_callers[id] == i + 1 {
                return Err(invalid(format!(
                    "{} lists caller {} twice",
                    describe(&stats.func),
                    describe(&caller_stats.func)
                )));
            }
            seen_callers[id] = i + 1;
            key(&mut e, &caller_stats.func)?;
            e.tuple(4)?;
            e.int(c.ncalls);
            e.int(c.primitive);
            e.float(c.tottime);
            e.float(c.cumtime);
        }
        e.dict_end();
    }
    e.dict_end();
    Ok(e.into_bytes())
}

fn key(e: &mut Encoder, f: &Function) -> Result<(), FormatError> {
    e.tuple(3)?;
    e.str(&f.file)?;
    e.int(f.line.into());
    e.str(&f.name)
}

fn invalid(reason: String) -> FormatError {
    FormatError::InvalidProfile { reason }
}

fn not_pstats(reason: String) -> FormatError {
    FormatError::NotPstats { reason }
}

/// `('file', line, 'name')`, for messages.
fn describe(f: &Function) -> String {
    format!("({:?}, {}, {:?})", f.file, f.line, f.name)
}

/// Reads a pstats file written by [`write_pstats`] or by cProfile
/// (`Profile.dump_stats`, `pstats.Stats.dump_stats`) on any Python 3.
///
/// The bytes are treated as untrusted: malformed input gives an error,
/// never a panic, and work and memory stay proportional to the input size.
/// As when Python loads the dict, a key that occurs twice keeps its first
/// position and its last value. Fails with [`FormatError::NotPstats`] if a
/// count does not fit in `u64`, a line number in `u32`, or a caller is not
/// itself a key (cProfile never writes such files).
pub fn read_pstats(bytes: &[u8]) -> Result<Profile, FormatError> {
    let root = marshal::decode(bytes)?;
    let Value::Dict(items) = &*root else {
        return Err(not_pstats(format!(
            "the file holds a {}, not a dict",
            root.kind()
        )));
    };

    let mut ids: HashMap<Function, FuncId> = HashMap::with_capacity(items.len());
    let mut functions: Vec<FunctionStats> = Vec::with_capacity(items.len());
    let mut callers: Vec<&DictItems> = Vec::with_capacity(items.len());
    for (k, v) in items {
        let func = function(k)?;
        let (totals, caller_items) = entry(&func, v)?;
        match ids.entry(func) {
            Entry::Occupied(slot) => {
                let id = *slot.get() as usize;
                functions[id].totals = totals;
                callers[id] = caller_items;
            }
            Entry::Vacant(slot) => {
                let id = FuncId::try_from(functions.len())
                    .map_err(|_| not_pstats("it has too many functions".into()))?;
                functions.push(FunctionStats {
                    func: slot.key().clone(),
                    totals,
                    callers: Vec::new(),
                });
                slot.insert(id);
                callers.push(caller_items);
            }
        }
    }

    // Callers dicts may be shared through marshal back-references; cap the
    // total work so that sharing cannot blow a small file up quadratically.
    // cProfile never shares them, and every edge it writes takes > 1 byte.
    let mut budget = bytes.len();
    for (stats, caller_items) in functions.iter_mut().zip(callers) {
        let mut position: HashMap<FuncId, usize> = HashMap::with_capacity(caller_items.len());
        for (k, v) in caller_items {
            budget = budget.checked_sub(1).ok_or_else(|| {
                not_pstats("its caller dicts hold more entries than the file has bytes".into())
            })?;
            let caller = function(k)?;
            let Some(&id) = ids.get(&caller) else {
                return Err(not_pstats(format!(
                    "caller {} of {} is not itself in the profile",
                    describe(&caller),
                    describe(&stats.func)
                )));
            };
            let edge = caller_stats(&stats.func, &caller, v)?;
            match position.entry(id) {
                Entry::Occupied(at) => stats.callers[*at.get()].1 = edge,
                Entry::Vacant(at) => {
                    at.insert(stats.callers.len());
                    stats.callers.push((id, edge));
                }
            }
        }
    }
    Ok(Profile { functions })
}

/// A `(filename, lineno, funcname)` key.
fn function(v: &Value) -> Result<Function, FormatError> {
    let bad = || {
        not_pstats(format!(
            "a function key is {}, not a (filename, lineno, funcname) tuple",
            show(v)
        ))
    };
    let Value::Tuple(items) = v else {
        return Err(bad());
    };
    let [file, line, name] = items.as_slice() else {
        return Err(bad());
    };
    let (Value::Str(file), Value::Str(name)) = (&**file, &**name) else {
        return Err(bad());
    };
    let line = int(line)
        .and_then(|l| u32::try_from(l).ok())
        .ok_or_else(|| {
            not_pstats(format!(
                "the line number of {file}:{name} is {}, not an int in 0..2**32",
                show(line)
            ))
        })?;
    Ok(Function {
        file: file.clone(),
        line,
        name: name.clone(),
    })
}

/// A `(cc, nc, tt, ct, callers)` entry.
fn entry<'a>(func: &Function, v: &'a Value) -> Result<(CallStats, &'a DictItems), FormatError> {
    let bad = |what: &str| {
        not_pstats(format!(
            "the entry for {} is {}, not {what}",
            describe(func),
            show(v)
        ))
    };
    let Value::Tuple(items) = v else {
        return Err(bad("a (cc, nc, tt, ct, callers) tuple"));
    };
    let [cc, nc, tt, ct, callers] = items.as_slice() else {
        return Err(bad("a (cc, nc, tt, ct, callers) tuple"));
    };
    let Value::Dict(callers) = &**callers else {
        return Err(bad("a tuple ending in a callers dict"));
    };
    let stats = numbers([nc, cc, tt, ct])
        .ok_or_else(|| bad("a tuple of two counts in 0..2**64 and two times"))?;
    Ok((stats, callers))
}

/// A caller's `(nc, cc, tt, ct)`.
fn caller_stats(func: &Function, caller: &Function, v: &Value) -> Result<CallStats, FormatError> {
    let numbers = match v {
        Value::Tuple(items) => match items.as_slice() {
            [nc, cc, tt, ct] => numbers([nc, cc, tt, ct]),
            _ => None,
        },
        _ => None,
    };
    numbers.ok_or_else(|| {
        not_pstats(format!(
            "the calls from {} to {} are {}, not an (nc, cc, tt, ct) tuple of two counts \
             in 0..2**64 and two times",
            describe(caller),
            describe(func),
            show(v)
        ))
    })
}

/// `[nc, cc, tt, ct]` in that order.
fn numbers([nc, cc, tt, ct]: [&Rc<Value>; 4]) -> Option<CallStats> {
    Some(CallStats {
        ncalls: int(nc).and_then(|n| u64::try_from(n).ok())?,
        primitive: int(cc).and_then(|n| u64::try_from(n).ok())?,
        tottime: float(tt)?,
        cumtime: float(ct)?,
    })
}

/// An int (Python's bools are ints too).
fn int(v: &Value) -> Option<i128> {
    match *v {
        Value::Int(i) => Some(i),
        Value::Bool(b) => Some(b.into()),
        _ => None,
    }
}

/// A float, or an int used as one (pstats only ever adds and divides them).
fn float(v: &Value) -> Option<f64> {
    match *v {
        Value::Float(f) => Some(f),
        // Rounds to nearest, as Python's float(int) does.
        _ => int(v).map(|i| i as f64),
    }
}

/// A short rendering of a value for error messages.
fn show(v: &Value) -> String {
    match v {
        Value::None => "None".into(),
        Value::Bool(b) => if *b { "True" } else { "False" }.into(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Str(s) => format!("{s:?}"),
        Value::Tuple(items) => format!("a tuple of {} items", items.len()),
        Value::Dict(items) => format!("a dict of {} items", items.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(ncalls: u64, primitive: u64, tottime: f64, cumtime: f64) -> CallStats {
        CallStats {
            ncalls,
            primitive,
            tottime,
            cumtime,
        }
    }

    fn sample() -> Profile {
        Profile {
            functions: vec![
                FunctionStats {
                    func: Function::python("/srv/app/main.py", 1, "<module>"),
                    totals: stats(1, 1, 0.001, 2.5),
                    callers: vec![],
                },
                FunctionStats {
                    func: Function::python("/srv/app/données/fib.py", 10, "fib"),
                    totals: stats(177, 1, 0.25, 0.5),
                    callers: vec![(0, stats(1, 1, 0.001, 0.5)), (1, stats(176, 0, 0.249, 0.4))],
                },
                FunctionStats {
                    func: Function::builtin("<built-in method builtins.len>"),
                    totals: stats(u64::MAX, 1 << 40, 1e-9, f64::INFINITY),
                    callers: vec![(1, stats(3_000_000_000, 3_000_000_000, 0.0, -0.0))],
                },
                FunctionStats {
                    func: Function::python("big.py", u32::MAX, "函数"),
                    totals: stats(0, 0, 0.0, 0.0),
                    callers: vec![],
                },
            ],
        }
    }

    fn write(profile: &Profile) -> Vec<u8> {
        let mut out = Vec::new();
        write_pstats(profile, &mut out).unwrap();
        out
    }

    #[test]
    fn round_trips() {
        let p = sample();
        let back = read_pstats(&write(&p)).unwrap();
        assert_eq!(back, p);
        assert!(back.functions[2].callers[0].1.cumtime.is_sign_negative());
        assert_eq!(
            read_pstats(&write(&Profile::default())).unwrap(),
            Profile::default()
        );
    }

    #[test]
    fn rejects_inconsistent_profiles() {
        let mut p = sample();
        p.functions[1].callers.push((9, CallStats::default()));
        assert!(matches!(
            write_pstats(&p, Vec::new()),
            Err(FormatError::InvalidProfile { .. })
        ));
        let mut p = sample();
        p.functions[1].callers.push((0, CallStats::default()));
        assert!(matches!(
            write_pstats(&p, Vec::new()),
            Err(FormatError::InvalidProfile { .. })
        ));
        let mut p = sample();
        p.functions.push(p.functions[0].clone());
        let err = write_pstats(&p, Vec::new()).unwrap_err();
        assert!(err.to_string().contains("appears twice"), "{err}");
    }

    /// `marshal.dumps({k: (1, 1, 0.5, 0.5, {}), k: (2, 2, 1.0, 1.0, {})})`
    /// loads as one entry in the first position with the last value.
    #[test]
    fn duplicate_keys_behave_like_python() {
        let mut e = Encoder::default();
        e.dict_start();
        for (n, t) in [(1, 0.5), (2, 1.0)] {
            key(&mut e, &Function::python("a.py", 1, "f")).unwrap();
            e.tuple(5).unwrap();
            e.int(n);
            e.int(n);
            e.float(t);
            e.float(t);
            e.dict_start();
            e.dict_end();
        }
        e.dict_end();
        let p = read_pstats(&e.into_bytes()).unwrap();
        assert_eq!(p.functions.len(), 1);
        assert_eq!(p.functions[0].totals, stats(2, 2, 1.0, 1.0));
    }

    #[test]
    fn rejects_files_that_are_not_cprofile_stats() {
        let not_dict = b"i\x01\x00\x00\x00";
        assert!(matches!(
            read_pstats(not_dict),
            Err(FormatError::NotPstats { .. })
        ));
        // A callers dict in the `profile` module's format: {key: count}.
        let mut e = Encoder::default();
        e.dict_start();
        key(&mut e, &Function::python("a.py", 1, "f")).unwrap();
        e.tuple(5).unwrap();
        e.int(1);
        e.int(1);
        e.float(0.5);
        e.float(0.5);
        e.dict_start();
        key(&mut e, &Function::python("a.py", 1, "f")).unwrap();
        e.int(1);
        e.dict_end();
        e.dict_end();
        let err = read_pstats(&e.into_bytes()).unwrap_err();
        assert!(matches!(err, FormatError::NotPstats { .. }), "{err}");
        // A caller that is not a key.
        let mut p = sample();
        p.functions.truncate(2);
        let mut bytes = write(&p);
        // Rename the first key only (the caller entry of fib comes later), so
        // that caller now dangles.
        let at = bytes.windows(7).position(|w| w == b"main.py").unwrap();
        bytes[at] = b'M';
        let err = read_pstats(&bytes).unwrap_err();
        assert!(
            err.to_string().contains("not itself in the profile"),
            "{err}"
        );
    }

    /// Garbage in, error out: truncations and bit flips of a valid file
    /// must never panic.
    #[test]
    fn survives_corruption() {
        let good = write(&sample());
        for len in 0..good.len() {
            let _ = read_pstats(&good[..len]);
        }
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let mut bad = good.clone();
            for _ in 0..1 + next() % 4 {
                let i = (next() % bad.len() as u64) as usize;
                bad[i] = next() as u8;
            }
            let _ = read_pstats(&bad);
        }
    }
}
