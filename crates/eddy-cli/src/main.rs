//! `eddy`: the SQL shell for an Eddy server, and `eddy test`, the golden test runner.

mod completion;
mod render;
mod script;
mod shell;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Eddy's SQL shell. Without a subcommand it connects to a server and reads statements.
#[derive(Debug, Parser)]
#[command(name = "eddy", version, about)]
struct Args {
    /// The server to talk to.
    #[arg(
        long,
        short = 's',
        env = "EDDY_SERVER",
        default_value = "http://localhost:8088"
    )]
    server: String,
    /// Run these statements and exit.
    #[arg(long, short = 'e')]
    execute: Option<String>,
    /// Run the statements of this file and exit.
    #[arg(long, short = 'f')]
    file: Option<PathBuf>,
    /// Define a variable for `${name}` substitution, as `DEFINE name = 'value';` does (repeatable).
    #[arg(long = "define", short = 'd', value_name = "NAME=VALUE", value_parser = shell::parse_define)]
    defines: Vec<(String, String)>,
    /// How to show results.
    #[arg(long, value_enum, ignore_case = true, default_value = "table")]
    output: shell::OutputFormat,
    /// The user name for HTTP Basic authentication; the password is asked for unless given.
    #[arg(long, short = 'u', env = "EDDY_USER")]
    user: Option<String>,
    /// The password for HTTP Basic authentication (better: the prompt or `EDDY_PASSWORD`).
    #[arg(long, short = 'p', env = "EDDY_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    /// A bearer token (an API token or a JWT) instead of a user and password.
    #[arg(
        long,
        env = "EDDY_TOKEN",
        hide_env_values = true,
        conflicts_with = "user"
    )]
    token: Option<String>,
    /// A PEM file of CA certificates to check an https:// server's certificate against, besides
    /// the system's.
    #[arg(long, env = "EDDY_CA_CERT")]
    ca_cert: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run ksqlDB QTT-format golden test files (or directories of them) in-process; REST-variant
    /// (RQTT) files run against an in-process server over a private broker (needs nisshi).
    Test {
        /// Files or directories of `*.json` test files.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Also write a JSON report here.
        #[arg(long)]
        report: Option<PathBuf>,
        /// Load the UDF plugins (shared libraries) in this directory first.
        #[arg(long)]
        plugin_dir: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    match args.command {
        Some(Command::Test {
            paths,
            report,
            plugin_dir,
        }) => {
            let plugins = match plugin_dir.as_deref().map(load_plugins).transpose() {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("eddy test: {e}");
                    return ExitCode::from(2);
                }
            };
            let mut stdout = std::io::stdout();
            // REST cases each get a private broker and an in-process server; started on first use.
            let mut runner: Option<eddy_rqtt::RestRunner> = None;
            let mut rest = |case: &eddy_golden::qtt::TestCase| {
                if runner.is_none() {
                    match eddy_rqtt::RestRunner::new() {
                        Ok(r) => runner = Some(r),
                        Err(e) => return eddy_golden::Status::Error(e.to_string()),
                    }
                }
                runner
                    .as_ref()
                    .map_or(eddy_golden::Status::Disabled, |r| r.run(case))
            };
            match eddy_golden::run_paths(
                &paths,
                &mut stdout,
                report.as_deref(),
                Some(&mut rest),
                plugins.as_ref(),
            ) {
                Ok(s) if s.failed == 0 => ExitCode::SUCCESS,
                Ok(_) => ExitCode::from(1),
                Err(e) => {
                    eprintln!("eddy test: {e}");
                    ExitCode::from(2)
                }
            }
        }
        None => shell::run(shell::Options {
            server: args.server,
            execute: args.execute,
            file: args.file,
            output: args.output,
            credentials: match (args.user, args.token) {
                (Some(user), _) => Some(shell::Credentials::Basic {
                    user,
                    password: args.password,
                }),
                (None, Some(token)) => Some(shell::Credentials::Bearer(token)),
                (None, None) => None,
            },
            ca_cert: args.ca_cert,
            defines: args.defines,
        }),
    }
}

/// Loads the plugins of a directory, reporting those that fail on stderr.
fn load_plugins(dir: &std::path::Path) -> Result<std::sync::Arc<eddy_golden::PluginDir>, String> {
    let plugins = eddy_golden::PluginDir::new(dir)?;
    for (path, e) in plugins.reload().errors {
        eprintln!("eddy test: plugin {} not loaded: {e}", path.display());
    }
    Ok(std::sync::Arc::new(plugins))
}
