//! A batch scored through what its model reference names now: the rows split between the route's
//! versions by their key (a hash of the call's key argument, or of the row's features without one,
//! so a key always goes to the same version), the shadow version scoring every row on the side, and
//! per version and role the figures the server's `/metrics` shows: rows, alerts, inference time and
//! the distribution of scores.

use std::time::Instant;

use eddy_udf::arrow_array::cast::AsArray;
use eddy_udf::arrow_array::{Array, ArrayRef};
use eddy_udf::arrow_schema::DataType;
use eddy_udf::{Result, metrics};

use crate::features::{self, Gathered};
use crate::model::Scored;
use crate::models::{Chosen, Models, Routed};

/// Upper bounds of the score histogram's buckets.
const SCORE_BOUNDS: [f64; 10] = [
    0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0, 10000.0,
];

/// Scores by version, and which scored each row.
pub struct Batch {
    pub parts: Vec<(Chosen, Scored)>,
    /// Per row, the part that scored it and the row's place in that part's output; `None` for a
    /// row without features.
    pub rows: Vec<Option<(usize, usize)>>,
}

impl Batch {
    pub fn score(&self, row: usize) -> Option<f64> {
        let (part, i) = self.rows[row]?;
        Some(f64::from(self.parts[part].1.scores()[i]))
    }

    pub fn alert(&self, row: usize) -> Option<bool> {
        let (part, _) = self.rows[row]?;
        Some(self.score(row)? >= self.parts[part].0.threshold)
    }

    /// The feature contributing most to the row's score.
    pub fn cause(&self, row: usize) -> Option<&str> {
        let (part, i) = self.rows[row]?;
        let (chosen, scored) = &self.parts[part];
        let features = &chosen.model.features;
        let width = features.len();
        let shares = &scored.contributions()[i * width..(i + 1) * width];
        let top = (0..width)
            .max_by(|a, b| shares[*a].total_cmp(&shares[*b]))
            .unwrap_or(0);
        Some(features[top].as_str())
    }

    pub fn version(&self, row: usize) -> Option<i32> {
        let (part, _) = self.rows[row]?;
        Some(i32::try_from(self.parts[part].0.model.version).unwrap_or(i32::MAX))
    }
}

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

/// A call's arguments after the model: the features, and the key rows are split by (a STRING
/// after a STRUCT or ARRAY of features).
pub fn features_and_key(args: &[ArrayRef]) -> (&[ArrayRef], Option<&ArrayRef>) {
    match args {
        [one, key]
            if matches!(one.data_type(), DataType::Struct(_) | DataType::List(_))
                && matches!(key.data_type(), DataType::Utf8 | DataType::Null) =>
        {
            (&args[..1], Some(key))
        }
        _ => (args, None),
    }
}

