//! The reading and writing halves of every rewrite. A rewrite walks a response only as far as the
//! part that names brokers, re-emits that part, and passes the rest as the same memory: nothing it
//! does not own is decoded or encoded again, so every other field survives by construction.
//!
//! The cursor reads lengths from the wire but never allocates by them: a length the frame cannot
//! hold ends the walk (`None`), where a decoder that pre-allocates by the wire's count could be made
//! to ask for hundreds of gigabytes and abort the process.

use bytes::{BufMut, Bytes, BytesMut};

use super::{RewriteError, Rewritten};
use crate::frame::SIZE_LEN;

/// A read position in a frame; every read answers `None` when the frame ends too early.
pub(super) struct Cursor<'a> {
    buf: &'a [u8],
    pub(super) pos: usize,
}

impl<'a> Cursor<'a> {
    /// A cursor after the size prefix and the response header (v1 adds tagged fields).
    pub(super) fn after_header(frame: &'a [u8], header_version: i16) -> Option<Self> {
        let mut c = Cursor { buf: frame, pos: SIZE_LEN };
        c.skip(4)?; // correlation id
        if header_version >= 1 {
            c.skip_tags()?;
        }
        Some(c)
    }

    pub(super) fn at(buf: &'a [u8], pos: usize) -> Self {
        Cursor { buf, pos }
    }

    pub(super) fn is_at_end(&self) -> bool {
        self.pos == self.buf.len()
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&end| end <= self.buf.len())?;
        let bytes = &self.buf[self.pos..end];
        self.pos = end;
        Some(bytes)
    }

    pub(super) fn skip(&mut self, n: usize) -> Option<()> {
        self.take(n).map(drop)
    }

    pub(super) fn i16(&mut self) -> Option<i16> {
        self.take(2).map(|b| i16::from_be_bytes([b[0], b[1]]))
    }

    pub(super) fn i32(&mut self) -> Option<i32> {
        self.take(4).map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(super) fn uvarint(&mut self) -> Option<u32> {
        let mut value = 0u32;
        for shift in (0..35).step_by(7) {
            let byte = self.take(1)?[0];
            value |= u32::from(byte & 0x7f).checked_shl(shift)?;
            if byte & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }

    /// The length of a compact array, string or bytes (null counts as empty).
    pub(super) fn compact_len(&mut self) -> Option<usize> {
        Some(self.uvarint()?.saturating_sub(1) as usize)
    }

    /// The element count of an array: i32 before flexible versions, compact after. Null is empty.
    pub(super) fn array_len(&mut self, flexible: bool) -> Option<usize> {
        if flexible {
            self.compact_len()
        } else {
            let n = self.i32()?;
            if n < -1 {
                return None;
            }
            Some(n.max(0) as usize)
        }
    }

    /// A string: i16 length before flexible versions, compact after. Null reads as `None`.
    pub(super) fn nullable_string(&mut self, flexible: bool) -> Option<Option<&'a str>> {
        let len = if flexible {
            match self.uvarint()? {
                0 => return Some(None),
                n => n as usize - 1,
            }
        } else {
            match self.i16()? {
                -1 => return Some(None),
                n if n < 0 => return None,
                n => n as usize,
            }
        };
        std::str::from_utf8(self.take(len)?).ok().map(Some)
    }

    pub(super) fn string(&mut self, flexible: bool) -> Option<&'a str> {
        self.nullable_string(flexible)?
    }

    /// Skips a compact string or bytes.
    pub(super) fn skip_compact(&mut self) -> Option<()> {
        let len = self.compact_len()?;
        self.skip(len)
    }

    /// Skips how a flexible Produce or Fetch response names a topic: its 16-byte id where
    /// `by_id` (Produce v13+, Fetch v13+), else its compact name.
    pub(super) fn skip_topic(&mut self, by_id: bool) -> Option<()> {
        if by_id { self.skip(16) } else { self.skip_compact() }
    }

    pub(super) fn skip_tags(&mut self) -> Option<()> {
        for _ in 0..self.uvarint()? {
            self.uvarint()?;
            let len = self.uvarint()? as usize;
            self.skip(len)?;
        }
        Some(())
    }
}

pub(super) fn put_uvarint(out: &mut BytesMut, mut value: u32) {
    while value >= 0x80 {
        out.put_u8(value as u8 | 0x80);
        value >>= 7;
    }
    out.put_u8(value as u8);
}

pub(super) fn put_string(out: &mut BytesMut, s: &str, flexible: bool) {
    if flexible {
        put_uvarint(out, s.len() as u32 + 1);
    } else {
        out.put_i16(s.len() as i16);
    }
    out.put_slice(s.as_bytes());
}

pub(super) fn put_array_len(out: &mut BytesMut, n: usize, flexible: bool) {
    if flexible {
        put_uvarint(out, n as u32 + 1);
    } else {
        out.put_i32(n as i32);
    }
}

/// A rewritten frame being built: a re-emitted head, then the rest of the original frame.
pub(super) struct Splice {
    head: BytesMut,
}

impl Splice {
    /// Starts with a placeholder for the size and the original bytes from after the size up to `pos`.
    pub(super) fn copying(frame: &[u8], pos: usize) -> Self {
        let mut head = BytesMut::with_capacity(pos + 256);
        head.put_i32(0);
        head.put_slice(&frame[SIZE_LEN..pos]);
        Self { head }
    }

    pub(super) fn out(&mut self) -> &mut BytesMut {
        &mut self.head
    }

    /// Ends with `frame[from..]` as it was (the same memory), and sets the size.
    pub(super) fn finish(
        mut self,
        frame: &Bytes,
        from: usize,
        api: &'static str,
        version: i16,
    ) -> Result<Rewritten, RewriteError> {
        let rest = frame.slice(from..);
        let size = i32::try_from(self.head.len() - SIZE_LEN + rest.len()).map_err(|e| RewriteError::Encode {
            api,
            version,
            source: e.into(),
        })?;
        self.head[..SIZE_LEN].copy_from_slice(&size.to_be_bytes());
        Ok(if rest.is_empty() {
            Rewritten::from(self.head.freeze())
        } else {
            Rewritten::from(vec![self.head.freeze(), rest])
        })
    }
}

/// The error of a walk that ran out of frame or met an impossible value.
pub(super) fn malformed(api: &'static str, version: i16, what: &str) -> RewriteError {
    RewriteError::Decode { api, version, source: anyhow::anyhow!("{what}") }
}
