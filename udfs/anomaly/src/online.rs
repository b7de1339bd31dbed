//! `ONLINE_ANOMALY(features, half_life, threshold, warmup)`: an aggregate that learns each group's
//! own baseline from the stream — an exponentially forgetting mean and covariance of the features —
//! and scores every row against the baseline as it was before the row: the squared Mahalanobis
//! distance divided by the number of features. No model file: a car is compared with its own history,
//! so a slow change that is normal for it (a season's temperatures, worn tyres) becomes its new normal.
//!
//! - `features`: one STRUCT of numbers (its fields name the features, CAUSE names one) or one ARRAY of
//!   DOUBLEs (CAUSE is the feature's position, from 1); a row with a NULL feature is left out.
//! - `half_life`: after this many rows a row weighs half as much in the baseline.
//! - `threshold`: a score at or above it is an anomaly. A row that is an anomaly is learned with
//!   [`ALERT_WEIGHT`] of a normal row's weight: enough to follow a lasting change, too little for a
//!   fault to become normal while it lasts.
//! - `warmup`: rows are scored once the baseline has learned this many.
//!
//! The result, for the last row folded in: `STRUCT<SCORE DOUBLE, IS_ANOMALY BOOLEAN, CAUSE STRING,
//! ROWS BIGINT>` (SCORE, IS_ANOMALY and CAUSE are NULL while the baseline warms up). A query that must
//! see every row's score emits per record (`cache.max.bytes.buffering` 0), as a ksqlDB user would for
//! every update of an aggregate. `udfs/anomaly/train/online.py` computes the same in Python.

use std::sync::Arc;

use eddy_udf::arrow_array::builder::{
    BooleanBuilder, Float64Builder, Int64Builder, ListBuilder, StringBuilder,
};
use eddy_udf::arrow_array::cast::AsArray;
use eddy_udf::arrow_array::types::{Float64Type, Int32Type, Int64Type};
use eddy_udf::arrow_array::{Array, ArrayRef, StructArray};
use eddy_udf::arrow_schema::{DataType, Field, Fields};
use eddy_udf::prelude::*;

use crate::features;

/// The most features a baseline keeps (its covariance is this squared).
pub const MAX_FEATURES: usize = 64;
/// How far the covariance is shrunk towards its diagonal, so a young baseline still inverts.
const SHRINK: f64 = 0.05;
/// The least variance of a feature (one that has not moved yet).
const MIN_VARIANCE: f64 = 1e-6;
/// The weight of a row that is an anomaly, relative to a normal row's.
pub const ALERT_WEIGHT: f64 = 0.03;

/// A baseline's settings, from the call's constant arguments.
#[derive(Debug, Clone, Copy)]
struct Settings {
    /// Each row's weight is multiplied by this when the next is learned.
    keep: f64,
    threshold: f64,
    warmup: i64,
}

impl Settings {
    fn new(half_life: f64, threshold: f64, warmup: i64) -> Result<Self> {
        if !(half_life.is_finite() && half_life > 0.0) {
            return Err("ONLINE_ANOMALY: the half-life must be a positive number of rows".into());
        }
        if !(threshold.is_finite() && threshold > 0.0) {
            return Err("ONLINE_ANOMALY: the threshold must be a positive number".into());
        }
        if warmup < 1 {
            return Err("ONLINE_ANOMALY: the warm-up must be at least one row".into());
        }
        Ok(Settings {
            keep: 0.5f64.powf(1.0 / half_life),
            threshold,
            warmup,
        })
    }
}

/// The last row's result.
#[derive(Debug, Clone, PartialEq)]
struct Last {
    score: f64,
    alert: bool,
    cause: usize,
}

/// One group's baseline.
#[derive(Debug, Clone)]
pub struct Baseline {
    settings: Settings,
    names: Vec<String>,
    /// Rows learned.
    rows: i64,
    /// The learned rows' total weight.
    weight: f64,
    mean: Vec<f64>,
    /// The weighted sum of (x - mean)(x - mean)ᵀ, row-major.
    scatter: Vec<f64>,
    last: Option<Last>,
}

