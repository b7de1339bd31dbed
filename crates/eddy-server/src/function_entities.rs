//! The `SHOW FUNCTIONS` and `DESCRIBE FUNCTION` entities: built-in functions as the reference
//! (`eddy_sql::functions::reference`) documents them, and plugin functions as their libraries do.

use serde::Serialize;
use serde_json::Value;

use crate::entity_value::entity_value;
use eddy_runtime::Engine;
use eddy_sql::functions::reference::{self, FunctionDoc};

/// `SHOW FUNCTIONS`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionNames {
    #[serde(rename = "@type")]
    entity_type: &'static str,
    statement_text: String,
    functions: Vec<FunctionName>,
    warnings: Vec<String>,
}

/// One row of `SHOW FUNCTIONS`.
#[derive(Debug, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct FunctionName {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    category: String,
    /// `built-in`, or the plugin library's path.
    source: String,
}

/// `DESCRIBE FUNCTION`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionDescription {
    #[serde(rename = "@type")]
    entity_type: &'static str,
    statement_text: String,
    name: String,
    description: String,
    author: String,
    version: String,
    path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    sha256: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    plugin: Option<String>,
    #[serde(rename = "type")]
    kind: String,
    functions: Vec<Variation>,
    warnings: Vec<String>,
}

/// One signature in `DESCRIBE FUNCTION`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Variation {
    arguments: Vec<Argument>,
    argument_types: Vec<String>,
    return_type: String,
    description: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Argument {
    name: String,
    #[serde(rename = "type")]
    type_name: String,
    description: String,
    is_variadic: bool,
}

/// The documented built-ins this server has (a plugin's function of the same name hides one).
fn built_ins(engine: &Engine) -> impl Iterator<Item = &'static FunctionDoc> + '_ {
    reference::reference().iter().filter(|f| {
        engine.planner().has_function(f.name) && engine.plugin_functions().get(f.name).is_none()
    })
}

/// `SHOW FUNCTIONS`: the documented built-ins and the plugins' functions, by name.
pub fn functions(text: &str, engine: &Engine) -> Value {
    let mut functions: Vec<FunctionName> = built_ins(engine)
        .map(|f| FunctionName {
            name: f.name.to_string(),
            kind: f.kind.to_string(),
            category: f.category.to_string(),
            source: "built-in".to_string(),
        })
        .chain(
            engine
                .plugin_functions()
                .iter()
                .map(|(plugin, f)| FunctionName {
                    name: f.name.clone(),
                    kind: kind_name(f.kind).to_string(),
                    category: "PLUGIN".to_string(),
                    source: plugin.path.display().to_string(),
                }),
        )
        .collect();
    functions.sort();
    entity_value(FunctionNames {
        entity_type: "function_names",
        statement_text: text.to_string(),
        functions,
        warnings: Vec::new(),
    })
}

fn kind_name(kind: eddy_udf::Kind) -> &'static str {
    match kind {
        eddy_udf::Kind::Scalar => "SCALAR",
        eddy_udf::Kind::Aggregate => "AGGREGATE",
        eddy_udf::Kind::Table => "TABLE",
    }
}

/// `DESCRIBE FUNCTION`: a plugin function's signatures, description, author, version, plugin file and
/// SHA-256, or a built-in's documented signatures; `None` when no function has the name.
pub fn describe_function(text: &str, engine: &Engine, name: &str) -> Option<Value> {
    if let Some((plugin, f)) = engine.plugin_functions().get(name) {
        let info = &plugin.manifest.plugin;
        let functions = f
            .overloads
            .iter()
            .map(|o| Variation {
                arguments: o
                    .spec
                    .params
                    .iter()
                    .zip(&o.params)
                    .map(|(p, t)| Argument {
                        name: p.name.clone(),
                        type_name: t.to_string(),
                        description: if p.constant { "constant" } else { "" }.to_string(),
                        is_variadic: p.variadic,
                    })
                    .collect(),
                argument_types: o.params.iter().map(|t| t.to_string()).collect(),
                return_type: o.returns.to_string(),
                description: o.spec.description.clone(),
            })
            .collect();
        let description = f
            .overloads
            .iter()
            .map(|o| o.spec.description.as_str())
            .find(|d| !d.is_empty())
            .unwrap_or(&info.description);
        return Some(entity_value(FunctionDescription {
            entity_type: "describe_function",
            statement_text: text.to_string(),
            name: f.name.clone(),
            description: description.to_string(),
            author: info.authors.clone(),
            version: info.version.clone(),
            path: plugin.path.display().to_string(),
            sha256: Some(plugin.sha256.clone()),
            plugin: Some(info.name.clone()),
            kind: kind_name(f.kind).to_string(),
            functions,
            warnings: Vec::new(),
        }));
    }
    let doc = built_ins(engine).find(|f| f.name.eq_ignore_ascii_case(name))?;
    let functions = doc
        .overloads
        .iter()
        .map(|o| Variation {
            arguments: o
                .params
                .iter()
                .map(|p| Argument {
                    name: p.name.to_string(),
                    type_name: p.type_name.to_string(),
                    description: String::new(),
                    is_variadic: p.variadic,
                })
                .collect(),
            argument_types: o.params.iter().map(|p| p.type_name.to_string()).collect(),
            return_type: o.returns.to_string(),
            description: String::new(),
        })
        .collect();
    Some(entity_value(FunctionDescription {
        entity_type: "describe_function",
        statement_text: text.to_string(),
        name: doc.name.to_string(),
        description: doc.description.to_string(),
        author: "Eddy".to_string(),
        version: eddy_common::VERSION.to_string(),
        path: "internal".to_string(),
        sha256: None,
        plugin: None,
        kind: doc.kind.to_string(),
        functions,
        warnings: Vec::new(),
    }))
}
