//! The SQL reference (docs/sql-reference.md) against the parser: every example parses, and each kind
//! of statement the parser knows has an example.

use std::collections::BTreeSet;

/// Every kind of statement (`Statement::type_name`).
const KINDS: &[&str] = &[
    "CreateStream",
    "CreateTable",
    "CreateStreamAsSelect",
    "CreateTableAsSelect",
    "InsertInto",
    "InsertValues",
    "Query",
    "Show",
    "ShowColumns",
    "DescribeFunction",
    "ReloadFunctions",
    "DropStream",
    "DropTable",
    "TerminateQuery",
    "SetProperty",
    "UnsetProperty",
    "PrintTopic",
    "Explain",
    "DefineVariable",
    "UndefineVariable",
    "RegisterType",
    "DropType",
    "AssertTopic",
    "AssertSchema",
];

/// The text of each ```sql block of a Markdown page.
fn sql_blocks(page: &str) -> Vec<&str> {
    page.split("```sql")
        .skip(1)
        .filter_map(|b| b.split("```").next())
        .collect()
}

#[test]
fn every_example_parses_and_every_statement_has_one() {
    let page = include_str!("../../../docs/sql-reference.md");
    let mut seen = BTreeSet::new();
    for block in sql_blocks(page) {
        let statements = eddy_sql::parse(block)
            .unwrap_or_else(|e| panic!("an example does not parse: {e}\n{block}"));
        seen.extend(statements.iter().map(|s| s.statement.type_name()));
    }
    let missing: Vec<&&str> = KINDS.iter().filter(|k| !seen.contains(**k)).collect();
    assert!(missing.is_empty(), "no example of {missing:?}");
}
