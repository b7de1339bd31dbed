//! Anomaly detection in SQL: ONNX models from the model directory, run by tract on whole batches.
//!
//! - `ANOMALY_SCORE(model, features)` → DOUBLE: the model's score (higher is stranger).
//! - `IS_ANOMALY(model, features)` → BOOLEAN: score ≥ the threshold on the model's card (or the
//!   reference's `?threshold=t`).
//! - `ANOMALY_CAUSE(model, features)` → STRING: the feature contributing most.
//! - `ANOMALY(model, features)` → `STRUCT<SCORE, IS_ANOMALY, CAUSE, VERSION>`: all three and the version
//!   that scored the row, from one inference.
//!
//! The model is a literal: `name`, `name@version` or `name@alias`. The features are one DOUBLE per
//! feature in the card's order, one STRUCT with a field per feature, or one ARRAY of DOUBLEs
//! (`features.rs`); a row with a NULL feature gets NULL. The model directory is
//! `ksql.functions._global_.model_dir` (or `EDDY_MODEL_DIR`); a server with a model catalog manages
//! it. A call is checked when its query is planned (the model loads, the features fit its card).

mod features;
mod model;
mod models;
mod spec;

use std::sync::Arc;

use eddy_udf::arrow_array::builder::{BooleanBuilder, Float64Builder, Int32Builder, StringBuilder};
use eddy_udf::arrow_array::cast::AsArray;
use eddy_udf::arrow_array::{ArrayRef, StructArray};
use eddy_udf::arrow_schema::{DataType, Field, Fields};
use eddy_udf::prelude::*;

pub use model::{Model, Scored};
pub use models::{Chosen, Models};
pub use spec::{ALIASES, Spec, Version, aliases, resolve};

use features::Gathered;

/// The model reference of a call's first argument (the same on every row).
fn reference(first: &ArrayRef, rows: usize) -> Result<&str> {
    let specs = first
        .as_string_opt::<i32>()
        .ok_or("the model name must be a STRING")?;
    let spec = (0..rows)
        .find(|r| specs.is_valid(*r))
        .map(|r| specs.value(r))
        .ok_or("the model name is NULL")?;
    if (0..rows).any(|r| specs.is_valid(r) && specs.value(r) != spec) {
        return Err("the model name must be the same for every row (a constant)".into());
    }
    Ok(spec)
}

/// A planned call's literal arguments (NULL where not a literal): the model must be a literal
/// that loads, and the features' types must give what its card lists.
fn check(models: &mut Models, constants: &[ArrayRef]) -> Result<()> {
    let Some((first, features)) = constants.split_first() else {
        return Ok(());
    };
    let spec = first
        .as_string_opt::<i32>()
        .filter(|s| s.is_valid(0))
        .ok_or("the model must be a literal string, such as 'autoencoder@1'")?
        .value(0)
        .to_string();
    let chosen = models.get(&spec)?;
    let model = &chosen.model;
    let types: Vec<DataType> = features.iter().map(|f| f.data_type().clone()).collect();
    features::check(
        &types,
        &model.features,
        &format!("{}@{}", model.name, model.version),
    )
}

/// Scores a batch: the model the first argument names now, over the features of the others.
fn score(
    models: &mut Models,
    args: &[ArrayRef],
    rows: usize,
) -> Result<(Chosen, Scored, Vec<bool>)> {
    let chosen = models.get(reference(&args[0], rows)?)?;
    let Gathered { values, missing } = features::gather(&args[1..], &chosen.model.features, rows)?;
    let scored = chosen.model.score(values, rows)?;
    Ok((chosen, scored, missing))
}

/// The feature contributing most to row `row`'s score.
fn cause<'a>(chosen: &'a Chosen, scored: &Scored, row: usize) -> &'a str {
    let features = &chosen.model.features;
    let width = features.len();
    let shares = &scored.contributions()[row * width..(row + 1) * width];
    let top = (0..width)
        .max_by(|a, b| shares[*a].total_cmp(&shares[*b]))
        .unwrap_or(0);
    features[top].as_str()
}

/// What a function makes of a scored batch.
trait Output {
    fn build(chosen: &Chosen, scored: &Scored, missing: &[bool]) -> ArrayRef;
}

/// Appends one value per row, NULL for rows without features.
fn per_row<B, V>(
    missing: &[bool],
    mut out: B,
    mut value: impl FnMut(usize) -> V,
    mut append: impl FnMut(&mut B, Option<V>),
) -> B {
    for (row, m) in missing.iter().enumerate() {
        append(&mut out, (!m).then(|| value(row)));
    }
    out
}

struct Score;
impl Output for Score {
    fn build(_: &Chosen, scored: &Scored, missing: &[bool]) -> ArrayRef {
        let out = per_row(
            missing,
            Float64Builder::with_capacity(missing.len()),
            |r| f64::from(scored.scores()[r]),
            |b, v| b.append_option(v),
        );
        Arc::new({ out }.finish())
    }
}

struct Alert;
impl Output for Alert {
    fn build(chosen: &Chosen, scored: &Scored, missing: &[bool]) -> ArrayRef {
        let out = per_row(
            missing,
            BooleanBuilder::with_capacity(missing.len()),
            |r| f64::from(scored.scores()[r]) >= chosen.threshold,
            |b, v| b.append_option(v),
        );
        Arc::new({ out }.finish())
    }
}

