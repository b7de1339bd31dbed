//! The changelog records of an aggregation's state: one per group (its accumulators' states, its
//! window, and the input offsets its state includes), over a table one per source row (its group and
//! the arguments it gave the aggregates), and a checkpoint that ends every complete write (the input
//! positions and the stream time the state is at). A record's key names what it describes, so a
//! compacted topic keeps the latest of each; a tombstone ends a row or a merged-away session.
//!
//! Input is resumed from the checkpoint's positions, so the input positions live with the state
//! rather than in the consumer group. Every record also carries the positions of the write that made
//! it: after a crash in the middle of a write, replayed input before a record's positions is already
//! in that record and is not applied again. That keeps state exact without transactions.

use eddy_common::{Result, internal_err};

use crate::format::window::Bounds;
use crate::layout::{Reader, put_positions};

/// What the errors of this layout call it.
const WHAT: &str = "a changelog record";

/// Next offset to read, per source partition.
pub type Positions = Vec<(i32, i64)>;

/// A change to write to the changelog: `value` is `None` for a tombstone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateChange {
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
}

/// The layout version of checkpoints; a value of another version is refused on restore.
const VERSION: u8 = 1;
/// The layout version of group and table-row values this version writes: their rows in Eddy's own
/// encoding ([`crate::state_row`]).
const ROWS_VERSION: u8 = 2;
/// The version before, whose rows are in Arrow's row format (of arrow 59): still read, so that a
/// query's state outlives the upgrade; a restore writes what it read of it again in the new layout.
const ARROW_ROWS_VERSION: u8 = 1;
/// First byte of a group record's key, its GROUP BY values in Eddy's own encoding.
const GROUP: u8 = b'K';
/// First byte of a group record's key written before, its GROUP BY values in Arrow's row format.
const ARROW_GROUP: u8 = b'G';
/// First byte of a table row record's key.
const ROW: u8 = b'R';
/// The checkpoint record's key.
const CHECKPOINT: u8 = b'C';
/// Starts a checkpoint's exactly-once trailer.
const SINK_MARK: u8 = b'S';

/// How the rows of a record are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rows {
    /// Eddy's own encoding ([`crate::state_row`]): what this version writes.
    Eddy,
    /// Arrow's row format, as versions before wrote them: read only.
    Arrow,
}

/// What a group's record holds besides its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRecord {
    /// How `states` is laid out.
    pub rows: Rows,
    pub positions: Positions,
    /// The stream time when the record was written.
    pub stream_time: i64,
    pub last_rowtime: i64,
    pub partition: i32,
    /// The group's last row is in the output table (it passed HAVING).
    pub emitted: bool,
    /// The group's window has closed and its final row was emitted (EMIT FINAL).
    pub closed: bool,
    /// The accumulators' states, as one row.
    pub states: Vec<u8>,
}

/// What a table row's record holds: the group it is in and the arguments it gave each aggregate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowRecord {
    /// How `group` and `args` are laid out.
    pub rows: Rows,
    pub positions: Positions,
    /// The group's GROUP BY values, as one row.
    pub group: Vec<u8>,
    /// The aggregate arguments, as one row.
    pub args: Vec<u8>,
}

/// What a changelog key names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateKey<'a> {
    /// A group: its GROUP BY values as one row (laid out as `rows` says) and its window.
    Group {
        key: &'a [u8],
        window: Option<Bounds>,
        rows: Rows,
    },
    Row(&'a [u8]),
    Checkpoint,
}

/// The record that ends a complete write: where the input is, and the stream time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub positions: Positions,
    pub stream_time: i64,
    /// Where the output stands, for exactly-once output.
    pub sink: Option<SinkMark>,
}

/// What an exactly-once writer keeps with its checkpoint: how many writes it completed, and where
/// in each output partition its records after the checkpoint can be, at the earliest.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SinkMark {
    pub epoch: u64,
    /// Output partition and offset: where to look for what was written after the checkpoint.
    pub scan_from: Positions,
}