impl Baseline {
    fn new(settings: Settings) -> Self {
        Baseline {
            settings,
            names: Vec::new(),
            rows: 0,
            weight: 0.0,
            mean: Vec::new(),
            scatter: Vec::new(),
            last: None,
        }
    }

    fn width(&self) -> usize {
        self.names.len()
    }

    /// Fixes the features' names at the first row.
    fn start(&mut self, names: Vec<String>) -> Result<()> {
        if names.is_empty() || names.len() > MAX_FEATURES {
            return Err(Error(format!(
                "ONLINE_ANOMALY takes 1 to {MAX_FEATURES} features, not {}",
                names.len()
            )));
        }
        let width = names.len();
        self.names = names;
        self.mean = vec![0.0; width];
        self.scatter = vec![0.0; width * width];
        Ok(())
    }

    /// Scores `x` against the baseline as it is (None while it warms up).
    fn score(&self, x: &[f64]) -> Option<Last> {
        if self.rows < self.settings.warmup {
            return None;
        }
        let n = self.width();
        let mut cov: Vec<f64> = self.scatter.iter().map(|s| s / self.weight).collect();
        for i in 0..n {
            for j in 0..n {
                if i != j {
                    cov[i * n + j] *= 1.0 - SHRINK;
                }
            }
            cov[i * n + i] = cov[i * n + i].max(MIN_VARIANCE);
        }
        let centered: Vec<f64> = x.iter().zip(&self.mean).map(|(x, m)| x - m).collect();
        let weighted = solve(&mut cov, n, &centered)?;
        let contributions: Vec<f64> = centered.iter().zip(&weighted).map(|(c, w)| c * w).collect();
        let distance: f64 = contributions.iter().sum();
        let cause = (0..n).max_by(|a, b| contributions[*a].total_cmp(&contributions[*b]))?;
        let score = distance / n as f64;
        Some(Last {
            score,
            alert: score >= self.settings.threshold,
            cause,
        })
    }

    /// Folds `x` in with weight `w`.
    fn learn(&mut self, x: &[f64], w: f64) {
        let n = self.width();
        self.rows += 1;
        self.weight = self.settings.keep * self.weight + w;
        let before: Vec<f64> = x.iter().zip(&self.mean).map(|(x, m)| x - m).collect();
        for (m, d) in self.mean.iter_mut().zip(&before) {
            *m += d * (w / self.weight);
        }
        let after: Vec<f64> = x.iter().zip(&self.mean).map(|(x, m)| x - m).collect();
        for (row, b) in self.scatter.chunks_exact_mut(n).zip(&before) {
            for (s, a) in row.iter_mut().zip(&after) {
                *s = self.settings.keep * *s + w * b * a;
            }
        }
    }

    /// Scores a row, then learns it.
    fn update(&mut self, x: &[f64]) {
        let last = self.score(x);
        let w = match &last {
            Some(l) if l.alert => ALERT_WEIGHT,
            _ => 1.0,
        };
        self.learn(x, w);
        self.last = last;
    }

    /// Folds in another baseline of the same features (a restored state into an empty one, or two
    /// parts of one group): the weighted union of the rows each has learned.
    fn merge(&mut self, other: Baseline) -> Result<()> {
        if self.rows == 0 {
            *self = Baseline {
                settings: self.settings,
                ..other
            };
            return Ok(());
        }
        if other.rows == 0 {
            return Ok(());
        }
        if other.names != self.names {
            return Err("ONLINE_ANOMALY: cannot merge baselines of different features".into());
        }
        let n = self.width();
        let total = self.weight + other.weight;
        let delta: Vec<f64> = other
            .mean
            .iter()
            .zip(&self.mean)
            .map(|(o, s)| o - s)
            .collect();
        let cross = self.weight * other.weight / total;
        for i in 0..n {
            for j in 0..n {
                self.scatter[i * n + j] += other.scatter[i * n + j] + cross * delta[i] * delta[j];
            }
        }
        for (m, d) in self.mean.iter_mut().zip(&delta) {
            *m += d * other.weight / total;
        }
        self.weight = total;
        self.rows += other.rows;
        Ok(())
    }
}

