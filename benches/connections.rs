//! Connection scale: N client connections held open through the gateway (each first exchanges one
//! request and response, so its buffers have been used), the gateway's memory per idle connection
//! pair, and whether new connections still get through.
//!
//! `scripts/bench-connections [N]` (needs `ulimit -n` above 2 N + 100; the script raises it)

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const PORT: u16 = 39_400;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.trim().trim_end_matches(" kB").parse().ok()).unwrap()
}

/// A broker stand-in that answers each request with a small frame and holds the connection.
async fn hold(listener: TcpListener, accepted: Arc<AtomicUsize>) {
    loop {
        let (mut stream, _) = listener.accept().await.unwrap();
        accepted.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            let mut buf = vec![0; 1024];
            while let Ok(size) = stream.read_i32().await {
                if stream.read_exact(&mut buf[..size as usize]).await.is_err() {
                    return;
                }
                let mut reply = 14i32.to_be_bytes().to_vec();
                reply.extend(&buf[4..8]); // the correlation id
                reply.extend([0u8; 10]);
                if stream.write_all(&reply).await.is_err() {
                    return;
                }
            }
        });
    }
}

/// A ListOffsets v1 request (passed through untouched), `correlation_id` as given.
fn request(correlation_id: i32) -> Vec<u8> {
    let mut f = vec![0, 0, 0, 0, 0, 2, 0, 1];
    f.extend(correlation_id.to_be_bytes());
    f.extend([0, 4]);
    f.extend(b"scal");
    f.extend([0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]);
    let size = (f.len() - 4) as i32;
    f[..4].copy_from_slice(&size.to_be_bytes());
    f
}

async fn exchange(stream: &mut TcpStream, correlation_id: i32) {
    stream.write_all(&request(correlation_id)).await.unwrap();
    let size = stream.read_i32().await.unwrap();
    let mut body = vec![0; size as usize];
    stream.read_exact(&mut body).await.unwrap();
    assert_eq!(&body[..4], &correlation_id.to_be_bytes());
}

fn main() {
    let n: usize = std::env::args().skip(1).find(|a| !a.starts_with("--")).map_or(10_000, |a| a.parse().expect("N"));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    rt.block_on(async move {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        tokio::spawn(hold(listener, Arc::clone(&accepted)));

        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("gateway.toml");
        std::fs::write(
            &config,
            format!(
                "[upstream]\nbootstrap_servers = [\"{upstream}\"]\nconnect_timeout_ms = 2000\n[listeners.scale]\nbind = \"127.0.0.1\"\n\
                 bootstrap_port = {PORT}\nbroker_port_base = {}\nadvertised = \"127.0.0.1:{{port}}\"\n",
                PORT + 1
            ),
        )
        .unwrap();
        let mut gateway: Child = Command::new(env!("CARGO_BIN_EXE_kafka-gateway"))
            .args(["run", "--config"])
            .arg(&config)
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let pid = gateway.id();
        while TcpStream::connect(("127.0.0.1", PORT)).await.is_err() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Let the gateway's first discovery against the stand-in time out.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let before = rss_kib(pid);
        let baseline = accepted.load(Ordering::Relaxed);

        let start = Instant::now();
        let mut clients = Vec::with_capacity(n);
        let mut failures = 0;
        for i in 0..n {
            match TcpStream::connect(("127.0.0.1", PORT)).await {
                Ok(mut stream) => {
                    exchange(&mut stream, i as i32).await;
                    clients.push(stream);
                }
                Err(e) => {
                    failures += 1;
                    if failures == 1 {
                        eprintln!("connection {i} failed: {e}");
                    }
                }
            }
        }
        let opened = start.elapsed();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let after = rss_kib(pid);
        let upstream_pairs = accepted.load(Ordering::Relaxed) - baseline;

        // One more, and every held connection still answers.
        let mut late = TcpStream::connect(("127.0.0.1", PORT)).await.expect("a new connection after N");
        exchange(&mut late, -1).await;
        for (i, stream) in clients.iter_mut().enumerate().step_by(97) {
            exchange(stream, i as i32).await;
        }
        println!("{n} connections opened through the gateway in {opened:.1?}, {failures} failed; the stand-in broker saw {upstream_pairs} upstream connections");
        println!(
            "gateway RSS {:.1} MiB idle, {:.1} MiB with {n} idle connection pairs: {:.1} KiB per pair",
            before as f64 / 1024.0,
            after as f64 / 1024.0,
            (after - before) as f64 / n as f64
        );
        println!("a new connection and every 97th held one still answered");
        let _ = gateway.kill();
        let _ = gateway.wait();
    });
}
