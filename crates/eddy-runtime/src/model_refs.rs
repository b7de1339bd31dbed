//! Model references in a query: the literal first argument of a function whose first parameter is
//! named `model` (`ANOMALY_SCORE('car_ae', ...)`). A reference to a catalog model without a version
//! is pinned when the query is created — rewritten to `name@version` before planning — and the pin is
//! kept with the query (the property [`PINNED`]), so the query runs that version after every
//! restart; a reference by alias stays as written, for the plugin to follow the alias.

use std::collections::BTreeMap;

use eddy_sql::sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Value, visit_expressions_mut,
};

use eddy_common::Result;

use crate::model_catalog::ModelCatalog;
use crate::properties::Properties;

/// The property a persistent query keeps its pinned versions in: `name=version,...`.
pub const PINNED: &str = "eddy.query.model.versions";

/// How a query uses a model.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ModelUse {
    pub name: String,
    pub version: Pinned,
}

/// A version as a query names it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Pinned {
    Version(u32),
    Alias(String),
}

impl std::fmt::Display for ModelUse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.version {
            Pinned::Version(v) => write!(f, "{}@{v}", self.name),
            Pinned::Alias(a) => write!(f, "{}@{a}", self.name),
        }
    }
}

/// The pins of a query's properties.
pub fn pins(props: &Properties) -> BTreeMap<String, u32> {
    props
        .get(PINNED)
        .map(|v| {
            v.split(',')
                .filter_map(|pin| {
                    let (name, version) = pin.split_once('=')?;
                    Some((name.trim().to_string(), version.trim().parse().ok()?))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The property value of pinned versions.
pub fn pins_property(uses: &[ModelUse]) -> Option<String> {
    let pinned: Vec<String> = uses
        .iter()
        .filter_map(|u| match &u.version {
            Pinned::Version(v) => Some(format!("{}={v}", u.name)),
            Pinned::Alias(_) => None,
        })
        .collect();
    (!pinned.is_empty()).then(|| pinned.join(","))
}

/// Pins the query's references to catalog models (`pins` first, else the latest version) and
/// returns what it uses. `takes_model` tells the functions whose first argument is a model.
pub fn pin<V>(
    query: &mut V,
    catalog: &ModelCatalog,
    pins: &BTreeMap<String, u32>,
    takes_model: impl Fn(&str) -> bool,
) -> Result<Vec<ModelUse>>
where
    V: eddy_sql::sqlparser::ast::VisitMut,
{
    let mut uses = Vec::new();
    let _ = visit_expressions_mut(query, |e| {
        if let Expr::Function(f) = e
            && takes_model(&f.name.to_string())
            && let FunctionArguments::List(list) = &mut f.args
            && let Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(v)))) =
                list.args.first_mut()
            && let Value::SingleQuotedString(reference) = &mut v.value
            && let Some((model_use, pinned)) = pin_one(reference, catalog, pins)
        {
            if let Some(pinned) = pinned {
                *reference = pinned;
            }
            uses.push(model_use);
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    uses.sort();
    uses.dedup();
    Ok(uses)
}

/// A reference's use of a catalog model, and the reference pinned (when it names no version).
fn pin_one(
    reference: &str,
    catalog: &ModelCatalog,
    pins: &BTreeMap<String, u32>,
) -> Option<(ModelUse, Option<String>)> {
    let (model, options) = match reference.split_once('?') {
        Some((m, o)) => (m, Some(o)),
        None => (reference, None),
    };
    let (name, version) = match model.split_once('@') {
        Some((n, v)) => (n.trim().to_ascii_lowercase(), Some(v.trim())),
        None => (model.trim().to_ascii_lowercase(), None),
    };
    let entry = catalog.get(&name)?;
    let (version, pinned) = match version {
        Some(v) => match v.parse() {
            Ok(n) => (Pinned::Version(n), None),
            Err(_) => (Pinned::Alias(v.to_ascii_lowercase()), None),
        },
        None => {
            let v = pins.get(&name).copied().or_else(|| entry.latest())?;
            let options = options.map(|o| format!("?{o}")).unwrap_or_default();
            (Pinned::Version(v), Some(format!("{name}@{v}{options}")))
        }
    };
    Some((ModelUse { name, version }, pinned))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn references_without_a_version_are_pinned_and_aliases_kept() {
        let mut catalog = ModelCatalog::default();
        let card = json!({"features": ["a"], "threshold": 1});
        for graph in [b"one", b"two"] {
            catalog
                .register("car_ae", None, card.clone(), graph.to_vec(), 0)
                .unwrap();
        }
        let parsed = eddy_sql::parse(
            "CREATE STREAM s AS SELECT ANOMALY_SCORE('Car_AE?threshold=3', a) AS x, \
             IS_ANOMALY('car_ae@production', a) AS y, CONCAT('car_ae', 'z') AS z, \
             ANOMALY_SCORE('other', a) AS w FROM t;",
        )
        .unwrap();
        let eddy_sql::statement::Statement::CreateSource(c) = &parsed[0].statement else {
            panic!()
        };
        let mut query = c.query.clone().unwrap().query;
        let takes_model =
            |f: &str| ["anomaly_score", "is_anomaly"].contains(&f.to_ascii_lowercase().as_str());
        let uses = pin(&mut query, &catalog, &BTreeMap::new(), takes_model).unwrap();
        let text = query.to_string();
        assert!(text.contains("'car_ae@2?threshold=3'"), "{text}");
        assert!(
            text.contains("'car_ae@production'") && text.contains("CONCAT('car_ae'"),
            "{text}"
        );
        assert!(text.contains("'other'"), "{text}");
        assert_eq!(
            uses.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["car_ae@2", "car_ae@production"]
        );
        assert_eq!(pins_property(&uses).as_deref(), Some("car_ae=2"));
        // After a restart the pin holds, whatever the latest version is.
        let mut query = c.query.clone().unwrap().query;
        let props = Properties::from([(PINNED.to_string(), "car_ae=1".to_string())]);
        pin(&mut query, &catalog, &pins(&props), takes_model).unwrap();
        assert!(query.to_string().contains("'car_ae@1?threshold=3'"));
    }
}
