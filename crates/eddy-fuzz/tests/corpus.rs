//! Every target over its kept inputs and seeds, then briefly over mutations of them (the short run
//! CI makes; `scripts/fuzz` runs them for longer).

use std::path::Path;

use eddy_fuzz::{Mutator, TARGETS, on_server_stack};

#[test]
fn targets_survive_their_corpus_and_a_short_run_of_mutations() {
    on_server_stack(run_all);
}

fn run_all() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
    for t in TARGETS {
        eprintln!("fuzzing {}", t.name);
        let mut inputs: Vec<Vec<u8>> = std::fs::read_dir(corpus.join(t.name))
            .map(|entries| {
                entries
                    .filter_map(|e| std::fs::read(e.ok()?.path()).ok())
                    .collect()
            })
            .unwrap_or_default();
        inputs.extend((t.seeds)());
        assert!(!inputs.is_empty(), "{} has seeds", t.name);
        for input in &inputs {
            (t.run)(input);
        }
        let mut m = Mutator::new(14);
        for _ in 0..2_000 {
            let a = &inputs[m.below(inputs.len())];
            let b = &inputs[m.below(inputs.len())];
            (t.run)(&m.mutate(a, b, 4096));
        }
    }
}
