//! Time zones as ksqlDB users name them, the way Java's `ZoneId` reads them: region names
//! (`America/Los_Angeles`), `UTC`/`GMT`/`Z`, offsets (`+01:00`, `GMT+2`) and Java's short IDs (`PST`,
//! `CET`, ...), which ksqlDB accepts where it parses times.

use chrono::{DateTime, FixedOffset, NaiveDateTime, Offset, TimeZone, Utc};

/// Java's `ZoneId.SHORT_IDS`: the three-letter IDs it maps to a region or a fixed offset.
const SHORT_IDS: &[(&str, &str)] = &[
    ("ACT", "Australia/Darwin"),
    ("AET", "Australia/Sydney"),
    ("AGT", "America/Argentina/Buenos_Aires"),
    ("ART", "Africa/Cairo"),
    ("AST", "America/Anchorage"),
    ("BET", "America/Sao_Paulo"),
    ("BST", "Asia/Dhaka"),
    ("CAT", "Africa/Harare"),
    ("CNT", "America/St_Johns"),
    ("CST", "America/Chicago"),
    ("CTT", "Asia/Shanghai"),
    ("EAT", "Africa/Addis_Ababa"),
    ("ECT", "Europe/Paris"),
    ("IET", "America/Indiana/Indianapolis"),
    ("IST", "Asia/Kolkata"),
    ("JST", "Asia/Tokyo"),
    ("MIT", "Pacific/Apia"),
    ("NET", "Asia/Yerevan"),
    ("NST", "Pacific/Auckland"),
    ("PLT", "Asia/Karachi"),
    ("PNT", "America/Phoenix"),
    ("PRT", "America/Puerto_Rico"),
    ("PST", "America/Los_Angeles"),
    ("SST", "Pacific/Guadalcanal"),
    ("VST", "Asia/Ho_Chi_Minh"),
    ("EST", "-05:00"),
    ("MST", "-07:00"),
    ("HST", "-10:00"),
];

/// A zone: a region with its rules, or a fixed offset.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Zone {
    Region(chrono_tz::Tz),
    Fixed(FixedOffset),
}

impl Zone {
    /// The zone a name or offset denotes, `None` for unknown names.
    pub fn parse(name: &str) -> Option<Zone> {
        let name = name.trim();
        let name = SHORT_IDS
            .iter()
            .find(|(short, _)| *short == name)
            .map_or(name, |(_, id)| id);
        if matches!(name, "Z" | "UTC" | "GMT" | "UT") {
            return Some(Zone::Fixed(Utc.fix()));
        }
        if let Ok(tz) = name.parse::<chrono_tz::Tz>() {
            return Some(Zone::Region(tz));
        }
        let offset = ["UTC", "GMT", "UT"]
            .iter()
            .find_map(|p| name.strip_prefix(p))
            .unwrap_or(name);
        offset
            .parse::<FixedOffset>()
            .ok()
            .or_else(|| hours_offset(offset))
            .map(Zone::Fixed)
    }

    /// The instant a wall-clock time in this zone denotes (the earlier one when clocks go back; `None`
    /// in a gap when they go forward).
    pub fn instant(&self, local: &NaiveDateTime) -> Option<DateTime<Utc>> {
        match self {
            Zone::Region(tz) => tz.from_local_datetime(local).earliest().map(|t| t.to_utc()),
            Zone::Fixed(o) => o.from_local_datetime(local).earliest().map(|t| t.to_utc()),
        }
    }

    /// The wall-clock time in this zone at an instant.
    pub fn local(&self, instant: &DateTime<Utc>) -> NaiveDateTime {
        match self {
            Zone::Region(tz) => instant.with_timezone(tz).naive_local(),
            Zone::Fixed(o) => instant.with_timezone(o).naive_local(),
        }
    }
}

/// `+1`, `-05`: whole hours.
fn hours_offset(text: &str) -> Option<FixedOffset> {
    let (sign, digits) = match text.as_bytes().first()? {
        b'+' => (1, &text[1..]),
        b'-' => (-1, &text[1..]),
        _ => return None,
    };
    if digits.is_empty() || digits.len() > 2 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let hours: i32 = digits.parse().ok()?;
    FixedOffset::east_opt(sign * hours * 3600)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_offsets_and_short_ids_are_zones() {
        let la = Zone::parse("America/Los_Angeles").unwrap();
        assert_eq!(Zone::parse("PST"), Some(la));
        let may =
            NaiveDateTime::parse_from_str("2018-05-11 21:58:33", "%Y-%m-%d %H:%M:%S").unwrap();
        assert_eq!(
            la.instant(&may).unwrap().timestamp_millis(),
            1_526_101_113_000
        );
        let plus2 = Zone::parse("GMT+2").unwrap();
        assert_eq!(Zone::parse("+02:00"), Some(plus2));
        assert_eq!(
            plus2.instant(&may).unwrap().timestamp_millis(),
            1_526_068_713_000
        );
        assert_eq!(Zone::parse("EST"), Zone::parse("-05:00"));
        assert!(Zone::parse("UTC").is_some() && Zone::parse("Z").is_some());
        assert_eq!(Zone::parse("Mars/Olympus"), None);
        assert_eq!(Zone::parse("+123"), None);
    }
}
