//! Overloads and their resolution: which of a function's signatures a call's argument types pick,
//! with ksqlDB's implicit conversions (NULL to anything, INT to BIGINT, integers and DECIMAL to DOUBLE),
//! and the error naming the signatures when none fits. A parameter of type `STRUCT<>` takes any struct
//! as it is (a model's features by name, say).

use datafusion::arrow::datatypes::DataType;
use eddy_sql::types::SqlType;
use eddy_udf::manifest::FunctionSpec;

/// One signature of a plugin function, with its SQL types parsed.
#[derive(Debug, Clone)]
pub struct Overload {
    /// The entry's index in the plugin's manifest.
    pub index: u32,
    pub spec: FunctionSpec,
    pub params: Vec<SqlType>,
    pub returns: SqlType,
    pub state: Vec<SqlType>,
}

impl Overload {
    pub fn new(index: u32, spec: FunctionSpec) -> Result<Overload, String> {
        let parse = |t: &str| {
            eddy_sql::parser::parse_type(t)
                .map_err(|e| format!("function {}: bad SQL type '{t}': {e}", spec.name))
        };
        let params = spec
            .params
            .iter()
            .map(|p| parse(&p.sql_type))
            .collect::<Result<_, _>>()?;
        let returns = parse(&spec.returns)?;
        let state = spec
            .state
            .iter()
            .map(|t| parse(t))
            .collect::<Result<_, _>>()?;
        Ok(Overload {
            index,
            params,
            returns,
            state,
            spec,
        })
    }

    /// `NAME(BIGINT first, STRING... rest)`.
    pub fn render(&self) -> String {
        let params: Vec<String> = self
            .spec
            .params
            .iter()
            .zip(&self.params)
            .map(|(p, t)| format!("{}{} {}", t, if p.variadic { "..." } else { "" }, p.name))
            .collect();
        format!("{}({})", self.spec.name, params.join(", "))
    }
}

/// What a call resolved to: the overload (its position in the list) and the type each argument is
/// converted to.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub overload: usize,
    pub targets: Vec<DataType>,
    /// Which arguments are constants (an aggregate's initial arguments).
    pub constant: Vec<bool>,
}

impl Resolved {
    /// The number of per-row arguments (constants come after them).
    pub fn columns(&self) -> usize {
        self.constant.iter().filter(|c| !**c).count()
    }
}

/// Picks the overload of `name` that `args` fit with the fewest conversions (variadic ones last).
pub fn resolve(name: &str, overloads: &[Overload], args: &[DataType]) -> Result<Resolved, String> {
    let mut best: Option<(usize, Fit)> = None;
    for (i, o) in overloads.iter().enumerate() {
        if let Some(fit) = fit(&o.params, &o.spec.params, args)
            && best.as_ref().is_none_or(|(_, (c, _))| fit.0 < *c)
        {
            best = Some((i, fit));
        }
    }
    match best {
        Some((overload, (_, targets))) => Ok(Resolved {
            overload,
            constant: targets.iter().map(|(_, c)| *c).collect(),
            targets: targets.into_iter().map(|(t, _)| t).collect(),
        }),
        None => Err(no_match(name, overloads, args)),
    }
}

/// ksqlDB's message for a call no signature accepts, listing the signatures.
fn no_match(name: &str, overloads: &[Overload], args: &[DataType]) -> String {
    let given: Vec<String> = args
        .iter()
        .map(|t| match t {
            DataType::Null => "NULL".to_string(),
            t => match SqlType::from_arrow(t) {
                Ok(SqlType::Int) => "INTEGER".to_string(),
                Ok(s) => s.to_string(),
                Err(_) => t.to_string(),
            },
        })
        .collect();
    let alternatives: Vec<String> = overloads.iter().map(Overload::render).collect();
    format!(
        "Function '{}' does not accept parameters ({}).\nValid alternatives are:\n{}",
        name.to_uppercase(),
        given.join(", "),
        alternatives.join("\n")
    )
}

/// Whether `param` is `STRUCT<>`: any struct, passed as it is.
fn any_struct(param: &SqlType) -> bool {
    matches!(param, SqlType::Struct(fields) if fields.is_empty())
}

/// The type an argument of type `arg` is converted to for `param`.
fn target(arg: &DataType, param: &SqlType) -> DataType {
    match arg {
        DataType::Struct(_) if any_struct(param) => arg.clone(),
        _ => param.to_arrow(),
    }
}

/// The cost of converting an argument of type `arg` to `param` (`None`: not allowed).
fn conversion(arg: &DataType, param: &SqlType) -> Option<usize> {
    if *arg == DataType::Null {
        return Some(1);
    }
    if any_struct(param) {
        return matches!(arg, DataType::Struct(_)).then_some(0);
    }
    let arg = SqlType::from_arrow(arg).ok()?;
    if arg == *param {
        return Some(0);
    }
    match (&arg, param) {
        (SqlType::Int, SqlType::Bigint) => Some(1),
        (SqlType::Int | SqlType::Bigint, SqlType::Decimal { .. }) => Some(2),
        (SqlType::Int | SqlType::Bigint | SqlType::Decimal { .. }, SqlType::Double) => Some(3),
        _ => None,
    }
}

