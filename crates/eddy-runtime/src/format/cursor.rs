//! A cursor over binary payloads with the primitives the binary formats share: fixed-size takes and
//! base-128 varints.

/// Reads a byte slice front to back.
#[derive(Debug)]
pub struct Cursor<'a> {
    buf: &'a [u8],
    /// The format's name, for error messages.
    format: &'static str,
}

impl<'a> Cursor<'a> {
    pub fn new(buf: &'a [u8], format: &'static str) -> Self {
        Cursor { buf, format }
    }

    /// Whether every byte was read.
    pub fn is_done(&self) -> bool {
        self.buf.is_empty()
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.buf.len() < n {
            return Err(format!("{} data ends too early", self.format));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    /// An unsigned base-128 varint.
    pub fn varint(&mut self) -> Result<u64, String> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.take(1)?[0];
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(format!("{} varint is too long", self.format))
    }
}

/// A zig-zag encoded varint's value.
pub fn unzigzag(v: u64) -> i64 {
    (v >> 1) as i64 ^ -((v & 1) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_and_zigzag_decode() {
        // 0 -> 0, 1 -> -1, 2 -> 1, [0x80, 0x01] -> 128 -> 64
        let mut c = Cursor::new(&[0x00, 0x01, 0x02, 0x80, 0x01], "test");
        let values: Vec<i64> = (0..4).map(|_| unzigzag(c.varint().unwrap())).collect();
        assert_eq!(values, [0, -1, 1, 64]);
        assert!(c.is_done());
        assert!(Cursor::new(&[0x80], "test").varint().is_err(), "cut short");
        assert_eq!(
            Cursor::new(&[1], "test").take(2).unwrap_err(),
            "test data ends too early"
        );
    }
}
