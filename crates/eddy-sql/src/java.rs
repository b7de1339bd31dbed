//! Java's conventions that ksqlDB users write and read: `Double.toString` renderings and
//! `DateTimeFormatter` patterns.

/// Java's `Double.toString` rendering, which ksqlDB uses for doubles turned into strings.
pub fn format_double(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        };
    }
    if f.abs() == f64::from_bits(1) {
        // Java prints the smallest subnormal with two digits.
        return if f > 0.0 { "4.9E-324" } else { "-4.9E-324" }.into();
    }
    let abs = f.abs();
    if abs != 0.0 && !(1e-3..1e7).contains(&abs) {
        let s = format!("{f:E}");
        let (m, e) = s.split_once('E').unwrap_or((&s, "0"));
        let m = if m.contains('.') {
            m.to_string()
        } else {
            format!("{m}.0")
        };
        return format!("{m}E{e}");
    }
    let s = format!("{f}");
    if s.contains('.') { s } else { format!("{s}.0") }
}

/// A Java `DateTimeFormatter` pattern (`yyyy-MM-dd'T'HH:mm:ss.SSS`) as a chrono format string.
pub fn chrono_format(pattern: &str) -> String {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let mut n = 1;
        while i + n < chars.len() && chars[i + n] == c {
            n += 1;
        }
        if c == '\'' {
            // 'literal' text; '' is a quote.
            if n >= 2 {
                out.push('\'');
                i += 2;
                continue;
            }
            let mut j = i + 1;
            while j < chars.len() {
                if chars[j] == '\'' {
                    if chars.get(j + 1) == Some(&'\'') {
                        out.push('\'');
                        j += 2;
                        continue;
                    }
                    break;
                }
                push_literal(&mut out, chars[j]);
                j += 1;
            }
            i = j + 1;
            continue;
        }
        let spec = match (c, n) {
            ('y' | 'u', 2) => "%y",
            ('y' | 'u', _) => "%Y",
            ('M', 1) => "%-m",
            ('M', 2) => "%m",
            ('M', 3) => "%b",
            ('M', _) => "%B",
            ('d', 1) => "%-d",
            ('d', _) => "%d",
            ('D', _) => "%j",
            ('H', 1) => "%-H",
            ('H', _) => "%H",
            ('h', 1) => "%-I",
            ('h', _) => "%I",
            ('m', 1) => "%-M",
            ('m', _) => "%M",
            ('s', 1) => "%-S",
            ('s', _) => "%S",
            ('S', 1..=3) => "%3f",
            ('S', 4..=6) => "%6f",
            ('S', _) => "%9f",
            ('a', _) => "%p",
            ('E', 1..=3) => "%a",
            ('E', _) => "%A",
            ('z', _) => "%Z",
            ('Z', _) | ('x', _) => "%z",
            ('X', 1) => "%#z",
            ('X', _) => "%:z",
            _ => {
                for _ in 0..n {
                    push_literal(&mut out, c);
                }
                i += n;
                continue;
            }
        };
        out.push_str(spec);
        i += n;
    }
    out
}

/// A chrono formatting as text; `None` where the format asks for what the value lacks (an hour of a
/// date, a zone of a local time), which chrono reports as a formatting error.
pub fn formatted(value: impl std::fmt::Display) -> Option<String> {
    use std::fmt::Write;
    let mut out = String::new();
    write!(out, "{value}").ok()?;
    Some(out)
}

/// Milliseconds since the epoch of a timestamp text in a chrono `format` (see [`chrono_format`]): with
/// the format's zone if it has one, else UTC; a date alone is its midnight.
pub fn parse_millis(text: &str, format: &str) -> Option<i64> {
    use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime};
    if let Some((before, after)) = format.split_once("%Z") {
        return parse_zoned_millis(text, before, after);
    }
    if let Ok(t) = DateTime::parse_from_str(text, format) {
        return Some(t.timestamp_millis());
    }
    if let Ok(t) = NaiveDateTime::parse_from_str(text, format) {
        return Some(t.and_utc().timestamp_millis());
    }
    NaiveDate::parse_from_str(text, format)
        .ok()
        .map(|d| d.and_time(NaiveTime::MIN).and_utc().timestamp_millis())
}

/// A timestamp whose zone is named where the format had `%Z` (chrono cannot parse names): the name
/// is the text up to the next white space, read as Java's `ZoneId` reads it.
fn parse_zoned_millis(text: &str, before: &str, after: &str) -> Option<i64> {
    use chrono::format::{Parsed, StrftimeItems, parse, parse_and_remainder};
    let mut parsed = Parsed::new();
    let rest = parse_and_remainder(&mut parsed, text, StrftimeItems::new(before)).ok()?;
    let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
    let (zone, tail) = rest.split_at(end);
    parse(&mut parsed, tail, StrftimeItems::new(after)).ok()?;
    let local = parsed.to_naive_datetime_with_offset(0).ok()?;
    let zone = crate::java_zone::Zone::parse(zone)?;
    Some(zone.instant(&local)?.timestamp_millis())
}

/// A date in `text` as a chrono `format` reads it, as Java's lenient parsing does: text after the date
/// is ignored, a missing day of the month is the first, a missing month is January.
pub fn parse_date(text: &str, format: &str) -> Option<chrono::NaiveDate> {
    use chrono::format::{Parsed, StrftimeItems, parse_and_remainder};
    let mut parsed = Parsed::new();
    parse_and_remainder(&mut parsed, text, StrftimeItems::new(format)).ok()?;
    if parsed.month().is_none() && parsed.ordinal().is_none() {
        parsed.set_month(1).ok()?;
    }
    if parsed.day().is_none() && parsed.ordinal().is_none() {
        parsed.set_day(1).ok()?;
    }
    parsed.to_naive_date().ok()
}

fn push_literal(out: &mut String, c: char) {
    if c == '%' {
        out.push_str("%%");
    } else {
        out.push(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_patterns_become_chrono_formats() {
        assert_eq!(chrono_format("yyyy-MM-dd"), "%Y-%m-%d");
        assert_eq!(
            chrono_format("yyyy-MM-dd'T'HH:mm:ss.SSS"),
            "%Y-%m-%dT%H:%M:%S.%3f"
        );
        assert_eq!(
            chrono_format("dd/MM/yy HH 'o''clock' %"),
            "%d/%m/%y %H o'clock %%"
        );
    }

    #[test]
    fn dates_default_a_missing_day_and_month() {
        let d = |t: &str, f: &str| parse_date(t, &chrono_format(f)).map(|d| d.to_string());
        assert_eq!(d("JAN-2022", "MMM-yyyy").as_deref(), Some("2022-01-01"));
        assert_eq!(d("1970-01", "yyyy-MM").as_deref(), Some("1970-01-01"));
        assert_eq!(
            d("2018-05-11Lit", "yyyy-MM-dd").as_deref(),
            Some("2018-05-11")
        );
        assert_eq!(d("foo", "yyyy-MM-dd"), None);
    }

    #[test]
    fn doubles_render_like_java() {
        assert_eq!(format_double(1.0), "1.0");
        assert_eq!(format_double(0.1), "0.1");
        assert_eq!(format_double(1.0e10), "1.0E10");
        assert_eq!(format_double(1.5e-5), "1.5E-5");
        assert_eq!(format_double(-f64::from_bits(1)), "-4.9E-324");
        assert_eq!(format_double(f64::MAX), "1.7976931348623157E308");
    }
}
