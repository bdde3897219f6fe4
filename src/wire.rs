//! Kafka's wire types, read and written: the one bounds-checked cursor that frame headers and every
//! rewrite walk read with, and the few writers a rewrite re-emits fields with.
//!
//! The cursor reads lengths from the wire but never allocates by them: a length the bytes cannot
//! hold is a [`WireError`] naming the field, where a decoder that pre-allocates by the wire's count
//! could be made to ask for gigabytes and abort the process (fuzz/regressions/ has two such inputs).

use bytes::{BufMut, BytesMut};

/// Bytes of a frame's size prefix.
pub const SIZE_LEN: usize = 4;

/// A field that could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct WireError {
    /// The field, as the schema names it (`brokers.host`).
    pub field: &'static str,
    pub problem: Problem,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// The bytes end before the field does. In a partial frame this means "wait for more".
    #[error("the bytes end before it does")]
    Truncated,
    /// A value no encoder writes: a negative length, a varint of more than 5 bytes, text that is
    /// not UTF-8.
    #[error("impossible value")]
    Invalid,
}

impl WireError {
    pub fn is_truncated(&self) -> bool {
        self.problem == Problem::Truncated
    }
}

pub type Result<T> = std::result::Result<T, WireError>;

fn truncated(field: &'static str) -> WireError {
    WireError { field, problem: Problem::Truncated }
}

fn invalid(field: &'static str) -> WireError {
    WireError { field, problem: Problem::Invalid }
}

