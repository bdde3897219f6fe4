//! Session tests over in-memory pipes and loopback sockets: what the broker receives and what the client gets back.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::metadata_response::MetadataResponseBroker;
use kafka_protocol::messages::{BrokerId, MetadataResponse, ResponseHeader};
use kafka_protocol::protocol::StrBytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, DuplexStream, duplex};
use tokio::task::JoinHandle;

use super::testing::{proxy, proxy_sockets};
use super::*;
use crate::broker::{HostPort, NameError, Named};
use crate::rewrite;

struct Fake;

impl Advertise for Fake {
    fn advertise(&self, b: &Named<'_>) -> Result<HostPort, NameError> {
        Ok(HostPort { host: format!("b{}.example", b.node_id), port: 19000 + b.node_id as u16 })
    }
}

/// A running proxy between a test client and a test broker, over pipes of `pipe` bytes so that
/// every frame crosses in pieces.
struct Rig {
    client: DuplexStream,
    broker: DuplexStream,
    proxy: JoinHandle<Result<Closed, SessionError>>,
}

fn rig(pipe: usize, max_frame_bytes: usize) -> Rig {
    let (client, client_side) = duplex(pipe);
    let (broker, broker_side) = duplex(pipe);
    let limits = Limits { request: max_frame_bytes, response: max_frame_bytes, splice_min: 0 };
    let proxy = tokio::spawn(proxy(client_side, broker_side, limits, Arc::new(Fake)));
    Rig { client, broker, proxy }
}

fn request(api_key: i16, version: i16, correlation_id: i32, body: &[u8]) -> Vec<u8> {
    let mut f = BytesMut::new();
    f.put_i32(0);
    f.put_i16(api_key);
    f.put_i16(version);
    f.put_i32(correlation_id);
    f.put_i16(4);
    f.put_slice(b"test");
    f.put_slice(body);
    let size = (f.len() - 4) as i32;
    f[..4].copy_from_slice(&size.to_be_bytes());
    f.to_vec()
}

fn response(correlation_id: i32, body: &[u8]) -> Vec<u8> {
    let mut f = ((body.len() + 4) as i32).to_be_bytes().to_vec();
    f.extend(correlation_id.to_be_bytes());
    f.extend(body);
    f
}

async fn read_exactly(stream: &mut (impl AsyncRead + Unpin), n: usize) -> Vec<u8> {
    let mut out = vec![0; n];
    stream.read_exact(&mut out).await.unwrap();
    out
}

#[tokio::test]
async fn pipelined_frames_cross_in_pieces_as_the_same_bytes() {
    let mut r = rig(7, 1 << 20);
    // Fetch, ListOffsets, a vendor key, and a large Produce with acks=1, pipelined.
    let mut produce_body = vec![0xff, 0xff, 0, 1];
    produce_body.extend((0..50_000u32).map(|i| i as u8));
    let requests = [
        request(1, 12, 1, &[1, 2, 3]),
        request(2, 5, 2, &[]),
        request(10_001, 0, 3, &[9; 100]),
        request(0, 8, 4, &produce_body),
    ];
    let all: Vec<u8> = requests.concat();
    let (mut client_rd, mut client_wr) = tokio::io::split(r.client);
    let writer = tokio::spawn(async move { client_wr.write_all(&all).await.map(|_| client_wr) });
    let forwarded = read_exactly(&mut r.broker, requests.iter().map(Vec::len).sum()).await;
    assert_eq!(forwarded, requests.concat());
    let _client_wr = writer.await.unwrap().unwrap();

    let responses: Vec<Vec<u8>> = (1..=4).map(|id| response(id, &vec![id as u8; 3000])).collect();
    let all = responses.concat();
    let mut broker = r.broker;
    let writer = tokio::spawn(async move { broker.write_all(&all).await.map(|_| broker) });
    let mut back = vec![0; responses.iter().map(Vec::len).sum()];
    client_rd.read_exact(&mut back).await.unwrap();
    assert_eq!(back, responses.concat());
    let _broker = writer.await.unwrap().unwrap();
    assert!(!r.proxy.is_finished());
}

