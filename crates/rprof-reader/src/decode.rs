//! Decoding ring records, which come from another process and are
//! untrusted: every length, kind and string is checked, and nothing here
//! can panic or allocate without bound on hostile input (see the fuzz
//! target in `fuzz/`).

use rprof_abi::{string_words, Kind, RecordHeader, MAX_RECORD_WORDS};

/// One decoded record. Events are not decoded here: the session handles
/// them inline, on its hot path, and only hands other records to
/// [`decode`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// An event: `kind`, function id, timestamp.
    Event {
        /// Call, Return, CCall, CReturn or CException.
        kind: Kind,
        /// Function id.
        id: u32,
        /// Timestamp in clock ticks.
        ts: u64,
    },
    /// A one-word event (`rprof_abi::compact`): its time is `delta` after
    /// the producer's previous event, which only the stream knows.
    CompactEvent {
        /// Call, Return, CCall, CReturn or CException.
        kind: Kind,
        /// Function id.
        id: u32,
        /// Ticks since the previous event of the same producer.
        delta: u64,
    },
    /// Filler to skip.
    Pad,
    /// A Python function id.
    DefPython {
        /// Function id.
        id: u32,
        /// `co_filename`.
        file: String,
        /// `co_firstlineno`.
        line: u32,
        /// `co_name`.
        name: String,
    },
    /// A builtin id.
    DefBuiltin {
        /// Function id.
        id: u32,
        /// cProfile's label.
        label: String,
    },
    /// Events that follow are on this thread.
    Thread {
        /// Native thread id.
        tid: u64,
    },
    /// Events were dropped here.
    Lost {
        /// How many.
        count: u64,
    },
    /// A thread's name.
    ThreadName {
        /// Native thread id.
        tid: u64,
        /// Its name.
        name: String,
    },
    /// The capture started.
    Start {
        /// Timestamp.
        ts: u64,
    },
    /// The capture ended.
    Stop {
        /// Timestamp.
        ts: u64,
    },
}

/// Why a record could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// A kind byte no release of the shim writes.
    #[error("unknown record kind {0}")]
    UnknownKind(u8),
    /// A length that is zero, odd, too long, or wrong for the kind.
    #[error("record of kind {kind} has an invalid length {len}")]
    BadLength {
        /// Kind byte.
        kind: u8,
        /// Length in words.
        len: u32,
    },
    /// String lengths that do not fit in the record.
    #[error("record strings overflow the record")]
    BadStrings,
}