/// Solves `a x = b` for a symmetric positive-definite `a` (n × n, row-major, overwritten by its
/// Cholesky factor); None if `a` is not positive definite.
fn solve(a: &mut [f64], n: usize, b: &[f64]) -> Option<Vec<f64>> {
    for j in 0..n {
        let mut d = a[j * n + j];
        for k in 0..j {
            d -= a[j * n + k] * a[j * n + k];
        }
        if !(d > 0.0 && d.is_finite()) {
            return None;
        }
        let d = d.sqrt();
        a[j * n + j] = d;
        for i in j + 1..n {
            let mut s = a[i * n + j];
            for k in 0..j {
                s -= a[i * n + k] * a[j * n + k];
            }
            a[i * n + j] = s / d;
        }
    }
    // L y = b, then Lᵀ x = y.
    let mut y = b.to_vec();
    for i in 0..n {
        for k in 0..i {
            y[i] -= a[i * n + k] * y[k];
        }
        y[i] /= a[i * n + i];
    }
    for i in (0..n).rev() {
        for k in i + 1..n {
            y[i] -= a[k * n + i] * y[k];
        }
        y[i] /= a[i * n + i];
    }
    Some(y)
}

/// The result's fields.
fn result_fields() -> Fields {
    Fields::from(vec![
        Field::new("SCORE", DataType::Float64, true),
        Field::new("IS_ANOMALY", DataType::Boolean, true),
        Field::new("CAUSE", DataType::Utf8, true),
        Field::new("ROWS", DataType::Int64, true),
    ])
}

/// The features' names of a call: a struct's numeric fields, or positions for an array of `width`.
fn names_of(features: &ArrayRef, row: usize) -> Result<Vec<String>> {
    match features.data_type() {
        DataType::Struct(fields) => Ok(fields.iter().map(|f| f.name().clone()).collect()),
        DataType::List(_) => {
            let width = features.as_list::<i32>().value_length(row) as usize;
            if width > MAX_FEATURES {
                return Err(Error(format!(
                    "ONLINE_ANOMALY takes at most {MAX_FEATURES} features, not {width}"
                )));
            }
            Ok((1..=width).map(|i| i.to_string()).collect())
        }
        other => Err(Error(format!(
            "ONLINE_ANOMALY takes the features as one STRUCT or ARRAY, not {other}"
        ))),
    }
}

/// One group's accumulator.
pub struct OnlineAccumulator(Baseline);

impl FromConstants for OnlineAccumulator {
    fn from_constants(constants: &[ArrayRef]) -> Result<Self> {
        let [half_life, threshold, warmup] = constants else {
            return Err("ONLINE_ANOMALY(features, half_life, threshold, warmup)".into());
        };
        let double = |a: &ArrayRef| a.as_primitive_opt::<Float64Type>().map(|v| v.value(0));
        let (Some(half_life), Some(threshold), Some(warmup)) = (
            double(half_life),
            double(threshold),
            warmup.as_primitive_opt::<Int32Type>().map(|v| v.value(0)),
        ) else {
            return Err(
                "ONLINE_ANOMALY: half_life and threshold are numbers, warmup an INT".into(),
            );
        };
        Ok(OnlineAccumulator(Baseline::new(Settings::new(
            half_life,
            threshold,
            i64::from(warmup),
        )?)))
    }
}

impl OnlineAccumulator {
    fn fold(&mut self, features: &ArrayRef, rows: usize) -> Result<()> {
        let first = (0..rows).find(|r| features.is_valid(*r));
        if let (Some(row), true) = (first, self.0.names.is_empty()) {
            self.0.start(names_of(features, row)?)?;
        }
        if self.0.names.is_empty() {
            return Ok(());
        }
        let width = self.0.width();
        let gathered = features::gather(std::slice::from_ref(features), &self.0.names, rows)?;
        let mut failed = 0;
        let mut x = vec![0.0; width];
        for r in 0..rows {
            if gathered.missing[r] {
                // A NULL feature leaves the row out; an array of another length is an error.
                let other_length = matches!(features.data_type(), DataType::List(_))
                    && features.is_valid(r)
                    && features.as_list::<i32>().value_length(r) as usize != width;
                failed += usize::from(other_length);
                continue;
            }
            for (slot, v) in x
                .iter_mut()
                .zip(&gathered.values[r * width..(r + 1) * width])
            {
                *slot = f64::from(*v);
            }
            if x.iter().any(|v| !v.is_finite()) {
                failed += 1;
                continue;
            }
            self.0.update(&x);
        }
        if failed > 0 {
            return Err(Error(format!(
                "ONLINE_ANOMALY: {failed} of {rows} rows left out: features not finite, or not {width}"
            )));
        }
        Ok(())
    }

