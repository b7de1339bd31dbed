//! The manifest: the JSON a plugin describes itself with (`eddy_udf_manifest`), and the function
//! definitions it is built from. Each entry of `functions` is one signature; several entries with one
//! name are overloads, and the host refers to an entry by its index.

use serde_json::{Value, json};

use crate::Result;
use crate::function::{AccumulatorFactory, BatchFunction, Options};

/// Who made the plugin (from its crate's metadata).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PluginInfo {
    pub name: String,
    pub version: String,
    pub authors: String,
    pub description: String,
}

/// What a function computes per input row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// One value per row.
    Scalar,
    /// One value per group of rows.
    Aggregate,
    /// Zero or more rows per row (the function returns a list per row).
    Table,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Scalar => "scalar",
            Kind::Aggregate => "aggregate",
            Kind::Table => "table",
        }
    }

    fn parse(s: &str) -> Option<Kind> {
        [Kind::Scalar, Kind::Aggregate, Kind::Table]
            .into_iter()
            .find(|k| k.name() == s)
    }
}

/// One parameter of a signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    pub name: String,
    /// The SQL type, as ksqlDB writes it (`BIGINT`, `STRUCT<A STRING>`).
    pub sql_type: String,
    /// Whether the function sees NULLs; otherwise a NULL argument makes the result NULL.
    pub nullable: bool,
    /// Zero or more arguments of this type (the last parameter of its group).
    pub variadic: bool,
    /// An aggregate's initial argument: a literal in the call, given to the instance on creation
    /// rather than per row. Constant parameters come after all others.
    pub constant: bool,
}

impl Param {
    pub fn new(name: &str, sql_type: impl Into<String>) -> Self {
        Param {
            name: name.to_string(),
            sql_type: sql_type.into(),
            nullable: false,
            variadic: false,
            constant: false,
        }
    }

    fn to_json(&self) -> Value {
        json!({"name": self.name, "type": self.sql_type, "nullable": self.nullable,
               "variadic": self.variadic, "constant": self.constant})
    }

    fn from_json(v: &Value) -> Result<Param> {
        Ok(Param {
            name: string(v, "name")?,
            sql_type: string(v, "type")?,
            nullable: flag(v, "nullable"),
            variadic: flag(v, "variadic"),
            constant: flag(v, "constant"),
        })
    }
}

/// One signature of a function, as the manifest lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionSpec {
    /// The SQL name, upper case.
    pub name: String,
    pub kind: Kind,
    pub params: Vec<Param>,
    /// The SQL type of the result (of each row, for a table function).
    pub returns: String,
    /// Whether the function itself can return NULL.
    pub returns_nullable: bool,
    /// An aggregate's state columns (SQL types).
    pub state: Vec<String>,
    /// Whether an aggregate can take values out again (needed to aggregate a table).
    pub retract: bool,
    /// The same arguments always give the same result.
    pub deterministic: bool,
    pub description: String,
    /// A JSON schema of the configuration the function reads, if any.
    pub config: Option<Value>,
}

impl FunctionSpec {
    pub fn new(name: &str, kind: Kind, returns: impl Into<String>) -> Self {
        FunctionSpec {
            name: name.to_uppercase(),
            kind,
            params: Vec::new(),
            returns: returns.into(),
            returns_nullable: false,
            state: Vec::new(),
            retract: false,
            deterministic: true,
            description: String::new(),
            config: None,
        }
    }

    fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "kind": self.kind.name(),
            "params": self.params.iter().map(Param::to_json).collect::<Vec<_>>(),
            "returns": self.returns,
            "returns_nullable": self.returns_nullable,
            "state": self.state,
            "retract": self.retract,
            "deterministic": self.deterministic,
            "description": self.description,
            "config": self.config,
        })
    }

    fn from_json(v: &Value) -> Result<FunctionSpec> {
        let kind = string(v, "kind")?;
        Ok(FunctionSpec {
            name: string(v, "name")?.to_uppercase(),
            kind: Kind::parse(&kind).ok_or_else(|| format!("unknown function kind '{kind}'"))?,
            params: array(v, "params")?
                .iter()
                .map(Param::from_json)
                .collect::<Result<_>>()?,
            returns: string(v, "returns")?,
            returns_nullable: flag(v, "returns_nullable"),
            state: array(v, "state")?
                .iter()
                .map(|s| {
                    s.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| "state types must be strings".into())
                })
                .collect::<Result<_>>()?,
            retract: flag(v, "retract"),
            deterministic: v
                .get("deterministic")
                .and_then(Value::as_bool)
                .unwrap_or(true),
            description: v
                .get("description")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            config: v.get("config").filter(|c| !c.is_null()).cloned(),
        })
    }
}

/// How an instance of a function is made.
#[derive(Clone, Copy)]
pub enum Create {
    /// Scalar and table functions.
    Batch(fn(&Options) -> Result<Box<dyn BatchFunction>>),
    Aggregate(fn(&Options) -> Result<Box<dyn AccumulatorFactory>>),
}

impl std::fmt::Debug for Create {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Create::Batch(_) => "Create::Batch",
            Create::Aggregate(_) => "Create::Aggregate",
        })
    }
}

/// A function a plugin exports: its signature and how to make it.
#[derive(Debug, Clone)]
pub struct FunctionDef {
    pub spec: FunctionSpec,
    pub create: Create,
}

impl FunctionDef {
    /// Creates a batch function of type `F` (the generated code's constructor).
    pub fn batch<F: BatchFunction>(options: &Options) -> Result<Box<dyn BatchFunction>> {
        Ok(Box::new(F::create(options)?))
    }
}

/// The whole manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    pub abi_version: u32,
    pub plugin: PluginInfo,
    pub functions: Vec<FunctionSpec>,
}

impl Manifest {
    pub fn to_json(&self) -> String {
        json!({
            "abi_version": self.abi_version,
            "plugin": {
                "name": self.plugin.name,
                "version": self.plugin.version,
                "authors": self.plugin.authors,
                "description": self.plugin.description,
            },
            "functions": self.functions.iter().map(FunctionSpec::to_json).collect::<Vec<_>>(),
        })
        .to_string()
    }

    pub fn from_json(text: &str) -> Result<Manifest> {
        let v: Value =
            serde_json::from_str(text).map_err(|e| format!("the manifest is not JSON: {e}"))?;
        let plugin = v.get("plugin").cloned().unwrap_or_default();
        let text_of = |key: &str| {
            plugin
                .get(key)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        Ok(Manifest {
            abi_version: v
                .get("abi_version")
                .and_then(Value::as_u64)
                .ok_or("the manifest has no abi_version")? as u32,
            plugin: PluginInfo {
                name: text_of("name"),
                version: text_of("version"),
                authors: text_of("authors"),
                description: text_of("description"),
            },
            functions: array(&v, "functions")?
                .iter()
                .map(FunctionSpec::from_json)
                .collect::<Result<_>>()?,
        })
    }
}

fn string(v: &Value, key: &str) -> Result<String> {
    v.get(key)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| format!("the manifest lacks the string '{key}' in {v}").into())
}

fn array<'a>(v: &'a Value, key: &str) -> Result<&'a [Value]> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(a)) => Ok(a),
        Some(other) => Err(format!("the manifest's '{key}' should be a list, not {other}").into()),
    }
}

fn flag(v: &Value, key: &str) -> bool {
    v.get(key).and_then(Value::as_bool).unwrap_or(false)
}