impl StateKey<'_> {
    /// The record key.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            StateKey::Group { key, window, rows } => {
                let mut out = Vec::with_capacity(1 + key.len() + 16);
                out.push(match rows {
                    Rows::Eddy => GROUP,
                    Rows::Arrow => ARROW_GROUP,
                });
                out.extend_from_slice(key);
                if let Some(w) = window {
                    out.extend_from_slice(&w.start.to_be_bytes());
                    out.extend_from_slice(&w.end.to_be_bytes());
                }
                out
            }
            StateKey::Row(key) => [&[ROW][..], key].concat(),
            StateKey::Checkpoint => vec![CHECKPOINT],
        }
    }

    /// Reads a record key; `windowed` says whether group keys end with a window.
    pub fn decode(bytes: &[u8], windowed: bool) -> Result<StateKey<'_>> {
        fn group(rows: Rows, rest: &[u8], windowed: bool) -> Option<StateKey<'_>> {
            if !windowed {
                return Some(StateKey::Group {
                    key: rest,
                    window: None,
                    rows,
                });
            }
            let at = rest.len().checked_sub(16)?;
            let long = |b: &[u8]| i64::from_be_bytes(b.try_into().expect("8 bytes"));
            Some(StateKey::Group {
                key: &rest[..at],
                window: Some(Bounds {
                    start: long(&rest[at..at + 8]),
                    end: long(&rest[at + 8..]),
                }),
                rows,
            })
        }
        let decoded = match bytes.split_first() {
            Some((&GROUP, rest)) => group(Rows::Eddy, rest, windowed),
            Some((&ARROW_GROUP, rest)) => group(Rows::Arrow, rest, windowed),
            Some((&ROW, rest)) => Some(StateKey::Row(rest)),
            Some((&CHECKPOINT, [])) => Some(StateKey::Checkpoint),
            _ => None,
        };
        decoded.ok_or_else(|| {
            internal_err!("a changelog record has a key this version does not write")
        })
    }
}

/// Reads the version of a group or table-row value: how its rows are laid out.
fn rows_reader(bytes: &[u8]) -> Result<(Rows, Reader<'_>)> {
    let (version, r) = Reader::of_versions(bytes, &[ROWS_VERSION, ARROW_ROWS_VERSION], WHAT)?;
    let rows = if version == ROWS_VERSION {
        Rows::Eddy
    } else {
        Rows::Arrow
    };
    Ok((rows, r))
}

/// The version byte a value with rows laid out as `rows` starts with.
fn rows_version(rows: Rows) -> u8 {
    match rows {
        Rows::Eddy => ROWS_VERSION,
        Rows::Arrow => ARROW_ROWS_VERSION,
    }
}

impl GroupRecord {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32 + 12 * self.positions.len() + self.states.len());
        out.push(rows_version(self.rows));
        out.push(u8::from(self.emitted) | (u8::from(self.closed) << 1));
        out.extend_from_slice(&self.stream_time.to_be_bytes());
        out.extend_from_slice(&self.last_rowtime.to_be_bytes());
        out.extend_from_slice(&self.partition.to_be_bytes());
        put_positions(&mut out, &self.positions);
        out.extend_from_slice(&self.states);
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let (rows, mut r) = rows_reader(bytes)?;
        let flags = r.take(1)?[0];
        Ok(GroupRecord {
            rows,
            emitted: flags & 1 != 0,
            closed: flags & 2 != 0,
            stream_time: r.i64()?,
            last_rowtime: r.i64()?,
            partition: r.i32()?,
            positions: r.positions()?,
            states: r.rest().to_vec(),
        })
    }
}

impl Checkpoint {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(24 + 12 * self.positions.len());
        out.push(VERSION);
        out.extend_from_slice(&self.stream_time.to_be_bytes());
        put_positions(&mut out, &self.positions);
        // An optional trailer: a record without it (written before exactly-once output) stays valid.
        if let Some(sink) = &self.sink {
            out.push(SINK_MARK);
            out.extend_from_slice(&sink.epoch.to_be_bytes());
            put_positions(&mut out, &sink.scan_from);
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes, VERSION, WHAT)?;
        let stream_time = r.i64()?;
        let positions = r.positions()?;
        let sink = match r.is_done() {
            true => None,
            false if r.u8()? == SINK_MARK => Some(SinkMark {
                epoch: r.u64()?,
                scan_from: r.positions()?,
            }),
            false => {
                return Err(internal_err!(
                    "{WHAT} has a trailer this version does not read"
                ));
            }
        };
        Ok(Checkpoint {
            stream_time,
            positions,
            sink,
        })
    }
}

impl RowRecord {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + 12 * self.positions.len() + self.group.len());
        out.push(rows_version(self.rows));
        put_positions(&mut out, &self.positions);
        out.extend_from_slice(&(self.group.len() as u32).to_be_bytes());
        out.extend_from_slice(&self.group);
        out.extend_from_slice(&self.args);
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let (rows, mut r) = rows_reader(bytes)?;
        let positions = r.positions()?;
        let len = r.u32()? as usize;
        let group = r.take(len)?.to_vec();
        Ok(RowRecord {
            rows,
            positions,
            group,
            args: r.rest().to_vec(),
        })
    }
}

/// How positions name partition `partition` of input `input` of a query with several inputs (a
/// join): the first input's partitions by their number, the next input's [`INPUT_STRIDE`] above.
pub fn input_position(input: usize, partition: i32) -> i32 {
    partition.saturating_add(INPUT_STRIDE.saturating_mul(input as i32))
}

/// The input and partition a position id names (see [`input_position`]); a negative id (a
/// repartitioned source's, see `stateful`) names no input: `usize::MAX`.
pub fn position_input(id: i32) -> (usize, i32) {
    match usize::try_from(id / INPUT_STRIDE) {
        Ok(input) if id >= 0 => (input, id % INPUT_STRIDE),
        _ => (usize::MAX, id),
    }
}

