//! How much work one record's bytes may ask of a decoder. Records come from producers Eddy does not
//! control: every count and nesting level a payload announces is checked against these limits (and
//! against the bytes that are left) before anything is allocated or looped over, so that a hostile
//! record costs one skipped record and never the query.

/// Deepest nesting of messages, records, arrays and maps a payload may have (JSON's own parser stops
/// at 128 levels).
pub const MAX_DEPTH: usize = 64;

/// Most items (array elements, map entries, message indexes) one record may hold in all, whatever their
/// size on the wire: Avro items of zero-width types take no bytes, so the bytes left do not bound them.
pub const MAX_ITEMS: u64 = 1 << 20;

/// Most bytes of the message about one skipped record (which may quote the record's bytes) kept in
/// the query's status, the server log and the processing log.
pub const MAX_MESSAGE: usize = 1000;

/// `text` cut to at most [`MAX_MESSAGE`] bytes (on a character boundary), saying how much was left out.
pub fn cut(text: &str) -> std::borrow::Cow<'_, str> {
    if text.len() <= MAX_MESSAGE {
        return text.into();
    }
    let mut end = MAX_MESSAGE;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} more bytes)", &text[..end], text.len() - end).into()
}

/// The error for a payload nested deeper than [`MAX_DEPTH`].
pub fn too_deep(format: &str) -> String {
    format!("{format} data is nested more than {MAX_DEPTH} levels deep")
}

/// What is left of one record's allowance while it is read: nesting levels and items.
#[derive(Debug)]
pub struct Budget {
    format: &'static str,
    depth: usize,
    items: u64,
}

impl Budget {
    /// The whole allowance of one record in `format` (named in errors).
    pub fn new(format: &'static str) -> Self {
        Budget {
            format,
            depth: 0,
            items: MAX_ITEMS,
        }
    }

    /// Goes one nesting level down; [`Budget::leave`] comes back up.
    pub fn enter(&mut self) -> Result<(), String> {
        if self.depth >= MAX_DEPTH {
            return Err(too_deep(self.format));
        }
        self.depth += 1;
        Ok(())
    }

    pub fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    /// Takes `n` items (as announced by the payload) from the allowance, before they are read.
    pub fn take_items(&mut self, n: u64) -> Result<(), String> {
        match self.items.checked_sub(n) {
            Some(left) => {
                self.items = left;
                Ok(())
            }
            None => Err(format!(
                "{} data holds more than {MAX_ITEMS} items in one record",
                self.format
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_is_cut_on_a_character_boundary() {
        assert_eq!(cut("short"), "short");
        let long = "é".repeat(MAX_MESSAGE);
        let short = cut(&long);
        assert!(short.len() < MAX_MESSAGE + 40, "{short}");
        assert!(short.ends_with(&format!("({} more bytes)", long.len() - MAX_MESSAGE)));
    }

    #[test]
    fn a_budget_refuses_depth_and_items_past_the_limits() {
        let mut b = Budget::new("Test");
        for _ in 0..MAX_DEPTH {
            b.enter().unwrap();
        }
        assert_eq!(b.enter().unwrap_err(), too_deep("Test"));
        b.leave();
        b.enter().unwrap();
        b.take_items(MAX_ITEMS - 1).unwrap();
        b.take_items(1).unwrap();
        assert!(b.take_items(1).is_err());
        assert!(Budget::new("Test").take_items(u64::MAX).is_err());
    }
}
