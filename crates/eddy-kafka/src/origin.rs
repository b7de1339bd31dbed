//! Where an output record of an exactly-once query came from, carried in a record header
//! ([`HEADER`]) in a layout of Eddy's own: the query that wrote it and, for a stateless query, the
//! input record and the record's place among that input's rows; for an aggregation, the shard, the
//! write (epoch) it belongs to and the how-many-th record of its key in that write it is. After a
//! crash, the origins found in the tail of the output tell what was already written.

use eddy_common::Result;
use eddy_runtime::changelog::Positions;
use eddy_runtime::layout::{Reader, put_positions};

/// The header's name.
pub const HEADER: &str = "eddy-origin";

/// The layout version.
const VERSION: u8 = 1;
const ROW: u8 = b'R';
const WRITE: u8 = b'W';
const WHAT: &str = "an eddy-origin header";

/// The origin of an output record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A stateless query's row: made from input record `offset` of `partition`, the `index`-th row
    /// made from it.
    Row {
        writer: u64,
        partition: i32,
        offset: i64,
        index: u32,
    },
    /// An aggregation's row: written by `shard` in its write `epoch`, the `occurrence`-th record
    /// with its key in that write; `cut` is where the shard's input stood when the write emitted its
    /// changed rows (absent on rows emitted while records were folded in).
    Write {
        writer: u64,
        shard: i32,
        epoch: u64,
        occurrence: u32,
        cut: Option<Positions>,
    },
}

impl Origin {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32);
        out.push(VERSION);
        match self {
            Origin::Row {
                writer,
                partition,
                offset,
                index,
            } => {
                out.push(ROW);
                out.extend_from_slice(&writer.to_be_bytes());
                out.extend_from_slice(&partition.to_be_bytes());
                out.extend_from_slice(&offset.to_be_bytes());
                out.extend_from_slice(&index.to_be_bytes());
            }
            Origin::Write {
                writer,
                shard,
                epoch,
                occurrence,
                cut,
            } => {
                out.push(WRITE);
                out.extend_from_slice(&writer.to_be_bytes());
                out.extend_from_slice(&shard.to_be_bytes());
                out.extend_from_slice(&epoch.to_be_bytes());
                out.extend_from_slice(&occurrence.to_be_bytes());
                if let Some(cut) = cut {
                    put_positions(&mut out, cut);
                }
            }
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Origin> {
        let mut r = Reader::new(bytes, VERSION, WHAT)?;
        match r.u8()? {
            ROW => Ok(Origin::Row {
                writer: r.u64()?,
                partition: r.i32()?,
                offset: r.i64()?,
                index: r.u32()?,
            }),
            WRITE => Ok(Origin::Write {
                writer: r.u64()?,
                shard: r.i32()?,
                epoch: r.u64()?,
                occurrence: r.u32()?,
                cut: if r.is_done() {
                    None
                } else {
                    Some(r.positions()?)
                },
            }),
            other => Err(eddy_common::internal_err!(
                "{WHAT} has kind {other}, which this version does not write"
            )),
        }
    }

    /// The writer that wrote it.
    pub fn writer(&self) -> u64 {
        match self {
            Origin::Row { writer, .. } | Origin::Write { writer, .. } => *writer,
        }
    }
}

/// The writer id of a query: a hash of its consumer group (FNV-1a, stable across versions and
/// servers), the same on every server that runs the query.
pub fn writer_id(group_id: &str) -> u64 {
    group_id.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_round_trip_and_foreign_bytes_are_refused() {
        let origins = [
            Origin::Row {
                writer: writer_id("q"),
                partition: 3,
                offset: 1 << 40,
                index: 2,
            },
            Origin::Write {
                writer: 7,
                shard: 0,
                epoch: 12,
                occurrence: 1,
                cut: Some(vec![(0, 100), (1, 5)]),
            },
            Origin::Write {
                writer: 7,
                shard: 1,
                epoch: 0,
                occurrence: 0,
                cut: None,
            },
        ];
        for o in origins {
            assert_eq!(Origin::decode(&o.encode()).unwrap(), o);
        }
        assert!(Origin::decode(b"").is_err());
        assert!(Origin::decode(&[VERSION, b'X']).is_err());
        assert!(Origin::decode(&[VERSION, ROW, 1, 2]).is_err());
        assert_ne!(writer_id("a"), writer_id("b"));
        assert_eq!(writer_id(""), 0xcbf2_9ce4_8422_2325);
    }
}