#[tokio::test]
async fn produce_with_acks_zero_expects_no_response() {
    let mut r = rig(64, 1 << 20);
    let acks0 = request(0, 8, 1, &[0xff, 0xff, 0, 0]);
    let meta = request(18, 0, 2, &[]);
    r.client.write_all(&[acks0.clone(), meta.clone()].concat()).await.unwrap();
    read_exactly(&mut r.broker, acks0.len() + meta.len()).await;
    // Only the second request is answered; the proxy must match it, not the Produce.
    let answer = response(2, &[0, 0, 0, 0, 0, 0]);
    r.broker.write_all(&answer).await.unwrap();
    let back = read_exactly(&mut r.client, answer.len()).await;
    assert_eq!(&back[4..8], &2i32.to_be_bytes());
}

#[tokio::test]
async fn metadata_responses_are_rewritten_others_around_them_are_not() {
    let r = rig(5, 1 << 20);
    let requests = [request(2, 5, 1, &[]), request(3, 12, 2, &[]), request(2, 5, 3, &[])];
    let (mut client_rd, mut client_wr) = tokio::io::split(r.client);
    let all = requests.concat();
    let _writer = tokio::spawn(async move { client_wr.write_all(&all).await.map(|_| client_wr) });
    let mut broker = r.broker;
    read_exactly(&mut broker, requests.iter().map(Vec::len).sum()).await;

    let metadata = MetadataResponse::default().with_brokers(vec![
        MetadataResponseBroker::default()
            .with_node_id(BrokerId(2))
            .with_host(StrBytes::from_static_str("10.1.1.2"))
            .with_port(9092),
    ]);
    let header = ResponseHeader::default().with_correlation_id(2);
    let mut meta_frame = rewrite::encode(&header, &metadata, 12, &[]).unwrap().to_vec();
    let before = response(1, b"first");
    let after = response(3, b"third");
    let mut stream = before.clone();
    stream.append(&mut meta_frame);
    stream.extend(&after);
    let _broker_writer = tokio::spawn(async move { broker.write_all(&stream).await.map(|_| broker) });

    assert_eq!(read_exactly(&mut client_rd, before.len()).await, before);
    let size = i32::from_be_bytes(read_exactly(&mut client_rd, 4).await.try_into().unwrap()) as usize;
    let mut frame = size.to_be_bytes()[4..].to_vec();
    frame.extend(read_exactly(&mut client_rd, size).await);
    let rewrite::Decoded { header: h, message: m, .. } =
        rewrite::decode::<MetadataResponse>(Bytes::from(frame), 12).unwrap();
    assert_eq!(h.correlation_id, 2);
    assert_eq!((m.brokers[0].host.as_str(), m.brokers[0].port), ("b2.example", 19002));
    assert_eq!(read_exactly(&mut client_rd, after.len()).await, after);
}

#[tokio::test]
async fn an_oversized_request_ends_the_connection_before_reaching_the_broker() {
    let mut r = rig(1024, 1000);
    let big = request(0, 8, 1, &vec![0; 2000]);
    r.client.write_all(&big[..64]).await.unwrap();
    let err = r.proxy.await.unwrap().unwrap_err();
    assert!(matches!(err, SessionError::Frame(FrameError::TooLarge { size: 2014, limit: 1000 })), "{err}");
    let mut nothing = Vec::new();
    r.broker.read_to_end(&mut nothing).await.unwrap();
    assert!(nothing.is_empty(), "no byte of the refused frame reached the broker");
}

#[tokio::test]
async fn a_negative_size_is_malformed() {
    let mut r = rig(1024, 1000);
    r.client.write_all(&[0xff, 0xff, 0xff, 0xf0, 1, 2, 3]).await.unwrap();
    let err = r.proxy.await.unwrap().unwrap_err();
    assert!(matches!(err, SessionError::Frame(FrameError::BadSize(-16))), "{err}");
}

