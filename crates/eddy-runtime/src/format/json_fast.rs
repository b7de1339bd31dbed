//! A fast path for the common JSON value: one flat object whose strings have no escapes. It reads
//! fields straight into cells and remembers where each key went; anything else (nesting, escapes,
//! malformed input) makes it give up so that the full serde decoder handles the record.

use std::borrow::Cow;

use super::column::{Cell, ColumnBuilder};

/// Which column each key spelling went to, by the key's position in the object: records of a topic
/// usually spell and order their keys the same way.
#[derive(Debug, Default)]
pub struct KeyCache {
    by_position: Vec<Option<Spelling>>,
}

/// A key as it was spelled, and the column it names (if any).
type Spelling = (Box<[u8]>, Option<usize>);

impl KeyCache {
    /// If the key at `position` is spelled as last time, consumes it from the reader and gives its
    /// column (the cached spelling is known to need no unescaping).
    #[inline]
    fn known(&self, position: usize, r: &mut Reader<'_>) -> Option<Option<usize>> {
        let (spelling, column) = self.by_position.get(position)?.as_ref()?;
        let rest = r.bytes.get(r.pos..)?;
        let end = spelling.len() + 1;
        if rest.first() == Some(&b'"')
            && rest.get(1..end) == Some(spelling.as_ref())
            && rest.get(end) == Some(&b'"')
        {
            r.pos += end + 1;
            Some(*column)
        } else {
            None
        }
    }

    /// The column `key` names (`Some(None)`: none), remembered for `position`; `None` when the key
    /// is not UTF-8 (the full decoder refuses the record and says why).
    fn column(&mut self, position: usize, key: &[u8], names: &[String]) -> Option<Option<usize>> {
        let key_str = std::str::from_utf8(key).ok()?;
        let column = names
            .iter()
            .position(|n| n.as_str() == key_str)
            .or_else(|| names.iter().position(|n| n.eq_ignore_ascii_case(key_str)));
        if self.by_position.len() <= position {
            self.by_position.resize(position + 1, None);
        }
        self.by_position[position] = Some((key.into(), column));
        Some(column)
    }
}

