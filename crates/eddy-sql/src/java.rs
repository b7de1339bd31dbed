//! Java's renderings of values as text, which ksqlDB's output follows (`Double.toString`, collections,
//! Kafka Connect structs).

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

#[cfg(test)]
mod tests {
    use super::*;

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