    fn one_row(&self) -> [ArrayRef; 4] {
        let b = &self.0;
        let last = b.last.as_ref();
        let mut score = Float64Builder::new();
        score.append_option(last.map(|l| l.score));
        let mut alert = BooleanBuilder::new();
        alert.append_option(last.map(|l| l.alert));
        let mut cause = StringBuilder::new();
        cause.append_option(last.map(|l| b.names[l.cause].as_str()));
        let mut rows = Int64Builder::new();
        rows.append_value(b.rows);
        [
            Arc::new(score.finish()),
            Arc::new(alert.finish()),
            Arc::new(cause.finish()),
            Arc::new(rows.finish()),
        ]
    }
}

/// An `ARRAY<DOUBLE>` of one row.
fn doubles(values: &[f64]) -> ArrayRef {
    let mut b = ListBuilder::new(Float64Builder::with_capacity(values.len()));
    b.values().append_slice(values);
    b.append(true);
    Arc::new(b.finish())
}

impl Accumulator for OnlineAccumulator {
    fn update(&mut self, args: &[ArrayRef], rows: usize) -> Result<()> {
        let [features] = args else {
            return Err("ONLINE_ANOMALY takes one features argument".into());
        };
        self.fold(features, rows)
    }

    fn merge(&mut self, states: &[ArrayRef], rows: usize) -> Result<()> {
        let [count, weight, mean, scatter, names, score, alert, cause] = states else {
            return Err("ONLINE_ANOMALY: a state has 8 columns".into());
        };
        let wrong = || Error::from("ONLINE_ANOMALY: a state of the wrong types");
        let count = count.as_primitive_opt::<Int64Type>().ok_or_else(wrong)?;
        let weight = weight.as_primitive_opt::<Float64Type>().ok_or_else(wrong)?;
        let (mean, scatter) = (
            mean.as_list_opt::<i32>().ok_or_else(wrong)?,
            scatter.as_list_opt::<i32>().ok_or_else(wrong)?,
        );
        let names = names.as_list_opt::<i32>().ok_or_else(wrong)?;
        let score = score.as_primitive_opt::<Float64Type>().ok_or_else(wrong)?;
        let alert = alert.as_boolean_opt().ok_or_else(wrong)?;
        let cause = cause.as_string_opt::<i32>().ok_or_else(wrong)?;
        let list = |l: &eddy_udf::arrow_array::ListArray, r: usize| -> Result<Vec<f64>> {
            let v = l.value(r);
            let d = v.as_primitive_opt::<Float64Type>().ok_or_else(wrong)?;
            Ok(d.values().to_vec())
        };
        for r in 0..rows {
            if count.is_null(r) || count.value(r) == 0 {
                continue;
            }
            let feature_names: Vec<String> = names
                .value(r)
                .as_string_opt::<i32>()
                .ok_or_else(wrong)?
                .iter()
                .map(|n| n.unwrap_or_default().to_string())
                .collect();
            let width = feature_names.len();
            let (m, s) = (list(mean, r)?, list(scatter, r)?);
            if width == 0 || width > MAX_FEATURES || m.len() != width || s.len() != width * width {
                return Err(wrong());
            }
            let last = if score.is_valid(r) {
                let named = cause.value(r);
                Some(Last {
                    score: score.value(r),
                    alert: alert.is_valid(r) && alert.value(r),
                    cause: feature_names.iter().position(|n| n == named).unwrap_or(0),
                })
            } else {
                None
            };
            self.0.merge(Baseline {
                settings: self.0.settings,
                names: feature_names,
                rows: count.value(r),
                weight: weight.value(r),
                mean: m,
                scatter: s,
                last,
            })?;
        }
        Ok(())
    }

