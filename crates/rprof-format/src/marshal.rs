//! The subset of CPython's `marshal` format that pstats files are made of.
//!
//! pstats files are nothing but `marshal.dump(stats_dict)`, and `marshal`
//! has no header or version field: a reader just decodes one object. So
//! this module owns two things:
//!
//! * [`Encoder`] emits byte-for-byte what `marshal.dumps(obj, 2)` emits for
//!   dicts, tuples, ints, floats and strs. Version 2 is the newest encoding
//!   with no back-references (version 3 added them, and which objects get
//!   one depends on reference counts inside the interpreter that wrote the
//!   file, so cProfile's own version-4 output is not reproducible byte for
//!   byte anyway). Every `marshal.load` since Python 2.5 reads it.
//! * [`decode`] reads what real interpreters write at any version up to 4
//!   (back-references, short and interned ASCII strings, small tuples), as a
//!   tree of [`Value`]s. The input is untrusted: every length is checked
//!   against the bytes that are left, nesting is bounded, and shared
//!   sub-objects are shared (`Rc`) rather than copied, so a small file cannot
//!   make the decoder allocate more than a small multiple of its size.

use std::rc::Rc;

use crate::FormatError;

const TYPE_NULL: u8 = b'0';
const TYPE_NONE: u8 = b'N';
const TYPE_FALSE: u8 = b'F';
const TYPE_TRUE: u8 = b'T';
const TYPE_INT: u8 = b'i';
const TYPE_LONG: u8 = b'l';
const TYPE_BINARY_FLOAT: u8 = b'g';
const TYPE_UNICODE: u8 = b'u';
const TYPE_INTERNED: u8 = b't';
const TYPE_ASCII: u8 = b'a';
const TYPE_ASCII_INTERNED: u8 = b'A';
const TYPE_SHORT_ASCII: u8 = b'z';
const TYPE_SHORT_ASCII_INTERNED: u8 = b'Z';
const TYPE_TUPLE: u8 = b'(';
const TYPE_SMALL_TUPLE: u8 = b')';
const TYPE_DICT: u8 = b'{';
const TYPE_REF: u8 = b'r';
const FLAG_REF: u8 = 0x80;

/// Bits per digit of a `TYPE_LONG` (CPython's `PyLong_MARSHAL_SHIFT`).
const LONG_SHIFT: u32 = 15;
const LONG_MASK: u64 = (1 << LONG_SHIFT) - 1;

/// pstats data nests five deep (dict, tuple, dict, tuple, str); anything
/// much deeper is not a pstats file, and the bound keeps recursion shallow.
const MAX_DEPTH: usize = 32;

/// Appends marshal-version-2 encodings to a buffer.
#[derive(Debug, Default)]
pub(crate) struct Encoder {
    buf: Vec<u8>,
}

impl Encoder {
    /// The encoded bytes.
    pub(crate) fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    fn len32(&mut self, n: usize, what: &str) -> Result<(), FormatError> {
        let n = i32::try_from(n).map_err(|_| FormatError::InvalidProfile {
            reason: format!("a {what} of {n} items or bytes is too large for the marshal format"),
        })?;
        self.buf.extend_from_slice(&n.to_le_bytes());
        Ok(())
    }

    /// Starts a dict; follow with key, value, key, value, … and
    /// [`Encoder::dict_end`].
    pub(crate) fn dict_start(&mut self) {
        self.buf.push(TYPE_DICT);
    }

    /// Ends a dict.
    pub(crate) fn dict_end(&mut self) {
        self.buf.push(TYPE_NULL);
    }

    /// Starts a tuple of `n` items; follow with exactly `n` objects.
    pub(crate) fn tuple(&mut self, n: usize) -> Result<(), FormatError> {
        self.buf.push(TYPE_TUPLE);
        self.len32(n, "tuple")
    }

    /// A non-negative int: `TYPE_INT` if it fits in 32 signed bits (as
    /// CPython decides), else `TYPE_LONG` in 15-bit digits.
    pub(crate) fn int(&mut self, v: u64) {
        if let Ok(small) = i32::try_from(v) {
            self.buf.push(TYPE_INT);
            self.buf.extend_from_slice(&small.to_le_bytes());
            return;
        }
        let mut digits = Vec::with_capacity(5);
        let mut rest = v;
        while rest != 0 {
            // Masked to 15 bits, so the cast cannot truncate.
            digits.push((rest & LONG_MASK) as u16);
            rest >>= LONG_SHIFT;
        }
        self.buf.push(TYPE_LONG);
        // At most five digits for a u64.
        self.buf
            .extend_from_slice(&(digits.len() as i32).to_le_bytes());
        for d in digits {
            self.buf.extend_from_slice(&d.to_le_bytes());
        }
    }

