//! What the gateway's busy poll (`gateway.busy_poll_us`) costs and buys at fixed request rates:
//! small acks=1 Produce requests to broker 1, one at a time, paced at each rate, through a gateway
//! started with each window in turn (and directly, for the latency a request takes without a proxy).
//! Reported per rate and window: the gateway's CPU (share of one core, and µs per request) and the
//! round trip's p50/p99.
//!
//! `cargo bench --bench e2e -- --busy-poll-study [--poll-rates 0,100,1000,10000] [--poll-windows 0,200]
//! [--poll-secs 10]`

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use hdrhistogram::Histogram;
use kafka_protocol::messages::{ApiKey, RequestHeader};
use kafka_protocol::protocol::Encodable;

use super::{PORT_BASE, Proxy, produce_request, record, usage_of};

/// One cell of the study: a rate through one path.
struct Cell {
    /// The gateway's CPU over the cell, or `None` for the direct path.
    cpu: Option<Duration>,
    requests: u64,
    elapsed: Duration,
    latency: Histogram<u64>,
}

pub fn study(upstream: &str, direct_broker_1: u16, rates: &[u32], windows: &[u64], secs: u64) {
    let topic = "latency";
    println!("busy poll study: {secs} s per rate and path; Produce v9 acks=1, 100 B, one at a time to broker 1");
    let mut rows = Vec::new();
    for &rate in rates {
        let direct = run(direct_broker_1, topic, rate, secs, None);
        rows.push((rate, "direct".to_owned(), direct));
        for &window in windows {
            let set = format!("gateway.busy_poll_us={window}");
            let gateway = Proxy::gateway_with(upstream, &["--set", &set]);
            let cell = run(PORT_BASE + 1, topic, rate, secs, Some(gateway.child.id()));
            rows.push((rate, format!("gateway, poll {window} µs"), cell));
        }
    }
    println!(
        "\n{:>8}  {:<22} {:>9} {:>14} {:>16} {:>9} {:>9}",
        "req/s", "path", "requests", "proxy CPU %", "proxy µs/request", "p50 µs", "p99 µs"
    );
    for (rate, path, cell) in rows {
        let (share, per_request) = match cell.cpu {
            Some(cpu) => (
                format!("{:.2}", 100.0 * cpu.as_secs_f64() / cell.elapsed.as_secs_f64()),
                if cell.requests > 0 {
                    format!("{:.1}", cpu.as_secs_f64() * 1e6 / cell.requests as f64)
                } else {
                    "-".into()
                },
            ),
            None => ("-".into(), "-".into()),
        };
        let quantile = |q| {
            if cell.latency.is_empty() {
                "-".into()
            } else {
                format!("{:.1}", cell.latency.value_at_quantile(q) as f64 / 1e3)
            }
        };
        println!(
            "{rate:>8}  {path:<22} {:>9} {share:>14} {per_request:>16} {:>9} {:>9}",
            cell.requests,
            quantile(0.5),
            quantile(0.99)
        );
    }
}

/// Sends requests to the broker behind `port` at `rate` per second for `secs` (rate 0: an open,
/// idle connection), measuring `pid`'s CPU over that time.
fn run(port: u16, topic: &str, rate: u32, secs: u64, pid: Option<u32>) -> Cell {
    let frame = request_frame(topic);
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_nodelay(true).unwrap();
    // A first exchange, outside the measurement: the gateway dials the broker on it.
    exchange(&mut stream, &frame);
    // Fine sleeps: the kernel may otherwise add 50 µs to each, a tenth of the interval at 10,000/s.
    // SAFETY: prctl(PR_SET_TIMERSLACK) only changes this thread's timer slack.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1_000, 0, 0, 0) };
    std::thread::sleep(Duration::from_millis(500));
    let before = pid.map(|pid| usage_of(pid).cpu);
    let started = Instant::now();
    let end = started + Duration::from_secs(secs);
    let mut latency = Histogram::<u64>::new(3).unwrap();
    let mut requests = 0;
    if rate == 0 {
        std::thread::sleep(end - started);
    } else {
        let interval = Duration::from_secs(1) / rate;
        let mut next = started;
        while next < end {
            let now = Instant::now();
            if next > now {
                std::thread::sleep(next - now);
            }
            let sent = Instant::now();
            exchange(&mut stream, &frame);
            latency.record(sent.elapsed().as_nanos() as u64).unwrap();
            requests += 1;
            // Paced, not closed-loop: a slow answer does not shift the requests after it.
            next += interval;
        }
    }
    let elapsed = started.elapsed();
    let cpu = pid.map(|pid| usage_of(pid).cpu - before.unwrap());
    Cell { cpu, requests, elapsed, latency }
}

fn request_frame(topic: &str) -> Vec<u8> {
    let request = produce_request(topic, &[record(0, Bytes::from_static(&[b'l'; 100]))]);
    let mut frame = BytesMut::new();
    frame.put_i32(0);
    RequestHeader::default()
        .with_request_api_key(ApiKey::Produce as i16)
        .with_request_api_version(9)
        .with_correlation_id(1)
        .encode(&mut frame, ApiKey::Produce.request_header_version(9))
        .unwrap();
    request.encode(&mut frame, 9).unwrap();
    let size = (frame.len() - 4) as i32;
    frame[..4].copy_from_slice(&size.to_be_bytes());
    frame.to_vec()
}

fn exchange(stream: &mut TcpStream, frame: &[u8]) {
    stream.write_all(frame).unwrap();
    let mut size = [0; 4];
    stream.read_exact(&mut size).unwrap();
    let mut response = vec![0; i32::from_be_bytes(size) as usize];
    stream.read_exact(&mut response).unwrap();
}
