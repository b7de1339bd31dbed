//! Windowed keys as Kafka Streams (and so ksqlDB) lays them out: the inner key's bytes followed by the
//! window start (time windows), or by the window end and then the start (session windows), each an
//! 8-byte big-endian epoch-millisecond value.

use eddy_sql::window::{KeyWindow, WindowType};

/// A window's bounds, epoch milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    pub start: i64,
    pub end: i64,
}

/// Splits a windowed key into the inner key's bytes and the window; `None` when the key is too short
/// to carry a window.
pub fn split_windowed_key<'a>(key: &'a [u8], window: &KeyWindow) -> Option<(&'a [u8], Bounds)> {
    let long = |b: &[u8]| i64::from_be_bytes(b.try_into().expect("8 bytes"));
    match window.window_type {
        WindowType::Session => {
            let at = key.len().checked_sub(16)?;
            let end = long(&key[at..at + 8]);
            let start = long(&key[at + 8..]);
            Some((&key[..at], Bounds { start, end }))
        }
        WindowType::Tumbling | WindowType::Hopping => {
            let at = key.len().checked_sub(8)?;
            let start = long(&key[at..]);
            Some((
                &key[..at],
                Bounds {
                    start,
                    end: window.time_window_end(start),
                },
            ))
        }
    }
}

/// Appends a window to an inner key's bytes.
pub fn append_window(key: &mut Vec<u8>, window_type: WindowType, bounds: Bounds) {
    if window_type == WindowType::Session {
        key.extend_from_slice(&bounds.end.to_be_bytes());
    }
    key.extend_from_slice(&bounds.start.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windowed_keys_round_trip() {
        let tumbling = KeyWindow {
            window_type: WindowType::Tumbling,
            size_ms: Some(30_000),
        };
        let mut key = b"k1".to_vec();
        append_window(
            &mut key,
            WindowType::Tumbling,
            Bounds {
                start: 60_000,
                end: 90_000,
            },
        );
        assert_eq!(key.len(), 10);
        assert_eq!(
            split_windowed_key(&key, &tumbling),
            Some((
                &b"k1"[..],
                Bounds {
                    start: 60_000,
                    end: 90_000
                }
            ))
        );
        let session = KeyWindow {
            window_type: WindowType::Session,
            size_ms: None,
        };
        let mut key = b"k".to_vec();
        append_window(&mut key, WindowType::Session, Bounds { start: 5, end: 7 });
        assert_eq!(&key[1..9], &7i64.to_be_bytes());
        assert_eq!(
            split_windowed_key(&key, &session),
            Some((&b"k"[..], Bounds { start: 5, end: 7 }))
        );
        assert_eq!(split_windowed_key(b"short", &session), None);
    }
}
