//! Step 2 of a frame's journey: where a size-prefixed Kafka frame ends, and what the few header
//! fields the gateway acts on say — read from the first bytes only, never decoding a body.
//!
//! Every function here takes the bytes received so far and answers either with a result or with
//! [`Peek::NeedMore`], so callers can stream frames of any size without buffering them whole.

pub use crate::wire::SIZE_LEN;
use crate::wire::{Cursor, WireError};

/// Produce: the one API whose request says whether a response will come (acks=0 means none).
const PRODUCE: i16 = 0;

/// A frame the gateway refuses; the connection that sent it is closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {size} bytes exceeds the limit of {limit} bytes (gateway.max_frame_bytes)")]
    TooLarge { size: usize, limit: usize },
    #[error("frame size {0} is negative or too small for a header")]
    BadSize(i32),
    #[error("malformed request header: {0}")]
    BadHeader(WireError),
}

/// The answer of a peek at a partial frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peek<T> {
    /// Not decidable yet; call again with more bytes.
    NeedMore,
    Ready(T),
}

/// Reads the size prefix: the length of the whole frame including the prefix.
pub fn frame_len(buf: &[u8], min_size: usize, limit: usize) -> Result<Peek<usize>, FrameError> {
    let Some(prefix) = buf.first_chunk::<SIZE_LEN>() else {
        return Ok(Peek::NeedMore);
    };
    let size = i32::from_be_bytes(*prefix);
    let Ok(len) = usize::try_from(size) else {
        return Err(FrameError::BadSize(size));
    };
    if len < min_size {
        return Err(FrameError::BadSize(size));
    }
    if len > limit {
        return Err(FrameError::TooLarge { size: len, limit });
    }
    Ok(Peek::Ready(SIZE_LEN + len))
}

/// What the gateway reads of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestHead {
    pub api_key: i16,
    pub api_version: i16,
    pub correlation_id: i32,
    /// False only for Produce with acks=0, which the broker never answers.
    pub expects_response: bool,
}

/// Smallest request body after the size prefix: api_key, api_version, correlation_id, client_id length.
pub const MIN_REQUEST: usize = 10;
/// Smallest response after the size prefix: the correlation id.
pub const MIN_RESPONSE: usize = 4;

/// Peeks at a request frame. `frame` starts at the size prefix and holds the bytes received so far
/// (possibly more than this frame); `len` is the whole frame's length from [`frame_len`].
pub fn peek_request(frame: &[u8], len: usize) -> Result<Peek<RequestHead>, FrameError> {
    let complete = frame.len() >= len;
    let mut c = Cursor::at(&frame[..frame.len().min(len)], SIZE_LEN);
    match read_head(&mut c) {
        Ok(head) => Ok(Peek::Ready(head)),
        // Bytes that end before the frame does are a frame still arriving.
        Err(e) if e.is_truncated() && !complete => Ok(Peek::NeedMore),
        Err(e) => Err(FrameError::BadHeader(e)),
    }
}

fn read_head(c: &mut Cursor<'_>) -> Result<RequestHead, WireError> {
    let api_key = c.i16("api_key")?;
    let api_version = c.i16("api_version")?;
    let correlation_id = c.i32("correlation_id")?;
    let expects_response = api_key != PRODUCE || produce_acks(c, api_version)? != 0;
    Ok(RequestHead { api_key, api_version, correlation_id, expects_response })
}

/// Reads a Produce request's `acks`, skipping the rest of the header and the transactional id.
fn produce_acks(c: &mut Cursor<'_>, version: i16) -> Result<i16, WireError> {
    // client_id: a nullable string with an i16 length in every request header version.
    c.skip_string("client_id")?;
    // Produce v9+ is flexible: request header v2 adds tagged fields, the body uses compact strings.
    let flexible = version >= 9;
    if flexible {
        c.skip_tags("header tagged fields")?;
    }
    if version >= 3 {
        if flexible {
            c.skip_compact("transactional_id")?;
        } else {
            c.skip_string("transactional_id")?;
        }
    }
    c.i16("acks")
}

