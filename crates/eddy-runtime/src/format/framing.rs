//! Confluent's wire framing of schema-registry formats: a zero magic byte and the schema id
//! (4 bytes, big-endian) before the payload.

/// The framing bytes of a payload written with schema `id`.
pub fn frame_header(id: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.push(0);
    out.extend_from_slice(&id.to_be_bytes());
    out
}

/// The schema id of a framed payload and the payload after the framing.
pub fn unframe(bytes: &[u8]) -> Result<(u32, &[u8]), String> {
    match bytes {
        [0, a, b, c, d, rest @ ..] => Ok((u32::from_be_bytes([*a, *b, *c, *d]), rest)),
        _ => Err(
            "Unknown magic byte! The payload was not written with a schema registry's framing"
                .to_string(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_round_trips_and_rejects_unframed_payloads() {
        let mut b = frame_header(258);
        b.extend_from_slice(b"xy");
        assert_eq!(unframe(&b).unwrap(), (258, &b"xy"[..]));
        assert!(unframe(b"{\"a\":1}").is_err());
        assert!(unframe(&[0, 0, 1]).is_err());
    }
}
