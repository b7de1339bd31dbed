//! `eddy-fuzz`: runs fuzz targets on stable Rust. First every input kept in the target's corpus
//! (`fuzz/corpus/<target>/`) or its seeds, then mutations of them for the given time; an input
//! that panics is written to `fuzz/crashes/<target>/` and the run fails. Prints executions per target.
//!
//! eddy-fuzz [TARGET ...] [--seconds N] [--seed N] [--corpus DIR] | eddy-fuzz --list

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use eddy_fuzz::{Mutator, TARGETS, Target, on_server_stack, target};

/// Longest input a mutation makes.
const MAX_INPUT: usize = 64 << 10;

fn main() -> anyhow::Result<()> {
    on_server_stack(run)
}

fn run() -> anyhow::Result<()> {
    let mut names = Vec::new();
    let (mut seconds, mut seed, mut corpus) = (10u64, 14u64, PathBuf::from("fuzz/corpus"));
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().context("a value is missing");
        match a.as_str() {
            "--seconds" => seconds = value()?.parse()?,
            "--seed" => seed = value()?.parse()?,
            "--corpus" => corpus = PathBuf::from(value()?),
            "--list" => {
                TARGETS.iter().for_each(|t| println!("{}", t.name));
                return Ok(());
            }
            name => names.push(name.to_string()),
        }
    }
    let targets: Vec<&Target> = if names.is_empty() {
        TARGETS.iter().collect()
    } else {
        names
            .iter()
            .map(|n| target(n).with_context(|| format!("no target {n}")))
            .collect::<anyhow::Result<_>>()?
    };
    // Panics are caught and reported here, once per crashing input.
    std::panic::set_hook(Box::new(|_| {}));
    let mut failed = 0;
    for t in targets {
        let (runs, crashes) = fuzz(t, &corpus.join(t.name), seconds, seed)?;
        println!(
            "{:<14} {runs:>10} executions in {seconds} s, {crashes} crashing inputs",
            t.name
        );
        failed += crashes;
    }
    if failed > 0 {
        bail!("{failed} inputs crashed a target: see fuzz/crashes/");
    }
    Ok(())
}

/// Runs one target; returns the executions and the crashing inputs found.
fn fuzz(t: &Target, dir: &Path, seconds: u64, seed: u64) -> anyhow::Result<(u64, usize)> {
    let mut inputs: Vec<Vec<u8>> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|e| std::fs::read(e.ok()?.path()).ok())
            .collect(),
        Err(_) => Vec::new(),
    };
    inputs.extend((t.seeds)());
    if inputs.is_empty() {
        inputs.push(Vec::new());
    }
    let mut crashes = 0;
    let mut runs = 0u64;
    let mut attempt = |input: &[u8]| -> anyhow::Result<()> {
        runs += 1;
        if catch_unwind(AssertUnwindSafe(|| (t.run)(input))).is_err() {
            crashes += 1;
            let out = Path::new("fuzz/crashes").join(t.name);
            std::fs::create_dir_all(&out)?;
            std::fs::write(out.join(format!("crash-{runs}")), input)?;
        }
        Ok(())
    };
    for input in &inputs {
        attempt(input)?;
    }
    let mut m = Mutator::new(seed);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < deadline {
        let a = &inputs[m.below(inputs.len())];
        let b = &inputs[m.below(inputs.len())];
        let input = m.mutate(a, b, MAX_INPUT);
        attempt(&input)?;
    }
    Ok((runs, crashes))
}
