//! The DNS wire format (RFC 1035, EDNS0 of RFC 6891), as far as a cluster DNS server needs it:
//! messages with any number of questions and records, names with compression (followed when
//! decoding, written when encoding), and record data for A, AAAA, CNAME, NS, PTR, SOA, SRV and TXT;
//! other types keep their data as bytes. The OPT pseudo-record is lifted out of the additional
//! section into [`Edns`].
//!
//! Decoding never panics: every read is bounds-checked, compression pointers must point backwards
//! and names stay within 255 bytes.

use std::collections::HashMap;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

pub(crate) const TYPE_A: u16 = 1;
pub(crate) const TYPE_NS: u16 = 2;
pub(crate) const TYPE_CNAME: u16 = 5;
pub(crate) const TYPE_SOA: u16 = 6;
pub(crate) const TYPE_PTR: u16 = 12;
pub(crate) const TYPE_TXT: u16 = 16;
pub(crate) const TYPE_AAAA: u16 = 28;
pub(crate) const TYPE_SRV: u16 = 33;
pub(crate) const TYPE_OPT: u16 = 41;
pub(crate) const TYPE_ANY: u16 = 255;
pub(crate) const CLASS_IN: u16 = 1;

pub(crate) const RCODE_NOERROR: u16 = 0;
pub(crate) const RCODE_FORMERR: u16 = 1;
pub(crate) const RCODE_SERVFAIL: u16 = 2;
pub(crate) const RCODE_NXDOMAIN: u16 = 3;
pub(crate) const RCODE_NOTIMP: u16 = 4;
/// Extended rcode (needs EDNS): the query's EDNS version is not supported.
pub(crate) const RCODE_BADVERS: u16 = 16;

/// The fixed header's size.
pub(crate) const HEADER_LEN: usize = 12;
const MAX_NAME_LEN: usize = 255;
const MAX_LABEL_LEN: usize = 63;

/// Why a message could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum WireError {
    #[error("message ends early")]
    Short,
    #[error("bad label")]
    BadLabel,
    #[error("bad compression pointer")]
    BadPointer,
    #[error("name longer than 255 bytes")]
    NameTooLong,
    #[error("bad record data")]
    BadRdata,
    #[error("more than one OPT record")]
    DuplicateOpt,
}

/// A domain name: its labels without the root, bytes as received (case preserved).
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub(crate) struct Name {
    labels: Vec<Vec<u8>>,
}

impl Name {
    /// A name from labels; `None` when a label is empty or too long or the name too long.
    pub(crate) fn from_labels<L: AsRef<[u8]>>(labels: impl IntoIterator<Item = L>) -> Option<Self> {
        let labels: Vec<Vec<u8>> = labels.into_iter().map(|l| l.as_ref().to_vec()).collect();
        let name = Self { labels };
        let ok = name
            .labels
            .iter()
            .all(|l| !l.is_empty() && l.len() <= MAX_LABEL_LEN)
            && name.wire_len() <= MAX_NAME_LEN;
        ok.then_some(name)
    }

    /// Parses dotted text (`a.b.c` or `a.b.c.`; `.` is the root); no escapes.
    pub(crate) fn parse(text: &str) -> Option<Self> {
        let text = text.strip_suffix('.').unwrap_or(text);
        if text.is_empty() {
            return Some(Self::default());
        }
        Self::from_labels(text.split('.'))
    }

    pub(crate) fn labels(&self) -> &[Vec<u8>] {
        &self.labels
    }

    /// Its size on the wire without compression (length bytes and the root included).
    pub(crate) fn wire_len(&self) -> usize {
        self.labels.iter().map(|l| l.len() + 1).sum::<usize>() + 1
    }

    /// The labels in front of `suffix` when this name ends with it (ASCII case-insensitively).
    pub(crate) fn strip_suffix(&self, suffix: &Name) -> Option<&[Vec<u8>]> {
        let n = self.labels.len().checked_sub(suffix.labels.len())?;
        let (front, back) = self.labels.split_at(n);
        back.iter()
            .zip(&suffix.labels)
            .all(|(a, b)| a.eq_ignore_ascii_case(b))
            .then_some(front)
    }

    /// This name with `labels` in front; `None` when it gets too long.
    pub(crate) fn prepend<L: AsRef<[u8]>>(&self, labels: &[L]) -> Option<Name> {
        Self::from_labels(
            labels
                .iter()
                .map(|l| l.as_ref().to_vec())
                .chain(self.labels.iter().cloned()),
        )
    }

