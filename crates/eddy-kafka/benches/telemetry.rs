//! A car's telemetry as the benchmarks write it: the 14 readings the anomaly models take, near a
//! car's normal values.

/// The readings, as the models name their features.
pub const FEATURES: [&str; 14] = [
    "speed_kmh",
    "rpm",
    "throttle_pct",
    "engine_load_pct",
    "coolant_c",
    "oil_c",
    "intake_c",
    "battery_v",
    "tire_fl_bar",
    "tire_fr_bar",
    "tire_rl_bar",
    "tire_rr_bar",
    "fuel_rate_lph",
    "ambient_c",
];

/// A car's normal value of each reading.
const NORMAL: [f64; 14] = [
    90.0, 2400.0, 35.0, 38.0, 91.0, 96.0, 25.0, 14.1, 2.45, 2.45, 2.44, 2.46, 1.4, 20.0,
];

/// The readings of event `i` as JSON fields separated by commas (no braces), each within 10 % of
/// its normal value.
pub fn readings(i: usize) -> String {
    let fields: Vec<String> = FEATURES
        .iter()
        .zip(NORMAL)
        .enumerate()
        .map(|(k, (f, v))| {
            format!(
                r#""{f}":{:.4}"#,
                v * (1.0 + ((i * 31 + k * 7) % 100) as f64 * 1e-3)
            )
        })
        .collect();
    fields.join(",")
}
