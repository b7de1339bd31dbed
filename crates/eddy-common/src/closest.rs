//! The known name closest to one that is not known, for messages that say what was probably meant.

/// Names longer than this get no suggestion: the distance costs the product of two names' lengths,
/// and a name from a request may be megabytes long.
const MAX_NAME: usize = 128;

/// The candidate nearest to `name` (case-insensitive edit distance), when it is near enough to be a
/// likely slip: at most a third of the name's length, and at least 1, edits away.
pub fn closest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    if name.len() > MAX_NAME {
        return None;
    }
    let name = name.to_ascii_lowercase();
    let limit = (name.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .map(|c| (distance(&name, &c.to_ascii_lowercase()), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Levenshtein distance in characters.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substituted = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substituted.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slip_finds_the_name_and_a_stranger_finds_none() {
        let known = [
            "security.protocol",
            "sasl.mechanism",
            "ssl.truststore.location",
        ];
        assert_eq!(
            closest("securty.protocol", known),
            Some("security.protocol")
        );
        assert_eq!(closest("SASL.MECHANISMS", known), Some("sasl.mechanism"));
        assert_eq!(closest("num.stream.threads", known), None);
        assert_eq!(closest(&"a".repeat(1_000_000), known), None);
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(distance("", "abc"), 3);
    }
}
