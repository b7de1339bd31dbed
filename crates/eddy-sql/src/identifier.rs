//! How an identifier names a column or source in the catalog.

/// The catalog name of an identifier: upper-cased unless it was quoted.
pub fn ident_name(value: &str, quote_style: Option<char>) -> String {
    match quote_style {
        Some(_) => value.to_string(),
        None => value.to_uppercase(),
    }
}
