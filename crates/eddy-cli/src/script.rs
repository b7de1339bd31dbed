//! Client-side statement splitting: `;` ends a statement unless it is inside quotes or a comment.

/// Splits a script into statements (each without its `;`), skipping comments and blank ones.
pub fn split_statements(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut chars = sql.chars().peekable();
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        match quote {
            Some(q) => {
                current.push(c);
                if c == q {
                    quote = None;
                }
            }
            None => match c {
                '\'' | '`' | '"' => {
                    quote = Some(c);
                    current.push(c);
                }
                '-' if chars.peek() == Some(&'-') => {
                    for n in chars.by_ref() {
                        if n == '\n' {
                            current.push('\n');
                            break;
                        }
                    }
                }
                '/' if chars.peek() == Some(&'*') => {
                    chars.next();
                    let mut prev = ' ';
                    for n in chars.by_ref() {
                        if prev == '*' && n == '/' {
                            break;
                        }
                        prev = n;
                    }
                }
                ';' => {
                    let s = current.trim();
                    if !s.is_empty() {
                        out.push(format!("{s};"));
                    }
                    current.clear();
                }
                _ => current.push(c),
            },
        }
    }
    let s = current.trim();
    if !s.is_empty() {
        out.push(s.to_string());
    }
    out
}

/// True when the buffer ends a statement: its last non-comment text ends with `;` outside quotes.
pub fn statement_complete(buffer: &str) -> bool {
    let mut quote: Option<char> = None;
    let mut last = None;
    let mut chars = buffer.chars().peekable();
    while let Some(c) = chars.next() {
        match quote {
            Some(q) => {
                if c == q {
                    quote = None;
                }
                last = Some(c);
            }
            None => match c {
                '\'' | '`' | '"' => {
                    quote = Some(c);
                    last = Some(c);
                }
                '-' if chars.peek() == Some(&'-') => {
                    for n in chars.by_ref() {
                        if n == '\n' {
                            break;
                        }
                    }
                }
                c if c.is_whitespace() => {}
                c => last = Some(c),
            },
        }
    }
    quote.is_none() && last == Some(';')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_outside_quotes_and_comments() {
        let v = split_statements("SET 'a'='x;y'; -- c;\nSHOW STREAMS;\n/* ; */ SELECT 1");
        assert_eq!(v, vec!["SET 'a'='x;y';", "SHOW STREAMS;", "SELECT 1"]);
    }

    #[test]
    fn completion_needs_a_final_semicolon_outside_quotes() {
        assert!(statement_complete("SHOW STREAMS;\n"));
        assert!(statement_complete(
            "SELECT * FROM s -- note\n  EMIT CHANGES; -- done\n"
        ));
        assert!(!statement_complete("SELECT 'a;\n"));
        assert!(!statement_complete("SELECT *\nFROM s\n"));
    }
}
