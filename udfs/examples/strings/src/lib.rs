//! Example plugin with overloads, varargs and a table function:
//! - `REDACT(s)` masks every letter and digit; `REDACT(s, keep)` keeps the last `keep` characters
//!   (ksqlDB's built-in `MASK` family is Eddy's too; this shows overloads).
//! - `JOIN_ALL(separator, part...)` joins any number of strings, skipping NULLs.
//! - `SPLIT_TO_ROWS(s, separator)` is a table function: one output row per part.

use eddy_udf::prelude::*;

fn mask_char(c: char) -> char {
    if c.is_alphanumeric() { '*' } else { c }
}

/// Masks every letter and digit.
#[udf(name = "redact")]
pub fn mask_all(s: &str) -> String {
    s.chars().map(mask_char).collect()
}

/// Masks every letter and digit but the last `keep` characters.
#[udf(name = "redact")]
pub fn mask_keep(s: &str, keep: i32) -> String {
    let keep = keep.max(0) as usize;
    let n = s.chars().count();
    s.chars()
        .enumerate()
        .map(|(i, c)| if i + keep >= n { c } else { mask_char(c) })
        .collect()
}

/// Joins any number of strings with a separator, skipping NULLs.
#[udf]
pub fn join_all(separator: &str, parts: Variadic<Option<&str>>) -> String {
    parts
        .iter()
        .flatten()
        .copied()
        .collect::<Vec<_>>()
        .join(separator)
}

/// One row per part of the string split at the separator.
#[udtf]
pub fn split_to_rows(s: &str, separator: &str) -> Vec<String> {
    if separator.is_empty() {
        return s.chars().map(String::from).collect();
    }
    s.split(separator).map(str::to_string).collect()
}

eddy_udf::plugin!(mask_all, mask_keep, join_all, split_to_rows);
