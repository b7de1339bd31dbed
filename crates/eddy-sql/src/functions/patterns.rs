//! Regular expressions given per row: the last one compiled is kept across the rows of a batch (a
//! column of patterns usually holds one value); a pattern that does not compile is `None`.

use regex::Regex;

/// The last pattern seen and what it compiled to.
#[derive(Default)]
pub struct Patterns {
    last: Option<(String, Option<Regex>)>,
}

impl Patterns {
    /// The compiled form of `pattern`.
    pub fn get(&mut self, pattern: &str) -> Option<&Regex> {
        if self.last.as_ref().is_none_or(|(p, _)| p != pattern) {
            self.last = Some((pattern.to_string(), Regex::new(pattern).ok()));
        }
        self.last.as_ref().and_then(|(_, r)| r.as_ref())
    }
}
