//! The gateway as operators run it: the binary in a process of its own, so that its memory
//! (VmRSS, VmHWM) is its own and nothing of the test's.

use std::net::SocketAddr;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use super::free_ports;

/// One command of the gateway binary (`validate`, `check`, `plan`, …) run to its end, its log
/// level left to the binary's default whatever the test's `RUST_LOG`.
pub fn command(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kafka-gateway")).args(args).env_remove("RUST_LOG").output().unwrap()
}

pub struct GatewayProcess {
    pub child: Child,
    pub admin: SocketAddr,
    pub bootstrap: SocketAddr,
    _dir: tempfile::TempDir,
}

impl GatewayProcess {
    /// Runs `kafka-gateway run` in front of `bootstrap_servers` with one group `g` on loopback
    /// (advertising 127.0.0.1), its admin endpoint on, and `extra` TOML appended.
    pub async fn start(bootstrap_servers: &str, extra: &str) -> Self {
        let base = free_ports(12);
        let admin = SocketAddr::from(([127, 0, 0, 1], base + 11));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gateway.toml");
        std::fs::write(
            &path,
            format!(
                "[upstream]\nbootstrap_servers = \"{bootstrap_servers}\"\nmetadata_refresh_secs = 2\n\
                 [listeners.g]\nbind = \"127.0.0.1\"\nbootstrap_port = {base}\nbroker_port_base = {base}\n\
                 advertised = \"127.0.0.1:{{port}}\"\n[admin]\nbind = \"{admin}\"\n{extra}\n"
            ),
        )
        .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_kafka-gateway"))
            .args(["run", "--config"])
            .arg(&path)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .spawn()
            .expect("the gateway binary starts");
        let gateway = Self { child, admin, bootstrap: SocketAddr::from(([127, 0, 0, 1], base)), _dir: dir };
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let answer = kafka_gateway::admin::get(&admin.to_string(), "/readyz", Duration::from_secs(5)).await;
            if matches!(answer, Ok((200, _))) {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "the gateway did not become ready: {answer:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        gateway
    }

    /// The sum of the series of `/metrics` that start with `series` (a whole series, with its
    /// labels as the gateway orders them, or a family's name and `{`); 0 when there are none.
    pub async fn metric(&self, series: &str) -> f64 {
        let (_, body) = kafka_gateway::admin::get(&self.admin.to_string(), "/metrics", Duration::from_secs(5))
            .await
            .expect("the admin endpoint answers");
        body.lines()
            .filter(|l| l.starts_with(series))
            .filter_map(|l| l.rsplit_once(' '))
            .map(|(_, v)| v.trim().parse::<f64>().unwrap())
            .sum()
    }

    /// A line of /proc/PID/status in KiB: VmRSS (now) or VmHWM (the peak).
    pub fn memory_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field).and_then(|v| v.strip_prefix(':')))
            .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc/PID/status"))
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
