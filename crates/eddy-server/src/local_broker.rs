//! The private local broker the server starts when it is given no Kafka cluster: a supervised nisshi
//! child process on a free loopback port.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
        let io = |e: std::io::Error| external_err!("cannot start the local broker: {e}");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(io)?
            .port();
        let bootstrap = format!("127.0.0.1:{port}");
        writable(dir)?;
        let spawn = {
            let (bootstrap, dir) = (bootstrap.clone(), dir.to_path_buf());
            move || -> std::io::Result<Child> {
                let url = format!("tcp://{bootstrap}");
                Command::new("nisshi")
                    .args([
                        "broker",
                        "--listener-url",
                        &url,
                        "--advertised-listener-url",
                        &url,
                        "--storage-engine",
                        &storage,
                    ])
                    .args(["--group-initial-rebalance-delay", "100ms"])
                    .current_dir(&dir)
                    // The server's RUST_LOG is for Eddy: nisshi would log every request span.
                    .env_remove("RUST_LOG")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
            }
        };
        let child = Arc::new(Mutex::new(Some(spawn().map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => not_installed(),
            _ => io(e),
        })?)));
        for _ in 0..100 {
            if std::net::TcpStream::connect(&bootstrap).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if std::net::TcpStream::connect(&bootstrap).is_err() {
            return Err(external_err!(
                "the local broker did not start listening on {bootstrap}"
            ));
        }
        let watched = child.clone();
        std::thread::spawn(move || {
            loop {
                std::thread::sleep(Duration::from_secs(1));
                let mut guard = watched.lock().unwrap_or_else(|p| p.into_inner());
                let Some(c) = guard.as_mut() else { return };
                if let Ok(Some(status)) = c.try_wait() {
                    tracing::error!("the local broker exited ({status}); restarting it");
                    match spawn() {
                        Ok(new) => *guard = Some(new),
                        Err(e) => tracing::error!("cannot restart the local broker: {e}"),
                    }
                }
            }
        });
        Ok(LocalBroker { bootstrap, child })
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
