//! The golden test runner behind `eddy test`: ksqlDB QTT-format files run in-process over in-memory
//! topics, one line per case, and an optional JSON report. Cases of the REST variant (RQTT) go to the
//! REST runner the caller hands in.

pub mod codec;
pub mod compare;
pub mod qtt;
pub mod runner;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use eddy_runtime::functions::PluginDir;

use serde_json::json;

pub use runner::{Status, run_case};

/// Counts over a run.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub passed: usize,
    pub failed: usize,
    pub disabled: usize,
}

/// Test files under the given paths (directories are searched for `*.json`, sorted).
pub fn collect_files(paths: &[PathBuf]) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut inner: Vec<PathBuf> = std::fs::read_dir(p)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "json"))
                .collect();
            inner.sort();
            files.extend(inner);
        } else {
            files.push(p.clone());
        }
    }
    Ok(files)
}

/// Runs a REST (RQTT) case against a server.
pub type RestRunner<'a> = &'a mut dyn FnMut(&qtt::TestCase) -> Status;

/// Runs every case of every file, printing one line per case to `out`, then `N passed, N failed`.
/// REST cases run with `rest`; without one they are errors. Each case's engine has the functions of
/// `plugins`.
pub fn run_paths(
    paths: &[PathBuf],
    out: &mut dyn Write,
    report: Option<&Path>,
    mut rest: Option<RestRunner<'_>>,
    plugins: Option<&Arc<PluginDir>>,
) -> std::io::Result<Summary> {
    let mut summary = Summary::default();
    // A panic inside a case is reported as that case's ERROR line; keep stderr quiet meanwhile.
    let previous_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = run_all(paths, out, report, &mut rest, plugins, &mut summary);
    std::panic::set_hook(previous_hook);
    result.map(|_| summary)
}

fn run_all(
    paths: &[PathBuf],
    out: &mut dyn Write,
    report: Option<&Path>,
    rest: &mut Option<RestRunner<'_>>,
    plugins: Option<&Arc<PluginDir>>,
    summary: &mut Summary,
) -> std::io::Result<()> {
    let mut files_report = Vec::new();
    let files = collect_files(paths)?;
    // With several files, each ends with its own counts (the conformance figures per file).
    let several = files.len() > 1;
    for file in files {
        let stem = file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let text = std::fs::read_to_string(&file)?;
        let mut cases_report = Vec::new();
        let (mut passed, mut failed) = (0, 0);
        match qtt::load(&stem, &text) {
            Err(e) => {
                writeln!(out, "ERROR {}: {e}", file.display())?;
                failed += 1;
                cases_report.push(json!({"name": stem, "status": "ERROR", "message": e}));
            }
            Ok(cases) => {
                for case in cases {
                    let status = match (&case.rest, rest.as_mut()) {
                        (None, _) => run_case(&case, plugins),
                        (Some(_), _) if !case.enabled => Status::Disabled,
                        (Some(_), Some(run)) => run(&case),
                        (Some(_), None) => {
                            Status::Error("a REST (RQTT) case needs a server to run against".into())
                        }
                    };
                    let (label, message) = match &status {
                        Status::Pass => ("PASS", String::new()),
                        Status::Fail(m) => ("FAIL", m.clone()),
                        Status::Error(m) => ("ERROR", m.clone()),
                        Status::Disabled => ("DISABLED", "disabled by the test file".to_string()),
                    };
                    match status {
                        Status::Pass => passed += 1,
                        Status::Disabled => summary.disabled += 1,
                        _ => failed += 1,
                    }
                    let first_line = message.lines().next().unwrap_or_default();
                    if message.is_empty() {
                        writeln!(out, "{label} {}", case.name)?;
                    } else {
                        writeln!(out, "{label} {}: {first_line}", case.name)?;
                    }
                    cases_report
                        .push(json!({"name": case.name, "status": label, "message": message}));
                }
            }
        }
        summary.passed += passed;
        summary.failed += failed;
        if several {
            writeln!(out, "== {stem}: {passed} passed, {failed} failed")?;
        }
        files_report.push(json!({"file": file.display().to_string(), "passed": passed, "failed": failed, "cases": cases_report}));
    }
    writeln!(out, "{} passed, {} failed", summary.passed, summary.failed)?;
    if let Some(path) = report {
        let doc = json!({"passed": summary.passed, "failed": summary.failed, "disabled": summary.disabled, "files": files_report});
        std::fs::write(path, serde_json::to_vec_pretty(&doc).unwrap_or_default())?;
    }
    Ok(())
}
