//! `eddy-fuzz`: runs fuzz targets on stable Rust. First every input kept in the target's corpus
//! (`fuzz/corpus/<target>/`) or its seeds, then mutations of them for the given time; an input
//! that panics is written to `fuzz/crashes/<target>/` and the run fails; one that runs for over 10 s
//! is written there as `slow-<pid>` and the run stops. Prints executions per target.
//!
//! eddy-fuzz [TARGET ...] [--seconds N] [--seed N] [--corpus DIR] | eddy-fuzz --list

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
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

/// An input that runs longer than this is a finding, as a panic is.
const SLOW: Duration = Duration::from_secs(10);

/// Watches the input a target is running: one running longer than [`SLOW`] is written to
/// `fuzz/crashes/<target>/slow-<pid>` and the process exits (a call cannot be stopped half-way).
struct Watchdog {
    current: Current,
    done: Arc<AtomicBool>,
}

/// The input being run, and since when.
type Current = Arc<Mutex<Option<(Instant, Vec<u8>)>>>;

/// The input a target is running; it is done when this is dropped.
struct Running<'a>(&'a Watchdog);

impl Watchdog {
    fn start(target: &'static str) -> Watchdog {
        let current = Current::default();
        let done = Arc::new(AtomicBool::new(false));
        let (watched, stop) = (current.clone(), done.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(500));
                let guard = watched.lock().unwrap_or_else(|p| p.into_inner());
                if let Some((since, input)) = guard.as_ref()
                    && since.elapsed() > SLOW
                {
                    let out = Path::new("fuzz/crashes").join(target);
                    let file = out.join(format!("slow-{}", std::process::id()));
                    let saved =
                        std::fs::create_dir_all(&out).and_then(|()| std::fs::write(&file, input));
                    eprintln!(
                        "{target}: an input ran for over {} s ({}): stopping",
                        SLOW.as_secs(),
                        match saved {
                            Ok(()) => format!("written to {}", file.display()),
                            Err(e) => format!("could not be written: {e}"),
                        }
                    );
                    std::process::exit(2);
                }
            }
        });
        Watchdog { current, done }
    }

    fn running(&self, input: &[u8]) -> Running<'_> {
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((Instant::now(), input.to_vec()));
        Running(self)
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        *self.0.current.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
    }
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
    let watchdog = Watchdog::start(t.name);
    let mut crashes = 0;
    let mut runs = 0u64;
    let mut attempt = |input: &[u8]| -> anyhow::Result<()> {
        runs += 1;
        let _running = watchdog.running(input);
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