#[tokio::test]
async fn versions_that_could_leak_addresses_are_refused_before_reaching_the_broker() {
    let mut r = rig(1024, 1 << 20);
    let ok = request(3, 12, 1, &[]);
    r.client.write_all(&ok).await.unwrap();
    assert_eq!(read_exactly(&mut r.broker, ok.len()).await, ok);
    // Refused together with a request that shares its read: neither is forwarded, since the
    // connection closes before any answer could reach the client (a Produce sent anyway would be
    // written without the client hearing of it, and retried).
    let produce_v10 = request(0, 14, 2, &[0, 0, 0xff, 0xff]);
    r.client.write_all(&[request(2, 5, 3, &[]), produce_v10].concat()).await.unwrap();
    let err = r.proxy.await.unwrap().unwrap_err();
    assert!(matches!(err, SessionError::Refused(Refused { api_key: 0, api_version: 14, .. })), "{err}");
    let mut forwarded = Vec::new();
    r.broker.read_to_end(&mut forwarded).await.unwrap();
    assert!(forwarded.is_empty(), "{forwarded:?}");
}

#[tokio::test]
async fn a_response_that_skips_a_pending_request_ends_the_connection() {
    let mut r = rig(1024, 1 << 20);
    let requests = [request(2, 5, 1, &[]), request(2, 5, 2, &[])];
    r.client.write_all(&requests.concat()).await.unwrap();
    read_exactly(&mut r.broker, requests.iter().map(Vec::len).sum()).await;
    // Kafka answers in order: an answer to the second before the first means the pairing is lost.
    r.broker.write_all(&response(2, b"?")).await.unwrap();
    let err = r.proxy.await.unwrap().unwrap_err();
    assert!(matches!(err, SessionError::Order(OrderError { expected: 1, got: 2 })), "{err}");
}

#[tokio::test]
async fn an_api_versions_request_newer_than_the_gateway_gets_the_kip_511_fallback() {
    let mut r = rig(1024, 1 << 20);
    let req = request(18, 9, 5, &[0]);
    r.client.write_all(&req).await.unwrap();
    read_exactly(&mut r.broker, req.len()).await;
    // Whatever a future broker answers in a layout the gateway does not know...
    r.broker.write_all(&response(5, &[0, 0, 0xde, 0xad, 0xbe, 0xef])).await.unwrap();
    let size = i32::from_be_bytes(read_exactly(&mut r.client, 4).await.try_into().unwrap()) as usize;
    let body = read_exactly(&mut r.client, size).await;
    // ...the client gets error 35 in the v0 layout, naming ApiVersions v0-v4.
    assert_eq!(body, [0, 0, 0, 5, 0, 35, 0, 0, 0, 1, 0, 18, 0, 0, 0, 4]);
}

#[tokio::test]
async fn a_broker_closing_mid_response_is_reported() {
    let mut r = rig(1024, 1 << 20);
    let req = request(3, 1, 1, &[]);
    r.client.write_all(&req).await.unwrap();
    read_exactly(&mut r.broker, req.len()).await;
    r.broker.write_all(&response(1, &[0; 10])[..9]).await.unwrap();
    drop(r.broker);
    let err = r.proxy.await.unwrap().unwrap_err();
    assert!(matches!(err, SessionError::Truncated), "{err}");
}

#[tokio::test]
async fn responses_stream_at_any_size_but_one_held_for_rewrite_has_a_limit() {
    let mut r = rig(1 << 16, 1000);
    let requests = [request(2, 5, 1, &[]), request(3, 12, 2, &[])];
    r.client.write_all(&requests.concat()).await.unwrap();
    read_exactly(&mut r.broker, requests.iter().map(Vec::len).sum()).await;
    // A 5000-byte ListOffsets answer streams through; a 2000-byte Metadata answer cannot be held.
    let big_forward = response(1, &[7; 5000]);
    r.broker.write_all(&big_forward).await.unwrap();
    assert_eq!(read_exactly(&mut r.client, big_forward.len()).await, big_forward);
    r.broker.write_all(&response(2, &[0; 2000])).await.unwrap();
    let err = r.proxy.await.unwrap().unwrap_err();
    assert!(matches!(err, SessionError::ResponseTooLarge { size: 2008, limit: 1000 }), "{err}");
}

