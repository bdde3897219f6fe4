use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::BusyPoll;
use crate::Config;
use crate::broker::HostPort;
use crate::session::{Group, Limits, Session};
use crate::upstream::{Dialer, Link, Target};

/// A connected pair of loopback sockets: (the one watched, the one that writes to it).
fn pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let writer = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (watched, _) = listener.accept().unwrap();
    (watched, writer)
}

/// Long enough that a wait that missed its socket fails the test instead of passing by timeout.
const LONG: Duration = Duration::from_secs(5);

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
    let written = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        // Waits again until the byte is written: a wait that found the lock held by this thread's
        // probe below returned at once, and a lone wait would leave the probe spinning for ever.
        let first = s.spawn(|| {
            while !written.load(std::sync::atomic::Ordering::Acquire) {
                poll.wait();
            }
        });
        while poll.poll.try_lock().is_ok() {
            std::thread::yield_now();
        }
        let started = Instant::now();
        poll.wait();
        assert!(started.elapsed() < LONG / 2, "the second waited {:?}", started.elapsed());
        written.store(true, std::sync::atomic::Ordering::Release);
        writer.write_all(b"x").unwrap();
        first.join().unwrap();
    });
}

/// The runtime `run` builds, with a window long enough that a socket a session failed to watch
/// would hold a read for all of it: a session's sockets end the busy poll, so tokio learns of their
/// bytes at once, in both directions.
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
    let broker = TcpListener::bind("127.0.0.1:0").unwrap();
    let upstream = HostPort { host: "127.0.0.1".into(), port: broker.local_addr().unwrap().port() };
    let front = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut client = TcpStream::connect(front.local_addr().unwrap()).unwrap();
    let (accepted, peer) = front.accept().unwrap();
    accepted.set_nonblocking(true).unwrap();
    let group = Arc::new(Group {
        name: "a".into(),
        names: Arc::new(crate::fixture::Names { group: config.groups[0].clone(), racks: Default::default() }),
        learner: std::sync::Weak::<crate::gateway::Gateway>::new(),
        dialer: Arc::new(Dialer::new(vec![upstream], Default::default(), Link::plain(LONG))),
        tls: None,
        limits: Limits { request: 1 << 20, response: 1 << 20, splice_min: 0 },
        caps: Default::default(),
        keepalive: None,
        recorder: None,
        counters: Default::default(),
        access: Arc::new(crate::access::Gate::new(Default::default(), LONG)),
        budget: crate::budget::Budget::unlimited(),
    });
    let _session = runtime.spawn(async move {
        let accepted = tokio::net::TcpStream::from_std(accepted).unwrap();
        Session::new(group, Target::Bootstrap, peer, Default::default()).serve(accepted).await
    });
    // The gateway dials the broker when the first request arrives.
    let mut dialed = None;
    // The poll does not watch a connect completing (a socket becoming writable), so the first
    // exchange may wait for the window; after it, every byte must be seen at once.
    for round in 0..3 {
        let request = [0, 0, 0, 10, 0, 2, 0, 0, 0, 0, 0, round, 0, 0]; // ListOffsets v0: forwarded
        let response = [0, 0, 0, 4, 0, 0, 0, round];
        // Let the worker go idle, and poll, before each byte arrives.
        std::thread::sleep(Duration::from_millis(200));
        let started = Instant::now();
        client.write_all(&request).unwrap();
        let broker = dialed.get_or_insert_with(|| broker.accept().unwrap().0);
        let mut got = [0; 14];
        broker.read_exact(&mut got).unwrap();
        let request_took = started.elapsed();
        assert_eq!(got, request);
        std::thread::sleep(Duration::from_millis(200));
        let started = Instant::now();
        broker.write_all(&response).unwrap();
        let mut answer = [0; 8];
        client.read_exact(&mut answer).unwrap();
        assert_eq!(answer, response);
        if round > 0 {
            assert!(request_took < LONG / 2, "the request took {request_took:?}");
            assert!(started.elapsed() < LONG / 2, "the response took {:?}", started.elapsed());
        }
    }
    // A worker polling sees no shutdown until its window ends.
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
