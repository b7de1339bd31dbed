//! Tab completion in the shell: keywords, and the streams, tables, columns and functions of the
//! server's catalog (read again after each statement the shell sends).

use std::sync::{Arc, Mutex};

use rustyline::completion::{Completer, Pair};
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::validate::Validator;
use rustyline::{Context, Helper};

use eddy_common::keywords::KEYWORDS;

/// After these words the next name is a stream or a table.
const SOURCE_CONTEXT: &[&str] = &[
    "FROM", "JOIN", "INTO", "DESCRIBE", "STREAM", "TABLE", "EXTENDED",
];

/// The catalog's names, as the server last listed them.
#[derive(Debug, Default, Clone)]
pub struct Names {
    /// Streams and tables.
    pub sources: Vec<String>,
    /// (source, column) of every source.
    pub columns: Vec<(String, String)>,
    pub functions: Vec<String>,
}

/// The shell's line-editor helper: completes from the names it shares with the session.
pub struct SqlHelper {
    pub names: Arc<Mutex<Names>>,
    /// The lines of the statement typed before the current one (a statement may span lines).
    pub pending: Arc<Mutex<String>>,
}

impl SqlHelper {
    fn candidates(&self, before: &str, word: &str) -> Vec<String> {
        let names = self.names.lock().map(|n| n.clone()).unwrap_or_default();
        let pending = self.pending.lock().map(|p| p.clone()).unwrap_or_default();
        candidates(&names, &format!("{pending}{before}"), word)
    }
}

/// What completes `word`, typed after `before` (the statement so far): names of streams and tables
/// where one is expected, else the columns of the sources the statement names (all columns when it
/// names none), functions, sources; then keywords. Names come as the catalog spells them; keywords in
/// the case `word` was typed in. Each once, in that order.
pub fn candidates(names: &Names, before: &str, word: &str) -> Vec<String> {
    let upper = word.to_ascii_uppercase();
    let previous = before
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .rfind(|w| !w.is_empty())
        .map(str::to_ascii_uppercase)
        .unwrap_or_default();
    let statement_words: Vec<String> = before
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .map(str::to_ascii_uppercase)
        .collect();
    let named = |source: &str| {
        statement_words
            .iter()
            .any(|w| w.eq_ignore_ascii_case(source))
    };
    let sources = names.sources.iter().cloned();
    let mut found: Vec<String> = if SOURCE_CONTEXT.contains(&previous.as_str()) {
        sources.collect()
    } else {
        let any_named = names.columns.iter().any(|(s, _)| named(s));
        let columns = names
            .columns
            .iter()
            .filter(|(s, _)| !any_named || named(s))
            .map(|(_, c)| c.clone());
        columns
            .chain(names.functions.iter().cloned())
            .chain(sources)
            .collect()
    };
    let lower = word.chars().next().is_some_and(|c| c.is_ascii_lowercase());
    found.extend(KEYWORDS.iter().map(|k| {
        if lower {
            k.to_ascii_lowercase()
        } else {
            k.to_string()
        }
    }));
    let mut seen = std::collections::HashSet::new();
    found
        .into_iter()
        .filter(|c| {
            let c = c.to_ascii_uppercase();
            c.starts_with(&upper) && c != upper
        })
        .filter(|c| seen.insert(c.clone()))
        .collect()
}

impl Completer for SqlHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let before = &line[..pos];
        let start = before
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .map_or(0, |i| i + 1);
        let word = &before[start..];
        let pairs = self
            .candidates(&before[..start], word)
            .into_iter()
            .map(|c| Pair {
                display: c.clone(),
                replacement: c,
            })
            .collect();
        Ok((start, pairs))
    }
}

impl Hinter for SqlHelper {
    type Hint = String;
}

impl Highlighter for SqlHelper {}

impl Validator for SqlHelper {}

impl Helper for SqlHelper {}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Names {
        Names {
            sources: vec!["READINGS".into(), "ALERTS".into()],
            columns: vec![
                ("READINGS".into(), "TEMP".into()),
                ("READINGS".into(), "TS".into()),
                ("ALERTS".into(), "TEMP_F".into()),
                ("ALERTS".into(), "SCORE".into()),
            ],
            functions: vec!["TIMESTAMPTOSTRING".into()],
        }
    }

    #[test]
    fn columns_of_every_source_before_the_statement_names_one() {
        let found = candidates(&names(), "SELECT ", "te");
        assert_eq!(found[..2], ["TEMP", "TEMP_F"]);
    }

    #[test]
    fn columns_of_the_named_source_only() {
        let found = candidates(&names(), "SELECT id, ", "T");
        assert!(found.contains(&"TEMP_F".to_string()));
        let found = candidates(&names(), "SELECT id FROM readings WHERE ", "T");
        assert_eq!(found[..3], ["TEMP", "TS", "TIMESTAMPTOSTRING"]);
        assert!(!found.contains(&"TEMP_F".to_string()));
    }

    #[test]
    fn sources_after_from_and_keywords_in_the_case_typed() {
        assert_eq!(
            candidates(&names(), "SELECT * FROM ", "al"),
            ["ALERTS", "alias", "all", "alter"]
        );
        assert_eq!(candidates(&names(), "", "sel"), ["select"]);
        assert_eq!(candidates(&names(), "", "SEL"), ["SELECT"]);
    }

    #[test]
    fn a_finished_word_is_not_offered_again() {
        assert!(candidates(&names(), "SELECT ", "TEMP").contains(&"TEMP_F".to_string()));
        assert!(!candidates(&names(), "SELECT ", "TEMP").contains(&"TEMP".to_string()));
    }
}