#[tokio::test]
async fn a_large_response_held_for_rewrite_leaves_no_large_buffer_in_the_pool() {
    // Over loopback TCP: only a socket lets a pump wait without a buffer, and so give it back.
    let (client_listener, broker_listener) = (
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
    );
    let mut client = TcpStream::connect(client_listener.local_addr().unwrap()).await.unwrap();
    let (gateway_side, _) = client_listener.accept().await.unwrap();
    let upstream = TcpStream::connect(broker_listener.local_addr().unwrap()).await.unwrap();
    let (mut broker, _) = broker_listener.accept().await.unwrap();
    let limits = Limits { request: 1 << 20, response: 8 << 20, splice_min: 0 };
    let _proxy = tokio::spawn(proxy_sockets(gateway_side, upstream, limits, Arc::new(Fake), CancellationToken::new()));
    let requests = [request(3, 12, 1, &[]), request(2, 5, 2, &[])];
    client.write_all(&requests.concat()).await.unwrap();
    read_exactly(&mut broker, requests.iter().map(Vec::len).sum()).await;

    // A 2 MiB Metadata answer (bytes after its last field pass through the rewrite as they are),
    // then a small answer that streams.
    let header = ResponseHeader::default().with_correlation_id(1);
    let mut metadata = rewrite::encode(&header, &MetadataResponse::default(), 12, &[]).unwrap().to_vec();
    metadata.extend(std::iter::repeat_n(9u8, 2 << 20));
    let size = (metadata.len() - 4) as i32;
    metadata[..4].copy_from_slice(&size.to_be_bytes());
    let small = response(2, b"small");
    let (most, mut last) = (metadata[..metadata.len() - 100].to_vec(), metadata[metadata.len() - 100..].to_vec());
    last.extend(&small);
    // The last 100 bytes come later: a buffer holding all the rest has less than a read's worth of
    // room left, which is when a pump's buffer would grow.
    let _broker_writer = tokio::spawn(async move {
        broker.write_all(&most).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        broker.write_all(&last).await.map(|_| broker)
    });
    assert_eq!(read_exactly(&mut client, metadata.len()).await, metadata);
    assert_eq!(read_exactly(&mut client, small.len()).await, small);

    // The response pump now waits for bytes and has given its buffer back to this thread's pool
    // (the proxy runs on this thread). It is no larger than a read chunk, even regrown to reuse all
    // its allocation holds: a pooled buffer keeps its allocation while the process runs.
    let mut pooled = Vec::new();
    for _ in 0..1000 {
        pooled = POOL.with_borrow_mut(std::mem::take);
        if !pooled.is_empty() {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(!pooled.is_empty(), "the response pump gave its buffer back");
    for mut buf in pooled {
        buf.clear();
        buf.reserve(READ_CHUNK);
        assert!(buf.capacity() <= 2 * READ_CHUNK, "a pooled buffer holds {} bytes", buf.capacity());
    }
}

/// A proxy between a test client and a test broker over loopback TCP, splicing what goes on for
/// at least 16 KiB past a read and draining when `drain` is cancelled: (client, broker, the proxy's
/// task).
async fn socket_rig_draining(
    drain: CancellationToken,
) -> (TcpStream, TcpStream, JoinHandle<Result<Closed, SessionError>>) {
    let (client_listener, broker_listener) = (
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
    );
    let client = TcpStream::connect(client_listener.local_addr().unwrap()).await.unwrap();
    let (gateway_side, _) = client_listener.accept().await.unwrap();
    let upstream = TcpStream::connect(broker_listener.local_addr().unwrap()).await.unwrap();
    let (broker, _) = broker_listener.accept().await.unwrap();
    let limits = Limits { request: 8 << 20, response: 8 << 20, splice_min: 16 << 10 };
    let proxy = tokio::spawn(proxy_sockets(gateway_side, upstream, limits, Arc::new(Fake), drain));
    (client, broker, proxy)
}

async fn socket_rig() -> (TcpStream, TcpStream, JoinHandle<Result<Closed, SessionError>>) {
    socket_rig_draining(CancellationToken::new()).await
}

/// A Produce v8 body with acks=1 (so that it is answered) before `records`.
fn produce_body(records: &[u8]) -> Vec<u8> {
    [&[0xff, 0xff, 0, 1][..], records].concat()
}

/// Writes `bytes` in pieces of `piece` with a pause between them, so that frames arrive in parts.
fn trickle(mut to: TcpStream, bytes: Vec<u8>, piece: usize) -> JoinHandle<TcpStream> {
    tokio::spawn(async move {
        for part in bytes.chunks(piece) {
            to.write_all(part).await.unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        to
    })
}

#[tokio::test]
async fn large_frames_cross_in_the_kernel_as_the_same_bytes() {
    let (client, mut broker, _proxy) = socket_rig().await;
    // A small request, a 3 MiB Produce (v8: its answer streams), one just above the splice
    // threshold, and small ones behind them, whose headers come after spliced bytes.
    let big: Vec<u8> = (0..3u32 << 20).map(|i| (i % 253) as u8).collect();
    let requests = [
        request(18, 3, 1, &[]),
        request(0, 8, 2, &produce_body(&big)),
        request(0, 8, 3, &produce_body(&big[..70_000])),
        request(2, 5, 4, &[]),
        request(0, 8, 5, &produce_body(&[1; 10])),
    ];
    let before = crate::splice::bytes_moved();
    let client = trickle(client, requests.concat(), 100_000);
    for sent in &requests {
        assert_eq!(read_exactly(&mut broker, sent.len()).await, *sent);
    }
    let spliced = crate::splice::bytes_moved() - before;
    assert!(spliced >= (3 << 20) - 100_000, "only {spliced} bytes of the 3 MiB request were spliced");

    // Answers in order; the large ones are forwarded, so they splice too.
    let responses = [
        response(1, &[0; 20]),
        response(2, &big[..2 << 20]),
        response(3, &big[..70_000]),
        response(4, &[7; 30]),
        response(5, &[8; 40]),
    ];
    let before = crate::splice::bytes_moved();
    let broker = trickle(broker, responses.concat(), 150_000);
    let mut client = client.await.unwrap();
    for answered in &responses {
        assert_eq!(read_exactly(&mut client, answered.len()).await, *answered);
    }
    assert!(crate::splice::bytes_moved() - before >= (2 << 20) - 150_000);
    let _broker = broker.await.unwrap();
}

#[tokio::test]
async fn a_client_closing_within_a_spliced_request_ends_the_session_quietly() {
    let (mut client, mut broker, proxy) = socket_rig().await;
    let whole = request(0, 8, 1, &produce_body(&[5; 500_000]));
    client.write_all(&whole[..300_000]).await.unwrap();
    drop(client);
    assert_eq!(read_exactly(&mut broker, 300_000).await, whole[..300_000]);
    assert!(proxy.await.unwrap().is_ok());
}

#[tokio::test]
async fn a_broker_closing_within_a_spliced_response_is_a_truncated_response() {
    let (mut client, mut broker, proxy) = socket_rig().await;
    let sent = request(0, 8, 1, &produce_body(&[]));
    client.write_all(&sent).await.unwrap();
    read_exactly(&mut broker, sent.len()).await;
    let whole = response(1, &[6; 500_000]);
    broker.write_all(&whole[..300_000]).await.unwrap();
    drop(broker);
    let err = proxy.await.unwrap().unwrap_err();
    assert!(matches!(err, SessionError::Truncated), "{err}");
    assert_eq!(read_exactly(&mut client, 300_000).await, whole[..300_000]);
}

/// A SaslHandshake v0 request for `mechanism`.
fn handshake_v0(correlation_id: i32, mechanism: &str) -> Vec<u8> {
    let mut body = (mechanism.len() as i16).to_be_bytes().to_vec();
    body.extend(mechanism.as_bytes());
    request(17, 0, correlation_id, &body)
}

/// A bare SASL token: a size and the bytes, no header.
fn bare(token: &[u8]) -> Vec<u8> {
    let mut f = (token.len() as i32).to_be_bytes().to_vec();
    f.extend(token);
    f
}

#[tokio::test]
async fn bare_sasl_tokens_after_a_v0_handshake_cross_as_they_are() {
    let mut r = rig(1 << 16, 1 << 20);
    // SCRAM: the handshake, then two bare client tokens (the first starts with bytes that would
    // read as a Produce header), then an ordinary request once authenticated.
    let sent = [
        handshake_v0(1, "SCRAM-SHA-256"),
        bare(b"\0\0\0\x01n,,n=alice,r=abc"),
        bare(b"c=biws,r=abcdef,p=proof"),
        request(3, 1, 2, &[0, 0, 0, 0]),
    ];
    r.client.write_all(&sent.concat()).await.unwrap();
    assert_eq!(read_exactly(&mut r.broker, sent.iter().map(Vec::len).sum()).await, sent.concat());
    // The handshake's answer, then bare answers (the last empty, as PLAIN's success is), then a
    // Metadata v1 answer with no brokers, which the session still reads as a Kafka response.
    let answers = [
        response(1, &[0, 0, 0, 0, 0, 0]),
        bare(b"r=abcdef,s=c2FsdA==,i=4096"),
        bare(b""),
        response(2, &[0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]),
    ];
    r.broker.write_all(&answers.concat()).await.unwrap();
    let back = read_exactly(&mut r.client, answers.iter().map(Vec::len).sum()).await;
    assert_eq!(back, answers.concat());
    assert!(!r.proxy.is_finished());
}

#[tokio::test]
async fn a_v0_handshake_whose_tokens_cannot_be_followed_is_refused() {
    let mut r = rig(64, 1 << 20);
    r.client.write_all(&handshake_v0(1, "GSSAPI")).await.unwrap();
    let err = r.proxy.await.unwrap().unwrap_err();
    assert!(matches!(&err, SessionError::RawSasl(m) if m == "GSSAPI"), "{err}");
    assert_eq!(err.side(), Side::Client);
    let mut forwarded = Vec::new();
    r.broker.read_to_end(&mut forwarded).await.unwrap();
    assert!(forwarded.is_empty(), "nothing of the refused handshake reached the broker");
}

#[tokio::test]
async fn errors_name_their_side() {
    // A malformed request is the client's; a response out of order is the broker's; a response the
    // gateway may not hold is its own limit's.
    let mut r = rig(1024, 1 << 20);
    r.client.write_all(&[0xff, 0xff, 0xff, 0xf0]).await.unwrap();
    assert_eq!(r.proxy.await.unwrap().unwrap_err().side(), Side::Client);
    let mut r = rig(1024, 1 << 20);
    let requests = [request(2, 5, 1, &[]), request(2, 5, 2, &[])];
    r.client.write_all(&requests.concat()).await.unwrap();
    read_exactly(&mut r.broker, requests.iter().map(Vec::len).sum()).await;
    r.broker.write_all(&response(2, b"?")).await.unwrap();
    assert_eq!(r.proxy.await.unwrap().unwrap_err().side(), Side::Broker);
    let mut r = rig(1 << 16, 1000);
    r.client.write_all(&request(3, 12, 1, &[])).await.unwrap();
    read_exactly(&mut r.broker, 18).await;
    r.broker.write_all(&response(1, &[0; 2000])).await.unwrap();
    assert_eq!(r.proxy.await.unwrap().unwrap_err().side(), Side::Gateway);
}

#[tokio::test]
async fn a_drain_answers_what_is_in_flight_then_closes_and_forwards_nothing_new() {
    let drain = CancellationToken::new();
    let (mut client, mut broker, proxy) = socket_rig_draining(drain.clone()).await;
    let in_flight = [request(2, 5, 1, &[]), request(2, 5, 2, &[])];
    client.write_all(&in_flight.concat()).await.unwrap();
    assert_eq!(read_exactly(&mut broker, in_flight.iter().map(Vec::len).sum()).await, in_flight.concat());
    drain.cancel();
    // The drain waits for the answers to both, and the broker's connection stays whole meanwhile: a
    // broker closes a half-closed connection without answering.
    let mut byte = [0u8; 1];
    let early = tokio::time::timeout(Duration::from_millis(200), broker.read(&mut byte)).await;
    assert!(early.is_err(), "the broker saw {early:?} with requests in flight");
    assert!(!proxy.is_finished(), "closed with requests in flight");
    // ...and nothing the client sends from now on is forwarded.
    client.write_all(&request(2, 5, 3, &[])).await.unwrap();
    let answers = [response(1, b"one"), response(2, b"two")];
    broker.write_all(&answers.concat()).await.unwrap();
    assert_eq!(read_exactly(&mut client, answers.iter().map(Vec::len).sum()).await, answers.concat());
    assert_eq!(proxy.await.unwrap().unwrap(), Closed::Drained);
    let mut rest = Vec::new();
    broker.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty(), "a request sent during the drain reached the broker: {rest:?}");
}

#[tokio::test]
async fn an_idle_connection_drains_at_once() {
    let (_client, client_side) = duplex(1 << 16);
    let (_broker, broker_side) = duplex(1 << 16);
    let drain = CancellationToken::new();
    let group = testing::group(Limits { request: 1 << 20, response: 1 << 20, splice_min: 0 }, Arc::new(Fake));
    let proxy = tokio::spawn(testing::proxy_in(group, client_side, broker_side, drain.clone()));
    drain.cancel();
    assert_eq!(proxy.await.unwrap().unwrap(), Closed::Drained);
}

#[tokio::test]
async fn a_response_nobody_asked_for_is_dropped_and_the_next_one_passes() {
    let mut r = rig(1 << 16, 1 << 20);
    // An acks=0 Produce (no answer expected), then a ListOffsets; a broker that answers both.
    let acks0 = request(0, 8, 1, &[0xff, 0xff, 0, 0]);
    let list = request(2, 5, 2, &[]);
    r.client.write_all(&[acks0.clone(), list.clone()].concat()).await.unwrap();
    read_exactly(&mut r.broker, acks0.len() + list.len()).await;
    let stray = response(1, &[0; 30]);
    let answer = response(2, b"offsets");
    r.broker.write_all(&[stray, answer.clone()].concat()).await.unwrap();
    assert_eq!(read_exactly(&mut r.client, answer.len()).await, answer, "only the answer the client waits for");
    assert!(!r.proxy.is_finished());
}

/// A Metadata v12 answer of about `size` bytes (the bytes after its last field pass through a
/// rewrite as they are).
fn large_metadata(correlation_id: i32, size: usize) -> Vec<u8> {
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let mut metadata = rewrite::encode(&header, &MetadataResponse::default(), 12, &[]).unwrap().to_vec();
    metadata.extend(std::iter::repeat_n(9u8, size));
    let len = (metadata.len() - 4) as i32;
    metadata[..4].copy_from_slice(&len.to_be_bytes());
    metadata
}

#[tokio::test]
async fn a_spent_budget_makes_the_next_answer_wait_and_a_client_that_stops_reading_gives_it_back() {
    use crate::budget::Budget;
    let budget = Budget::new(1 << 20, std::time::Duration::from_millis(300));
    let limits = Limits { request: 1 << 20, response: 4 << 20, splice_min: 0 };
    let group = super::testing::with_budget(limits, Arc::new(Fake), Arc::clone(&budget));
    let session = |group: Arc<Group>| {
        let (client, client_side) = duplex(64 * 1024);
        let (broker, broker_side) = duplex(64 * 1024);
        (
            client,
            broker,
            tokio::spawn(super::testing::proxy_in(group, client_side, broker_side, CancellationToken::new())),
        )
    };
    // A asks for Metadata and never reads its 600 KiB answer: it holds 600 KiB of the 1 MiB.
    let (mut a_client, mut a_broker, a) = session(Arc::clone(&group));
    let ask = request(3, 12, 1, &[]);
    a_client.write_all(&ask).await.unwrap();
    read_exactly(&mut a_broker, ask.len()).await;
    let a_answer = large_metadata(1, 600 << 10);
    let a_writer = tokio::spawn(async move { a_broker.write_all(&a_answer).await.map(|_| a_broker) });
    while budget.available() == 1 << 20 {
        tokio::task::yield_now().await;
    }
    // B's 600 KiB answer does not fit beside it: B reads no further from its broker and waits.
    let (mut b_client, mut b_broker, b) = session(group);
    b_client.write_all(&ask).await.unwrap();
    read_exactly(&mut b_broker, ask.len()).await;
    let b_answer = large_metadata(1, 600 << 10);
    let expected = b_answer.len();
    let b_writer = tokio::spawn(async move { b_broker.write_all(&b_answer).await.map(|_| b_broker) });
    // A is closed once it has held its share for held_wait without its client reading; then B's
    // answer is held, rewritten and read whole by its client: nothing lost, nothing failed.
    let err = a.await.unwrap().unwrap_err();
    assert!(matches!(err, SessionError::SlowReader { bytes, .. } if bytes > 600 << 10), "{err}");
    assert_eq!(err.side(), Side::Client);
    let got = read_exactly(&mut b_client, expected).await;
    assert_eq!(got.len(), expected);
    assert_eq!(budget.available(), 1 << 20, "every byte of the budget is back");
    drop((a_writer, b_writer, b, a_client));
}