/// Reads `bytes` as a flat JSON object, appending one value to each of `columns` (NULL for absent and
/// unused fields). `None` means "not handled here" (not a flat object, escapes, a repeated field, a value
/// of the wrong type): the caller cuts the columns back and uses the full decoder.
pub fn flat_object(
    bytes: &[u8],
    names: &[String],
    unused: &[bool],
    columns: &mut [ColumnBuilder],
    cache: &mut KeyCache,
) -> Option<()> {
    let start = columns.first().map_or(0, ColumnBuilder::len);
    let mut r = Reader { bytes, pos: 0 };
    r.skip_ws();
    r.expect(b'{')?;
    r.skip_ws();
    if r.peek()? == b'}' {
        r.pos += 1;
    } else {
        let mut position = 0;
        loop {
            r.skip_ws();
            let column = match cache.known(position, &mut r) {
                Some(column) => column,
                None => {
                    let key = r.plain_string()?;
                    cache.column(position, key, names)?
                }
            };
            r.skip_ws();
            r.expect(b':')?;
            r.skip_ws();
            match column {
                Some(i) if !unused[i] => {
                    if columns[i].len() > start {
                        return None;
                    }
                    columns[i].push(r.scalar()?).ok()?;
                }
                _ => r.skip_scalar()?,
            }
            position += 1;
            r.skip_ws();
            match r.next()? {
                b',' => continue,
                b'}' => break,
                _ => return None,
            }
        }
    }
    r.end()?;
    for c in columns.iter_mut().filter(|c| c.len() == start) {
        c.push(Cell::Null).ok()?;
    }
    Some(())
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    #[inline]
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    #[inline]
    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.pos += 1;
        Some(b)
    }

    #[inline]
    fn expect(&mut self, b: u8) -> Option<()> {
        (self.next()? == b).then_some(())
    }

    #[inline]
    fn skip_ws(&mut self) {
        while let Some(&b) = self.bytes.get(self.pos) {
            if b > b' ' || !matches!(b, b' ' | b'\n' | b'\r' | b'\t') {
                break;
            }
            self.pos += 1;
        }
    }

    fn end(&mut self) -> Option<()> {
        self.skip_ws();
        (self.pos == self.bytes.len()).then_some(())
    }

    /// A string without escapes or control characters, as bytes (checked to be UTF-8 by the caller
    /// where it matters).
    #[inline]
    fn plain_string(&mut self) -> Option<&'a [u8]> {
        self.expect(b'"')?;
        let start = self.pos;
        let len = self.bytes[start..]
            .iter()
            .position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
        if self.bytes[start + len] != b'"' {
            return None;
        }
        self.pos = start + len + 1;
        Some(&self.bytes[start..start + len])
    }

    /// A string, number, boolean or null.
    #[inline]
    fn scalar(&mut self) -> Option<Cell<'a>> {
        match self.peek()? {
            b'"' => {
                let s = std::str::from_utf8(self.plain_string()?).ok()?;
                Some(Cell::Str(Cow::Borrowed(s)))
            }
            b't' => self.word(b"true", Cell::Bool(true)),
            b'f' => self.word(b"false", Cell::Bool(false)),
            b'n' => self.word(b"null", Cell::Null),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    /// Checks a scalar without converting it (for fields no query reads): what the full decoder
    /// would refuse (a string that is not UTF-8) is refused here too.
    #[inline]
    fn skip_scalar(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => std::str::from_utf8(self.plain_string()?).ok().map(|_| ()),
            b'-' | b'0'..=b'9' => self.scan_number().map(|_| ()),
            _ => self.scalar().map(|_| ()),
        }
    }

    fn word(&mut self, word: &[u8], cell: Cell<'a>) -> Option<Cell<'a>> {
        if self.bytes[self.pos..].starts_with(word) {
            self.pos += word.len();
            Some(cell)
        } else {
            None
        }
    }

    /// A JSON number: an integer that fits 64 bits, or a double.
    #[inline]
    fn number(&mut self) -> Option<Cell<'a>> {
        let n = self.scan_number()?;
        if !n.fraction && !n.exponent {
            // Up to 18 digits cannot overflow; longer ones are checked (and beyond 64 bits the full
            // decoder keeps them exactly).
            return if n.negative && n.digits == 1 && n.mantissa == 0 {
                // `-0` is a double, as serde_json reads it (found by the differential fuzz target).
                Some(Cell::Float(-0.0))
            } else if n.digits <= 18 {
                let v = n.mantissa as i64;
                Some(Cell::Int(if n.negative { -v } else { v }))
            } else {
                integer(n.text).map(Cell::Int)
            };
        }
        if !n.exponent && n.digits <= 15 {
            // Clinger's fast path: an integer a double holds exactly over an exact power of ten
            // rounds correctly, so this equals a full parse.
            const POWERS: [f64; 16] = [
                1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14,
                1e15,
            ];
            let v = n.mantissa as f64 / POWERS[n.fraction_digits];
            return Some(Cell::Float(if n.negative { -v } else { v }));
        }
        // The bytes are ASCII digits, signs, a point and an exponent only. A number too large for
        // a double (`1e999`) is left to the full decoder, which refuses it as serde_json does.
        std::str::from_utf8(n.text)
            .ok()?
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .map(Cell::Float)
    }

    /// Reads a JSON number, gathering its digits as it checks the grammar.
    #[inline]
    fn scan_number(&mut self) -> Option<Number<'a>> {
        let start = self.pos;
        let negative = self.peek() == Some(b'-');
        if negative {
            self.pos += 1;
        }
        let mut mantissa: u64 = 0;
        let int_start = self.pos;
        let int_digits = self.gather(&mut mantissa);
        // JSON forbids leading zeros.
        if int_digits == 0 || (int_digits > 1 && self.bytes[int_start] == b'0') {
            return None;
        }
        let mut fraction_digits = 0;
        let fraction = self.peek() == Some(b'.');
        if fraction {
            self.pos += 1;
            fraction_digits = self.gather(&mut mantissa);
            if fraction_digits == 0 {
                return None;
            }
        }
        let exponent = matches!(self.peek(), Some(b'e' | b'E'));
        if exponent {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return None;
            }
        }
        Some(Number {
            text: &self.bytes[start..self.pos],
            negative,
            mantissa,
            digits: int_digits + fraction_digits,
            fraction,
            fraction_digits,
            exponent,
        })
    }

    /// Reads digits into `mantissa` (wrapping: only trusted when few enough were read).
    #[inline]
    fn gather(&mut self, mantissa: &mut u64) -> usize {
        let start = self.pos;
        while let Some(&b) = self.bytes.get(self.pos) {
            if !b.is_ascii_digit() {
                break;
            }
            *mantissa = mantissa.wrapping_mul(10).wrapping_add(u64::from(b - b'0'));
            self.pos += 1;
        }
        self.pos - start
    }

    #[inline]
    fn digits(&mut self) -> usize {
        let n = self.bytes[self.pos..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        self.pos += n;
        n
    }
}

/// A JSON number as read: its text and its digits gathered into an integer.
struct Number<'a> {
    text: &'a [u8],
    negative: bool,
    mantissa: u64,
    /// Digits before and after the point.
    digits: usize,
    fraction: bool,
    fraction_digits: usize,
    exponent: bool,
}