/// Decodes the record at the start of `words`. Returns `Ok(None)` when the
/// record is not complete yet (more words are needed), else the record
/// and its length in words.
pub fn decode(words: &[u64]) -> Result<Option<(Record, usize)>, DecodeError> {
    let Some(&first) = words.first() else {
        return Ok(None);
    };
    if let Some((k, id, delta)) = rprof_abi::compact::decode(first) {
        let kind = Kind::from_u8(k).ok_or(DecodeError::UnknownKind(first as u8))?;
        return Ok(Some((Record::CompactEvent { kind, id, delta }, 1)));
    }
    let h = RecordHeader(first);
    let kind_byte = h.kind_byte();
    let kind = Kind::from_u8(kind_byte).ok_or(DecodeError::UnknownKind(kind_byte))?;
    let len = h.words();
    let bad = DecodeError::BadLength {
        kind: kind_byte,
        len,
    };
    // Every record is an even number of words long, but for a Pad, which
    // may fill a single word at the end of the area.
    if len == 0
        || (!len.is_multiple_of(2) && kind != Kind::Pad)
        || (len as usize > MAX_RECORD_WORDS && kind != Kind::Pad)
    {
        return Err(bad);
    }
    let n = len as usize;
    if words.len() < n {
        return Ok(None);
    }
    let body = &words[1..n];
    let record = match kind {
        Kind::Call | Kind::Return | Kind::CCall | Kind::CReturn | Kind::CException => {
            if n != 2 {
                return Err(bad);
            }
            Record::Event {
                kind,
                id: h.arg(),
                ts: body[0],
            }
        }
        Kind::Pad => Record::Pad,
        Kind::Thread | Kind::Lost | Kind::Start | Kind::Stop => {
            if n != 2 {
                return Err(bad);
            }
            let v = body[0];
            match kind {
                Kind::Thread => Record::Thread { tid: v },
                Kind::Lost => Record::Lost { count: v },
                Kind::Start => Record::Start { ts: v },
                _ => Record::Stop { ts: v },
            }
        }
        Kind::DefPython => {
            if body.len() < 2 {
                return Err(bad);
            }
            let line = body[0].min(u32::MAX as u64) as u32;
            let file_len = (body[1] & 0xffff_ffff) as usize;
            let name_len = (body[1] >> 32) as usize;
            let bytes = strings(&body[2..], file_len.checked_add(name_len))?;
            Record::DefPython {
                id: h.arg(),
                file: String::from_utf8_lossy(&bytes[..file_len]).into_owned(),
                line,
                name: String::from_utf8_lossy(&bytes[file_len..]).into_owned(),
            }
        }
        Kind::ThreadName => {
            if body.len() < 2 {
                return Err(bad);
            }
            let len = usize::try_from(body[1]).ok();
            let bytes = strings(&body[2..], len)?;
            Record::ThreadName {
                tid: body[0],
                name: String::from_utf8_lossy(&bytes).into_owned(),
            }
        }
        Kind::DefBuiltin => {
            if body.is_empty() {
                return Err(bad);
            }
            let len = usize::try_from(body[0]).ok();
            let bytes = strings(&body[1..], len)?;
            Record::DefBuiltin {
                id: h.arg(),
                label: String::from_utf8_lossy(&bytes).into_owned(),
            }
        }
    };
    Ok(Some((record, n)))
}

/// The first `len` bytes packed into `words`, if they fit.
fn strings(words: &[u64], len: Option<usize>) -> Result<Vec<u8>, DecodeError> {
    let len = len.ok_or(DecodeError::BadStrings)?;
    if string_words(len) > words.len() {
        return Err(DecodeError::BadStrings);
    }
    let mut out = Vec::with_capacity(len);
    for w in &words[..string_words(len)] {
        out.extend_from_slice(&w.to_le_bytes());
    }
    out.truncate(len);
    Ok(out)
}

/// Encodes records the way the shim does, for tests and fuzzing.
pub mod encode {
    use rprof_abi::{record_words, string_words, Kind, RecordHeader};

    /// A one-word event `delta` ticks after the producer's previous one.
    ///
    /// # Panics
    /// If the id or the delta does not fit in one word.
    pub fn compact(out: &mut Vec<u64>, kind: Kind, id: u32, delta: u64) {
        out.push(rprof_abi::compact::encode(kind, id, delta).expect("fits in one word"));
    }

    /// An event record.
    pub fn event(out: &mut Vec<u64>, kind: Kind, id: u32, ts: u64) {
        out.push(RecordHeader::new(kind, 2, id).0);
        out.push(ts);
    }

    /// A one-word record (Thread, Lost, Start, Stop).
    pub fn word(out: &mut Vec<u64>, kind: Kind, v: u64) {
        out.push(RecordHeader::new(kind, 2, 0).0);
        out.push(v);
    }

