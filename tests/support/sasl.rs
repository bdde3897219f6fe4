//! A cluster that enforces SASL: librdkafka's mock cluster (which has no SASL) behind
//! sasl_front.py, a SASL listener with scramp's SCRAM server and a PLAIN check, one port per
//! broker, which the brokers advertise. No broker in reach here enforces SASL itself (tansu 0.6
//! with --authentication refuses even ApiVersions before authentication, which every client sends
//! first; the mock has no SASL at all), so the front plays that part of a Kafka listener.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::client::DefaultClientContext;
use rdkafka::mocking::MockCluster;

use super::{OwnedMock, free_ports};

pub struct SaslCluster {
    owned: OwnedMock,
    /// The front's port for broker N is `ports[N - 1]`.
    pub ports: [u16; 3],
    front: Child,
    /// What the front printed: `auth ok USER MECHANISM vN [reauth]`, `auth failed …`, ….
    events: Arc<Mutex<Vec<String>>>,
}

impl SaslCluster {
    /// `users` as NAME:PASSWORD; `lifetime_ms` > 0 makes sessions expire (KIP-368); `legacy`
    /// offers SaslHandshake v0 only, as Kafka 0.10 did, so that clients send bare tokens.
    pub fn start(users: &[&str], lifetime_ms: u64, legacy: bool) -> Self {
        let owned = OwnedMock::new();
        let base = free_ports(3);
        let ports = [base + 1, base + 2, base + 3];
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/support/sasl_front.py");
        let mut command = Command::new("python3");
        command.arg(script).arg("--lifetime-ms").arg(lifetime_ms.to_string());
        if legacy {
            command.arg("--legacy");
        }
        for user in users {
            command.args(["--user", user]);
        }
        for (port, broker) in ports.iter().zip(owned.plaintext()) {
            command.arg(format!("{port}={broker}"));
        }
        let mut front = command.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().expect("python3");
        let events = Arc::new(Mutex::new(Vec::new()));
        let (stdout, sink) = (front.stdout.take().unwrap(), Arc::clone(&events));
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                eprintln!("sasl front: {line}");
                sink.lock().unwrap().push(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        while events.lock().unwrap().iter().filter(|l| l.starts_with("listening")).count() < 3 {
            assert!(Instant::now() < deadline, "the SASL front did not start (scripts/test-tools installs scramp)");
            std::thread::sleep(Duration::from_millis(20));
        }
        owned.advertise(&ports);
        Self { owned, ports, front, events }
    }

    pub fn mock(&self) -> MockCluster<'static, DefaultClientContext> {
        self.owned.mock()
    }

    pub fn bootstrap(&self) -> String {
        self.ports.map(|p| format!("127.0.0.1:{p}")).join(",")
    }

    /// The SASL listener's own addresses (for a TLS front before it).
    pub fn front_addresses(&self) -> Vec<String> {
        self.ports.iter().map(|p| format!("127.0.0.1:{p}")).collect()
    }

    /// Makes the brokers advertise `ports` instead (a TLS front before this one).
    pub fn advertise(&self, ports: &[u16]) {
        self.owned.advertise(ports);
    }

    /// How many events so far start with `prefix`.
    pub fn count(&self, prefix: &str) -> usize {
        self.events.lock().unwrap().iter().filter(|l| l.starts_with(prefix)).count()
    }

    pub fn events(&self) -> Vec<String> {
        self.events.lock().unwrap().clone()
    }
}

impl Drop for SaslCluster {
    fn drop(&mut self) {
        let _ = self.front.kill();
        let _ = self.front.wait();
    }
}

/// librdkafka properties for SASL over plaintext with `mechanism` as `user`.
pub fn sasl_client(mechanism: &str, user: &str, password: &str) -> Vec<String> {
    [
        "security.protocol=SASL_PLAINTEXT".to_owned(),
        format!("sasl.mechanism={mechanism}"),
        format!("sasl.username={user}"),
        format!("sasl.password={password}"),
    ]
    .into_iter()
    .flat_map(|p| ["-X".to_owned(), p])
    .collect()
}