/// A read position in some bytes.
#[derive(Debug, Clone)]
pub struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    /// A cursor at `pos` in `buf`.
    pub fn at(buf: &'a [u8], pos: usize) -> Self {
        Cursor { buf, pos }
    }

    /// A cursor after a response frame's size prefix and header (header v1 adds tagged fields).
    pub fn after_response_header(frame: &'a [u8], header_version: i16) -> Result<Self> {
        let mut c = Cursor::at(frame, SIZE_LEN);
        c.skip(4, "correlation_id")?;
        if header_version >= 1 {
            c.skip_tags("header tagged fields")?;
        }
        Ok(c)
    }

    pub fn pos(&self) -> usize {
        self.pos
    }

    pub fn is_at_end(&self) -> bool {
        self.pos == self.buf.len()
    }

    pub fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&end| end <= self.buf.len()).ok_or(truncated(field))?;
        let bytes = &self.buf[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    pub fn skip(&mut self, n: usize, field: &'static str) -> Result<()> {
        self.take(n, field).map(drop)
    }

    pub fn i16(&mut self, field: &'static str) -> Result<i16> {
        self.take(2, field).map(|b| i16::from_be_bytes([b[0], b[1]]))
    }

    pub fn i32(&mut self, field: &'static str) -> Result<i32> {
        self.take(4, field).map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn uvarint(&mut self, field: &'static str) -> Result<u32> {
        let mut value = 0u32;
        for shift in (0..35).step_by(7) {
            let byte = self.take(1, field)?[0];
            value |= u32::from(byte & 0x7f).checked_shl(shift).ok_or(invalid(field))?;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(invalid(field))
    }

    /// The length of a compact array, string or bytes (null counts as empty).
    pub fn compact_len(&mut self, field: &'static str) -> Result<usize> {
        Ok(self.uvarint(field)?.saturating_sub(1) as usize)
    }

    /// The element count of an array: i32 before flexible versions, compact after. Null is empty.
    pub fn array_len(&mut self, flexible: bool, field: &'static str) -> Result<usize> {
        if flexible {
            return self.compact_len(field);
        }
        match self.i32(field)? {
            n if n < -1 => Err(invalid(field)),
            n => Ok(n.max(0) as usize),
        }
    }

    /// A string: i16 length before flexible versions, compact after. Null reads as `None`.
    pub fn nullable_string(&mut self, flexible: bool, field: &'static str) -> Result<Option<&'a str>> {
        let len = if flexible {
            match self.uvarint(field)? {
                0 => return Ok(None),
                n => n as usize - 1,
            }
        } else {
            match self.i16(field)? {
                -1 => return Ok(None),
                n if n < 0 => return Err(invalid(field)),
                n => n as usize,
            }
        };
        let bytes = self.take(len, field)?;
        std::str::from_utf8(bytes).map(Some).map_err(|_| invalid(field))
    }

    /// A string that may not be null.
    pub fn string(&mut self, flexible: bool, field: &'static str) -> Result<&'a str> {
        self.nullable_string(flexible, field)?.ok_or(invalid(field))
    }

    /// Skips a compact string or bytes.
    pub fn skip_compact(&mut self, field: &'static str) -> Result<()> {
        let len = self.compact_len(field)?;
        self.skip(len, field)
    }

    /// Skips a string with an i16 length (null included).
    pub fn skip_string(&mut self, field: &'static str) -> Result<()> {
        match self.i16(field)? {
            n if n < -1 => Err(invalid(field)),
            n => self.skip(n.max(0) as usize, field),
        }
    }

    /// Skips a tagged-field section.
    pub fn skip_tags(&mut self, field: &'static str) -> Result<()> {
        for _ in 0..self.uvarint(field)? {
            self.uvarint(field)?;
            let len = self.uvarint(field)? as usize;
            self.skip(len, field)?;
        }
        Ok(())
    }
}

pub fn put_uvarint(out: &mut BytesMut, mut value: u32) {
    while value >= 0x80 {
        out.put_u8(value as u8 | 0x80);
        value >>= 7;
    }
    out.put_u8(value as u8);
}

/// A string: i16 length before flexible versions, compact after.
pub fn put_string(out: &mut BytesMut, s: &str, flexible: bool) {
    if flexible {
        put_uvarint(out, s.len() as u32 + 1);
    } else {
        out.put_i16(s.len() as i16);
    }
    out.put_slice(s.as_bytes());
}

/// An array's element count: i32 before flexible versions, compact after.
pub fn put_array_len(out: &mut BytesMut, n: usize, flexible: bool) {
    if flexible {
        put_uvarint(out, n as u32 + 1);
    } else {
        out.put_i32(n as i32);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_read_names_its_field_when_the_bytes_end() {
        let mut c = Cursor::at(&[0, 1, 0], 0);
        assert_eq!(c.i16("a"), Ok(1));
        assert_eq!(c.i16("b"), Err(WireError { field: "b", problem: Problem::Truncated }));
        // A failed read leaves the position where it was.
        assert_eq!(c.pos(), 2);
    }

    #[test]
    fn lengths_from_the_wire_are_checked_never_trusted() {
        // A compact array claiming 2^31 elements in three bytes: reading it is cheap, and the
        // first element is a truncation, never an allocation.
        let mut c = Cursor::at(&[0x80, 0x80, 0x80, 0x80, 0x08], 0);
        assert_eq!(c.compact_len("brokers"), Ok((1 << 31) - 1));
        assert!(c.i32("brokers.node_id").unwrap_err().is_truncated());
        assert_eq!(
            Cursor::at(&[0xff, 0xff, 0xff, 0xfe], 0).array_len(false, "x").unwrap_err().problem,
            Problem::Invalid
        );
        assert_eq!(Cursor::at(&[0xff; 6], 0).uvarint("v").unwrap_err().problem, Problem::Invalid);
        assert_eq!(Cursor::at(&[0xff, 0xfe], 0).nullable_string(false, "s").unwrap_err().problem, Problem::Invalid);
        assert_eq!(Cursor::at(&[3, 0xc3, 0x28], 0).string(true, "s").unwrap_err().problem, Problem::Invalid);
    }

    #[test]
    fn strings_and_arrays_read_back_what_the_writers_wrote() {
        for flexible in [false, true] {
            let mut out = BytesMut::new();
            put_array_len(&mut out, 300, flexible);
            put_string(&mut out, "b1.usw2-az1.example", flexible);
            let mut c = Cursor::at(&out, 0);
            assert_eq!(c.array_len(flexible, "n"), Ok(300));
            assert_eq!(c.string(flexible, "s"), Ok("b1.usw2-az1.example"));
            assert!(c.is_at_end());
        }
        assert_eq!(Cursor::at(&[0], 0).nullable_string(true, "s"), Ok(None));
        assert_eq!(Cursor::at(&[0xff, 0xff], 0).nullable_string(false, "s"), Ok(None));
    }
}
