//! The sqlparser dialect for ksqlDB's SQL: back-quoted identifiers, `:=` named arguments.

use sqlparser::dialect::Dialect;

/// ksqlDB's lexical rules on top of sqlparser's generic SQL.
#[derive(Debug, Default, Clone, Copy)]
pub struct KsqlDialect;

impl Dialect for KsqlDialect {
    fn is_delimited_identifier_start(&self, ch: char) -> bool {
        ch == '`' || ch == '"'
    }

    fn is_identifier_start(&self, ch: char) -> bool {
        ch.is_alphabetic() || ch == '_' || ch == '@' || ch == '$'
    }

    fn is_identifier_part(&self, ch: char) -> bool {
        ch.is_alphanumeric() || ch == '_' || ch == '@' || ch == '$'
    }

    fn supports_named_fn_args_with_assignment_operator(&self) -> bool {
        true
    }

    fn supports_named_fn_args_with_expr_name(&self) -> bool {
        true
    }
}