/// Apart from each other the position ids of a query's inputs are (more than any topic's
/// partitions).
const INPUT_STRIDE: i32 = 1 << 24;

/// Whether input at `offset` of `partition` is already included in state written at `positions`.
pub fn covers(positions: &[(i32, i64)], partition: i32, offset: i64) -> bool {
    positions
        .iter()
        .any(|(p, next)| *p == partition && offset < *next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        for rows in [Rows::Eddy, Rows::Arrow] {
            let g = GroupRecord {
                rows,
                positions: vec![(0, 17), (3, 4)],
                stream_time: 1_000,
                last_rowtime: 999,
                partition: 3,
                emitted: true,
                closed: false,
                states: vec![1, 2, 3],
            };
            assert_eq!(GroupRecord::decode(&g.encode()).unwrap(), g);
            let r = RowRecord {
                rows,
                positions: vec![(1, 2)],
                group: vec![9, 9],
                args: vec![7],
            };
            assert_eq!(RowRecord::decode(&r.encode()).unwrap(), r);
            let window = Some(Bounds { start: 10, end: 20 });
            let key = StateKey::Group {
                key: b"k",
                window,
                rows,
            }
            .encode();
            assert_eq!(
                StateKey::decode(&key, true).unwrap(),
                StateKey::Group {
                    key: b"k",
                    window,
                    rows
                }
            );
        }
        let mut c = Checkpoint {
            positions: vec![(0, 1)],
            stream_time: -5,
            sink: None,
        };
        assert_eq!(Checkpoint::decode(&c.encode()).unwrap(), c);
        c.sink = Some(SinkMark {
            epoch: 9,
            scan_from: vec![(2, 40)],
        });
        assert_eq!(Checkpoint::decode(&c.encode()).unwrap(), c);
        assert_eq!(
            StateKey::decode(&StateKey::Checkpoint.encode(), true).unwrap(),
            StateKey::Checkpoint
        );
        assert!(StateKey::decode(b"X", false).is_err());
        assert!(
            StateKey::decode(b"Kshort", true).is_err(),
            "no room for a window"
        );
        assert!(GroupRecord::decode(&[3, 0]).is_err());
    }

    /// A group record written by this version, byte by byte: later versions must keep reading it.
    #[test]
    fn reads_a_group_record_written_as_fixed_bytes() {
        // Key: a group of one BIGINT 7 in Eddy's row encoding, window [1000, 2000).
        let key = [
            b'K', 1, 1, 0, 0, 0, 0, 0, 0, 0, 7, // version, present, 7
            0, 0, 0, 0, 0, 0, 0x03, 0xe8, 0, 0, 0, 0, 0, 0, 0x07, 0xd0, // the window
        ];
        let StateKey::Group {
            key: group,
            window,
            rows: Rows::Eddy,
        } = StateKey::decode(&key, true).unwrap()
        else {
            panic!("a group key")
        };
        assert_eq!(
            window,
            Some(Bounds {
                start: 1000,
                end: 2000
            })
        );
        let values =
            crate::state_row::decode(&[datafusion::arrow::datatypes::DataType::Int64], &[group])
                .unwrap();
        use datafusion::arrow::array::AsArray;
        assert_eq!(
            values[0]
                .as_primitive::<datafusion::arrow::datatypes::Int64Type>()
                .value(0),
            7
        );
        let value = [
            2,    // layout version
            0b01, // emitted, not closed
            0, 0, 0, 0, 0, 0, 0x07, 0xd0, // stream time 2000
            0, 0, 0, 0, 0, 0, 0x05, 0xdc, // last rowtime 1500
            0, 0, 0, 1, // partition 1
            0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 9, // positions: partition 1 at 9
            1, 1, 0, 0, 0, 0, 0, 0, 0, 3, // states: one BIGINT 3
        ];
        let g = GroupRecord::decode(&value).unwrap();
        assert_eq!(
            (
                g.rows,
                g.emitted,
                g.closed,
                g.stream_time,
                g.last_rowtime,
                g.partition
            ),
            (Rows::Eddy, true, false, 2000, 1500, 1)
        );
        assert_eq!(g.positions, vec![(1, 9)]);
        assert_eq!(g.states, [1, 1, 0, 0, 0, 0, 0, 0, 0, 3]);
    }

    #[test]
    fn inputs_have_their_own_position_ids() {
        assert_eq!(input_position(0, 5), 5);
        assert_eq!(position_input(input_position(1, 5)), (1, 5));
        assert_eq!(position_input(input_position(0, 0)), (0, 0));
    }

    #[test]
    fn positions_tell_what_state_includes() {
        let at = [(0, 10), (1, 5)];
        assert!(covers(&at, 0, 9));
        assert!(!covers(&at, 0, 10));
        assert!(!covers(&at, 2, 0));
    }
}