/// Variadic parameters cost this much more than exact ones, so fixed signatures win ties.
const VARIADIC: usize = 100;

/// A match: its cost, and per argument its target type and whether its parameter is constant.
type Fit = (usize, Vec<(DataType, bool)>);

/// Matches argument types against parameters (each variadic one taking zero or more arguments).
fn fit(params: &[SqlType], specs: &[eddy_udf::Param], args: &[DataType]) -> Option<Fit> {
    let Some((param, rest)) = params.split_first() else {
        return args.is_empty().then(|| (0, Vec::new()));
    };
    let (spec, rest_specs) = specs.split_first()?;
    if spec.variadic {
        // Try taking as many arguments as possible first, then fewer.
        let takeable = args
            .iter()
            .take_while(|a| conversion(a, param).is_some())
            .count();
        return (0..=takeable).rev().find_map(|n| {
            let (cost, mut targets) = fit(rest, rest_specs, &args[n..])?;
            let own: usize = args[..n]
                .iter()
                .map(|a| conversion(a, param).unwrap_or(0))
                .sum();
            let mut all: Vec<_> = args[..n]
                .iter()
                .map(|a| (target(a, param), spec.constant))
                .collect();
            all.append(&mut targets);
            Some((cost + own + VARIADIC, all))
        });
    }
    let (arg, rest_args) = args.split_first()?;
    let own = conversion(arg, param)?;
    let (cost, targets) = fit(rest, rest_specs, rest_args)?;
    let mut all = vec![(target(arg, param), spec.constant)];
    all.extend(targets);
    Some((cost + own, all))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::Field;
    use eddy_udf::{Kind, Param};

    fn overload(index: u32, params: &[(&str, bool, bool)]) -> Overload {
        let mut spec = FunctionSpec::new("f", Kind::Scalar, "STRING");
        spec.params = params
            .iter()
            .map(|(t, variadic, constant)| {
                let mut p = Param::new("x", *t);
                p.variadic = *variadic;
                p.constant = *constant;
                p
            })
            .collect();
        Overload::new(index, spec).unwrap()
    }

    #[test]
    fn fixed_signatures_win_over_variadic_ones() {
        let overloads = [
            overload(0, &[("BIGINT", false, false), ("STRING", false, false)]),
            overload(1, &[("BIGINT", true, false)]),
        ];
        let r = resolve("f", &overloads, &[DataType::Int64, DataType::Null]).unwrap();
        assert_eq!(r.overload, 0);
        assert_eq!(r.targets, vec![DataType::Int64, DataType::Utf8]);
        let r = resolve("f", &overloads, &vec![DataType::Int64; 5]).unwrap();
        assert_eq!(r.overload, 1);
        assert_eq!(r.targets.len(), 5);
        assert_eq!(r.columns(), 5);
        let r = resolve("f", &overloads, &[DataType::Int32, DataType::Utf8]).unwrap();
        assert_eq!(r.targets, vec![DataType::Int64, DataType::Utf8]);
    }

    #[test]
    fn an_empty_struct_parameter_takes_any_struct_as_it_is() {
        let overloads = [
            overload(0, &[("STRING", false, false), ("DOUBLE", true, false)]),
            overload(1, &[("STRING", false, false), ("STRUCT<>", false, false)]),
        ];
        let features = DataType::Struct(vec![Field::new("SPEED", DataType::Float64, true)].into());
        let r = resolve("f", &overloads, &[DataType::Utf8, features.clone()]).unwrap();
        assert_eq!((r.overload, r.targets[1].clone()), (1, features));
        let r = resolve("f", &overloads, &[DataType::Utf8, DataType::Float64]).unwrap();
        assert_eq!(r.overload, 0);
        assert!(resolve("f", &overloads[1..], &[DataType::Utf8, DataType::Utf8]).is_err());
    }

    #[test]
    fn no_match_names_the_arguments_and_the_signatures() {
        let overloads = [overload(
            0,
            &[
                ("BIGINT", false, false),
                ("STRING", false, false),
                ("INT", false, true),
                ("STRING", true, true),
            ],
        )];
        let e = resolve("multi_arg", &overloads, &[DataType::Int64, DataType::Utf8]).unwrap_err();
        assert!(
            e.starts_with("Function 'MULTI_ARG' does not accept parameters (BIGINT, STRING)."),
            "{e}"
        );
        assert!(
            e.contains("F(BIGINT x, STRING x, INTEGER x, STRING... x)"),
            "{e}"
        );
        let ok = resolve(
            "multi_arg",
            &overloads,
            &[
                DataType::Int64,
                DataType::Utf8,
                DataType::Int32,
                DataType::Utf8,
                DataType::Utf8,
            ],
        )
        .unwrap();
        assert_eq!(ok.targets.len(), 5);
        assert_eq!(ok.columns(), 2);
        assert_eq!(ok.constant, vec![false, false, true, true, true]);
        assert!(resolve("v", &overloads, &[DataType::Utf8, DataType::Int32]).is_err());
    }
}
