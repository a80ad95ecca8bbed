//! The little JSON the speedscope and Chrome trace writers need, written
//! straight to the output: strings escaped per RFC 8259 and numbers in a
//! form every JSON parser reads.

use std::io::{self, Write};

/// Writes `s` as a JSON string, quotes included.
pub(crate) fn string(w: &mut impl Write, s: &str) -> io::Result<()> {
    w.write_all(b"\"")?;
    let mut plain = 0;
    for (i, b) in s.bytes().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => b"",
            _ => continue,
        };
        w.write_all(&s.as_bytes()[plain..i])?;
        if escape.is_empty() {
            write!(w, "\\u{b:04x}")?;
        } else {
            w.write_all(escape)?;
        }
        plain = i + 1;
    }
    w.write_all(&s.as_bytes()[plain..])?;
    w.write_all(b"\"")
}

/// Writes `x` as a JSON number: the shortest decimal that reads back as
/// the same `f64` (with an exponent for very large or small magnitudes).
/// JSON has no infinities or NaN; those are written as 0.
pub(crate) fn number(w: &mut impl Write, x: f64) -> io::Result<()> {
    if x.is_finite() {
        write!(w, "{x:?}")
    } else {
        w.write_all(b"0")
    }
}

/// Writes a count of nanoseconds as microseconds with three decimals
/// (`1234567` → `1234.567`), exactly.
pub(crate) fn micros(w: &mut impl Write, nanos: i64) -> io::Result<()> {
    let sign = if nanos < 0 { "-" } else { "" };
    let n = nanos.unsigned_abs();
    write!(w, "{sign}{}.{:03}", n / 1000, n % 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: &str) -> String {
        let mut out = Vec::new();
        string(&mut out, x).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn n(x: f64) -> String {
        let mut out = Vec::new();
        number(&mut out, x).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn us(x: i64) -> String {
        let mut out = Vec::new();
        micros(&mut out, x).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn strings() {
        assert_eq!(s(""), r#""""#);
        assert_eq!(s("naïve 函数"), "\"naïve 函数\"");
        assert_eq!(
            s("a\"b\\c\nd\te\r\u{1}\u{1f}"),
            r#""a\"b\\c\nd\te\r\u0001\u001f""#
        );
        assert_eq!(s("<method 'x'>/"), r#""<method 'x'>/""#);
    }

    #[test]
    fn numbers() {
        assert_eq!(n(0.0), "0.0");
        assert_eq!(n(0.25), "0.25");
        assert_eq!(n(3.0), "3.0");
        assert_eq!(n(1e-9), "1e-9");
        assert_eq!(n(1.5e300), "1.5e300");
        assert_eq!(n(f64::NAN), "0");
        assert_eq!(n(f64::NEG_INFINITY), "0");
        assert_eq!(us(0), "0.000");
        assert_eq!(us(1_234_567), "1234.567");
        assert_eq!(us(-5), "-0.005");
    }
}
