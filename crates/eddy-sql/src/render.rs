//! Expressions as ksqlDB's messages print them: `(ID = '10')`, `(1 + null)`, `ARRAY[1, 2, 3]`,
//! `MAP(1:='cat')`, `CONCAT(A, 'x')` — so error messages read the same as ksqlDB's.

use sqlparser::ast::{
    BinaryOperator, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, UnaryOperator, Value,
};

/// The ksqlDB text of an expression (identifiers as written, upper-cased unless quoted).
pub fn ksql_text(e: &Expr) -> String {
    match e {
        Expr::Identifier(i) => crate::identifier::ident_name(&i.value, i.quote_style),
        Expr::CompoundIdentifier(parts) => parts
            .iter()
            .map(|i| crate::identifier::ident_name(&i.value, i.quote_style))
            .collect::<Vec<_>>()
            .join("."),
        Expr::Value(v) => value_text(&v.value),
        Expr::Nested(inner) => ksql_text(inner),
        Expr::BinaryOp { left, op, right } => {
            let op = match op {
                BinaryOperator::NotEq => "<>".to_string(),
                BinaryOperator::Arrow => {
                    return format!("{}->{}", ksql_text(left), ksql_text(right));
                }
                BinaryOperator::Assignment => {
                    return format!("{}:={}", ksql_text(left), ksql_text(right));
                }
                other => other.to_string(),
            };
            format!("({} {op} {})", ksql_text(left), ksql_text(right))
        }
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => format!("-{}", ksql_text(expr)),
        Expr::UnaryOp {
            op: UnaryOperator::Not,
            expr,
        } => format!("(NOT {})", ksql_text(expr)),
        Expr::IsNull(x) => format!("({} IS NULL)", ksql_text(x)),
        Expr::IsNotNull(x) => format!("({} IS NOT NULL)", ksql_text(x)),
        Expr::InList {
            expr,
            list,
            negated,
        } => format!(
            "{}{} IN ({})",
            ksql_text(expr),
            if *negated { " NOT" } else { "" },
            list_text(list)
        ),
        Expr::Between {
            expr,
            negated,
            low,
            high,
        } => format!(
            "({}{} BETWEEN {} AND {})",
            ksql_text(expr),
            if *negated { " NOT" } else { "" },
            ksql_text(low),
            ksql_text(high)
        ),
        Expr::Cast {
            expr, data_type, ..
        } => format!("CAST({} AS {data_type})", ksql_text(expr)),
        Expr::Array(a) => format!("ARRAY[{}]", list_text(&a.elem)),
        Expr::Substring {
            expr,
            substring_from,
            substring_for,
            ..
        } => {
            let args: Vec<String> = std::iter::once(expr)
                .chain(substring_from)
                .chain(substring_for)
                .map(|x| ksql_text(x))
                .collect();
            format!("SUBSTRING({})", args.join(", "))
        }
        Expr::Function(f) => {
            let name = f.name.to_string().to_uppercase();
            let FunctionArguments::List(list) = &f.args else {
                return format!("{name}()");
            };
            let args: Vec<String> = list
                .args
                .iter()
                .map(|a| match a {
                    FunctionArg::Unnamed(FunctionArgExpr::Expr(x)) => ksql_text(x),
                    // ksqlDB prints COUNT(*) as COUNT().
                    FunctionArg::Unnamed(FunctionArgExpr::Wildcard) => String::new(),
                    FunctionArg::Named { name, arg, .. } => {
                        format!("{}:={}", name.value.to_uppercase(), arg_text(arg))
                    }
                    FunctionArg::ExprNamed { name, arg, .. } => {
                        format!("{}:={}", ksql_text(name), arg_text(arg))
                    }
                    other => other.to_string(),
                })
                .collect();
            format!("{name}({})", args.join(", "))
        }
        other => other.to_string(),
    }
}

fn arg_text(a: &FunctionArgExpr) -> String {
    match a {
        FunctionArgExpr::Expr(x) => ksql_text(x),
        other => other.to_string(),
    }
}

fn list_text(list: &[Expr]) -> String {
    list.iter().map(ksql_text).collect::<Vec<_>>().join(", ")
}

fn value_text(v: &Value) -> String {
    match v {
        Value::Null => "null".to_string(),
        Value::Boolean(b) => b.to_string(),
        Value::SingleQuotedString(s) => format!("'{}'", s.replace('\'', "''")),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialect::KsqlDialect;

    fn text(sql: &str) -> String {
        let e = sqlparser::parser::Parser::new(&KsqlDialect)
            .try_with_sql(sql)
            .and_then(|mut p| p.parse_expr())
            .expect("an expression");
        ksql_text(&e)
    }

    #[test]
    fn expressions_print_as_in_ksqldb_messages() {
        assert_eq!(text("id = '10'"), "(ID = '10')");
        assert_eq!(text("1 + NULL"), "(1 + null)");
        assert_eq!(text("Array[1,2,3] + NULL"), "(ARRAY[1, 2, 3] + null)");
        assert_eq!(text("count != 100"), "(COUNT <> 100)");
        assert_eq!(text("concat(a, 'x')"), "CONCAT(A, 'x')");
        assert_eq!(text("substring(region, 7, 1)"), "SUBSTRING(REGION, 7, 1)");
        assert_eq!(text("`Key` IN ('10', 8)"), "Key IN ('10', 8)");
        assert_eq!(text("MAP(1 := 'cat') + NULL"), "(MAP(1:='cat') + null)");
    }
}
