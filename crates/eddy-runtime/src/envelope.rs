//! The envelope a record gets in a repartition topic: its key and value with the input partition and
//! offset it came from, in a versioned layout of Eddy's own (a version byte, flags saying which of key
//! and value are present, the partition and offset, the key's length, then key and value).

/// First byte of an envelope: the layout version.
const ENVELOPE: u8 = 1;
const HAS_KEY: u8 = 1;
const HAS_VALUE: u8 = 2;

/// Wraps a record's key and value with where it came from.
pub fn wrap(key: Option<&[u8]>, value: Option<&[u8]>, partition: i32, offset: i64) -> Vec<u8> {
    let (k, v) = (key.unwrap_or_default(), value.unwrap_or_default());
    let mut out = Vec::with_capacity(22 + k.len() + v.len());
    out.push(ENVELOPE);
    out.push(if key.is_some() { HAS_KEY } else { 0 } | if value.is_some() { HAS_VALUE } else { 0 });
    out.extend_from_slice(&partition.to_be_bytes());
    out.extend_from_slice(&offset.to_be_bytes());
    out.extend_from_slice(&(k.len() as u32).to_be_bytes());
    out.extend_from_slice(k);
    out.extend_from_slice(v);
    out
}

/// The parts of an envelope: key, value, input partition and offset.
pub type Opened<'a> = (Option<&'a [u8]>, Option<&'a [u8]>, i32, i64);

/// Opens an envelope; `None` when `payload` is not one (another version, cut short, a key length
/// past its end).
pub fn open(payload: &[u8]) -> Option<Opened<'_>> {
    let (&[version, flags], rest) = payload.split_first_chunk::<2>()?;
    if version != ENVELOPE || rest.len() < 16 {
        return None;
    }
    let partition = i32::from_be_bytes(rest[0..4].try_into().ok()?);
    let offset = i64::from_be_bytes(rest[4..12].try_into().ok()?);
    let key_len = usize::try_from(u32::from_be_bytes(rest[12..16].try_into().ok()?)).ok()?;
    let body = &rest[16..];
    let (key, value) = (body.get(..key_len)?, body.get(key_len..)?);
    Some((
        (flags & HAS_KEY != 0).then_some(key),
        (flags & HAS_VALUE != 0).then_some(value),
        partition,
        offset,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_round_trip_keeping_absent_and_empty_parts_apart() {
        for (key, value) in [
            (Some(&b"k"[..]), Some(&b"{}"[..])),
            (None, Some(&b""[..])),
            (Some(&b""[..]), None),
            (None, None),
        ] {
            let e = wrap(key, value, 3, 42);
            assert_eq!(open(&e), Some((key, value, 3, 42)));
        }
        assert_eq!(open(b"{\"not\": 1}"), None);
        assert_eq!(open(&[ENVELOPE, 0, 1]), None, "cut short");
    }
}
