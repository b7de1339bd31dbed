//! The SQL shell: reads `;`-terminated statements (interactively with history, from `-e` or `-f`),
//! sends them to the server and renders the answers.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, anyhow};
use rustyline::error::ReadlineError;
use rustyline::history::FileHistory;
use rustyline::{CompletionType, Config, Editor};
use serde_json::{Map, Value, json};

use crate::completion::{Names, SqlHelper};
use crate::render;
use crate::script::{split_statements, statement_complete};

/// Result rendering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
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
    pub credentials: Option<Credentials>,
    pub ca_cert: Option<PathBuf>,
    /// Variables defined before the first statement (`--define`).
    pub defines: Vec<(String, String)>,
}

/// How the shell authenticates.
#[derive(Debug)]
pub enum Credentials {
    /// HTTP Basic; the password is asked for when not given.
    Basic {
        user: String,
        password: Option<String>,
    },
    Bearer(String),
}

/// A connection to a server plus the session's client-side state.
struct Session {
    server: String,
    http: reqwest::blocking::Client,
    properties: Map<String, Value>,
    /// The session's variables (`DEFINE`), sent with every request for `${name}` substitution.
    variables: Map<String, Value>,
    output: OutputFormat,
    interrupted: Arc<AtomicBool>,
}

/// Runs the shell.
pub fn run(opts: Options) -> ExitCode {
    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = interrupted.clone();
    let _ = ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst));
    let http = match client(&opts) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e:#}");
            return ExitCode::from(2);
        }
    };
    let mut session = Session {
        server: opts.server.trim_end_matches('/').to_string(),
        http,
        properties: Map::new(),
        variables: Map::new(),
        output: opts.output,
        interrupted,
    };
    for (name, value) in &opts.defines {
        session.define(name, value);
    }
    let script = match (&opts.execute, &opts.file) {
        (Some(sql), _) => Some(sql.clone()),
        (None, Some(path)) => match std::fs::read_to_string(path) {
            Ok(s) => Some(s),
            Err(e) => {
                eprintln!("cannot read {}: {e}", path.display());
                return ExitCode::from(2);
            }
        },
        (None, None) => None,
    };
    match script {
        Some(sql) => match session.run_script(&sql) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(1)
            }
        },
        None => session.interactive(),
    }
}

/// `name=value` of `--define`.
pub fn parse_define(arg: &str) -> Result<(String, String), String> {
    let (name, value) = arg
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=VALUE, got '{arg}'"))?;
    Ok((name.trim().to_string(), value.to_string()))
}

/// The name and value of `DEFINE name = 'value';` (`''` in the value is one quote).
fn define_statement(stmt: &str) -> anyhow::Result<(String, String)> {
    let usage = || anyhow!("usage: DEFINE name = 'value';");
    let body = stmt.trim().trim_end_matches(';').trim();
    let rest = body.get("DEFINE".len()..).ok_or_else(usage)?;
    let (name, value) = rest.split_once('=').ok_or_else(usage)?;
    let name = name.trim();
    let value = value.trim();
    if name.is_empty()
        || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        || name.starts_with(|c: char| c.is_ascii_digit())
    {
        return Err(anyhow!(
            "Invalid variable name '{name}': use letters, digits and _"
        ));
    }
    let quoted = value
        .strip_prefix('\'')
        .and_then(|v| v.strip_suffix('\''))
        .filter(|_| value.len() >= 2)
        .ok_or_else(usage)?;
    Ok((name.to_string(), quoted.replace("''", "'")))
}

/// The HTTP client: trusting `--ca-cert` and sending the credentials with every request.
fn client(opts: &Options) -> anyhow::Result<reqwest::blocking::Client> {
    let mut builder = reqwest::blocking::Client::builder().timeout(None);
    if let Some(path) = &opts.ca_cert {
        let pem = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        for certificate in reqwest::Certificate::from_pem_bundle(&pem)
            .with_context(|| format!("{} holds no PEM certificate", path.display()))?
        {
            builder = builder.add_root_certificate(certificate);
        }
    }
    let authorization = match &opts.credentials {
        None => None,
        Some(Credentials::Bearer(token)) => Some(format!("Bearer {token}")),
        Some(Credentials::Basic { user, password }) => {
            let password = match password {
                Some(p) => p.clone(),
                None => rpassword::prompt_password(format!("Password for {user}: "))
                    .context("cannot read the password")?,
            };
            use base64::Engine;
            let pair =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            Some(format!("Basic {pair}"))
        }
    };
    if let Some(value) = authorization {
        let mut value = reqwest::header::HeaderValue::from_str(&value)
            .context("the credentials cannot be sent in an HTTP header")?;
        value.set_sensitive(true);
        let headers =
            reqwest::header::HeaderMap::from_iter([(reqwest::header::AUTHORIZATION, value)]);
        builder = builder.default_headers(headers);
    }
    builder.build().context("cannot create an HTTP client")
}