/// An optionally negative run of digits as an i64, if it fits.
fn integer(text: &[u8]) -> Option<i64> {
    let (negative, digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    let mut value: i64 = 0;
    for &d in digits {
        let d = i64::from(d - b'0');
        value = value
            .checked_mul(10)?
            .checked_add(if negative { -d } else { d })?;
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(json: &str) -> Option<Vec<String>> {
        use eddy_sql::SqlType;
        let names: Vec<String> = ["A", "B", "C"].iter().map(|s| s.to_string()).collect();
        let mut columns: Vec<ColumnBuilder> = [SqlType::Double, SqlType::String, SqlType::Bigint]
            .iter()
            .map(|t| ColumnBuilder::new(t, 1))
            .collect();
        let mut cache = KeyCache::default();
        flat_object(
            json.as_bytes(),
            &names,
            &[false, false, true],
            &mut columns,
            &mut cache,
        )?;
        let shown = columns
            .iter_mut()
            .map(|c| {
                let a = c.finish().unwrap();
                datafusion::arrow::util::display::array_value_to_string(&a, 0).unwrap()
            })
            .collect();
        Some(shown)
    }

    #[test]
    fn what_the_full_decoder_refuses_is_refused_where_nothing_reads_it_too() {
        let names = vec!["A".to_string(), "B".to_string()];
        for json in [
            &b"{\"A\": 1.5, \"\xff\": 1}"[..],
            b"{\"A\": 1.5, \"X\": \"\xff\"}",
            b"{\"A\": 1.5, \"B\": \"\xc3\"}",
        ] {
            let mut columns = vec![
                ColumnBuilder::new(&eddy_sql::SqlType::Double, 1),
                ColumnBuilder::new(&eddy_sql::SqlType::String, 1),
            ];
            let mut cache = KeyCache::default();
            assert!(
                flat_object(json, &names, &[false, true], &mut columns, &mut cache).is_none(),
                "{}",
                String::from_utf8_lossy(json)
            );
            assert!(serde_json::from_slice::<serde_json::Value>(json).is_err());
        }
    }

    fn parsed(text: &str) -> Option<Cell<'_>> {
        Reader {
            bytes: text.as_bytes(),
            pos: 0,
        }
        .number()
    }

    #[test]
    fn numbers_parse_exactly_like_the_full_parser() {
        for text in [
            "0.1",
            "25.0",
            "-88.2",
            "3.14159",
            "123456789.012345",
            "0.000000000000001",
            "9.999999999999999",
            "-0.0",
            "1.2e3",
            "1234567890.1234567",
            "-1E-7",
        ] {
            let full: f64 = text.parse().unwrap();
            match parsed(text) {
                Some(Cell::Float(v)) => assert_eq!(v.to_bits(), full.to_bits(), "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
        assert!(
            matches!(parsed("-0"), Some(Cell::Float(v)) if v.to_bits() == (-0.0f64).to_bits()),
            "-0 is a negative zero double"
        );
        // Its digits gather to 0 modulo 2^64: too long for an integer, not a zero.
        assert!(parsed("-92233720368547758080").is_none());
        for (text, want) in [
            ("0", 0),
            ("-17", -17),
            ("999999999999999999", 999_999_999_999_999_999),
        ] {
            assert!(
                matches!(parsed(text), Some(Cell::Int(v)) if v == want),
                "{text}"
            );
        }
        assert!(matches!(
            parsed("-9223372036854775808"),
            Some(Cell::Int(i64::MIN))
        ));
        assert!(parsed("9223372036854775808").is_none());
        // Out of a double's range: left to serde_json, which refuses it.
        assert!(parsed("1e999").is_none() && parsed("-1e999").is_none());
        assert!(serde_json::from_str::<serde_json::Value>("1e999").is_err());
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let text = format!("{}.{}", x % 100_000_000, (x >> 32) % 10_000_000);
            let full: f64 = text.parse().unwrap();
            assert!(
                matches!(parsed(&text), Some(Cell::Float(v)) if v.to_bits() == full.to_bits()),
                "{text}"
            );
        }
    }

    #[test]
    fn flat_objects_are_read_and_the_rest_is_left_to_serde() {
        assert_eq!(
            read(r#" {"a": -1.5e1, "B":"x", "c": 3, "d": true} "#).unwrap(),
            ["-15.0", "x", ""]
        );
        assert_eq!(
            read(r#"{"a": -2, "b": -9223372036854775808}"#).unwrap(),
            ["-2.0", "-9223372036854775808", ""]
        );
        assert_eq!(read(r#"{}"#).unwrap(), ["", "", ""]);
        for other in [
            r#"{"a": "x\"y"}"#,
            r#"{"a": [1]}"#,
            r#"{"a": 01}"#,
            r#"{"a": 1,}"#,
            r#"{"a": 1} x"#,
            r#"{"a": 99999999999999999999}"#,
            r#"[1]"#,
            r#"{"a": 1, "a": 2}"#,
            r#"{"a": "not a number"}"#,
        ] {
            assert_eq!(read(other), None, "{other}");
        }
    }
}
