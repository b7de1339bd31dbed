//! tract against onnxruntime: each committed model's reference inputs, scored by tract (with the plan
//! for any batch size and with the one for exactly that size), match the scores and contributions
//! onnxruntime computed at training time within 1e-4.

use std::path::Path;

use eddy_udf::serde_json::{self, Value};

use crate::{Model, Spec, Version, resolve};

fn models() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("models")
}

fn floats(v: &Value) -> Vec<f32> {
    match v {
        Value::Array(items) => items.iter().flat_map(floats).collect(),
        Value::Number(n) => vec![n.as_f64().unwrap() as f32],
        other => panic!("not a number: {other}"),
    }
}

#[test]
fn tract_matches_onnxruntime_on_the_reference_inputs() {
    let mut names: Vec<String> = std::fs::read_dir(models())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert!(names.len() >= 4, "{names:?}");
    // Every version of every model.
    let versions = names.iter().flat_map(|name| {
        std::fs::read_dir(models().join(name))
            .unwrap()
            .filter_map(|e| e.unwrap().file_name().into_string().unwrap().parse().ok())
            .map(move |v: u32| (name.clone(), v))
    });
    for (name, version) in versions {
        let folder = models().join(&name).join(version.to_string());
        let model = Model::load(&name, version, &folder).unwrap();
        let reference: Value =
            serde_json::from_str(&std::fs::read_to_string(folder.join("reference.json")).unwrap())
                .unwrap();
        let inputs = floats(&reference["inputs"]);
        let rows = inputs.len() / model.features.len();
        assert!(rows >= 32, "{name}: {rows} reference rows");
        // Enough times that the batch size gets its own plan: both plans must match.
        for run in 0..10 {
            let scored = model.score(inputs.clone(), rows).unwrap();
            for (what, got, want) in [
                ("score", scored.scores(), floats(&reference["score"])),
                (
                    "contributions",
                    scored.contributions(),
                    floats(&reference["contributions"]),
                ),
            ] {
                assert_eq!(got.len(), want.len(), "{name} {what}");
                for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                    let tolerance = 1e-4 * w.abs().max(1.0);
                    assert!(
                        (g - w).abs() <= tolerance,
                        "{name} {what}[{i}] (run {run}): tract {g}, onnxruntime {w}"
                    );
                }
            }
        }
    }
}

fn resolved(spec: &str) -> Result<u32, String> {
    Spec::parse(spec)
        .and_then(|s| resolve(&models(), &s))
        .map(|(_, route)| route.weights[0].0)
        .map_err(|e| e.to_string())
}

#[test]
fn versions_resolve_to_the_highest_or_the_named_one() {
    assert!(resolved("autoencoder").unwrap() >= 1);
    assert_eq!(resolved("autoencoder@1"), Ok(1));
    let e = resolved("autoencoder@99").unwrap_err();
    assert!(e.contains("no version 99"), "{e}");
    let e = resolved("../etc").unwrap_err();
    assert!(e.contains("bad model name"), "{e}");
    let e = resolved("autoencodr").unwrap_err();
    assert!(
        e.contains("no model 'autoencodr'") && e.contains("gaussian_30s"),
        "{e}"
    );
}

#[test]
fn a_spec_may_override_the_threshold() {
    let s = Spec::parse("gaussian_30s@1?threshold=150").unwrap();
    assert_eq!(
        (s.name.as_str(), s.version, s.threshold),
        ("gaussian_30s", Version::Number(1), Some(150.0))
    );
    assert_eq!(Spec::parse("gaussian").unwrap().threshold, None);
    let e = Spec::parse("gaussian?thresold=1").unwrap_err().to_string();
    assert!(e.contains("unknown model option 'thresold=1'"), "{e}");
    let e = Spec::parse("gaussian?threshold=high")
        .unwrap_err()
        .to_string();
    assert!(e.contains("bad threshold"), "{e}");
}