impl Session {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server)
    }

    fn interactive(&mut self) -> ExitCode {
        self.banner();
        let config = Config::builder()
            .completion_type(CompletionType::List)
            .build();
        let mut editor: Editor<SqlHelper, FileHistory> = match Editor::with_config(config) {
            Ok(e) => e,
            Err(e) => {
                eprintln!("cannot start the line editor: {e}");
                return ExitCode::from(2);
            }
        };
        let helper = SqlHelper {
            names: Default::default(),
            pending: Default::default(),
        };
        let (names, pending) = (helper.names.clone(), helper.pending.clone());
        editor.set_helper(Some(helper));
        self.read_names(&names);
        let history = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".eddy_history"));
        if let Some(h) = &history {
            let _ = editor.load_history(h);
        }
        let mut buffer = String::new();
        loop {
            let prompt = if buffer.is_empty() {
                "eddy> "
            } else {
                "    > "
            };
            match editor.readline(prompt) {
                Ok(line) => {
                    if buffer.is_empty() && self.builtin(line.trim()) {
                        if line.trim().eq_ignore_ascii_case("exit")
                            || line.trim().eq_ignore_ascii_case("quit")
                        {
                            break;
                        }
                        continue;
                    }
                    buffer.push_str(&line);
                    buffer.push('\n');
                    if statement_complete(&buffer) {
                        let _ = editor.add_history_entry(buffer.trim());
                        if let Err(e) = self.run_script(&buffer) {
                            eprintln!("{e}");
                        }
                        buffer.clear();
                        // A statement may have made or dropped streams, tables or functions.
                        self.read_names(&names);
                    }
                    if let Ok(mut p) = pending.lock() {
                        p.clone_from(&buffer);
                    }
                }
                Err(ReadlineError::Interrupted) => {
                    buffer.clear();
                    println!("^C");
                }
                Err(ReadlineError::Eof) => break,
                Err(e) => {
                    eprintln!("{e}");
                    break;
                }
            }
        }
        if let Some(h) = &history {
            let _ = editor.save_history(h);
        }
        println!("Exiting Eddy.");
        ExitCode::SUCCESS
    }

    /// Reads the catalog's names for completion; on failure (the server away, no rights) keeps
    /// those it had.
    fn read_names(&self, into: &std::sync::Mutex<Names>) {
        let entities = |stmt: &str| -> Vec<Value> {
            self.http
                .post(self.url("/ksql"))
                .json(&self.request(stmt))
                .send()
                .ok()
                .filter(|r| r.status().is_success())
                .and_then(|r| r.json::<Value>().ok())
                .and_then(|v| v.as_array().cloned())
                .unwrap_or_default()
        };
        let listed = |stmt: &str, key: &str| -> Vec<String> {
            entities(stmt)
                .iter()
                .flat_map(|e| e[key].as_array().cloned().unwrap_or_default())
                .filter_map(|s| s["name"].as_str().map(str::to_string))
                .collect()
        };
        let mut names = Names {
            sources: listed("SHOW STREAMS;", "streams"),
            functions: listed("SHOW FUNCTIONS;", "functions"),
            columns: Vec::new(),
        };
        names.sources.extend(listed("SHOW TABLES;", "tables"));
        if names.sources.is_empty() && names.functions.is_empty() {
            return;
        }
        for source in &names.sources {
            for e in entities(&format!("DESCRIBE `{source}`;")) {
                let fields = e["sourceDescription"]["fields"].as_array().cloned();
                for f in fields.into_iter().flatten() {
                    if let Some(column) = f["name"].as_str() {
                        names.columns.push((source.clone(), column.to_string()));
                    }
                }
            }
        }
        if let Ok(mut n) = into.lock() {
            *n = names;
        }
    }

    fn banner(&self) {
        println!(
            "Eddy — streaming SQL over Kafka (shell v{})",
            env!("CARGO_PKG_VERSION")
        );
        let answer = self.http.get(self.url("/info")).send();
        if let Ok(r) = &answer {
            match r.status().as_u16() {
                401 => println!(
                    "The server at {} asks for credentials: pass --user (the password is asked for) or --token.",
                    self.server
                ),
                403 => println!("The server at {} does not let this user in.", self.server),
                _ => {}
            }
        }
        match answer.and_then(|r| r.error_for_status()?.json::<Value>()) {
            Ok(info) => {
                let i = &info["KsqlServerInfo"];
                println!(
                    "Server v{} at {}, status {}",
                    i["version"].as_str().unwrap_or("?"),
                    self.server,
                    i["serverStatus"].as_str().unwrap_or("?")
                );
            }
            Err(e) if e.status().is_some() => {}
            Err(_) => println!(
                "Remote server at {} does not appear to be a valid Eddy or ksqlDB server. Start one with `eddy-server`, or pass --server URL.",
                self.server
            ),
        }
        println!("Statements end with ';'. Type 'help' for help, 'exit' or Ctrl-D to leave.\n");
    }

    /// Handles a client-side command; false if the line is SQL.
    fn builtin(&mut self, line: &str) -> bool {
        let l = line.trim_end_matches(';').trim();
        let lower = l.to_ascii_lowercase();
        if lower.is_empty() {
            return true;
        }
        match lower.as_str() {
            "exit" | "quit" => true,
            "help" => {
                println!(
                    "Type SQL statements ending with ';' (they may span lines).\n\
                     SELECT ... EMIT CHANGES streams rows until LIMIT or Ctrl-C.\n\
                     SET 'auto.offset.reset'='earliest'; applies to later statements of this session.\n\
                     Shell commands: help, exit, output [TABLE|JSON], RUN SCRIPT '<file>';"
                );
                true
            }
            "output" => {
                println!("Output format: {:?}", self.output);
                true
            }
            _ if lower.starts_with("output ") => {
                match lower["output ".len()..].trim() {
                    "json" => self.output = OutputFormat::Json,
                    "table" | "tabular" => self.output = OutputFormat::Table,
                    other => {
                        println!("Invalid output format: '{other}' (valid formats: TABLE, JSON)");
                        return true;
                    }
                }
                println!("Output format set to {:?}", self.output);
                true
            }
            _ => false,
        }
    }

    /// Runs every statement of a script, stopping at the first error.
    fn run_script(&mut self, sql: &str) -> anyhow::Result<()> {
        for stmt in split_statements(sql) {
            self.run_statement(&stmt)?;
        }
        Ok(())
    }

    fn run_statement(&mut self, stmt: &str) -> anyhow::Result<()> {
        let words: Vec<String> = stmt
            .split_whitespace()
            .take(2)
            .map(|w| w.to_ascii_uppercase())
            .collect();
        match words.first().map(String::as_str) {
            Some("SELECT") | Some("PRINT") => self.stream_query(stmt),
            Some("RUN") if words.get(1).map(String::as_str) == Some("SCRIPT") => {
                let path = stmt.split('\'').nth(1).ok_or_else(|| {
                    anyhow!("RUN SCRIPT needs a quoted file name: RUN SCRIPT '/path/file.sql';")
                })?;
                let text =
                    std::fs::read_to_string(path).with_context(|| format!("cannot read {path}"))?;
                self.run_script(&text)
            }
            Some("SET") | Some("UNSET") => self.set_property(stmt),
            Some("DEFINE") => {
                let (name, value) = define_statement(stmt)?;
                self.define(&name, &value);
                Ok(())
            }
            Some("UNDEFINE") => {
                let name = stmt.trim().trim_end_matches(';')["UNDEFINE".len()..].trim();
                if self.undefine(name).is_none() {
                    println!("Cannot undefine variable '{name}' which was never defined");
                }
                Ok(())
            }
            Some("SHOW") | Some("LIST")
                if words
                    .get(1)
                    .is_some_and(|w| w.trim_end_matches(';') == "VARIABLES") =>
            {
                let list: Vec<Value> = self
                    .variables
                    .iter()
                    .map(|(name, value)| json!({"name": name, "value": value}))
                    .collect();
                let entity =
                    json!({"@type": "variables", "statementText": stmt, "variables": list});
                match self.output {
                    OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&entity)?),
                    OutputFormat::Table => print!("{}", render::entity(&entity)),
                }
                Ok(())
            }
            _ => self.ksql(stmt),
        }
    }

    /// Sets a variable, replacing one of the same name in any case.
    fn define(&mut self, name: &str, value: &str) {
        self.undefine(name);
        self.variables
            .insert(name.to_string(), Value::String(value.to_string()));
    }

    /// Removes a variable, whatever the case of its name; its value.
    fn undefine(&mut self, name: &str) -> Option<Value> {
        let key = self
            .variables
            .keys()
            .find(|k| k.eq_ignore_ascii_case(name))?
            .clone();
        self.variables.remove(&key)
    }

    /// The body of a `/ksql` or `/query` request for `stmt`.
    fn request(&self, stmt: &str) -> Value {
        json!({"ksql": stmt, "streamsProperties": self.properties, "sessionVariables": self.variables})
    }

    /// `SET 'name'='value'` and `UNSET 'name'` are kept by the shell and sent with every request.
    fn set_property(&mut self, stmt: &str) -> anyhow::Result<()> {
        let quoted: Vec<&str> = stmt.split('\'').skip(1).step_by(2).collect();
        if stmt.trim_start().to_ascii_uppercase().starts_with("UNSET") {
            let name = quoted
                .first()
                .ok_or_else(|| anyhow!("usage: UNSET 'property';"))?;
            match self.properties.remove(*name) {
                Some(old) => println!(
                    "Successfully unset local property '{name}' (value was '{}').",
                    old.as_str().unwrap_or_default()
                ),
                None => return Err(anyhow!("Property '{name}' was not set")),
            }
            return Ok(());
        }
        let (Some(name), Some(value)) = (quoted.first(), quoted.get(1)) else {
            return Err(anyhow!("usage: SET 'property'='value';"));
        };
        let old = self
            .properties
            .insert(name.to_string(), Value::String(value.to_string()));
        match old {
            Some(o) => println!(
                "Successfully changed local property '{name}' from '{}' to '{value}'.",
                o.as_str().unwrap_or_default()
            ),
            None => println!(
                "Successfully changed local property '{name}' to '{value}'. Use the UNSET command to revert your change."
            ),
        }
        Ok(())
    }

    fn ksql(&mut self, stmt: &str) -> anyhow::Result<()> {
        let resp = self
            .http
            .post(self.url("/ksql"))
            .header("Content-Type", "application/vnd.ksql.v1+json")
            .json(&self.request(stmt))
            .send()
            .with_context(|| format!("cannot reach the server at {}", self.server))?;
        let ok = resp.status().is_success();
        let body: Value = resp
            .json()
            .context("the server sent an unreadable answer")?;
        if !ok {
            let message = body["message"]
                .as_str()
                .unwrap_or("the server refused the statement");
            return Err(anyhow!("{}", render::error_at(stmt, message)));
        }
        match self.output {
            OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&body)?),
            OutputFormat::Table => {
                for entity in body.as_array().into_iter().flatten() {
                    print!("{}", render::entity(entity));
                }
            }
        }
        Ok(())
    }

    /// Streams a query's rows as they arrive; Ctrl-C closes the query and returns to the prompt.
    fn stream_query(&mut self, stmt: &str) -> anyhow::Result<()> {
        self.interrupted.store(false, Ordering::SeqCst);
        let resp = self
            .http
            .post(self.url("/query"))
            .header("Accept", "application/vnd.ksql.v1+json")
            .json(&self.request(stmt))
            .send()
            .with_context(|| format!("cannot reach the server at {}", self.server))?;
        if !resp.status().is_success() {
            let body: Value = resp.json().unwrap_or(Value::Null);
            let message = body["message"]
                .as_str()
                .unwrap_or("the server refused the query");
            return Err(anyhow!("{}", render::error_at(stmt, message)));
        }
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in BufReader::new(resp).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut table = render::RowPrinter::new(self.output == OutputFormat::Json);
        let mut query_id = None;
        println!("Press CTRL-C to interrupt");
        loop {
            if self.interrupted.load(Ordering::SeqCst) {
                if let Some(id) = &query_id {
                    let _ = self
                        .http
                        .post(self.url("/close-query"))
                        .json(&json!({"queryId": id}))
                        .send();
                }
                println!("Query terminated");
                return Ok(());
            }
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => {
                    let trimmed = line
                        .trim()
                        .trim_start_matches('[')
                        .trim_end_matches(']')
                        .trim_end_matches(',');
                    if trimmed.is_empty() {
                        continue;
                    }
                    let Ok(v) = serde_json::from_str::<Value>(trimmed) else {
                        // PRINT sends plain text lines.
                        println!("{line}");
                        continue;
                    };
                    if let Some(h) = v.get("header") {
                        query_id = h["queryId"].as_str().map(str::to_string);
                        table.header(h["schema"].as_str().unwrap_or_default());
                    } else if let Some(r) = v.get("row") {
                        table.row(
                            &r["columns"],
                            r.get("tombstone").and_then(Value::as_bool).unwrap_or(false),
                        );
                    } else if let Some(m) = v.get("finalMessage") {
                        table.finish();
                        println!("{}", m.as_str().unwrap_or_default());
                    } else if let Some(e) = v.get("errorMessage") {
                        println!("Error: {}", e["message"].as_str().unwrap_or_default());
                    }
                    std::io::stdout().flush().ok();
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        table.finish();
        println!("Query terminated");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn define_reads_a_name_and_a_quoted_value() {
        assert_eq!(
            define_statement("DEFINE topic = 'it''s';").unwrap(),
            ("topic".to_string(), "it's".to_string())
        );
        assert!(define_statement("DEFINE topic = cars;").is_err());
        assert!(define_statement("DEFINE 9x = 'a';").is_err());
        assert_eq!(
            parse_define("fmt=JSON=1").unwrap(),
            ("fmt".to_string(), "JSON=1".to_string())
        );
    }
}