    fn state(&self) -> Result<Vec<ArrayRef>> {
        let b = &self.0;
        let mut names = ListBuilder::new(StringBuilder::new());
        for n in &b.names {
            names.values().append_value(n);
        }
        names.append(true);
        let [score, alert, cause, _] = self.one_row();
        Ok(vec![
            Arc::new(eddy_udf::arrow_array::Int64Array::from(vec![b.rows])),
            Arc::new(eddy_udf::arrow_array::Float64Array::from(vec![b.weight])),
            doubles(&b.mean),
            doubles(&b.scatter),
            Arc::new(names.finish()),
            score,
            alert,
            cause,
        ])
    }

    fn evaluate(&self) -> Result<ArrayRef> {
        Ok(Arc::new(StructArray::new(
            result_fields(),
            self.one_row().to_vec(),
            None,
        )))
    }
}

/// The aggregate's two signatures: the features as one STRUCT or one ARRAY of DOUBLEs.
macro_rules! online_anomaly {
    ($ty:ident, $features:literal) => {
        /// Scores each row against its group's own baseline of the features (an exponentially
        /// forgetting mean and covariance), then learns it.
        #[udaf(
            name = "online_anomaly",
            args = [$features],
            constants = ["DOUBLE", "DOUBLE", "INT"],
            names = ["features", "half_life", "threshold", "warmup"],
            returns = "STRUCT<SCORE DOUBLE, IS_ANOMALY BOOLEAN, CAUSE STRING, ROWS BIGINT>",
            state = ["BIGINT", "DOUBLE", "ARRAY<DOUBLE>", "ARRAY<DOUBLE>", "ARRAY<STRING>", "DOUBLE", "BOOLEAN", "STRING"]
        )]
        pub struct $ty(OnlineAccumulator);

        impl FromConstants for $ty {
            fn from_constants(constants: &[ArrayRef]) -> Result<Self> {
                OnlineAccumulator::from_constants(constants).map($ty)
            }
        }

        impl Accumulator for $ty {
            fn update(&mut self, args: &[ArrayRef], rows: usize) -> Result<()> {
                self.0.update(args, rows)
            }
            fn merge(&mut self, states: &[ArrayRef], rows: usize) -> Result<()> {
                self.0.merge(states, rows)
            }
            fn state(&self) -> Result<Vec<ArrayRef>> {
                self.0.state()
            }
            fn evaluate(&self) -> Result<ArrayRef> {
                self.0.evaluate()
            }
        }
    };
}

online_anomaly!(OnlineAnomalyOfStruct, "STRUCT<>");
online_anomaly!(OnlineAnomalyOfArray, "ARRAY<DOUBLE>");

#[cfg(test)]
mod tests {
    use super::*;

    /// A baseline that never forgets.
    fn baseline() -> Baseline {
        Baseline::new(Settings {
            keep: 1.0,
            threshold: 4.0,
            warmup: 50,
        })
    }