struct Cause;
impl Output for Cause {
    fn build(chosen: &Chosen, scored: &Scored, missing: &[bool]) -> ArrayRef {
        let rows = missing.len();
        let out = per_row(
            missing,
            StringBuilder::with_capacity(rows, rows * 12),
            |r| cause(chosen, scored, r),
            |b, v| b.append_option(v),
        );
        Arc::new({ out }.finish())
    }
}

/// `ANOMALY(...)`'s fields.
fn anomaly_fields() -> Fields {
    Fields::from(vec![
        Field::new("SCORE", DataType::Float64, true),
        Field::new("IS_ANOMALY", DataType::Boolean, true),
        Field::new("CAUSE", DataType::Utf8, true),
        Field::new("VERSION", DataType::Int32, true),
    ])
}

struct Everything;
impl Output for Everything {
    fn build(chosen: &Chosen, scored: &Scored, missing: &[bool]) -> ArrayRef {
        let rows = missing.len();
        let version = i32::try_from(chosen.model.version).unwrap_or(i32::MAX);
        let mut versions = Int32Builder::with_capacity(rows);
        versions.append_slice(&vec![version; rows]);
        let columns: Vec<ArrayRef> = vec![
            Score::build(chosen, scored, missing),
            Alert::build(chosen, scored, missing),
            Cause::build(chosen, scored, missing),
            Arc::new(versions.finish()),
        ];
        let nulls = eddy_udf::arrow_buffer::NullBuffer::from(
            missing.iter().map(|m| !m).collect::<Vec<bool>>(),
        );
        Arc::new(StructArray::new(anomaly_fields(), columns, Some(nulls)))
    }
}

/// One function instance: its models, and what it returns.
struct Scoring<O> {
    models: Models,
    output: std::marker::PhantomData<O>,
}

impl<O: Output> Scoring<O> {
    fn create(options: &Options) -> Result<Self> {
        let mut models = Models::new(options)?;
        check(&mut models, &options.constants)?;
        Ok(Scoring {
            models,
            output: std::marker::PhantomData,
        })
    }

    fn invoke(&mut self, args: &[ArrayRef], rows: usize) -> Result<ArrayRef> {
        let (chosen, scored, missing) = score(&mut self.models, args, rows)?;
        Ok(O::build(&chosen, &scored, &missing))
    }
}

/// A function's three signatures — features as DOUBLEs, as one STRUCT, as one ARRAY — each a type of
/// its own for the manifest, all scoring with [`Scoring`].
macro_rules! anomaly_function {
    (@one $(#[$doc:meta])* $name:literal $returns:literal $output:ty, $ty:ident, $args:tt, $variadic:tt) => {
        $(#[$doc])*
        #[udf(name = $name, args = $args, names = ["model", "features"], variadic = $variadic, returns = $returns)]
        pub struct $ty(Scoring<$output>);

        impl BatchFunction for $ty {
            fn create(options: &Options) -> Result<Self> {
                Scoring::create(options).map($ty)
            }

            fn invoke(&mut self, args: &[ArrayRef], rows: usize) -> Result<ArrayRef> {
                self.0.invoke(args, rows)
            }
        }
    };
    ($(#[$doc:meta])* $name:literal $returns:literal $output:ty: $columns:ident, $by_struct:ident, $by_array:ident) => {
        anomaly_function!(@one $(#[$doc])* $name $returns $output, $columns, ["STRING", "DOUBLE"], true);
        anomaly_function!(@one $(#[$doc])* $name $returns $output, $by_struct, ["STRING", "STRUCT<>"], false);
        anomaly_function!(@one $(#[$doc])* $name $returns $output, $by_array, ["STRING", "ARRAY<DOUBLE>"], false);
    };
}

anomaly_function!(
    /// The model's anomaly score for each row (higher is stranger).
    "anomaly_score" "DOUBLE" Score: AnomalyScore, AnomalyScoreOfStruct, AnomalyScoreOfArray
);

anomaly_function!(
    /// Whether each row's score reaches the threshold on the model's card.
    "is_anomaly" "BOOLEAN" Alert: IsAnomaly, IsAnomalyOfStruct, IsAnomalyOfArray
);

anomaly_function!(
    /// The feature contributing most to each row's score.
    "anomaly_cause" "STRING" Cause: AnomalyCause, AnomalyCauseOfStruct, AnomalyCauseOfArray
);

anomaly_function!(
    /// The score, whether it is an anomaly, the feature contributing most and the model version that
    /// scored the row, from one inference (exact across an alias move).
    "anomaly" "STRUCT<SCORE DOUBLE, IS_ANOMALY BOOLEAN, CAUSE STRING, VERSION INT>" Everything:
    Anomaly, AnomalyOfStruct, AnomalyOfArray
);

eddy_udf::plugin!(
    AnomalyScore,
    AnomalyScoreOfStruct,
    AnomalyScoreOfArray,
    IsAnomaly,
    IsAnomalyOfStruct,
    IsAnomalyOfArray,
    AnomalyCause,
    AnomalyCauseOfStruct,
    AnomalyCauseOfArray,
    Anomaly,
    AnomalyOfStruct,
    AnomalyOfArray,
);

#[cfg(test)]
mod tests;
