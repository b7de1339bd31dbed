//! Eddy's own persisted layouts, byte by byte: a version byte, then big-endian integers and lists of
//! input positions. Every read is checked against what is left, so a truncated or foreign record is
//! an error, never a panic or an allocation sized by the record.

use eddy_common::{Result, internal_err};

/// Appends a list of (partition, offset) pairs: a u16 count, then the pairs.
pub fn put_positions(out: &mut Vec<u8>, positions: &[(i32, i64)]) {
    let n = u16::try_from(positions.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&n.to_be_bytes());
    for (p, o) in positions.iter().take(usize::from(n)) {
        out.extend_from_slice(&p.to_be_bytes());
        out.extend_from_slice(&o.to_be_bytes());
    }
}

/// Reads a record of one of Eddy's layouts.
#[derive(Debug)]
pub struct Reader<'a> {
    bytes: &'a [u8],
    /// What is read, for errors ("a changelog record").
    what: &'static str,
}

impl<'a> Reader<'a> {
    /// Starts reading `bytes`, whose first byte must be `version`.
    pub fn new(bytes: &'a [u8], version: u8, what: &'static str) -> Result<Self> {
        let mut r = Reader { bytes, what };
        let found = r.u8()?;
        if found != version {
            return Err(internal_err!(
                "{what} has layout version {found}; this version reads {version}"
            ));
        }
        Ok(r)
    }

    /// Starts reading `bytes` whose first byte is one of `versions`; returns the version too.
    pub fn of_versions(bytes: &'a [u8], versions: &[u8], what: &'static str) -> Result<(u8, Self)> {
        let mut r = Reader { bytes, what };
        let found = r.u8()?;
        if !versions.contains(&found) {
            return Err(internal_err!(
                "{what} has layout version {found}; this version reads {versions:?}"
            ));
        }
        Ok((found, r))
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.bytes.len() < n {
            return Err(internal_err!("{} is truncated", self.what));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub fn u8(&mut self) -> Result<u8> {
        Ok(self.array::<1>()?[0])
    }

    pub fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    pub fn i32(&mut self) -> Result<i32> {
        Ok(i32::from_be_bytes(self.array()?))
    }

    pub fn i64(&mut self) -> Result<i64> {
        Ok(i64::from_be_bytes(self.array()?))
    }

    pub fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    /// A list written by [`put_positions`]; its count is checked against the bytes left first.
    pub fn positions(&mut self) -> Result<Vec<(i32, i64)>> {
        let n = usize::from(u16::from_be_bytes(self.array()?));
        if self.bytes.len() < n * 12 {
            return Err(internal_err!("{} is truncated", self.what));
        }
        (0..n).map(|_| Ok((self.i32()?, self.i64()?))).collect()
    }

    /// What is left unread.
    pub fn rest(&self) -> &'a [u8] {
        self.bytes
    }

    /// Whether everything was read.
    pub fn is_done(&self) -> bool {
        self.bytes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_was_written_and_refuses_short_input() {
        let mut out = vec![7];
        out.extend_from_slice(&(-3_i64).to_be_bytes());
        put_positions(&mut out, &[(1, 2), (3, 4)]);
        let mut r = Reader::new(&out, 7, "a test record").unwrap();
        assert_eq!(r.i64().unwrap(), -3);
        assert_eq!(r.positions().unwrap(), vec![(1, 2), (3, 4)]);
        assert!(r.is_done());
        assert!(Reader::new(&out, 8, "a test record").is_err());
        // A count larger than what is left is refused before anything is read.
        let mut short = vec![7, 0xff, 0xff];
        short.extend_from_slice(&[0; 12]);
        let mut r = Reader::new(&short, 7, "a test record").unwrap();
        let e = r.positions().unwrap_err().to_string();
        assert!(e.contains("truncated"), "{e}");
        assert!(Reader::new(&[], 7, "a test record").is_err());
    }
}