    /// ASCII case-insensitive equality, as DNS compares names.
    #[cfg(test)]
    pub(crate) fn eq_ignore_case(&self, other: &Name) -> bool {
        self.labels.len() == other.labels.len() && self.strip_suffix(other).is_some()
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.labels.is_empty() {
            return f.write_str(".");
        }
        for label in &self.labels {
            for &b in label {
                match b {
                    b'.' | b'\\' => write!(f, "\\{}", b as char)?,
                    0x21..=0x7e => write!(f, "{}", b as char)?,
                    _ => write!(f, "\\{b:03}")?,
                }
            }
            f.write_str(".")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Name({self})")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Question {
    pub(crate) name: Name,
    pub(crate) qtype: u16,
    pub(crate) qclass: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Soa {
    pub(crate) mname: Name,
    pub(crate) rname: Name,
    pub(crate) serial: u32,
    pub(crate) refresh: u32,
    pub(crate) retry: u32,
    pub(crate) expire: u32,
    pub(crate) minimum: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RData {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Cname(Name),
    Ns(Name),
    Ptr(Name),
    Soa(Soa),
    Srv {
        priority: u16,
        weight: u16,
        port: u16,
        target: Name,
    },
    Txt(Vec<Vec<u8>>),
    /// Any other type, its data as received (only safe to re-encode if it holds no names).
    Other {
        rtype: u16,
        data: Vec<u8>,
    },
}

impl RData {
    pub(crate) fn rtype(&self) -> u16 {
        match self {
            RData::A(_) => TYPE_A,
            RData::Aaaa(_) => TYPE_AAAA,
            RData::Cname(_) => TYPE_CNAME,
            RData::Ns(_) => TYPE_NS,
            RData::Ptr(_) => TYPE_PTR,
            RData::Soa(_) => TYPE_SOA,
            RData::Srv { .. } => TYPE_SRV,
            RData::Txt(_) => TYPE_TXT,
            RData::Other { rtype, .. } => *rtype,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    pub(crate) name: Name,
    pub(crate) class: u16,
    pub(crate) ttl: u32,
    pub(crate) data: RData,
}

impl Record {
    /// An IN-class record.
    pub(crate) fn new(name: Name, ttl: u32, data: RData) -> Self {
        Self {
            name,
            class: CLASS_IN,
            ttl,
            data,
        }
    }
}

/// The EDNS0 OPT pseudo-record (options are dropped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Edns {
    /// The sender's UDP payload size.
    pub(crate) udp_size: u16,
    pub(crate) version: u8,
    /// The DO bit.
    pub(crate) dnssec_ok: bool,
}

/// The header flags besides the rcode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Flags {
    /// A response (QR).
    pub(crate) response: bool,
    pub(crate) opcode: u8,
    /// Authoritative answer (AA).
    pub(crate) authoritative: bool,
    /// Truncated (TC).
    pub(crate) truncated: bool,
    /// Recursion desired (RD).
    pub(crate) recursion_desired: bool,
    /// Recursion available (RA).
    pub(crate) recursion_available: bool,
    /// Authentic data (AD).
    pub(crate) authentic_data: bool,
    /// Checking disabled (CD).
    pub(crate) checking_disabled: bool,
}

impl Flags {
    fn decode(bits: u16) -> (Self, u16) {
        let flags = Self {
            response: bits & 0x8000 != 0,
            opcode: ((bits >> 11) & 0xf) as u8,
            authoritative: bits & 0x0400 != 0,
            truncated: bits & 0x0200 != 0,
            recursion_desired: bits & 0x0100 != 0,
            recursion_available: bits & 0x0080 != 0,
            authentic_data: bits & 0x0020 != 0,
            checking_disabled: bits & 0x0010 != 0,
        };
        (flags, bits & 0xf)
    }

    fn encode(&self, rcode: u16) -> u16 {
        let bit = |b: bool, v: u16| if b { v } else { 0 };
        bit(self.response, 0x8000)
            | (u16::from(self.opcode & 0xf) << 11)
            | bit(self.authoritative, 0x0400)
            | bit(self.truncated, 0x0200)
            | bit(self.recursion_desired, 0x0100)
            | bit(self.recursion_available, 0x0080)
            | bit(self.authentic_data, 0x0020)
            | bit(self.checking_disabled, 0x0010)
            | (rcode & 0xf)
    }
}

/// The fixed header, readable even when the rest of a message is not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) id: u16,
    pub(crate) flags: Flags,
    /// The header's 4 rcode bits.
    pub(crate) rcode: u16,
    pub(crate) qdcount: u16,
}

impl Header {
    pub(crate) fn decode(buf: &[u8]) -> Option<Self> {
        let b = buf.get(..HEADER_LEN)?;
        let (flags, rcode) = Flags::decode(u16::from_be_bytes([b[2], b[3]]));
        Some(Self {
            id: u16::from_be_bytes([b[0], b[1]]),
            flags,
            rcode,
            qdcount: u16::from_be_bytes([b[4], b[5]]),
        })
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Message {
    pub(crate) id: u16,
    pub(crate) flags: Flags,
    /// The full rcode: the header's 4 bits plus the OPT record's upper 8 bits.
    pub(crate) rcode: u16,
    pub(crate) questions: Vec<Question>,
    pub(crate) answers: Vec<Record>,
    pub(crate) authority: Vec<Record>,
    /// Without the OPT record (see `edns`).
    pub(crate) additional: Vec<Record>,
    pub(crate) edns: Option<Edns>,
}

impl Message {
    pub(crate) fn decode(buf: &[u8]) -> Result<Self, WireError> {
        let header = Header::decode(buf).ok_or(WireError::Short)?;
        let mut r = Reader {
            buf,
            pos: HEADER_LEN,
        };
        let count = |i: usize| u16::from_be_bytes([buf[i], buf[i + 1]]);
        let (qd, an, ns, ar) = (count(4), count(6), count(8), count(10));
        let mut msg = Message {
            id: header.id,
            flags: header.flags,
            rcode: header.rcode,
            ..Message::default()
        };
        for _ in 0..qd {
            let name = r.name()?;
            let qtype = r.u16()?;
            let qclass = r.u16()?;
            msg.questions.push(Question {
                name,
                qtype,
                qclass,
            });
        }
        for _ in 0..an {
            msg.answers.push(r.record()?.0);
        }
        for _ in 0..ns {
            msg.authority.push(r.record()?.0);
        }
        for _ in 0..ar {
            let (record, opt) = r.record()?;
            match opt {
                Some((edns, ext_rcode)) => {
                    if msg.edns.is_some() {
                        return Err(WireError::DuplicateOpt);
                    }
                    msg.edns = Some(edns);
                    msg.rcode |= u16::from(ext_rcode) << 4;
                }
                None => msg.additional.push(record),
            }
        }
        Ok(msg)
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut w = Writer {
            buf: Vec::with_capacity(512),
            names: HashMap::new(),
        };
        let count = |n: usize| u16::try_from(n).unwrap_or(u16::MAX);
        let answers = &self.answers[..usize::from(count(self.answers.len()))];
        let authority = &self.authority[..usize::from(count(self.authority.len()))];
        let opt = usize::from(self.edns.is_some());
        let additional = &self.additional[..usize::from(count(self.additional.len() + opt)) - opt];
        w.u16(self.id);
        w.u16(self.flags.encode(self.rcode));
        w.u16(count(self.questions.len()));
        w.u16(count(answers.len()));
        w.u16(count(authority.len()));
        w.u16(count(additional.len() + opt));
        for q in self.questions.iter().take(usize::from(u16::MAX)) {
            w.name(&q.name, true);
            w.u16(q.qtype);
            w.u16(q.qclass);
        }
        for record in answers.iter().chain(authority).chain(additional) {
            w.record(record);
        }
        if let Some(edns) = &self.edns {
            w.buf.push(0); // root name
            w.u16(TYPE_OPT);
            w.u16(edns.udp_size);
            w.buf.push(((self.rcode >> 4) & 0xff) as u8);
            w.buf.push(edns.version);
            w.u16(if edns.dnssec_ok { 0x8000 } else { 0 });
            w.u16(0); // no options
        }
        w.buf
    }

    /// The same message with no records and the TC bit: "ask again over TCP".
    pub(crate) fn truncated(&self) -> Message {
        Message {
            flags: Flags {
                truncated: true,
                ..self.flags
            },
            answers: Vec::new(),
            authority: Vec::new(),
            additional: Vec::new(),
            ..self.clone()
        }
    }
}

/// Sets the TC bit of an encoded message and drops everything after its questions. `None` when
/// the questions cannot be read.
pub(crate) fn truncate_encoded(buf: &[u8]) -> Option<Vec<u8>> {
    let header = Header::decode(buf)?;
    let mut r = Reader {
        buf,
        pos: HEADER_LEN,
    };
    for _ in 0..header.qdcount {
        r.name().ok()?;
        r.take(4).ok()?;
    }
    let mut out = buf.get(..r.pos)?.to_vec();
    out[2] |= 0x02; // TC
    out[6..12].fill(0);
    Some(out)
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let end = self.pos.checked_add(n).ok_or(WireError::Short)?;
        let s = self.buf.get(self.pos..end).ok_or(WireError::Short)?;
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, WireError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, WireError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A name at the current position; the position moves past it (not past what pointers
    /// reach).
    fn name(&mut self) -> Result<Name, WireError> {
        let mut labels = Vec::new();
        let mut len = 1;
        let mut pos = self.pos;
        // Where reading resumes: after the first pointer, or after the root label.
        let mut resume = None;
        loop {
            let b = *self.buf.get(pos).ok_or(WireError::Short)?;
            match b & 0xc0 {
                0x00 => {
                    let n = usize::from(b);
                    if n == 0 {
                        self.pos = resume.unwrap_or(pos + 1);
                        return Ok(Name { labels });
                    }
                    let label = self.buf.get(pos + 1..pos + 1 + n).ok_or(WireError::Short)?;
                    len += n + 1;
                    if len > MAX_NAME_LEN {
                        return Err(WireError::NameTooLong);
                    }
                    labels.push(label.to_vec());
                    pos += n + 1;
                }
                0xc0 => {
                    let low = *self.buf.get(pos + 1).ok_or(WireError::Short)?;
                    let target = usize::from(u16::from_be_bytes([b & 0x3f, low]));
                    // Only backwards: no loops, and each hop makes progress.
                    if target >= pos {
                        return Err(WireError::BadPointer);
                    }
                    resume.get_or_insert(pos + 2);
                    pos = target;
                }
                _ => return Err(WireError::BadLabel),
            }
        }
    }

    /// A record; for the OPT pseudo-record also its EDNS fields and extended rcode bits.
    fn record(&mut self) -> Result<(Record, Option<(Edns, u8)>), WireError> {
        let name = self.name()?;
        let rtype = self.u16()?;
        let class = self.u16()?;
        let ttl = self.u32()?;
        let rdlen = usize::from(self.u16()?);
        let start = self.pos;
        let end = start + rdlen;
        if end > self.buf.len() {
            return Err(WireError::Short);
        }
        let mut opt = None;
        let data = match rtype {
            TYPE_A => RData::A(Ipv4Addr::from(
                <[u8; 4]>::try_from(self.take(rdlen)?).map_err(|_| WireError::BadRdata)?,
            )),
            TYPE_AAAA => RData::Aaaa(Ipv6Addr::from(
                <[u8; 16]>::try_from(self.take(rdlen)?).map_err(|_| WireError::BadRdata)?,
            )),
            TYPE_CNAME => RData::Cname(self.name()?),
            TYPE_NS => RData::Ns(self.name()?),
            TYPE_PTR => RData::Ptr(self.name()?),
            TYPE_SOA => RData::Soa(Soa {
                mname: self.name()?,
                rname: self.name()?,
                serial: self.u32()?,
                refresh: self.u32()?,
                retry: self.u32()?,
                expire: self.u32()?,
                minimum: self.u32()?,
            }),
            TYPE_SRV => RData::Srv {
                priority: self.u16()?,
                weight: self.u16()?,
                port: self.u16()?,
                target: self.name()?,
            },
            TYPE_TXT => {
                let mut strings = Vec::new();
                while self.pos < end {
                    let n = usize::from(self.u8()?);
                    strings.push(self.take(n)?.to_vec());
                }
                RData::Txt(strings)
            }
            _ => {
                if rtype == TYPE_OPT {
                    if !name.labels.is_empty() {
                        return Err(WireError::BadRdata);
                    }
                    let edns = Edns {
                        udp_size: class,
                        version: ((ttl >> 16) & 0xff) as u8,
                        dnssec_ok: ttl & 0x8000 != 0,
                    };
                    opt = Some((edns, (ttl >> 24) as u8));
                }
                RData::Other {
                    rtype,
                    data: self.take(rdlen)?.to_vec(),
                }
            }
        };
        if self.pos != end {
            return Err(WireError::BadRdata);
        }
        Ok((
            Record {
                name,
                class,
                ttl,
                data,
            },
            opt,
        ))
    }
}

struct Writer {
    buf: Vec<u8>,
    /// Wire form of a name suffix -> where it was written. Case-sensitive, so a compressed name
    /// keeps its spelling (answers repeat the question's case).
    names: HashMap<Vec<u8>, u16>,
}

impl Writer {
    fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    fn name(&mut self, name: &Name, compress: bool) {
        for i in 0..name.labels.len() {
            let mut key = Vec::new();
            for label in &name.labels[i..] {
                key.push(label.len() as u8);
                key.extend_from_slice(label);
            }
            if compress && let Some(&at) = self.names.get(&key) {
                self.u16(0xc000 | at);
                return;
            }
            if let Ok(at) = u16::try_from(self.buf.len())
                && at < 0x4000
            {
                self.names.entry(key).or_insert(at);
            }
            let label = &name.labels[i];
            self.buf.push(label.len() as u8);
            self.buf.extend_from_slice(label);
        }
        self.buf.push(0);
    }

    fn record(&mut self, r: &Record) {
        self.name(&r.name, true);
        self.u16(r.data.rtype());
        self.u16(r.class);
        self.u32(r.ttl);
        let len_at = self.buf.len();
        self.u16(0);
        match &r.data {
            RData::A(ip) => self.buf.extend_from_slice(&ip.octets()),
            RData::Aaaa(ip) => self.buf.extend_from_slice(&ip.octets()),
            RData::Cname(n) | RData::Ns(n) | RData::Ptr(n) => self.name(n, true),
            RData::Soa(soa) => {
                self.name(&soa.mname, true);
                self.name(&soa.rname, true);
                for v in [soa.serial, soa.refresh, soa.retry, soa.expire, soa.minimum] {
                    self.u32(v);
                }
            }
            RData::Srv {
                priority,
                weight,
                port,
                target,
            } => {
                self.u16(*priority);
                self.u16(*weight);
                self.u16(*port);
                // RFC 2782: the target is never compressed.
                self.name(target, false);
            }
            RData::Txt(strings) => {
                for s in strings {
                    let s = &s[..s.len().min(255)];
                    self.buf.push(s.len() as u8);
                    self.buf.extend_from_slice(s);
                }
            }
            RData::Other { data, .. } => self.buf.extend_from_slice(data),
        }
        let len = u16::try_from(self.buf.len() - len_at - 2).unwrap_or(u16::MAX);
        self.buf[len_at..len_at + 2].copy_from_slice(&len.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> Name {
        Name::parse(s).expect("name")
    }

    fn sample() -> Message {
        let owner = name("Web.Default.svc.cluster.local");
        Message {
            id: 0xbeef,
            flags: Flags {
                response: true,
                authoritative: true,
                recursion_desired: true,
                recursion_available: true,
                ..Flags::default()
            },
            rcode: RCODE_NOERROR,
            questions: vec![Question {
                name: owner.clone(),
                qtype: TYPE_SRV,
                qclass: CLASS_IN,
            }],
            answers: vec![
                Record::new(owner.clone(), 5, RData::A(Ipv4Addr::new(10, 43, 0, 7))),
                Record::new(owner.clone(), 5, RData::Aaaa(Ipv6Addr::LOCALHOST)),
                Record::new(owner.clone(), 5, RData::Cname(name("example.com"))),
                Record::new(
                    owner.clone(),
                    5,
                    RData::Ptr(name("web.default.svc.cluster.local")),
                ),
                Record::new(
                    owner.clone(),
                    5,
                    RData::Srv {
                        priority: 0,
                        weight: 100,
                        port: 80,
                        target: name("web.default.svc.cluster.local"),
                    },
                ),
                Record::new(owner, 5, RData::Txt(vec![b"1.1.0".to_vec(), Vec::new()])),
            ],
            authority: vec![Record::new(
                name("cluster.local"),
                5,
                RData::Soa(Soa {
                    mname: name("ns.dns.cluster.local"),
                    rname: name("hostmaster.cluster.local"),
                    serial: 7,
                    refresh: 7200,
                    retry: 1800,
                    expire: 86400,
                    minimum: 5,
                }),
            )],
            additional: vec![Record::new(
                name("a.b"),
                5,
                RData::Other {
                    rtype: 99,
                    data: vec![1, 2, 3],
                },
            )],
            edns: Some(Edns {
                udp_size: 1232,
                version: 0,
                dnssec_ok: true,
            }),
        }
    }

    #[test]
    fn messages_round_trip_through_the_wire_format() {
        let msg = sample();
        let bytes = msg.encode();
        assert_eq!(Message::decode(&bytes), Ok(msg));
    }

    #[test]
    fn repeated_names_are_compressed_but_srv_targets_are_not() {
        let bytes = sample().encode();
        // The question writes the name in full; the answers' owners point to it.
        let full = b"\x03Web\x07Default\x03svc\x07cluster\x05local\x00";
        assert_eq!(bytes.windows(full.len()).filter(|w| w == full).count(), 1);
        let pointer_to_question = [0xc0, HEADER_LEN as u8];
        assert_eq!(
            bytes
                .windows(2)
                .filter(|w| *w == pointer_to_question)
                .count(),
            6
        );
        let srv_target = b"\x03web\x07default\x03svc\x07cluster\x05local\x00";
        assert_eq!(
            bytes
                .windows(srv_target.len())
                .filter(|w| w == srv_target)
                .count(),
            1
        );
    }

    #[test]
    fn extended_rcodes_travel_in_the_opt_record() {
        let msg = Message {
            rcode: RCODE_BADVERS,
            edns: Some(Edns {
                udp_size: 512,
                version: 0,
                dnssec_ok: false,
            }),
            ..Message::default()
        };
        let decoded = Message::decode(&msg.encode()).expect("decode");
        assert_eq!(decoded.rcode, RCODE_BADVERS);
    }

    #[test]
    fn malformed_messages_are_errors_not_panics() {
        let good = sample().encode();
        // Every prefix of a valid message.
        for n in 0..good.len() {
            assert!(Message::decode(&good[..n]).is_err(), "prefix {n}");
        }
        // A pointer to itself, and one pointing forward.
        let mut looped = good[..HEADER_LEN].to_vec();
        looped[4..12].copy_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
        looped.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
        assert_eq!(Message::decode(&looped), Err(WireError::BadPointer));
        looped[HEADER_LEN + 1] = 40;
        assert_eq!(Message::decode(&looped), Err(WireError::BadPointer));
        // Reserved label type.
        looped[HEADER_LEN] = 0x80;
        assert_eq!(Message::decode(&looped), Err(WireError::BadLabel));
        // A name over 255 bytes.
        let mut long = good[..HEADER_LEN].to_vec();
        long[4..12].copy_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
        for _ in 0..5 {
            long.push(63);
            long.extend_from_slice(&[b'a'; 63]);
        }
        long.extend_from_slice(&[0, 0, 1, 0, 1]);
        assert_eq!(Message::decode(&long), Err(WireError::NameTooLong));
        // Every single-byte corruption decodes or fails, never panics.
        for i in 0..good.len() {
            for v in [0x00, 0x3f, 0xc0, 0xff] {
                let mut bad = good.clone();
                bad[i] = v;
                let _ = Message::decode(&bad);
            }
        }
    }

    #[test]
    fn truncating_an_encoded_message_keeps_the_question_and_sets_tc() {
        let bytes = sample().encode();
        let cut = truncate_encoded(&bytes).expect("truncate");
        let msg = Message::decode(&cut).expect("decode");
        assert!(msg.flags.truncated);
        assert_eq!(msg.questions, sample().questions);
        assert!(msg.answers.is_empty() && msg.edns.is_none());
    }

    #[test]
    fn names_compare_and_strip_case_insensitively() {
        let n = name("Web.NS.svc.Cluster.Local.");
        assert_eq!(n.to_string(), "Web.NS.svc.Cluster.Local.");
        let front = n.strip_suffix(&name("cluster.local")).expect("suffix");
        assert_eq!(front, [b"Web".to_vec(), b"NS".to_vec(), b"svc".to_vec()]);
        assert!(n.strip_suffix(&name("example.local")).is_none());
        assert!(name("A.b").eq_ignore_case(&name("a.B")));
        assert!(Name::parse("a..b").is_none());
        assert!(Name::parse(&"a".repeat(64)).is_none());
        assert_eq!(name(".").to_string(), ".");
    }
}
