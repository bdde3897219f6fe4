//! Splicing between loopback sockets: exactly the bytes asked for, the rest left where it was.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;

/// Two connected loopback sockets: (the side written to, the side read from).
async fn connected() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let outer = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
    let (inner, _) = listener.accept().await.unwrap();
    (outer, inner)
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

#[tokio::test]
async fn moves_exactly_what_is_asked_and_leaves_the_rest() {
    let ((mut sender, from), (to, mut receiver)) = (connected().await, connected().await);
    // Three pipe loads and a bit, arriving in pieces, and a next frame behind it.
    let len = 3 * PIPE_BYTES + 12_345;
    let bytes = pattern(len + 100);
    let writer = tokio::spawn(async move {
        for piece in bytes.chunks(200_000) {
            sender.write_all(piece).await.unwrap();
            tokio::task::yield_now().await;
        }
        sender
    });
    let before = bytes_moved();
    let pipe = Pipe::take().expect("a pipe");
    let (moved, received) = tokio::join!(pipe.forward(&from, &to, len, None), async {
        let mut got = vec![0; len];
        receiver.read_exact(&mut got).await.unwrap();
        got
    });
    assert_eq!(moved.unwrap(), Moved::All);
    assert_eq!(received, pattern(len));
    assert!(bytes_moved() - before >= len as u64);
    let _sender = writer.await.unwrap();
    let mut rest = vec![0; 100];
    let mut from = from;
    from.read_exact(&mut rest).await.unwrap();
    assert_eq!(rest, pattern(len + 100)[len..]);
}

#[tokio::test]
async fn a_source_that_closes_early_says_how_far_it_got() {
    let ((mut sender, from), (to, mut receiver)) = (connected().await, connected().await);
    sender.write_all(&pattern(50_000)).await.unwrap();
    drop(sender);
    let moved = Pipe::take().expect("a pipe").forward(&from, &to, 80_000, None).await.unwrap();
    assert_eq!(moved, Moved::Ended(50_000));
    let mut got = vec![0; 50_000];
    receiver.read_exact(&mut got).await.unwrap();
    assert_eq!(got, pattern(50_000));
}
