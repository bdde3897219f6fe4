use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;

use super::BusyPoll;
use crate::Config;

/// A connected pair of loopback sockets: (the one watched, the one that writes to it).
fn pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let writer = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (watched, _) = listener.accept().unwrap();
    (watched, writer)
}

/// Long enough that a wait that missed its socket fails the test instead of passing by timeout.
const LONG: Duration = Duration::from_secs(30);

#[test]
fn a_wait_ends_when_a_watched_socket_becomes_readable() {
    let poll = BusyPoll::new(LONG).unwrap();
    let (watched, mut writer) = pair();
    poll.watch(&watched);
    let started = Instant::now();
    std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(50));
            writer.write_all(b"x").unwrap();
        });
        poll.wait();
    });
    assert!(started.elapsed() < LONG / 2, "the wait ran {:?}", started.elapsed());
}

#[test]
fn a_wait_ends_after_its_window_when_nothing_arrives() {
    let poll = BusyPoll::new(Duration::from_millis(20)).unwrap();
    let (watched, _writer) = pair();
    poll.watch(&watched);
    let started = Instant::now();
    poll.wait();
    assert!(started.elapsed() >= Duration::from_millis(20));
}

#[test]
fn only_one_thread_polls_at_a_time() {
    let poll = BusyPoll::new(LONG).unwrap();
    let (watched, mut writer) = pair();
    poll.watch(&watched);
    std::thread::scope(|s| {
        let first = s.spawn(|| poll.wait());
        while poll.poll.try_lock().is_ok() {
            std::thread::yield_now();
        }
        let started = Instant::now();
        poll.wait();
        assert!(started.elapsed() < LONG / 2, "the second waited {:?}", started.elapsed());
        writer.write_all(b"x").unwrap();
        first.join().unwrap();
    });
}

/// The runtime `run` builds, with a window long enough that a socket the gateway failed to watch
/// would hold a read for all of it: the sessions' sockets end the busy poll, so tokio learns of
/// their bytes at once.
#[test]
fn the_gateways_runtime_wakes_for_bytes_on_a_session_socket() {
    let mut config = Config::from_toml(
        r#"
        [upstream]
        bootstrap_servers = "127.0.0.1:9"
        [gateway]
        worker_threads = 1
        [listeners.a]
        broker_port_base = 30000
        advertised = "b{node_id}:{port}"
        "#,
    )
    .unwrap();
    // Beyond what the configuration allows, so that a miss cannot hide in the window.
    config.busy_poll = Some(LONG);
    let runtime = super::build(&config).unwrap();
    let (watched, mut writer) = pair();
    watched.set_nonblocking(true).unwrap();
    let started = Instant::now();
    let read = runtime.spawn(async move {
        let mut stream = tokio::net::TcpStream::from_std(watched).unwrap();
        crate::upstream::tune(&stream, None).unwrap();
        let mut byte = [0; 1];
        stream.read_exact(&mut byte).await.unwrap();
    });
    std::thread::sleep(Duration::from_millis(200));
    writer.write_all(b"x").unwrap();
    runtime.block_on(read).unwrap();
    assert!(started.elapsed() < LONG / 2, "the read took {:?}", started.elapsed());
    // A worker polling sees no shutdown until its window ends; this one's is 30 s.
    runtime.shutdown_background();
}
