//! Windows: what a `WINDOW` clause means in time (assignment, grace, retention), the windowed keys of
//! sources and sinks, and durations as ksqlDB writes them (`30 SECONDS`).

use eddy_common::{Result, plan_err};

use crate::statement::{WindowKind, WindowSpec};

/// Grace period when a window says none: ksqlDB's (Kafka Streams') default of 24 hours.
pub const DEFAULT_GRACE_MS: i64 = 24 * 3_600_000;

/// Most hopping windows one record may fall in (SIZE / ADVANCE BY): every one is a group to update.
pub const MAX_HOPS: i64 = 10_000;

/// The kind of window a windowed key belongs to (`WINDOW_TYPE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowType {
    Tumbling,
    Hopping,
    Session,
}

impl WindowType {
    /// How ksqlDB names it (`TUMBLING`).
    pub fn as_str(self) -> &'static str {
        match self {
            WindowType::Tumbling => "TUMBLING",
            WindowType::Hopping => "HOPPING",
            WindowType::Session => "SESSION",
        }
    }
}

/// How the keys of a source are windowed: the window type and, for time windows, their size (the key
/// bytes carry only the start of a time window; a session key carries both bounds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyWindow {
    pub window_type: WindowType,
    pub size_ms: Option<i64>,
}

impl KeyWindow {
    /// From a `CREATE` statement's `WINDOW_TYPE` and `WINDOW_SIZE` properties.
    pub fn from_properties(window_type: &str, size: Option<&str>) -> Result<KeyWindow> {
        let window_type = match window_type.to_ascii_uppercase().as_str() {
            "TUMBLING" => WindowType::Tumbling,
            "HOPPING" => WindowType::Hopping,
            "SESSION" => WindowType::Session,
            _ => {
                return Err(plan_err!(
                    "Invalid value for WINDOW_TYPE: {window_type}. Valid values are SESSION, HOPPING or TUMBLING"
                ));
            }
        };
        let size_ms = match (window_type, size) {
            (WindowType::Session, Some(_)) => {
                return Err(plan_err!(
                    "'WINDOW_SIZE' should not be set for SESSION windows."
                ));
            }
            (WindowType::Session, None) => None,
            (_, None) => {
                return Err(plan_err!(
                    "Tumbling and Hopping window types should set 'WINDOW_SIZE' in the WITH clause."
                ));
            }
            (_, Some(text)) => Some(parse_duration(text)?),
        };
        Ok(KeyWindow {
            window_type,
            size_ms,
        })
    }

    /// The end of a time window that starts at `start`.
    pub fn time_window_end(&self, start: i64) -> i64 {
        start.saturating_add(self.size_ms.unwrap_or(0))
    }
}

impl WindowSpec {
    /// The grace period: how long after a window ends late records still update it.
    pub fn grace_ms(&self) -> i64 {
        self.grace_ms.unwrap_or(DEFAULT_GRACE_MS)
    }

    /// The windowed keys this window produces.
    pub fn key_window(&self) -> KeyWindow {
        match self.kind {
            WindowKind::Tumbling { size_ms } => KeyWindow {
                window_type: WindowType::Tumbling,
                size_ms: Some(size_ms),
            },
            WindowKind::Hopping { size_ms, .. } => KeyWindow {
                window_type: WindowType::Hopping,
                size_ms: Some(size_ms),
            },
            WindowKind::Session { .. } => KeyWindow {
                window_type: WindowType::Session,
                size_ms: None,
            },
        }
    }

    /// How long a window's state is kept after it ends (at least the grace period); pull queries
    /// see windows this long.
    pub fn retention_ms(&self) -> i64 {
        let span = match self.kind {
            WindowKind::Tumbling { size_ms } | WindowKind::Hopping { size_ms, .. } => size_ms,
            WindowKind::Session { gap_ms } => gap_ms,
        };
        self.retention_ms
            .unwrap_or(0)
            .max(span.saturating_add(self.grace_ms()))
    }

    /// Checks the clause's numbers, as ksqlDB does.
    pub fn check(&self) -> Result<()> {
        match self.kind {
            WindowKind::Tumbling { size_ms } | WindowKind::Session { gap_ms: size_ms }
                if size_ms <= 0 =>
            {
                Err(plan_err!("Window size must be positive, got {size_ms} ms"))
            }
            WindowKind::Hopping {
                size_ms,
                advance_ms,
            } if advance_ms <= 0 || advance_ms > size_ms => Err(plan_err!(
                "Window advance must be positive and no larger than the window size: ADVANCE BY {advance_ms} ms with SIZE {size_ms} ms"
            )),
            WindowKind::Hopping {
                size_ms,
                advance_ms,
            } if size_ms / advance_ms > MAX_HOPS => Err(plan_err!(
                "A hopping window of SIZE {size_ms} ms ADVANCE BY {advance_ms} ms puts every record in {} windows; at most {MAX_HOPS} are allowed: advance by at least {} ms",
                size_ms / advance_ms,
                (size_ms + MAX_HOPS - 1) / MAX_HOPS
            )),
            _ => Ok(()),
        }
    }

