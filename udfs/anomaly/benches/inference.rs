//! tract's throughput on the committed models, single thread, at batch sizes 1, 64, 1,024 and 8,192:
//! rows per second and microseconds per row. `udfs/anomaly/train/bench_onnxruntime.py` prints the same
//! figures for onnxruntime on the same inputs.
//!
//! `cargo bench -p eddy-udf-anomaly --bench inference`

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use eddy_udf_anomaly::{Model, Spec, resolve};

/// Rows of plausible readings (a warm car at speed, with a little variation per row); for a windowed
/// model, the readings as window means followed by small standard deviations.
fn rows(n: usize, width: usize) -> Vec<f32> {
    let base = [
        90.0f32, 2400.0, 35.0, 38.0, 91.0, 96.0, 25.0, 14.1, 2.45, 2.45, 2.44, 2.46, 1.4, 20.0,
    ];
    let value = |j: usize| match j.checked_sub(base.len()) {
        None => base[j],
        Some(sd) => 0.01 * base[sd],
    };
    (0..n * width)
        .map(|i| value(i % width) * (1.0 + ((i * 7919) % 100) as f32 * 1e-4))
        .collect()
}

fn main() {
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    for name in [
        "autoencoder",
        "gaussian",
        "autoencoder_30s",
        "gaussian_30s",
        "gaussian_20s",
    ] {
        let spec = Spec::parse(name).expect("spec");
        let (name, route) = resolve(&models, &spec).expect("model");
        let version = route.weights[0].0;
        let folder = models.join(&name).join(version.to_string());
        let model = Model::load(&name, version, &folder).expect("loads");
        let width = model.features.len();
        for batch in [1usize, 64, 1024, 8192] {
            let input = rows(batch, width);
            // About 200,000 rows (at least 200 calls), the best of three runs.
            let calls = (200_000 / batch).max(200);
            let best = (0..3)
                .map(|_| {
                    let started = Instant::now();
                    for _ in 0..calls {
                        black_box(model.score(input.clone(), batch).expect("scores"));
                    }
                    started.elapsed()
                })
                .min()
                .unwrap_or(Duration::ZERO);
            let per_row = best.as_secs_f64() / (calls * batch) as f64;
            println!(
                "tract {name}@{version} batch {batch:>5}: {:>12.0} rows/s, {:>8.3} us/row",
                1.0 / per_row,
                per_row * 1e6
            );
        }
    }
}
