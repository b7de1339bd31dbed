//! The changelog records of what join operators keep (see [`super::Entry`]), beside the
//! checkpoint records of [`crate::changelog`] in the same topic. A record's key names the entry by
//! its join, kind, side and where its row came from, so a compacted topic keeps the latest of each
//! and a tombstone ends it; its value holds the entry's time, arrival number, join key and row,
//! both in Eddy's own row encoding ([`crate::state_row`]).
//!
//! Key of an entry of a two-way join, or of the first join of a multi-way join that came straight
//! from its input: `J`, the kind (`B` buffered, `W` waiting), the side (0 left, 1 right), the
//! partition (i32) and the offset (i64), big-endian. Key of any other: `K`, the join's number (u8),
//! the kind, the side, the query input (u16), the partition (i32), the offset (i64) and the row's
//! number among those made of that record (u32). Value: the version, the time (i64), the arrival
//! number (u64), the key's length (u32), the key's row, the record's row.

use eddy_common::{Result, internal_err};

use super::{EntryId, EntryKind, Origin, Side};
use crate::layout::Reader;

/// The layout version of the values.
const VERSION: u8 = 1;
/// What the errors of this layout call it.
const WHAT: &str = "a join state record";
/// First byte of an entry's key (the aggregations' records start with `G`, `R` and `C`).
const ENTRY: u8 = b'J';
/// First byte of the key of an entry of a multi-way join (see the module's description).
const STAGE_ENTRY: u8 = b'K';

/// The record key of an entry of join `stage`.
pub(super) fn entry_key(stage: usize, id: &EntryId) -> Vec<u8> {
    let o = id.origin;
    let short = stage == 0 && o.sub == 0 && usize::from(o.input) == id.side.index();
    let mut out = Vec::with_capacity(23);
    match u8::try_from(stage) {
        Ok(stage) if !short => {
            out.push(STAGE_ENTRY);
            out.push(stage);
        }
        // A join of more than 256 sources is refused when it is planned.
        _ => out.push(ENTRY),
    }
    out.push(match id.kind {
        EntryKind::Buffered => b'B',
        EntryKind::Waiting => b'W',
    });
    out.push(id.side.index() as u8);
    if !short {
        out.extend_from_slice(&o.input.to_be_bytes());
    }
    out.extend_from_slice(&o.partition.to_be_bytes());
    out.extend_from_slice(&o.offset.to_be_bytes());
    if !short {
        out.extend_from_slice(&o.sub.to_be_bytes());
    }
    out
}

/// The join number and entry a record key names; `None` for a key that is not an entry's.
pub(super) fn parse_key(bytes: &[u8]) -> Result<Option<(usize, EntryId)>> {
    let bad = || internal_err!("{WHAT} has a key this version does not write");
    let (stage, rest, long) = match bytes.split_first() {
        Some((&ENTRY, rest)) => (0, rest, false),
        Some((&STAGE_ENTRY, [stage, rest @ ..])) => (usize::from(*stage), rest, true),
        Some((&STAGE_ENTRY, [])) => return Err(bad()),
        _ => return Ok(None),
    };
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
    let mut r = Fields(rest);
    let input = if long {
        u16::from_be_bytes(r.take().ok_or_else(bad)?)
    } else {
        side.index() as u16
    };
    let partition = i32::from_be_bytes(r.take().ok_or_else(bad)?);
    let offset = i64::from_be_bytes(r.take().ok_or_else(bad)?);
    let sub = if long {
        u32::from_be_bytes(r.take().ok_or_else(bad)?)
    } else {
        0
    };
    if !r.0.is_empty() {
        return Err(bad());
    }
    Ok(Some((
        stage,
        EntryId {
            kind,
            side,
            origin: Origin {
                input,
                partition,
                offset,
                sub,
            },
        },
    )))
}

/// Fixed-size fields of a key, taken in turn.
struct Fields<'a>(&'a [u8]);

impl Fields<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (field, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*field)
    }
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
        let id = |input, sub| EntryId {
            kind: EntryKind::Waiting,
            side: Side::Right,
            origin: Origin {
                input,
                partition: 3,
                offset: 1 << 40,
                sub,
            },
        };
        for (stage, id) in [(0, id(1, 0)), (0, id(1, 2)), (2, id(0, 5)), (1, id(3, 0))] {
            assert_eq!(
                parse_key(&entry_key(stage, &id)).unwrap(),
                Some((stage, id))
            );
        }
        assert_eq!(entry_key(0, &id(1, 0)).len(), 15);
        assert_eq!(parse_key(b"C").unwrap(), None);
        for bad in [
            &b"J"[..],
            b"JB",
            b"JX\x00",
            b"JB\x02",
            b"JB\x00\x00\x00\x00\x01",
            b"K",
            b"K\x01B\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00",
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
        let buffered = |stage, input, partition, offset, sub| {
            let origin = Origin {
                input,
                partition,
                offset,
                sub,
            };
            let side = Side::Left;
            let kind = EntryKind::Buffered;
            Some((stage, EntryId { kind, side, origin }))
        };
        let key = [b'J', b'B', 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 7];
        assert_eq!(parse_key(&key).unwrap(), buffered(0, 0, 2, 7, 0));
        // An entry of a multi-way join's second join, from input 2, the second row of its record.
        let key = [
            b'K', 1, b'B', 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 1,
        ];
        assert_eq!(parse_key(&key).unwrap(), buffered(1, 2, 3, 9, 1));
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