    /// Rows from a fixed linear congruential sequence: two correlated features.
    fn rows(n: usize, seed: u64) -> Vec<[f64; 2]> {
        let mut s = seed;
        let mut next = || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        };
        (0..n)
            .map(|_| {
                let a = next();
                [a, 2.0 * a + 0.1 * next()]
            })
            .collect()
    }

    #[test]
    fn learns_mean_and_covariance_and_scores_what_breaks_the_correlation() {
        let mut b = baseline();
        b.start(vec!["A".into(), "B".into()]).unwrap();
        for r in rows(2000, 1) {
            b.update(&r);
        }
        // Uniform on [-0.5, 0.5): mean 0, variance 1/12; B = 2A + noise.
        assert!(
            b.mean[0].abs() < 0.03 && b.mean[1].abs() < 0.06,
            "{:?}",
            b.mean
        );
        let var_a = b.scatter[0] / b.weight;
        assert!((var_a - 1.0 / 12.0).abs() < 0.01, "{var_a}");
        // On the line B = 2A: normal, though far out on A; off the line: an anomaly caused by B.
        let on = b.score(&[0.45, 0.9]).unwrap();
        assert!(!on.alert, "{on:?}");
        let off = b.score(&[0.0, 1.0]).unwrap();
        assert!(off.alert && off.cause == 1, "{off:?}");
    }

    #[test]
    fn no_score_while_warming_up() {
        let mut b = baseline();
        b.start(vec!["A".into(), "B".into()]).unwrap();
        for r in rows(50, 2) {
            b.update(&r);
            assert_eq!(b.last, None);
        }
        b.update(&[0.0, 0.0]);
        assert!(b.last.is_some());
    }

    #[test]
    fn an_anomaly_is_learned_with_little_weight() {
        let mut b = baseline();
        b.start(vec!["A".into(), "B".into()]).unwrap();
        for r in rows(500, 3) {
            b.update(&r);
        }
        let weight = b.weight;
        b.update(&[0.0, 5.0]);
        assert!(b.last.as_ref().unwrap().alert);
        assert!((b.weight - weight - ALERT_WEIGHT).abs() < 1e-9);
    }

    #[test]
    fn forgetting_follows_a_level_shift() {
        let mut b = Baseline::new(Settings::new(100.0, 4.0, 50).unwrap());
        b.start(vec!["A".into(), "B".into()]).unwrap();
        for r in rows(1000, 4) {
            b.update(&r);
        }
        // A slow shift of both features by 3 over 3000 rows is followed: never an anomaly.
        for (i, r) in rows(3000, 5).iter().enumerate() {
            let shift = 3.0 * i as f64 / 3000.0;
            b.update(&[r[0] + shift, r[1] + 2.0 * shift]);
            assert!(!b.last.as_ref().unwrap().alert, "row {i}: {:?}", b.last);
        }
    }

    #[test]
    fn merge_of_two_halves_is_the_baseline_of_all_rows() {
        let all = rows(400, 6);
        let mut whole = baseline();
        let (mut first, mut second) = (baseline(), baseline());
        for b in [&mut whole, &mut first, &mut second] {
            b.start(vec!["A".into(), "B".into()]).unwrap();
        }
        for r in &all {
            whole.learn(r, 1.0);
        }
        all[..200].iter().for_each(|r| first.learn(r, 1.0));
        all[200..].iter().for_each(|r| second.learn(r, 1.0));
        first.merge(second).unwrap();
        for (a, b) in first.mean.iter().zip(&whole.mean) {
            assert!((a - b).abs() < 1e-12);
        }
        for (a, b) in first.scatter.iter().zip(&whole.scatter) {
            assert!((a - b).abs() < 1e-9, "{a} {b}");
        }
    }

    #[test]
    fn state_round_trips_through_merge() {
        let mut acc = OnlineAccumulator(baseline());
        acc.0.start(vec!["A".into(), "B".into()]).unwrap();
        for r in rows(120, 7) {
            acc.0.update(&r);
        }
        let state = acc.state().unwrap();
        let mut restored = OnlineAccumulator(baseline());
        restored.merge(&state, 1).unwrap();
        assert_eq!(restored.0.rows, acc.0.rows);
        assert_eq!(restored.0.mean, acc.0.mean);
        assert_eq!(restored.0.scatter, acc.0.scatter);
        assert_eq!(restored.0.last, acc.0.last);
        assert_eq!(
            restored.evaluate().unwrap().to_data(),
            acc.evaluate().unwrap().to_data()
        );
    }

    #[test]
    fn settings_and_widths_are_checked() {
        assert!(Settings::new(0.0, 4.0, 1).is_err());
        assert!(Settings::new(10.0, f64::NAN, 1).is_err());
        assert!(Settings::new(10.0, 4.0, 0).is_err());
        let mut b = baseline();
        assert!(b.start(vec![]).is_err());
        assert!(b.start((0..65).map(|i| i.to_string()).collect()).is_err());
    }
}
