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

#[test]
fn the_window_shrinks_under_sparse_traffic_and_grows_back_for_quick_answers() {
    let us = Duration::from_micros;
    let max = us(200);
    // Idle periods the window covered change nothing.
    assert_eq!(super::adapt(us(200), us(60), max), us(200));
    // Requests a second apart: no poll could have caught them, so each halves the window, down to
    // nothing within a few requests.
    let mut window = max;
    let mut steps = 0;
    while window > Duration::ZERO {
        window = super::adapt(window, Duration::from_secs(1), max);
        steps += 1;
    }
    assert_eq!(steps, 8, "200 µs halves to nothing in 8 sparse requests");
    // Then answers 60 µs apart: the window grows back until it covers them, and stays.
    window = super::adapt(window, us(60), max);
    assert_eq!(window, us(25));
    window = super::adapt(window, us(60), max);
    assert_eq!(window, us(50));
    window = super::adapt(window, us(60), max);
    assert_eq!(window, us(100));
    assert_eq!(super::adapt(window, us(60), max), us(100));
    // Never beyond the configured longest.
    assert_eq!(super::adapt(us(150), us(190), max), max);
}

#[test]
fn the_worker_that_polled_tunes_the_window_when_it_wakes() {
    let poll = BusyPoll::new(Duration::from_millis(5)).unwrap();
    poll.wait();
    std::thread::sleep(Duration::from_millis(20));
    poll.woken();
    assert_eq!(poll.window(), Duration::from_micros(2500), "an idle period beyond the longest window halves it");
    // A thread that did not poll has nothing to say.
    std::thread::scope(|s| {
        s.spawn(|| poll.woken());
    });
    assert_eq!(poll.window(), Duration::from_micros(2500));
}
