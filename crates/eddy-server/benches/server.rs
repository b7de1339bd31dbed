//! The server under test of the HTTP benchmarks: this package's binary started over a broker, and
//! what they ask of it.

use std::ffi::OsString;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The server under test, stopped when dropped.
pub struct Server {
    pub child: Child,
    pub url: String,
    /// Its command line, for a restart.
    command: Vec<OsString>,
    data: TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A directory removed when dropped.
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Starts this package's server over `broker`, its data in a directory of its own named after
/// `bench`, with `args` added to its command line; returns once it answers.
pub fn start_server(broker: &str, bench: &str, args: &[&str]) -> anyhow::Result<Server> {
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let url = format!("http://127.0.0.1:{port}");
    let data = std::env::temp_dir().join(format!("eddy-{bench}-bench-{}", std::process::id()));
    std::fs::create_dir_all(&data)?;
    let mut command: Vec<OsString> = [
        "--listen",
        &url,
        "--bootstrap-servers",
        broker,
        "--data-dir",
    ]
    .iter()
    .map(OsString::from)
    .collect();
    command.push(data.clone().into_os_string());
    command.push("--service-id".into());
    command.push(format!("{bench}bench{}", std::process::id()).into());
    command.extend(args.iter().map(OsString::from));
    let child = spawn(&command, &data)?;
    let server = Server {
        child,
        url,
        command,
        data: TempDir(data),
    };
    server.wait_answering()?;
    Ok(server)
}

/// Runs the server binary with `command`, its output appended to `server.log` in `data`.
fn spawn(command: &[OsString], data: &std::path::Path) -> anyhow::Result<Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(data.join("server.log"))?;
    Ok(Command::new(env!("CARGO_BIN_EXE_eddy-server"))
        .args(command)
        .stdout(Stdio::from(log.try_clone()?))
        .stderr(Stdio::from(log))
        .spawn()?)
}

impl Server {
    /// Waits (a minute at most) until the server answers `/info`.
    fn wait_answering(&self) -> anyhow::Result<()> {
        let client = reqwest::blocking::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if client
                .get(format!("{}/info", self.url))
                .send()
                .is_ok_and(|r| r.status().is_success())
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        anyhow::bail!("eddy-server did not start")
    }

    /// Kills the server with SIGKILL and starts it again with the same data; returns once it
    /// answers `/info`.
    #[allow(dead_code)] // the pull benchmark's restore; not every benchmark restarts
    pub fn kill_and_restart(&mut self) -> anyhow::Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        self.child = spawn(&self.command, &self.data.0)?;
        self.wait_answering()
    }
}

/// Runs statements through `/ksql`.
pub async fn ksql(client: &reqwest::Client, url: &str, sql: &str) -> anyhow::Result<()> {
    let r = client
        .post(format!("{url}/ksql"))
        .header("content-type", "application/json")
        .body(serde_json::json!({"ksql": sql, "streamsProperties": {"auto.offset.reset": "earliest"}}).to_string())
        .send()
        .await?;
    let status = r.status();
    let body = r.text().await?;
    anyhow::ensure!(status.is_success(), "{sql}: {status} {body}");
    Ok(())
}

/// User plus system CPU seconds process `pid` has used (`/proc/<pid>/stat`, in clock ticks of 1/100 s).
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command (which may hold spaces) in parentheses; utime and stime are the
    // 14th and 15th of the whole line.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<f64> = after
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|f| f.parse().ok())
        .collect();
    fields.iter().sum::<f64>() / 100.0
}
