//! The server under test of the HTTP benchmarks: this package's binary started over a broker, and
//! what they ask of it.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The server under test, stopped when dropped.
pub struct Server {
    pub child: Child,
    pub url: String,
    _data: TempDir,
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
    let log = std::fs::File::create(data.join("server.log"))?;
    let child = Command::new(env!("CARGO_BIN_EXE_eddy-server"))
        .args(["--listen", &url, "--bootstrap-servers", broker])
        .arg("--data-dir")
        .arg(&data)
        .args([
            "--service-id",
            &format!("{bench}bench{}", std::process::id()),
        ])
        .args(args)
        .stdout(Stdio::from(log.try_clone()?))
        .stderr(Stdio::from(log))
        .spawn()?;
    let server = Server {
        child,
        url,
        _data: TempDir(data),
    };
    let client = reqwest::blocking::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if client
            .get(format!("{}/info", server.url))
            .send()
            .is_ok_and(|r| r.status().is_success())
        {
            return Ok(server);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    anyhow::bail!("eddy-server did not start")
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