    /// A float, as an IEEE 754 double.
    pub(crate) fn float(&mut self, v: f64) {
        self.buf.push(TYPE_BINARY_FLOAT);
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    /// A str, as UTF-8.
    pub(crate) fn str(&mut self, s: &str) -> Result<(), FormatError> {
        self.buf.push(TYPE_UNICODE);
        self.len32(s.len(), "string")?;
        self.buf.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// A decoded marshal object (only the types pstats files use).
#[derive(Debug, PartialEq)]
pub(crate) enum Value {
    /// `None`.
    None,
    /// `True` or `False`.
    Bool(bool),
    /// An int. Wider ints are rejected when decoding.
    Int(i128),
    /// A float.
    Float(f64),
    /// A str.
    Str(String),
    /// A tuple.
    Tuple(Vec<Rc<Value>>),
    /// A dict, in insertion order. Keys may repeat; as in Python, the last
    /// value wins (see the pstats reader).
    Dict(Vec<(Rc<Value>, Rc<Value>)>),
}

impl Value {
    /// The Python type name, for error messages.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Tuple(_) => "tuple",
            Value::Dict(_) => "dict",
        }
    }
}

/// Decodes the first marshal object in `bytes`, like `marshal.loads`
/// (trailing bytes are ignored, as `marshal.load` on a file ignores them).
pub(crate) fn decode(bytes: &[u8]) -> Result<Rc<Value>, FormatError> {
    let mut d = Decoder {
        bytes,
        pos: 0,
        refs: Vec::new(),
        depth: 0,
    };
    match d.object()? {
        Some(v) => Ok(v),
        None => Err(marshal_error(0, "the stream starts with a NULL object")),
    }
}

fn marshal_error(offset: usize, reason: impl Into<String>) -> FormatError {
    FormatError::Marshal {
        offset,
        reason: reason.into(),
    }
}

struct Decoder<'a> {
    bytes: &'a [u8],
    pos: usize,
    /// Objects flagged with `FLAG_REF`, in the order CPython numbers them.
    /// `None` while the object is still being decoded.
    refs: Vec<Option<Rc<Value>>>,
    depth: usize,
}