/// FNV-1a: the same key lands in the same bucket in every process and release.
fn fnv1a(bytes: impl IntoIterator<Item = u8>) -> u64 {
    bytes.into_iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Which of the route's parts each row goes to.
fn assign(
    routed: &Routed,
    key: Option<&ArrayRef>,
    gathered: &Gathered,
    width: usize,
) -> Vec<usize> {
    let rows = gathered.missing.len();
    if routed.parts.len() == 1 {
        return vec![0; rows];
    }
    let keys = key.and_then(|k| k.as_string_opt::<i32>());
    (0..rows)
        .map(|r| {
            let hash = match keys.filter(|k| k.is_valid(r)) {
                Some(k) => fnv1a(k.value(r).bytes()),
                None => fnv1a(
                    gathered.values[r * width..(r + 1) * width]
                        .iter()
                        .flat_map(|v| v.to_bits().to_le_bytes()),
                ),
            };
            let bucket = (hash % 100) as u32;
            let mut upto = 0;
            routed
                .parts
                .iter()
                .position(|(_, weight)| {
                    upto += weight;
                    bucket < upto
                })
                .unwrap_or(routed.parts.len() - 1)
        })
        .collect()
}

/// Scores the rows `which` (all when `None`) of the gathered features with `chosen`, and counts
/// them in the version's figures under `role`.
fn score_rows(
    chosen: &Chosen,
    gathered: &Gathered,
    which: Option<&[usize]>,
    role: &str,
) -> Result<Scored> {
    let width = chosen.model.features.len();
    let (values, rows) = match which {
        None => (gathered.values.clone(), gathered.missing.len()),
        Some(rows) => {
            let mut values = Vec::with_capacity(rows.len() * width);
            for r in rows {
                values.extend_from_slice(&gathered.values[r * width..(r + 1) * width]);
            }
            (values, rows.len())
        }
    };
    let started = Instant::now();
    let scored = chosen.model.score(values, rows)?;
    let seconds = started.elapsed().as_secs_f64();
    let version = chosen.model.version.to_string();
    let labels = [
        ("model", chosen.model.name.as_str()),
        ("version", version.as_str()),
        ("role", role),
    ];
    let counted: Vec<f64> = match which {
        None => (0..rows)
            .filter(|r| !gathered.missing[*r])
            .map(|r| f64::from(scored.scores()[r]))
            .collect(),
        Some(_) => scored.scores().iter().map(|s| f64::from(*s)).collect(),
    };
    let alerts = counted.iter().filter(|s| **s >= chosen.threshold).count();
    metrics::add(
        "model_rows_total",
        "Rows a model version scored (role: live, or shadow when its scores were not returned).",
        &labels,
        counted.len() as f64,
    );
    metrics::add(
        "model_alerts_total",
        "Rows whose score reached the version's threshold.",
        &labels,
        alerts as f64,
    );
    metrics::add(
        "model_inference_seconds_total",
        "Time a model version spent scoring batches.",
        &labels,
        seconds,
    );
    metrics::add(
        "model_batches_total",
        "Batches a model version scored.",
        &labels,
        1.0,
    );
    metrics::observe(
        "model_score",
        "Scores a model version gave.",
        &labels,
        &SCORE_BOUNDS,
        counted,
    );
    Ok(scored)
}

/// The rows' features in the order `chosen`'s card lists them, when it lists others than `first`'s
/// (whose are gathered already).
fn regather(
    first: &Chosen,
    chosen: &Chosen,
    args: &[ArrayRef],
    rows: usize,
) -> Result<Option<Gathered>> {
    if chosen.model.features == first.model.features {
        return Ok(None);
    }
    features::gather(args, &chosen.model.features, rows).map(Some)
}

/// Scores a batch: the call's model reference as it stands now, over its features.
pub fn score(models: &mut Models, args: &[ArrayRef], rows: usize) -> Result<Batch> {
    let routed = models.get(reference(&args[0], rows)?)?;
    let (feature_args, key) = features_and_key(&args[1..]);
    let first = &routed.parts[0].0;
    let gathered = features::gather(feature_args, &first.model.features, rows)?;
    let width = first.model.features.len();
    let assigned = assign(&routed, key, &gathered, width);
    let mut batch = Batch {
        parts: Vec::with_capacity(routed.parts.len()),
        rows: vec![None; rows],
    };
    if routed.parts.len() == 1 {
        let scored = score_rows(first, &gathered, None, "live")?;
        for (r, slot) in batch.rows.iter_mut().enumerate() {
            if !gathered.missing[r] {
                *slot = Some((0, r));
            }
        }
        batch.parts.push((first.clone(), scored));
    } else {
        for (p, (chosen, _)) in routed.parts.iter().enumerate() {
            let mine: Vec<usize> = (0..rows)
                .filter(|r| assigned[*r] == p && !gathered.missing[*r])
                .collect();
            let other = regather(first, chosen, feature_args, rows)?;
            let own = other.as_ref().unwrap_or(&gathered);
            let scored = score_rows(chosen, own, Some(&mine), "live")?;
            for (i, r) in mine.iter().enumerate() {
                batch.rows[*r] = Some((p, i));
            }
            batch.parts.push((chosen.clone(), scored));
        }
    }
    if let Some(shadow) = &routed.shadow {
        let other = regather(first, shadow, feature_args, rows)?;
        let own = other.as_ref().unwrap_or(&gathered);
        let present: Vec<usize> = (0..rows).filter(|r| !own.missing[*r]).collect();
        score_rows(shadow, own, Some(&present), "shadow")?;
    }
    Ok(batch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_hash_to_the_buckets_the_docs_give() {
        // The Python in tests/e2e/test_models.py computes the same buckets.
        let bucket = |k: &str| fnv1a(k.bytes()) % 100;
        assert_eq!(
            [bucket("car-0"), bucket("car-1"), bucket("car-259")],
            [72, 83, 92]
        );
    }
}
