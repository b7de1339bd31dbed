//! The changelog records of what a join operator keeps (see [`super::Entry`]), beside the
//! checkpoint records of [`crate::changelog`] in the same topic. A record's key names the entry by
//! its kind, side and the partition and offset of the record it keeps, so a compacted topic keeps
//! the latest of each and a tombstone ends it; its value holds the entry's time, arrival number,
//! join key and row, both in Eddy's own row encoding ([`crate::state_row`]).
//!
//! Key: `J`, the kind (`B` buffered, `W` waiting), the side (0 left, 1 right), the partition (i32)
//! and the offset (i64), big-endian. Value: the version, the time (i64), the arrival number (u64),
//! the key's length (u32), the key's row, the record's row.

use eddy_common::{Result, internal_err};

use super::{EntryId, EntryKind, Side};
use crate::layout::Reader;

/// The layout version of the values.
const VERSION: u8 = 1;
/// What the errors of this layout call it.
const WHAT: &str = "a join state record";
/// First byte of an entry's key (the aggregations' records start with `G`, `R` and `C`).
const ENTRY: u8 = b'J';

/// An entry's record key.
pub(super) fn entry_key(id: &EntryId) -> Vec<u8> {
    let mut out = Vec::with_capacity(15);
    out.push(ENTRY);
    out.push(match id.kind {
        EntryKind::Buffered => b'B',
        EntryKind::Waiting => b'W',
    });
    out.push(id.side.index() as u8);
    out.extend_from_slice(&id.origin.0.to_be_bytes());
    out.extend_from_slice(&id.origin.1.to_be_bytes());
    out
}

/// The entry a record key names; `None` for a key that is not an entry's.
pub(super) fn parse_key(bytes: &[u8]) -> Result<Option<EntryId>> {
    let Some((&ENTRY, rest)) = bytes.split_first() else {
        return Ok(None);
    };
    let bad = || internal_err!("{WHAT} has a key this version does not write");
    let [kind, side, rest @ ..] = rest else {
        return Err(bad());
    };
    let kind = match kind {
        b'B' => EntryKind::Buffered,
        b'W' => EntryKind::Waiting,
        _ => return Err(bad()),
    };
    let side = match side {
        0 => Side::Left,
        1 => Side::Right,
        _ => return Err(bad()),
    };
    let (partition, offset) = match rest.split_at_checked(4) {
        Some((p, o)) if o.len() == 8 => (
            i32::from_be_bytes(p.try_into().map_err(|_| bad())?),
            i64::from_be_bytes(o.try_into().map_err(|_| bad())?),
        ),
        _ => return Err(bad()),
    };
    Ok(Some(EntryId {
        kind,
        side,
        origin: (partition, offset),
    }))
}

/// What an entry's record value holds; `key` and `row` are rows of Eddy's row encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct EntryValue<'a> {
    pub time: i64,
    pub seq: u64,
    pub key: &'a [u8],
    pub row: &'a [u8],
}

impl<'a> EntryValue<'a> {
    pub fn encode(&self) -> Result<Vec<u8>> {
        let len = u32::try_from(self.key.len())
            .map_err(|_| internal_err!("a join key of {} bytes is too long", self.key.len()))?;
        let mut out = Vec::with_capacity(25 + self.key.len() + self.row.len());
        out.push(VERSION);
        out.extend_from_slice(&self.time.to_be_bytes());
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(self.key);
        out.extend_from_slice(self.row);
        Ok(out)
    }

    pub fn decode(bytes: &'a [u8]) -> Result<Self> {
        let mut r = Reader::new(bytes, VERSION, WHAT)?;
        let time = r.i64()?;
        let seq = r.u64()?;
        let len = r.u32()? as usize;
        let key = r.take(len)?;
        Ok(EntryValue {
            time,
            seq,
            key,
            row: r.rest(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_values_round_trip() {
        let id = EntryId {
            kind: EntryKind::Waiting,
            side: Side::Right,
            origin: (3, 1 << 40),
        };
        assert_eq!(parse_key(&entry_key(&id)).unwrap(), Some(id));
        assert_eq!(parse_key(b"C").unwrap(), None);
        for bad in [
            &b"J"[..],
            b"JB",
            b"JX\x00",
            b"JB\x02",
            b"JB\x00\x00\x00\x00\x01",
        ] {
            assert!(parse_key(bad).is_err(), "{bad:?}");
        }
        let value = EntryValue {
            time: -5,
            seq: 9,
            key: &[1, 2],
            row: &[3],
        };
        let bytes = value.encode().unwrap();
        assert_eq!(EntryValue::decode(&bytes).unwrap(), value);
        assert!(EntryValue::decode(&bytes[..20]).is_err());
    }

    /// A record written by this version, byte by byte: later versions must keep reading it.
    #[test]
    fn reads_a_record_written_as_fixed_bytes() {
        let key = [b'J', b'B', 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 7];
        assert_eq!(
            parse_key(&key).unwrap(),
            Some(EntryId {
                kind: EntryKind::Buffered,
                side: Side::Left,
                origin: (2, 7),
            })
        );
        let value = [
            1, // version
            0, 0, 0, 0, 0, 0, 0x03, 0xe8, // time 1000
            0, 0, 0, 0, 0, 0, 0, 4, // arrival 4
            0, 0, 0, 7, // key: 7 bytes, a row of one STRING 'a'
            1, 1, 0, 0, 0, 1, b'a', // ...
            1, 1, 0, 0, 0, 0, 0, 0, 0, 0x2a, // row: one BIGINT 42
        ];
        let v = EntryValue::decode(&value).unwrap();
        assert_eq!((v.time, v.seq), (1000, 4));
        let key_columns =
            crate::state_row::decode(&[datafusion::arrow::datatypes::DataType::Utf8], &[v.key])
                .unwrap();
        let row_columns =
            crate::state_row::decode(&[datafusion::arrow::datatypes::DataType::Int64], &[v.row])
                .unwrap();
        use datafusion::arrow::array::AsArray;
        assert_eq!(key_columns[0].as_string::<i32>().value(0), "a");
        assert_eq!(
            row_columns[0]
                .as_primitive::<datafusion::arrow::datatypes::Int64Type>()
                .value(0),
            42
        );
    }
}
