//! The protobuf wire format: varints, fixed-width numbers and length-delimited slices, read from a
//! byte slice without trusting it ([`Reader`]) and written into a buffer ([`Writer`]).

use crate::ProtoError;

/// Wire types (the low three bits of a key).
pub(crate) const VARINT: u8 = 0;
pub(crate) const FIXED64: u8 = 1;
pub(crate) const LEN: u8 = 2;
pub(crate) const FIXED32: u8 = 5;

/// A cursor over one message's bytes.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub(crate) fn varint(&mut self) -> Result<u64, ProtoError> {
        let mut value = 0u64;
        for i in 0..10 {
            let (&byte, rest) = self.buf.split_first().ok_or(ProtoError::Truncated)?;
            self.buf = rest;
            let bits = u64::from(byte & 0x7f);
            if i == 9 && byte > 1 {
                return Err(ProtoError::VarintOverflow);
            }
            value |= bits << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(ProtoError::VarintOverflow)
    }

    /// The next field's (tag, wire type).
    pub(crate) fn key(&mut self) -> Result<(u32, u8), ProtoError> {
        let key = self.varint()?;
        let tag = u32::try_from(key >> 3).map_err(|_| ProtoError::InvalidTag(key >> 3))?;
        if tag == 0 {
            return Err(ProtoError::InvalidTag(0));
        }
        // The low three bits always fit.
        let wire = (key & 0x7) as u8;
        Ok((tag, wire))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ProtoError> {
        if n > self.buf.len() {
            return Err(ProtoError::Truncated);
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    pub(crate) fn bytes(&mut self) -> Result<&'a [u8], ProtoError> {
        let len = self.varint()?;
        let len = usize::try_from(len).map_err(|_| ProtoError::Truncated)?;
        self.take(len)
    }

    pub(crate) fn fixed64(&mut self) -> Result<u64, ProtoError> {
        let b = self.take(8)?;
        Ok(u64::from_le_bytes([
            b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
        ]))
    }

    /// Skips a value of this wire type (unknown fields).
    pub(crate) fn skip(&mut self, tag: u32, wire: u8) -> Result<(), ProtoError> {
        match wire {
            VARINT => self.varint().map(drop),
            FIXED64 => self.take(8).map(drop),
            LEN => self.bytes().map(drop),
            FIXED32 => self.take(4).map(drop),
            // Groups (3, 4) are proto2 relics no Kubernetes message uses.
            _ => Err(ProtoError::WireType { tag, wire }),
        }
    }
}

/// Builds one message's bytes. Writes every field it is given (callers leave out proto3 defaults
/// where the upstream encoder would).
#[derive(Debug, Default)]
pub(crate) struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    pub(crate) fn new() -> Self {
        Writer::default()
    }

    pub(crate) fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    fn varint(&mut self, mut value: u64) {
        while value >= 0x80 {
            // The low seven bits, with the continuation bit.
            self.buf.push((value as u8 & 0x7f) | 0x80);
            value >>= 7;
        }
        self.buf.push(value as u8);
    }

    fn key(&mut self, tag: u32, wire: u8) {
        self.varint(u64::from(tag) << 3 | u64::from(wire));
    }

    /// A varint field: `bool`, `int32`, `int64`, `uint64`, enums (negative numbers take ten bytes).
    pub(crate) fn uint(&mut self, tag: u32, value: u64) {
        self.key(tag, VARINT);
        self.varint(value);
    }

    pub(crate) fn int64(&mut self, tag: u32, value: i64) {
        // Two's complement, as protobuf encodes negative int64.
        self.uint(tag, value as u64);
    }

    pub(crate) fn bool(&mut self, tag: u32, value: bool) {
        self.uint(tag, u64::from(value));
    }

    pub(crate) fn double(&mut self, tag: u32, value: f64) {
        self.key(tag, FIXED64);
        self.buf.extend_from_slice(&value.to_bits().to_le_bytes());
    }

    pub(crate) fn bytes(&mut self, tag: u32, value: &[u8]) {
        self.key(tag, LEN);
        self.varint(value.len() as u64);
        self.buf.extend_from_slice(value);
    }

    pub(crate) fn string(&mut self, tag: u32, value: &str) {
        self.bytes(tag, value.as_bytes());
    }

    /// A nested message field, present even when `build` writes nothing into it.
    pub(crate) fn message<E>(
        &mut self,
        tag: u32,
        build: impl FnOnce(&mut Writer) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut inner = Writer::new();
        build(&mut inner)?;
        self.bytes(tag, &inner.buf);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_decode_and_reject_overflow_and_truncation() {
        let max: Vec<u8> = [0xff; 9].into_iter().chain([1]).collect();
        let over: Vec<u8> = [0xff; 9].into_iter().chain([2]).collect();
        let eleven = [0x80; 11];
        assert_eq!(Reader::new(&[0x96, 0x01]).varint().ok(), Some(150));
        assert_eq!(Reader::new(&max).varint().ok(), Some(u64::MAX));
        assert!(matches!(
            Reader::new(&over).varint(),
            Err(ProtoError::VarintOverflow)
        ));
        assert!(matches!(
            Reader::new(&eleven).varint(),
            Err(ProtoError::VarintOverflow)
        ));
        assert!(matches!(
            Reader::new(&[0x80, 0x80]).varint(),
            Err(ProtoError::Truncated)
        ));
        assert!(matches!(
            Reader::new(&[]).varint(),
            Err(ProtoError::Truncated)
        ));
    }

    #[test]
    fn length_delimited_values_must_fit_the_buffer() {
        assert_eq!(
            Reader::new(&[3, b'a', b'b', b'c']).bytes().ok(),
            Some(&b"abc"[..])
        );
        assert!(matches!(
            Reader::new(&[4, b'a', b'b', b'c']).bytes(),
            Err(ProtoError::Truncated)
        ));
        let huge = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert!(matches!(
            Reader::new(&huge).bytes(),
            Err(ProtoError::Truncated)
        ));
    }

    #[test]
    fn keys_split_tag_and_wire_type_and_reject_tag_zero() {
        assert_eq!(Reader::new(&[0x0a]).key().ok(), Some((1, LEN)));
        assert_eq!(Reader::new(&[0x38]).key().ok(), Some((7, VARINT)));
        assert!(matches!(
            Reader::new(&[0x02]).key(),
            Err(ProtoError::InvalidTag(0))
        ));
    }

    #[test]
    fn skip_consumes_each_wire_type_and_rejects_groups() {
        let mut r = Reader::new(&[0x96, 0x01, 1, 2, 3, 4, 5, 6, 7, 8, 2, 9, 9, 1, 2, 3, 4]);
        r.skip(1, VARINT).expect("varint");
        r.skip(1, FIXED64).expect("fixed64");
        r.skip(1, LEN).expect("len");
        r.skip(1, FIXED32).expect("fixed32");
        assert!(r.is_empty());
        assert!(matches!(
            Reader::new(&[0]).skip(5, 3),
            Err(ProtoError::WireType { tag: 5, wire: 3 })
        ));
    }

    #[test]
    fn writer_output_reads_back() {
        let mut w = Writer::new();
        w.uint(1, 150);
        w.int64(2, -1);
        w.bool(3, true);
        w.double(4, 1.5);
        w.string(5, "héllo");
        w.message(6, |inner| {
            inner.string(1, "x");
            Ok::<(), ProtoError>(())
        })
        .expect("message");
        w.message(7, |_| Ok::<(), ProtoError>(()))
            .expect("empty message");
        let bytes = w.into_bytes();
        assert_eq!(&bytes[..3], &[0x08, 0x96, 0x01]);
        let mut r = Reader::new(&bytes);
        assert_eq!(r.key().ok(), Some((1, VARINT)));
        assert_eq!(r.varint().ok(), Some(150));
        assert_eq!(r.key().ok(), Some((2, VARINT)));
        assert_eq!(r.varint().ok(), Some(u64::MAX));
        assert_eq!(r.key().ok(), Some((3, VARINT)));
        assert_eq!(r.varint().ok(), Some(1));
        assert_eq!(r.key().ok(), Some((4, FIXED64)));
        assert_eq!(r.fixed64().ok().map(f64::from_bits), Some(1.5));
        assert_eq!(r.key().ok(), Some((5, LEN)));
        assert_eq!(r.bytes().ok(), Some("héllo".as_bytes()));
        assert_eq!(r.key().ok(), Some((6, LEN)));
        assert_eq!(r.bytes().ok(), Some(&[0x0a, 1, b'x'][..]));
        assert_eq!(r.key().ok(), Some((7, LEN)));
        assert_eq!(r.bytes().ok(), Some(&[][..]));
        assert!(r.is_empty());
    }
}
