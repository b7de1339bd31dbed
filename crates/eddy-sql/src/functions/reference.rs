//! ksqlDB's built-in functions as users read about them (`reference.txt`): each one's category, kind,
//! description and overloads, for `SHOW FUNCTIONS`, `DESCRIBE FUNCTION` and the docs' function table.

use std::sync::LazyLock;

/// One documented function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionDoc {
    /// ksqlDB's name, upper case.
    pub name: &'static str,
    /// ksqlDB's `SHOW FUNCTIONS` category (`MATHEMATICAL`, `DATE / TIME`, ...).
    pub category: &'static str,
    /// `SCALAR`, `AGGREGATE` or `TABLE`.
    pub kind: &'static str,
    pub description: &'static str,
    pub overloads: Vec<Overload>,
}

/// One signature of a function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overload {
    pub params: Vec<Param>,
    /// The result type, as ksqlDB writes it (`ARRAY<T>`, `DOUBLE`).
    pub returns: &'static str,
}

/// One parameter of an overload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    pub name: &'static str,
    /// The type as ksqlDB writes it, without the variadic mark.
    pub type_name: &'static str,
    /// Whether it takes any number of values (`TYPE...`).
    pub variadic: bool,
}

impl Overload {
    /// The overload as one line: `(a ARRAY<T>, n INT) ARRAY<T>`.
    pub fn signature(&self) -> String {
        let params: Vec<String> = self
            .params
            .iter()
            .map(|p| {
                format!(
                    "{} {}{}",
                    p.name,
                    p.type_name,
                    if p.variadic { "..." } else { "" }
                )
            })
            .collect();
        format!("({}) {}", params.join(", "), self.returns)
    }
}

static REFERENCE: LazyLock<Vec<FunctionDoc>> = LazyLock::new(|| {
    include_str!("reference.txt")
        .lines()
        .filter_map(parse_line)
        .collect()
});

/// Every documented built-in function, in the file's order (by category).
pub fn reference() -> &'static [FunctionDoc] {
    &REFERENCE
}

/// The documented function of this name (any case).
pub fn find(name: &str) -> Option<&'static FunctionDoc> {
    REFERENCE.iter().find(|f| f.name.eq_ignore_ascii_case(name))
}

/// `NAME | CATEGORY | KIND | description | overload; overload`; `None` for comments, blank lines
/// and lines not of that shape (the unit test below keeps the file free of those).
fn parse_line(line: &'static str) -> Option<FunctionDoc> {
    if line.starts_with('#') || line.trim().is_empty() {
        return None;
    }
    let mut cells = line.split(" | ").map(str::trim);
    let (name, category, kind, description, overloads) = (
        cells.next()?,
        cells.next()?,
        cells.next()?,
        cells.next()?,
        cells.next()?,
    );
    if cells.next().is_some() {
        return None;
    }
    let overloads = overloads
        .split("; ")
        .map(parse_overload)
        .collect::<Option<Vec<_>>>()?;
    Some(FunctionDoc {
        name,
        category,
        kind,
        description,
        overloads,
    })
}

/// `(name TYPE, ...) RETURN`.
fn parse_overload(text: &'static str) -> Option<Overload> {
    let text = text.trim().strip_prefix('(')?;
    let close = closing_paren(text)?;
    let (params, returns) = (&text[..close], text[close + 1..].trim());
    if returns.is_empty() {
        return None;
    }
    let params = split_top_level(params)
        .into_iter()
        .map(|p| {
            let (name, type_name) = p.split_once(' ')?;
            let (type_name, variadic) = match type_name.strip_suffix("...") {
                Some(t) => (t, true),
                None => (type_name, false),
            };
            Some(Param {
                name,
                type_name,
                variadic,
            })
        })
        .collect::<Option<Vec<_>>>()?;
    Some(Overload { params, returns })
}

/// The position of the `)` that closes the text's (already opened) parenthesis.
fn closing_paren(text: &str) -> Option<usize> {
    let mut depth = 0usize;
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' if depth == 0 => return Some(i),
            ')' => depth -= 1,
            _ => {}
        }
    }
    None
}

/// Splits on the commas outside `<>` and `()` (the `>` of a lambda's `=>` closes nothing).
fn split_top_level(text: &'static str) -> Vec<&'static str> {
    let mut parts = Vec::new();
    let (mut depth, mut start, mut previous) = (0i32, 0, ' ');
    for (i, c) in text.char_indices() {
        let after = std::mem::replace(&mut previous, c);
        match c {
            '<' | '(' => depth += 1,
            '>' if after == '=' => {}
            '>' | ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(text[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    let last = text[start..].trim();
    if !last.is_empty() {
        parts.push(last);
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_line_of_the_reference_parses() {
        let lines = include_str!("reference.txt")
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .count();
        assert_eq!(reference().len(), lines);
        let mut names: Vec<&str> = reference().iter().map(|f| f.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), lines, "a function is listed twice");
    }

    #[test]
    fn overloads_keep_nested_types_and_variadics_whole() {
        let transform = find("transform").unwrap();
        assert_eq!(
            transform.overloads[1].signature(),
            "(m MAP<K, V>, fk (K, V) => K2, fv (K, V) => V2) MAP<K2, V2>"
        );
        let concat = find("CONCAT").unwrap();
        assert!(concat.overloads[0].params[0].variadic);
        assert_eq!(concat.overloads[0].params[0].type_name, "STRING");
        assert_eq!(find("PI").unwrap().overloads[0].params.len(), 0);
    }
}
