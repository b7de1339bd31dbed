//! The benchmarks' command-line flags (`--events N`).

/// The value after `flag` on the command line, parsed; `None` if absent or not a `T`.
pub fn flag<T: std::str::FromStr>(flag: &str) -> Option<T> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
}