    /// Appends the starts of the time windows (tumbling or hopping) that contain `ts`, earliest first.
    /// Session windows are not fixed in advance; for them nothing is appended. A time so close to the
    /// end of `i64` that a window containing it would end past it is an error (for that record).
    pub fn time_windows(&self, ts: i64, starts: &mut Vec<i64>) -> std::result::Result<(), String> {
        let (size, advance) = match self.kind {
            WindowKind::Tumbling { size_ms } => (size_ms, size_ms),
            WindowKind::Hopping {
                size_ms,
                advance_ms,
            } => (size_ms, advance_ms),
            WindowKind::Session { .. } => return Ok(()),
        };
        if ts < 0 {
            return Err(format!(
                "The record's time {ts} is negative: windows start at 0"
            ));
        }
        let out_of_range =
            || format!("The record's time {ts} is too late for a window of {size} ms to end");
        // Windows start at multiples of the advance, never before 0 (as in Kafka Streams).
        let first = ts
            .checked_sub(size)
            .and_then(|t| t.checked_add(advance))
            .ok_or_else(out_of_range)?;
        let mut start = first.max(0) / advance * advance;
        while start <= ts {
            start.checked_add(size).ok_or_else(out_of_range)?;
            starts.push(start);
            match start.checked_add(advance) {
                Some(next) => start = next,
                None => break,
            }
        }
        Ok(())
    }
}

/// Milliseconds in one unit as ksqlDB spells it (`SECOND`, `SECONDS`, `MILLISECONDS`, ...).
pub fn unit_millis(unit: &str) -> Option<i64> {
    Some(match unit.to_ascii_uppercase().trim_end_matches('S') {
        "MILLISECOND" => 1,
        "SECOND" => 1_000,
        "MINUTE" => 60_000,
        "HOUR" => 3_600_000,
        "DAY" => 86_400_000,
        _ => return None,
    })
}

/// A duration written as text, such as `'30 seconds'`, in milliseconds.
pub fn parse_duration(text: &str) -> Result<i64> {
    let mut parts = text.split_whitespace();
    let (Some(n), Some(unit), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(plan_err!(
            "Invalid duration '{text}': expected a number and a unit, such as '30 SECONDS'"
        ));
    };
    let n: i64 = n
        .parse()
        .map_err(|_| plan_err!("Invalid duration '{text}': {n} is not a whole number"))?;
    let factor = unit_millis(unit).ok_or_else(|| {
        plan_err!(
            "Invalid duration '{text}': unknown time unit '{unit}'; use MILLISECONDS, SECONDS, MINUTES, HOURS or DAYS"
        )
    })?;
    n.checked_mul(factor)
        .ok_or_else(|| plan_err!("Invalid duration '{text}': out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(kind: WindowKind) -> WindowSpec {
        WindowSpec {
            kind,
            grace_ms: None,
            retention_ms: None,
        }
    }

    #[test]
    fn time_windows_contain_the_timestamp() {
        let mut starts = Vec::new();
        spec(WindowKind::Tumbling { size_ms: 30_000 })
            .time_windows(89_999, &mut starts)
            .unwrap();
        assert_eq!(starts, [60_000]);
        starts.clear();
        let hopping = spec(WindowKind::Hopping {
            size_ms: 30_000,
            advance_ms: 5_000,
        });
        hopping.time_windows(5_000, &mut starts).unwrap();
        assert_eq!(starts, [0, 5_000]);
        starts.clear();
        hopping.time_windows(32_000, &mut starts).unwrap();
        assert_eq!(starts, [5_000, 10_000, 15_000, 20_000, 25_000, 30_000]);
        starts.clear();
        let uneven = spec(WindowKind::Hopping {
            size_ms: 10,
            advance_ms: 3,
        });
        uneven.time_windows(11, &mut starts).unwrap();
        assert_eq!(starts, [3, 6, 9]);
    }

    #[test]
    fn times_at_the_ends_of_i64_are_errors_or_no_windows_never_a_wrap() {
        let tumbling = spec(WindowKind::Tumbling { size_ms: 30_000 });
        let hopping = spec(WindowKind::Hopping {
            size_ms: 30_000,
            advance_ms: 7_000,
        });
        for w in [&tumbling, &hopping] {
            let mut starts = Vec::new();
            assert!(w.time_windows(i64::MAX, &mut starts).is_err());
            assert!(w.time_windows(i64::MAX - 10_000, &mut starts).is_err());
            assert!(w.time_windows(i64::MIN, &mut starts).is_err());
            assert!(w.time_windows(-1, &mut starts).is_err());
        }
        let mut starts = Vec::new();
        tumbling
            .time_windows(i64::MAX - 30_000, &mut starts)
            .unwrap();
        assert!(starts.iter().all(|s| s.checked_add(30_000).is_some()));
    }

    #[test]
    fn hopping_windows_that_put_a_record_in_too_many_windows_are_refused() {
        let w = spec(WindowKind::Hopping {
            size_ms: 100 * 86_400_000,
            advance_ms: 1,
        });
        let e = w.check().unwrap_err().to_string();
        assert!(e.contains("8640000000 windows"), "{e}");
    }

    #[test]
    fn durations_and_window_properties() {
        assert_eq!(parse_duration("30 seconds").unwrap(), 30_000);
        assert_eq!(parse_duration("1 HOUR").unwrap(), 3_600_000);
        assert!(parse_duration("soon").is_err());
        let w = KeyWindow::from_properties("Tumbling", Some("30 seconds")).unwrap();
        assert_eq!(w.size_ms, Some(30_000));
        let e = KeyWindow::from_properties("Session", Some("30 seconds")).unwrap_err();
        assert!(
            e.to_string()
                .contains("'WINDOW_SIZE' should not be set for SESSION windows.")
        );
        assert!(KeyWindow::from_properties("HOPPING", None).is_err());
    }
}
