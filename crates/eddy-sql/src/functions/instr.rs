//! `INSTR(text, sub[, position[, occurrence]])` as ksqlDB has it: the 1-based character position of
//! the `occurrence`-th `sub` in `text`, searching forward from `position`, or backward from the
//! `-position`-th character from the end when it is negative; 0 when there is none (or `position`
//! or `occurrence` is 0 or less where it cannot be met). NULL in, NULL out.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, Int32Array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::logical_expr::{ColumnarValue, ScalarUDF};

use super::{overloaded, rows_of, strings_of};

/// Registered as `instr` (DataFusion's is `strpos`, two arguments only).
pub fn instr() -> ScalarUDF {
    let (text, int) = (DataType::Utf8, DataType::Int64);
    overloaded(
        "instr",
        vec![
            vec![text.clone(), text.clone()],
            vec![text.clone(), text.clone(), int.clone()],
            vec![text.clone(), text, int.clone(), int],
        ],
        DataType::Int32,
        Arc::new(|args: &[ColumnarValue]| {
            let rows = rows_of(args);
            let (texts, subs) = (strings_of(&args[0], rows)?, strings_of(&args[1], rows)?);
            let numbers = args[2..]
                .iter()
                .map(|a| Ok(cast(&a.to_array(rows)?, &DataType::Int64)?))
                .collect::<datafusion::common::Result<Vec<_>>>()?;
            let number = |k: usize, i: usize| match numbers.get(k) {
                None => Some(1),
                Some(a) => {
                    let a = a.as_primitive::<Int64Type>();
                    (!a.is_null(i)).then(|| a.value(i))
                }
            };
            let found: Int32Array = (0..rows)
                .map(|i| {
                    if texts.is_null(i) || subs.is_null(i) {
                        return None;
                    }
                    let (position, occurrence) = (number(0, i)?, number(1, i)?);
                    Some(find(texts.value(i), subs.value(i), position, occurrence))
                })
                .collect();
            Ok(ColumnarValue::Array(Arc::new(found)))
        }),
    )
}

/// The 1-based character position of the `occurrence`-th `sub` in `text` from `position`, or 0.
fn find(text: &str, sub: &str, position: i64, occurrence: i64) -> i32 {
    let chars: Vec<char> = text.chars().collect();
    let needle: Vec<char> = sub.chars().collect();
    let len = chars.len() as i64;
    let at = |start: usize| chars[start..].starts_with(&needle);
    let mut remaining = occurrence;
    // A position past either end finds nothing (and keeps the arithmetic below in range).
    if remaining <= 0 || position == 0 || position > len || position < -len {
        return 0;
    }
    if position > 0 {
        let mut start = position - 1;
        while start + needle.len() as i64 <= len {
            if at(start as usize) {
                remaining -= 1;
                if remaining == 0 {
                    return (start + 1) as i32;
                }
            }
            start += 1;
        }
    } else {
        let mut start = (len + position).min(len - needle.len() as i64);
        while start >= 0 {
            if at(start as usize) {
                remaining -= 1;
                if remaining == 0 {
                    return (start + 1) as i32;
                }
            }
            start -= 1;
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::find;

    #[test]
    fn positions_count_characters_forward_and_backward() {
        assert_eq!(find("Hello World", "o", 1, 1), 5);
        assert_eq!(find("Hello World", "o", 6, 1), 8);
        assert_eq!(find("Hello World", "o", 1, 2), 8);
        assert_eq!(find("Hello World", "o", -1, 1), 8);
        assert_eq!(find("Hello World", "o", -1, 2), 5);
        assert_eq!(find("Hello World", "o", 1, 3), 0);
        assert_eq!(find("Hello World", "z", 1, 1), 0);
        assert_eq!(find("héllo", "l", 1, 1), 3);
        assert_eq!(find("ab", "abc", 1, 1), 0);
        assert_eq!(find("ab", "abc", -1, 1), 0);
        assert_eq!(find("abc", "", 2, 1), 2);
        assert_eq!(find("abc", "c", 99, 1), 0);
        assert_eq!(find("abc", "a", -99, 1), 0);
        assert_eq!(find("abc", "a", i64::MAX, 1), 0);
        assert_eq!(find("abc", "a", i64::MIN, 1), 0);
    }
}
