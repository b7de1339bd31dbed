//! The private local broker the server starts when it is given no Kafka cluster: a supervised nisshi
//! child process on a free loopback port.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eddy_common::{Result, external_err};

/// nisshi's storage engine that keeps topics in memory.
const MEMORY: &str = "memory://nisshi/";

fn not_installed() -> eddy_common::Error {
    external_err!("nisshi is not installed: run scripts/setup, or pass --bootstrap-servers")
}

/// Creates `dir` if it is missing and checks that files can be written in it: the broker keeps its
/// data there, and a directory it cannot write would otherwise show only as a broker that never
/// starts listening.
fn writable(dir: &Path) -> Result<()> {
    let refused = |e: std::io::Error| {
        external_err!(
            "the data directory {} is not writable ({e}): the local broker keeps its topics there; give --data-dir a writable directory, or --bootstrap-servers",
            dir.display()
        )
    };
    std::fs::create_dir_all(dir).map_err(refused)?;
    let probe = dir.join(".eddy-write-check");
    std::fs::write(&probe, b"").map_err(refused)?;
    std::fs::remove_file(&probe).map_err(refused)
}

/// A running broker child, restarted if it exits, stopped when dropped.
pub struct LocalBroker {
    bootstrap: String,
    child: Arc<Mutex<Option<Child>>>,
}

impl LocalBroker {
    /// Starts nisshi on a free port; keeps its data in `data_dir/broker` when it supports SQLite.
    pub fn start(data_dir: &Path) -> Result<Self> {
        let dir = data_dir.join("broker");
        let help = Command::new("nisshi")
            .arg("--help")
            .output()
            .map_err(|_| not_installed())?;
        let storage = if String::from_utf8_lossy(&help.stdout).contains("libsql") {
            format!("sqlite://{}", dir.join("broker.db").display())
        } else {
            tracing::warn!(
                "this nisshi has no SQLite engine: the local broker keeps topics in memory, so they do not survive a server restart"
            );
            MEMORY.to_string()
        };
        Self::launch(&dir, storage)
    }

    /// Starts nisshi on a free port with its topics in memory (for tests: fast, gone when dropped).
    pub fn start_in_memory(data_dir: &Path) -> Result<Self> {
        Self::launch(&data_dir.join("broker"), MEMORY.to_string())
    }

    fn launch(dir: &Path, storage: String) -> Result<Self> {
        writable(dir)?;
        // The free port is found by binding and releasing it, so another process may take it before
        // nisshi binds it: a broker that exits while starting is tried again on a new port.
        let mut attempt = 0;
        loop {
            attempt += 1;
            let spawn = spawner(dir, free_port()?, storage.clone());
            let (mut child, tail) = spawn.call().map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => not_installed(),
                _ => cannot_start(e),
            })?;
            match wait_listening(&mut child, &spawn.bootstrap) {
                Ok(()) => return Ok(Self::supervise(spawn, child)),
                Err(Startup::Exited(_)) if attempt < START_ATTEMPTS => continue,
                Err(Startup::Exited(status)) => {
                    return Err(external_err!(
                        "the local broker exited while starting ({status}){}",
                        tail.describe()
                    ));
                }
                Err(Startup::Silent) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(external_err!(
                        "the local broker did not start listening on {} within {}s{}",
                        spawn.bootstrap,
                        START_TIMEOUT.as_secs(),
                        tail.describe()
                    ));
                }
            }
        }
    }

    /// Keeps `child` running: a thread restarts it on the same port whenever it exits.
    fn supervise(spawn: Spawner, child: Child) -> Self {
        let bootstrap = spawn.bootstrap.clone();
        let child = Arc::new(Mutex::new(Some(child)));
        let watched = child.clone();
        std::thread::spawn(move || {
            loop {
                std::thread::sleep(Duration::from_secs(1));
                let mut guard = watched.lock().unwrap_or_else(|p| p.into_inner());
                let Some(c) = guard.as_mut() else { return };
                if let Ok(Some(status)) = c.try_wait() {
                    tracing::error!("the local broker exited ({status}); restarting it");
                    match spawn.call() {
                        Ok((new, _)) => *guard = Some(new),
                        Err(e) => tracing::error!("cannot restart the local broker: {e}"),
                    }
                }
            }
        });
        LocalBroker { bootstrap, child }
    }

    /// The broker's bootstrap address.
    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }
}