impl Decoder<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], FormatError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len())
            .ok_or_else(|| {
                marshal_error(
                    self.pos,
                    format!(
                        "the data ends early (needed {n} more bytes, {} left)",
                        self.bytes.len() - self.pos
                    ),
                )
            })?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, FormatError> {
        Ok(self.take(1)?[0])
    }

    fn i32(&mut self) -> Result<i32, FormatError> {
        let b = self.take(4)?;
        Ok(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A 32-bit length prefix; negative lengths are corrupt.
    fn len32(&mut self) -> Result<usize, FormatError> {
        let at = self.pos;
        let n = self.i32()?;
        usize::try_from(n).map_err(|_| marshal_error(at, format!("negative length {n}")))
    }

    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    /// Decodes one object; `Ok(None)` is marshal's NULL (a dict terminator).
    fn object(&mut self) -> Result<Option<Rc<Value>>, FormatError> {
        let start = self.pos;
        let code = self.u8()?;
        let ty = code & !FLAG_REF;
        // Like CPython, the flag means nothing on singletons and NULL.
        let value = match ty {
            TYPE_NULL => return Ok(None),
            TYPE_NONE => return Ok(Some(Rc::new(Value::None))),
            TYPE_FALSE => return Ok(Some(Rc::new(Value::Bool(false)))),
            TYPE_TRUE => return Ok(Some(Rc::new(Value::Bool(true)))),
            TYPE_REF => return self.reference(start).map(Some),
            _ => {
                if self.depth >= MAX_DEPTH {
                    return Err(marshal_error(start, "objects are nested too deeply"));
                }
                // CPython numbers flagged objects in the order they start.
                let slot = (code & FLAG_REF != 0).then(|| {
                    self.refs.push(None);
                    self.refs.len() - 1
                });
                self.depth += 1;
                let value = self.complex(start, ty);
                self.depth -= 1;
                let value = Rc::new(value?);
                if let Some(slot) = slot {
                    self.refs[slot] = Some(Rc::clone(&value));
                }
                value
            }
        };
        Ok(Some(value))
    }

    fn reference(&mut self, start: usize) -> Result<Rc<Value>, FormatError> {
        let index = self.i32()?;
        usize::try_from(index)
            .ok()
            .and_then(|i| self.refs.get(i))
            .and_then(Option::as_ref)
            .map(Rc::clone)
            .ok_or_else(|| {
                marshal_error(
                    start,
                    format!("back-reference {index} points to no complete object"),
                )
            })
    }

    fn complex(&mut self, start: usize, ty: u8) -> Result<Value, FormatError> {
        Ok(match ty {
            TYPE_INT => Value::Int(self.i32()?.into()),
            TYPE_LONG => Value::Int(self.long(start)?),
            TYPE_BINARY_FLOAT => {
                let b = self.take(8)?;
                let mut raw = [0; 8];
                raw.copy_from_slice(b);
                Value::Float(f64::from_le_bytes(raw))
            }
            TYPE_UNICODE | TYPE_INTERNED => {
                let n = self.len32()?;
                let raw = self.take(n)?;
                let s = std::str::from_utf8(raw).map_err(|e| {
                    marshal_error(
                        start,
                        format!(
                            "a string is not valid UTF-8 ({e}); rprof cannot represent \
                             names that contain lone surrogates"
                        ),
                    )
                })?;
                Value::Str(s.to_owned())
            }
            TYPE_ASCII | TYPE_ASCII_INTERNED => {
                let n = self.len32()?;
                Value::Str(latin1(self.take(n)?))
            }
            TYPE_SHORT_ASCII | TYPE_SHORT_ASCII_INTERNED => {
                let n = self.u8()?.into();
                Value::Str(latin1(self.take(n)?))
            }
            TYPE_TUPLE | TYPE_SMALL_TUPLE => {
                let n = if ty == TYPE_TUPLE {
                    self.len32()?
                } else {
                    self.u8()?.into()
                };
                // Every item takes at least one byte: never trust `n` further.
                let mut items = Vec::with_capacity(n.min(self.remaining()));
                for _ in 0..n {
                    let at = self.pos;
                    let item = self
                        .object()?
                        .ok_or_else(|| marshal_error(at, "NULL object inside a tuple"))?;
                    items.push(item);
                }
                Value::Tuple(items)
            }
            TYPE_DICT => {
                let mut items = Vec::new();
                // As in CPython, a NULL key or value ends the dict.
                while let Some(key) = self.object()? {
                    let Some(value) = self.object()? else { break };
                    items.push((key, value));
                }
                Value::Dict(items)
            }
            other => {
                return Err(marshal_error(
                    start,
                    format!(
                        "type code {:?} (0x{other:02x}) does not occur in pstats files",
                        char::from(other)
                    ),
                ))
            }
        })
    }

    /// A `TYPE_LONG`: a signed digit count, then 15-bit digits, least
    /// significant first.
    fn long(&mut self, start: usize) -> Result<i128, FormatError> {
        let n = self.i32()?;
        let count = n.unsigned_abs();
        let mut magnitude: u128 = 0;
        let mut last = 0;
        for i in 0..count {
            let b = self.take(2)?;
            let digit = u16::from_le_bytes([b[0], b[1]]);
            if u64::from(digit) > LONG_MASK {
                return Err(marshal_error(start, "an int has a digit out of range"));
            }
            let shifted = u128::from(digit)
                .checked_shl(LONG_SHIFT * i)
                .filter(|s| s >> (LONG_SHIFT * i) == u128::from(digit))
                .ok_or_else(|| marshal_error(start, "an int is wider than 127 bits"))?;
            magnitude |= shifted;
            last = digit;
        }
        if count != 0 && last == 0 {
            return Err(marshal_error(start, "an int is not normalized"));
        }
        let magnitude = i128::try_from(magnitude)
            .map_err(|_| marshal_error(start, "an int is wider than 127 bits"))?;
        Ok(if n < 0 { -magnitude } else { magnitude })
    }
}

/// CPython decodes the "ASCII" string types as Latin-1.
fn latin1(raw: &[u8]) -> String {
    raw.iter().copied().map(char::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(f: impl FnOnce(&mut Encoder)) -> Vec<u8> {
        let mut e = Encoder::default();
        f(&mut e);
        e.into_bytes()
    }

    /// Expected bytes come from `marshal.dumps(v, 2)` on CPython 3.13.
    #[test]
    fn encodes_like_marshal_version_2() {
        assert_eq!(encode(|e| e.int(1)), b"i\x01\x00\x00\x00");
        assert_eq!(encode(|e| e.int(2_147_483_647)), b"i\xff\xff\xff\x7f");
        assert_eq!(
            encode(|e| e.int(1 << 31)),
            b"l\x03\x00\x00\x00\x00\x00\x00\x00\x02\x00"
        );
        assert_eq!(
            encode(|e| e.int(1 << 40)),
            b"l\x03\x00\x00\x00\x00\x00\x00\x00\x00\x04"
        );
        assert_eq!(
            encode(|e| e.int(u64::MAX)),
            b"l\x05\x00\x00\x00\xff\x7f\xff\x7f\xff\x7f\xff\x7f\x0f\x00"
        );
        assert_eq!(encode(|e| e.float(0.5)), b"g\x00\x00\x00\x00\x00\x00\xe0?");
        assert_eq!(
            encode(|e| e.str("é").unwrap()),
            b"u\x02\x00\x00\x00\xc3\xa9"
        );
        assert_eq!(
            encode(|e| {
                e.dict_start();
                e.tuple(0).unwrap();
                e.dict_start();
                e.dict_end();
                e.dict_end();
            }),
            b"{(\x00\x00\x00\x00{00"
        );
    }

    #[test]
    fn ints_round_trip() {
        for v in [
            0,
            1,
            2_147_483_647,
            1 << 31,
            1 << 45,
            u64::MAX - 1,
            u64::MAX,
        ] {
            let bytes = encode(|e| e.int(v));
            assert_eq!(*decode(&bytes).unwrap(), Value::Int(v.into()), "{v}");
        }
        // marshal.dumps(-2**40)
        let neg = b"l\xfd\xff\xff\xff\x00\x00\x00\x00\x00\x04";
        assert_eq!(*decode(neg).unwrap(), Value::Int(-(1 << 40)));
    }

    /// `{('a', 1, 'b'): 2, <ref to that key>: <ref to the 1 inside it>}` in
    /// version 4's flagged objects, back-references and short ASCII strings.
    #[test]
    fn decodes_version_4_features() {
        let bytes = b"\xfb\xa9\x03\xda\x01a\xe9\x01\x00\x00\x00\xfa\x01bi\x02\x00\x00\x00\
                      r\x01\x00\x00\x00r\x03\x00\x00\x000";
        let v = decode(bytes).unwrap();
        let Value::Dict(items) = &*v else {
            panic!("{v:?}")
        };
        assert_eq!(items.len(), 2);
        let key = Rc::new(Value::Tuple(vec![
            Rc::new(Value::Str("a".into())),
            Rc::new(Value::Int(1)),
            Rc::new(Value::Str("b".into())),
        ]));
        assert_eq!(items[0].0, key);
        assert_eq!(*items[0].1, Value::Int(2));
        // r1 is the key tuple, r3 the int inside it.
        assert!(Rc::ptr_eq(&items[0].0, &items[1].0));
        assert_eq!(*items[1].1, Value::Int(1));
    }

    #[test]
    fn rejects_garbage_with_offsets() {
        let cases: &[(&[u8], usize)] = &[
            (b"", 0),
            (b"0", 0),
            (b"i\x01\x00", 1),
            (b"(\x02\x00\x00\x00i\x01\x00\x00\x00", 10),
            (b"(\xff\xff\xff\xff", 1),
            (b"u\x10\x00\x00\x00abc", 5),
            (b"u\x01\x00\x00\x00\xff", 0),
            (b"r\x00\x00\x00\x00", 0),
            (b"\xa9\x01r\x00\x00\x00\x00", 2),
            (b"l\x01\x00\x00\x00\x00\x00", 0),
            (b"l\x01\x00\x00\x00\x00\x80", 0),
            (b"l\x0a\x00\x00\x00\xff\x7f\xff\x7f\xff\x7f\xff\x7f\xff\x7f\xff\x7f\xff\x7f\xff\x7f\xff\x7f\xff\x7f", 0),
            (b"s\x00\x00\x00\x00", 0),
            (b"[\x00\x00\x00\x00", 0),
        ];
        for (bytes, offset) in cases {
            match decode(bytes) {
                Err(FormatError::Marshal { offset: got, .. }) => {
                    assert_eq!(got, *offset, "{bytes:?}")
                }
                other => panic!("{bytes:?} decoded as {other:?}"),
            }
        }
    }

    #[test]
    fn nesting_is_bounded() {
        let mut bytes = [b')', 1].repeat(10_000);
        bytes.push(b'N');
        assert!(matches!(decode(&bytes), Err(FormatError::Marshal { .. })));
    }

    #[test]
    fn latin1_strings_decode_like_cpython() {
        assert_eq!(
            *decode(b"z\x02a\xe9").unwrap(),
            Value::Str("a\u{e9}".into())
        );
    }
}