/// Peeks at a response frame: its correlation id, the first field of every response header.
pub fn peek_correlation_id(frame: &[u8]) -> Peek<i32> {
    match frame.get(SIZE_LEN..SIZE_LEN + 4) {
        Some(b) => Peek::Ready(i32::from_be_bytes(b.try_into().expect("4 bytes"))),
        None => Peek::NeedMore,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request frame: size, api key, version, correlation id, client id, then `rest`.
    fn request(api_key: i16, version: i16, client_id: &str, rest: &[u8]) -> Vec<u8> {
        let mut f = vec![0; 4];
        f.extend(api_key.to_be_bytes());
        f.extend(version.to_be_bytes());
        f.extend(7i32.to_be_bytes());
        f.extend((client_id.len() as i16).to_be_bytes());
        f.extend(client_id.as_bytes());
        f.extend(rest);
        let size = (f.len() - 4) as i32;
        f[..4].copy_from_slice(&size.to_be_bytes());
        f
    }

    fn peek_whole(f: &[u8]) -> Result<Peek<RequestHead>, FrameError> {
        let Peek::Ready(len) = frame_len(f, MIN_REQUEST, 1 << 20)? else { panic!("short") };
        assert_eq!(len, f.len());
        peek_request(f, len)
    }

    #[test]
    fn reads_the_header_of_any_request() {
        let f = request(3, 12, "rdkafka", &[0, 0]);
        let head = peek_whole(&f).unwrap();
        assert_eq!(
            head,
            Peek::Ready(RequestHead { api_key: 3, api_version: 12, correlation_id: 7, expects_response: true })
        );
        // Vendor keys are just numbers here.
        let f = request(10_001, 0, "x", &[]);
        assert!(matches!(peek_whole(&f), Ok(Peek::Ready(RequestHead { api_key: 10_001, .. }))));
    }

    #[test]
    fn produce_acks_zero_expects_no_response_in_every_layout() {
        // v0-v2: acks first.
        for (version, body) in [
            (2, vec![0, 0, 0, 0, 0x75, 0x30]),
            // v3-v8: transactional_id as a nullable string (null, then "tx").
            (8, vec![0xff, 0xff, 0, 0]),
            (3, vec![0, 2, b't', b'x', 0, 0]),
            // v9+: header tagged fields, compact nullable transactional id.
            (9, vec![0, 0, 0, 0]),
            (11, vec![1, 0, 1, 0xaa, 3, b't', b'x', 0, 0]),
        ] {
            let f = request(0, version, "cli", &body);
            let Ok(Peek::Ready(head)) = peek_whole(&f) else { panic!("v{version}") };
            assert!(!head.expects_response, "v{version}");
            let mut acks_all = body.clone();
            let at = acks_all.len() - 2;
            if version < 3 {
                acks_all[0..2].copy_from_slice(&(-1i16).to_be_bytes());
            } else {
                acks_all[at..].copy_from_slice(&(-1i16).to_be_bytes());
            }
            let f = request(0, version, "cli", &acks_all);
            let Ok(Peek::Ready(head)) = peek_whole(&f) else { panic!("v{version}") };
            assert!(head.expects_response, "v{version}");
        }
    }

    #[test]
    fn every_prefix_of_a_frame_asks_for_more_never_errs() {
        let f = request(0, 11, "a-client-id", &[1, 0, 1, 0xaa, 3, b't', b'x', 0, 1, 9, 9, 9]);
        let len = f.len();
        for cut in 0..len {
            let part = &f[..cut];
            match frame_len(part, MIN_REQUEST, 1 << 20).unwrap() {
                Peek::NeedMore => assert!(cut < 4),
                Peek::Ready(l) => {
                    assert_eq!(l, len);
                    let peek = peek_request(part, l).unwrap();
                    // acks sits at offset 4+8+2+11+4+3 = 32; from there on the head is known.
                    assert_eq!(peek == Peek::NeedMore, cut < 34, "cut at {cut}");
                }
            }
        }
    }

    #[test]
    fn sizes_that_are_negative_tiny_or_too_large_are_refused() {
        assert_eq!(frame_len(&(-1i32).to_be_bytes(), MIN_REQUEST, 100), Err(FrameError::BadSize(-1)));
        assert_eq!(frame_len(&3i32.to_be_bytes(), MIN_REQUEST, 100), Err(FrameError::BadSize(3)));
        assert_eq!(
            frame_len(&101i32.to_be_bytes(), MIN_REQUEST, 100),
            Err(FrameError::TooLarge { size: 101, limit: 100 })
        );
        assert_eq!(frame_len(&100i32.to_be_bytes(), MIN_REQUEST, 100), Ok(Peek::Ready(104)));
    }

    #[test]
    fn a_header_that_runs_past_its_frame_is_malformed() {
        // client_id claims 50 bytes but the frame ends first.
        let mut f = request(0, 3, "", &[]);
        f[12..14].copy_from_slice(&50i16.to_be_bytes());
        assert!(matches!(peek_whole(&f), Err(FrameError::BadHeader(_))));
        // A Produce v3 frame that ends right after the client id, before transactional_id and acks.
        let f = [0, 0, 0, 10, 0, 0, 0, 3, 0, 0, 0, 1, 0, 0];
        let Err(FrameError::BadHeader(e)) = peek_whole(&f) else { panic!("accepted") };
        assert_eq!(e.field, "transactional_id", "the error names the field that ran out");
    }

    #[test]
    fn reads_correlation_ids_of_responses() {
        assert_eq!(peek_correlation_id(&[0, 0, 0, 8, 0, 0, 1, 0]), Peek::Ready(256));
        assert_eq!(peek_correlation_id(&[0, 0, 0, 8, 0, 0]), Peek::NeedMore);
    }
}