impl Drop for LocalBroker {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// How long a starting broker may take to listen (many start at once when tests run in parallel).
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How many ports are tried when the broker exits while starting.
const START_ATTEMPTS: usize = 3;
/// How many of the broker's last log lines an error quotes, and how much of each.
const TAIL_LINES: usize = 10;
const TAIL_LINE_CHARS: usize = 300;

fn cannot_start(e: std::io::Error) -> eddy_common::Error {
    external_err!("cannot start the local broker: {e}")
}

fn free_port() -> Result<u16> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(cannot_start)
}

/// Why a broker did not come up.
enum Startup {
    Exited(ExitStatus),
    Silent,
}

/// Waits until the broker accepts connections, it exits, or [`START_TIMEOUT`] passes.
fn wait_listening(child: &mut Child, bootstrap: &str) -> std::result::Result<(), Startup> {
    let deadline = Instant::now() + START_TIMEOUT;
    while Instant::now() < deadline {
        if listening(bootstrap) {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(Startup::Exited(status));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(Startup::Silent)
}

/// Whether something listens on `bootstrap`. A connection to a free loopback port in the ephemeral
/// range can connect to itself (TCP simultaneous open, when the kernel picks that same port as the
/// source): such a connection is not a listener.
fn listening(bootstrap: &str) -> bool {
    std::net::TcpStream::connect(bootstrap)
        .is_ok_and(|s| matches!((s.local_addr(), s.peer_addr()), (Ok(l), Ok(p)) if l != p))
}

/// Starts nisshi on one address, again whenever it is called.
struct Spawner {
    bootstrap: String,
    dir: PathBuf,
    storage: String,
}

fn spawner(dir: &Path, port: u16, storage: String) -> Spawner {
    Spawner {
        bootstrap: format!("127.0.0.1:{port}"),
        dir: dir.to_path_buf(),
        storage,
    }
}

impl Spawner {
    fn call(&self) -> std::io::Result<(Child, Tail)> {
        let url = format!("tcp://{}", self.bootstrap);
        let mut child = Command::new("nisshi")
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
                "--storage-engine",
                &self.storage,
            ])
            .args(["--group-initial-rebalance-delay", "100ms"])
            .current_dir(&self.dir)
            // The server's RUST_LOG is for Eddy: nisshi would log every request span.
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        let tail = Tail::default();
        if let Some(stderr) = child.stderr.take() {
            let kept = tail.clone();
            std::thread::spawn(move || kept.drain(stderr));
        }
        Ok((child, tail))
    }
}

/// The last lines the broker wrote to its standard error, for the error that says why it stopped.
#[derive(Clone, Default)]
struct Tail(Arc<Mutex<VecDeque<String>>>);

impl Tail {
    /// Reads `stderr` until the broker closes it, keeping its last [`TAIL_LINES`] lines.
    fn drain(&self, stderr: ChildStderr) {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { return };
            let mut lines = self.0.lock().unwrap_or_else(|p| p.into_inner());
            if lines.len() == TAIL_LINES {
                lines.pop_front();
            }
            lines.push_back(line.chars().take(TAIL_LINE_CHARS).collect());
        }
    }

    /// `: ` and the kept lines, or nothing when the broker wrote none.
    fn describe(&self) -> String {
        // The reader may still be taking the last lines of a broker that just exited.
        std::thread::sleep(Duration::from_millis(100));
        let lines = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if lines.is_empty() {
            String::new()
        } else {
            format!("; its last lines:\n{}", Vec::from(lines.clone()).join("\n"))
        }
    }
}
