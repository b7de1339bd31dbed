//! ksqlDB's URL functions: `URL_EXTRACT_PROTOCOL`, `_HOST`, `_PORT`, `_PATH`, `_QUERY`, `_FRAGMENT`
//! (decoded, NULL when the URL has none or does not parse), `URL_EXTRACT_PARAMETER(url, name)` (the
//! first value, decoded), and `URL_ENCODE_PARAM` / `URL_DECODE_PARAM` (form encoding: a space is `+`).

use std::sync::Arc;

use datafusion::arrow::array::{Array, Int32Builder, StringBuilder};
use datafusion::arrow::datatypes::DataType;
use datafusion::logical_expr::{ColumnarValue, ScalarUDF, Volatility, create_udf};
use url::Url;

use super::{over_text, rows_of, strings_of};

/// A part of a parsed URL, as text.
type Part = fn(&Url) -> Option<String>;

/// The functions, for registration.
pub fn all() -> Vec<ScalarUDF> {
    let parts: [(&str, Part); 5] = [
        ("url_extract_protocol", |u| Some(u.scheme().to_string())),
        ("url_extract_host", |u| u.host_str().map(str::to_string)),
        ("url_extract_path", |u| decoded(u.path())),
        ("url_extract_query", |u| u.query().and_then(decoded)),
        ("url_extract_fragment", |u| u.fragment().and_then(decoded)),
    ];
    let mut all: Vec<ScalarUDF> = parts
        .into_iter()
        .map(|(name, part)| text_function(name, move |t| Url::parse(t).ok().and_then(|u| part(&u))))
        .collect();
    all.push(create_udf(
        "url_extract_port",
        vec![DataType::Utf8],
        DataType::Int32,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let urls = strings_of(&args[0], rows_of(args))?;
            let mut out = Int32Builder::with_capacity(urls.len());
            // The port the URL names, unless it is the scheme's default (which the parser drops).
            for u in urls.iter() {
                out.append_option(u.and_then(|u| Url::parse(u).ok()?.port().map(i32::from)));
            }
            Ok(ColumnarValue::Array(Arc::new(out.finish())))
        }),
    ));
    all.push(create_udf(
        "url_extract_parameter",
        vec![DataType::Utf8, DataType::Utf8],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let rows = rows_of(args);
            let urls = strings_of(&args[0], rows)?;
            let names = strings_of(&args[1], rows)?;
            let mut out = StringBuilder::new();
            for (u, n) in urls.iter().zip(names.iter()) {
                out.append_option(u.zip(n).and_then(|(u, n)| {
                    let url = Url::parse(u).ok()?;
                    url.query_pairs()
                        .find(|(k, _)| k == n)
                        .map(|(_, v)| v.into_owned())
                }));
            }
            Ok(ColumnarValue::Array(Arc::new(out.finish())))
        }),
    ));
    all.push(text_function("url_encode_param", |t| {
        Some(url::form_urlencoded::byte_serialize(t.as_bytes()).collect())
    }));
    all.push(text_function("url_decode_param", |t| {
        decoded(&t.replace('+', " "))
    }));
    all
}

/// Percent-decoded text (NULL when the bytes are not UTF-8); a `%` not followed by two hex digits
/// stays as it is.
fn decoded(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// A function `name(STRING) -> STRING` computed by `f` per value (NULL in, NULL out).
fn text_function(
    name: &str,
    f: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
) -> ScalarUDF {
    over_text(name, DataType::Utf8, move |texts| {
        let mut out = StringBuilder::new();
        for t in texts.iter() {
            out.append_option(t.and_then(&f));
        }
        Arc::new(out.finish())
    })
}

#[cfg(test)]
mod tests {
    use super::decoded;

    #[test]
    fn percent_escapes_decode_and_stray_percents_stay() {
        assert_eq!(decoded("a%20b%C3%A9").as_deref(), Some("a bé"));
        assert_eq!(decoded("100%").as_deref(), Some("100%"));
        assert_eq!(decoded("%zz").as_deref(), Some("%zz"));
        assert_eq!(decoded("%ff"), None);
    }
}