    /// A record with leading words and packed strings.
    pub fn strings(out: &mut Vec<u64>, kind: Kind, id: u32, words: &[u64], strs: &[&[u8]]) {
        let bytes: Vec<u8> = strs.concat();
        let total = record_words(words.len() + string_words(bytes.len()));
        let start = out.len();
        out.push(RecordHeader::new(kind, total as u32, id).0);
        out.extend_from_slice(words);
        for chunk in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            out.push(u64::from_le_bytes(w));
        }
        out.resize(start + total, 0);
    }

    /// A Python definition.
    pub fn def_python(out: &mut Vec<u64>, id: u32, file: &str, line: u64, name: &str) {
        let lens = file.len() as u64 | ((name.len() as u64) << 32);
        strings(
            out,
            Kind::DefPython,
            id,
            &[line, lens],
            &[file.as_bytes(), name.as_bytes()],
        );
    }

    /// A builtin definition.
    pub fn def_builtin(out: &mut Vec<u64>, id: u32, label: &str) {
        strings(
            out,
            Kind::DefBuiltin,
            id,
            &[label.len() as u64],
            &[label.as_bytes()],
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut w = Vec::new();
        encode::def_python(&mut w, 7, "/a/b.py", 12, "f");
        encode::def_builtin(&mut w, 8, "<built-in method builtins.len>");
        encode::event(&mut w, Kind::Call, 7, 99);
        encode::word(&mut w, Kind::Thread, 4242);
        let mut at = 0;
        let mut got = Vec::new();
        while let Some((r, n)) = decode(&w[at..]).unwrap() {
            got.push(r);
            at += n;
        }
        assert_eq!(at, w.len());
        assert_eq!(
            got,
            vec![
                Record::DefPython {
                    id: 7,
                    file: "/a/b.py".into(),
                    line: 12,
                    name: "f".into()
                },
                Record::DefBuiltin {
                    id: 8,
                    label: "<built-in method builtins.len>".into()
                },
                Record::Event {
                    kind: Kind::Call,
                    id: 7,
                    ts: 99
                },
                Record::Thread { tid: 4242 },
            ]
        );
    }

    #[test]
    fn compact_events_and_one_word_pads() {
        let mut w = Vec::new();
        encode::compact(&mut w, Kind::CCall, 9, 1234);
        w.push(RecordHeader::new(Kind::Pad, 1, 0).0);
        assert_eq!(
            decode(&w).unwrap(),
            Some((
                Record::CompactEvent {
                    kind: Kind::CCall,
                    id: 9,
                    delta: 1234
                },
                1
            ))
        );
        assert_eq!(decode(&w[1..]).unwrap(), Some((Record::Pad, 1)));
        // Other records stay even.
        assert!(decode(&[RecordHeader::new(Kind::Thread, 1, 0).0]).is_err());
    }

    #[test]
    fn incomplete_is_not_an_error() {
        let mut w = Vec::new();
        encode::def_python(&mut w, 1, "file.py", 1, "function_name");
        assert_eq!(decode(&w[..w.len() - 1]), Ok(None));
        assert_eq!(decode(&[]), Ok(None));
    }

    #[test]
    fn hostile_records_are_rejected() {
        // Unknown kind.
        assert_eq!(decode(&[0xff, 0]), Err(DecodeError::UnknownKind(0xff)));
        // Zero and odd lengths.
        assert!(decode(&[RecordHeader::new(Kind::Call, 0, 0).0]).is_err());
        assert!(decode(&[RecordHeader::new(Kind::Call, 3, 0).0, 0, 0]).is_err());
        // An event with a long length.
        assert!(decode(&[RecordHeader::new(Kind::Call, 4, 0).0, 0, 0, 0]).is_err());
        // String lengths past the record.
        let w = [RecordHeader::new(Kind::DefBuiltin, 2, 0).0, 1000];
        assert_eq!(decode(&w), Err(DecodeError::BadStrings));
        let w = [RecordHeader::new(Kind::DefPython, 4, 0).0, 1, u64::MAX, 0];
        assert_eq!(decode(&w), Err(DecodeError::BadStrings));
        // Invalid UTF-8 is replaced, not trusted.
        let mut w = Vec::new();
        encode::strings(&mut w, Kind::DefBuiltin, 0, &[2], &[&[0xff, 0xfe]]);
        match decode(&w).unwrap().unwrap().0 {
            Record::DefBuiltin { label, .. } => assert_eq!(label, "\u{fffd}\u{fffd}"),
            r => panic!("{r:?}"),
        }
    }
}
