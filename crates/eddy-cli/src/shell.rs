//! The interactive SQL shell.

use std::path::PathBuf;
use std::process::ExitCode;

/// Result rendering.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
}

/// What the shell was asked to do.
#[derive(Debug)]
pub struct Options {
    pub server: String,
    pub execute: Option<String>,
    pub file: Option<PathBuf>,
    pub output: OutputFormat,
}

/// Runs the shell.
pub fn run(_opts: Options) -> ExitCode {
    eprintln!("the shell is being written");
    ExitCode::from(2)
}
