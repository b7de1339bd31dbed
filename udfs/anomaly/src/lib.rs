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
//! (`features.rs`); a row with a NULL feature gets NULL. After a STRUCT or ARRAY a STRING key may
//! follow: an alias that splits rows between versions sends each key to the same one (`batch.rs`);
//! without one, rows are split by their features. The model directory is
//! `ksql.functions._global_.model_dir` (or `EDDY_MODEL_DIR`); a server with a model catalog manages
//! it. A call is checked when its query is planned (the model loads, the features fit its card).
//!
//! - `ONLINE_ANOMALY(features, half_life, threshold, warmup)`: an aggregate scoring each row against
//!   its group's own baseline learned from the stream (`online.rs`), no model file.

mod batch;
mod features;
mod model;
mod models;
mod online;
mod spec;

use std::sync::Arc;

use eddy_udf::arrow_array::builder::{BooleanBuilder, Float64Builder, Int32Builder, StringBuilder};
use eddy_udf::arrow_array::cast::AsArray;
use eddy_udf::arrow_array::{ArrayRef, StructArray};
use eddy_udf::arrow_schema::{DataType, Field, Fields};
use eddy_udf::prelude::*;

pub use model::{Model, Scored};
pub use models::{Chosen, Models, Routed};
pub use spec::{ALIASES, Route, Spec, Version, aliases, resolve};

use batch::Batch;

/// A planned call's literal arguments (NULL where not a literal): the model must be a literal
/// that loads, and the features' types must give what its card lists.
fn check(models: &mut Models, constants: &[ArrayRef]) -> Result<()> {
    let Some((first, rest)) = constants.split_first() else {
        return Ok(());
    };
    let spec = first
        .as_string_opt::<i32>()
        .filter(|s| s.is_valid(0))
        .ok_or("the model must be a literal string, such as 'autoencoder@1'")?
        .value(0)
        .to_string();
    let routed = models.get(&spec)?;
    let (features, _) = batch::features_and_key(rest);
    if features.len() > 1 && features.iter().any(|f| !f.data_type().is_primitive()) {
        return Err(
            "the features are DOUBLEs, or one STRUCT or ARRAY followed by at most one key".into(),
        );
    }
    let types: Vec<DataType> = features.iter().map(|f| f.data_type().clone()).collect();
    let versions = routed.parts.iter().map(|(c, _)| c).chain(&routed.shadow);
    for chosen in versions {
        let model = &chosen.model;
        features::check(
            &types,
            &model.features,
            &format!("{}@{}", model.name, model.version),
        )?;
    }
    Ok(())
}

/// What a function makes of a scored batch.
trait Output {
    fn build(batch: &Batch) -> ArrayRef;
}

struct Score;
impl Output for Score {
    fn build(batch: &Batch) -> ArrayRef {
        let rows = batch.rows.len();
        let mut out = Float64Builder::with_capacity(rows);
        (0..rows).for_each(|r| out.append_option(batch.score(r)));
        Arc::new(out.finish())
    }
}

struct Alert;
impl Output for Alert {
    fn build(batch: &Batch) -> ArrayRef {
        let rows = batch.rows.len();
        let mut out = BooleanBuilder::with_capacity(rows);
        (0..rows).for_each(|r| out.append_option(batch.alert(r)));
        Arc::new(out.finish())
    }
}

struct Cause;
impl Output for Cause {
    fn build(batch: &Batch) -> ArrayRef {
        let rows = batch.rows.len();
        let mut out = StringBuilder::with_capacity(rows, rows * 12);
        (0..rows).for_each(|r| out.append_option(batch.cause(r)));
        Arc::new(out.finish())
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
    fn build(batch: &Batch) -> ArrayRef {
        let rows = batch.rows.len();
        let mut versions = Int32Builder::with_capacity(rows);
        (0..rows).for_each(|r| versions.append_option(batch.version(r)));
        let columns: Vec<ArrayRef> = vec![
            Score::build(batch),
            Alert::build(batch),
            Cause::build(batch),
            Arc::new(versions.finish()),
        ];
        let nulls = eddy_udf::arrow_buffer::NullBuffer::from(
            batch
                .rows
                .iter()
                .map(Option::is_some)
                .collect::<Vec<bool>>(),
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
        Ok(O::build(&batch::score(&mut self.models, args, rows)?))
    }
}

/// A function's three signatures — features as DOUBLEs, as one STRUCT, as one ARRAY (the last two
/// optionally followed by the key an alias's split sends rows by) — each a type of its own for the
/// manifest, all scoring with [`Scoring`].
macro_rules! anomaly_function {
    (@one $(#[$doc:meta])* $name:literal $returns:literal $output:ty, $ty:ident, $args:tt, $variadic:tt) => {
        $(#[$doc])*
        #[udf(name = $name, args = $args, names = ["model", "features", "key"], variadic = $variadic, returns = $returns)]
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
        anomaly_function!(@one $(#[$doc])* $name $returns $output, $by_struct, ["STRING", "STRUCT<>", "STRING"], true);
        anomaly_function!(@one $(#[$doc])* $name $returns $output, $by_array, ["STRING", "ARRAY<DOUBLE>", "STRING"], true);
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
    online::OnlineAnomalyOfStruct,
    online::OnlineAnomalyOfArray,
);

#[cfg(test)]
mod tests;
