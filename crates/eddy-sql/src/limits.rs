//! How deep and how long a statement may be. Statements come from clients Eddy does not control, and
//! parsing, planning and dropping an expression recurse once per level of nesting: every statement is
//! checked against these limits before it is parsed, so that a hostile one is a syntax error and never
//! a stack overflow.

use sqlparser::tokenizer::{Token, TokenWithSpan};

use eddy_common::{Error, Position, Result};

/// Deepest nesting of parentheses, brackets and type parameters (`STRUCT<a STRUCT<...>>`).
pub const MAX_NESTING: usize = 64;

/// Deepest nesting of function calls and subscripts (`F(G(H(...)))`, `CAST(...)`, `ARRAY[...]`,
/// `A[B[...]]`, `F(x)[G(y)[...]]`): sqlparser tries alternatives at every call, so its time doubles
/// with each level (18 levels took 2 s in a debug build, 30 would take hours).
pub const MAX_CALL_NESTING: usize = 12;

/// Deepest an expression may be: every parenthesis and every binary operator of a chain
/// (`a + b + c ...` is a tree as deep as it has operators) is a level.
pub const MAX_DEPTH: usize = 200;

/// Words that end an expression: a chain of operators does not go on past them.
const CLAUSES: [&str; 17] = [
    "SELECT",
    "FROM",
    "WHERE",
    "GROUP",
    "BY",
    "HAVING",
    "AS",
    "CASE",
    "WHEN",
    "THEN",
    "ELSE",
    "END",
    "PARTITION",
    "EMIT",
    "WINDOW",
    "ON",
    "JOIN",
];

/// Checks one statement's tokens against the limits, and that no identifier holds a control
/// character.
pub fn check(tokens: &[TokenWithSpan]) -> Result<()> {
    // The operators of the chain at each open parenthesis, outermost first, and whether the
    // parenthesis opened a call or a subscript.
    let mut chains: Vec<usize> = vec![0];
    let mut calls: Vec<bool> = Vec::new();
    let mut previous: Option<&Token> = None;
    for t in tokens {
        let here = || Position {
            line: t.span.start.line,
            column: t.span.start.column,
        };
        match &t.token {
            Token::LParen | Token::LBracket => {
                if chains.len() > MAX_NESTING {
                    return Err(too_complex(
                        format!("Expressions are nested more than {MAX_NESTING} levels deep"),
                        here(),
                    ));
                }
                chains.push(0);
                let subscript = t.token == Token::LBracket
                    && matches!(previous, Some(Token::RParen | Token::RBracket));
                calls.push(subscript || matches!(previous, Some(Token::Word(_))));
                if calls.iter().filter(|c| **c).count() > MAX_CALL_NESTING {
                    return Err(too_complex(
                        format!(
                            "Function calls are nested more than {MAX_CALL_NESTING} levels deep"
                        ),
                        here(),
                    ));
                }
            }
            Token::RParen | Token::RBracket => {
                if chains.len() > 1 {
                    chains.pop();
                }
                calls.pop();
            }
            Token::Comma => *chains.last_mut().expect("never empty") = 0,
            Token::Plus
            | Token::Minus
            | Token::Mul
            | Token::Div
            | Token::Mod
            | Token::StringConcat
            | Token::Eq
            | Token::Neq
            | Token::Lt
            | Token::LtEq
            | Token::Gt
            | Token::GtEq
            | Token::Arrow => *chains.last_mut().expect("never empty") += 1,
            Token::Word(w) if w.quote_style.is_none() => {
                let is = |k: &&str| w.value.eq_ignore_ascii_case(k);
                if ["AND", "OR"].iter().any(is) {
                    *chains.last_mut().expect("never empty") += 1;
                } else if CLAUSES.iter().any(is) {
                    *chains.last_mut().expect("never empty") = 0;
                }
            }
            Token::Word(w) if w.value.chars().any(char::is_control) => {
                return Err(too_complex(
                    "Identifiers cannot contain control characters".to_string(),
                    here(),
                ));
            }
            _ => {}
        }
        previous = Some(&t.token);
        let depth: usize = chains.len() + chains.iter().sum::<usize>();
        if depth > MAX_DEPTH {
            return Err(too_complex(
                format!(
                    "The expression is too deep: at most {MAX_DEPTH} levels of parentheses and chained operators are allowed"
                ),
                here(),
            ));
        }
    }
    Ok(())
}

fn too_complex(message: String, position: Position) -> Error {
    Error::Syntax {
        message,
        position: Some(position),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialect::KsqlDialect;
    use sqlparser::tokenizer::Tokenizer;

    fn checked(sql: &str) -> Result<()> {
        check(
            &Tokenizer::new(&KsqlDialect, sql)
                .tokenize_with_location()
                .unwrap(),
        )
    }

    #[test]
    fn chains_and_nesting_count_levels_lists_do_not() {
        let chain = |n: usize| vec!["v"; n].join(" + ");
        checked(&format!("SELECT {} FROM s", chain(150))).unwrap();
        assert!(checked(&format!("SELECT {} FROM s", chain(250))).is_err());
        // Many short expressions are not one deep one.
        let list = vec!["a + b"; 1000].join(", ");
        checked(&format!("SELECT {list} FROM s WHERE x IN ({list})")).unwrap();
        let cases = vec!["WHEN x = 1 THEN y + 1"; 300].join(" ");
        checked(&format!("SELECT CASE {cases} END FROM s")).unwrap();
        let nested = |n: usize| format!("{}1{}", "(".repeat(n), ")".repeat(n));
        checked(&nested(60)).unwrap();
        assert!(checked(&nested(100_000)).is_err());
        assert!(checked("SELECT * FROM \"a\u{0}b\"").is_err());
        // Calls nest up to their own, lower, limit (parsing them doubles in time per level).
        let calls = |n: usize| format!("SELECT {}1{} FROM s", "F(".repeat(n), ")".repeat(n));
        checked(&calls(MAX_CALL_NESTING)).unwrap();
        assert!(checked(&calls(MAX_CALL_NESTING + 1)).is_err());
        assert!(checked(&format!("SELECT {}*) FROM s", "COUNT(".repeat(60))).is_err());
        // A subscript of a call's result is a level too (found by fuzzing: `F(x)[CASE(x)[...`
        // took minutes to parse).
        let subscripts =
            |n: usize| format!("SELECT F(x){}1{} FROM s", "[G(x)".repeat(n), "]".repeat(n));
        checked(&subscripts(MAX_CALL_NESTING / 2 - 1)).unwrap();
        assert!(checked(&subscripts(MAX_CALL_NESTING)).is_err());
        checked("SELECT A[1][2], F(x)[1], M['k'][1] FROM s").unwrap();
        checked(&format!(
            "SELECT {}1{} FROM s",
            "(".repeat(60),
            ")".repeat(60)
        ))
        .unwrap();
    }
}
