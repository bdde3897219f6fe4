//! Before everything else on a listener with `proxy_protocol = "required"`: the PROXY protocol
//! header (v1 text or v2 binary, haproxy's proxy-protocol.txt) a load balancer puts in front of a
//! connection, naming the real client and, behind a private link, the endpoint it came through.
//!
//! The parser works on a byte slice and says how many bytes it needs when they are not all there
//! ([`Parsed::NeedMore`]), so that the reader ([`read`]) takes exactly the header off the socket and
//! leaves what follows (a TLS ClientHello, the first Kafka frame) where it is. Every length is
//! checked against the bytes with the [`Cursor`] of `wire.rs`, and the whole header is bounded by
//! [`MAX_HEADER`], so a hostile header costs at most that much memory.
//!
//! Why a parser of our own: the crates that parse PROXY headers hand back TLVs as raw bytes (none
//! knows the private-link TLVs) and do not check the CRC32c TLV, and a reader must in any case
//! take exactly the header off the socket; the grammar is small and fuzzed here
//! (`fuzz/fuzz_targets/proxy_header.rs`).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::wire::Cursor;

/// The 12 bytes every v2 header starts with.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// What every v1 header starts with.
pub const V1_PREFIX: &[u8] = b"PROXY ";
/// The longest v1 line, CRLF included (the specification's bound).
pub const V1_MAX: usize = 107;
/// The fixed part of a v2 header: signature, version and command, family, length.
pub const V2_FIXED: usize = 16;
/// The longest header accepted. Load balancers send tens of bytes (addresses and an endpoint TLV);
/// haproxy with every TLV it knows stays within a few hundred. The format allows 64 KiB.
pub const MAX_HEADER: usize = 4096;
/// The fewest bytes the reader takes before it can tell a v1 header from a v2 one: the shortest
/// valid header ("PROXY UNKNOWN\r\n") is 15 bytes, so reading them never takes a byte past it.
pub const FIRST_READ: usize = 15;

/// TLV types (proxy-protocol.txt §2.2) and the private-link ones of the three clouds.
const PP2_TYPE_CRC32C: u8 = 0x03;
/// AWS: subtype 0x01 is the VPC endpoint ID, ASCII (`vpce-…`).
const PP2_TYPE_AWS: u8 = 0xEA;
const PP2_SUBTYPE_AWS_VPCE_ID: u8 = 0x01;
/// Azure Private Link Service: subtype 0x01 is the private endpoint's LinkID, u32 little-endian.
const PP2_TYPE_AZURE: u8 = 0xEE;
const PP2_SUBTYPE_AZURE_LINKID: u8 = 0x01;
/// Google Private Service Connect: the PSC connection ID, u64 big-endian (no subtype).
const PP2_TYPE_GCP: u8 = 0xE0;

/// The private-link endpoint a connection came through, as its load balancer's TLV names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Endpoint {
    /// AWS PrivateLink: the VPC endpoint ID (`vpce-0a1b2c3d4e5f67890`).
    Aws(String),
    /// Azure Private Link Service: the private endpoint's LinkID.
    Azure(u32),
    /// Google Private Service Connect: the PSC connection ID.
    Gcp(u64),
}

/// As `allow_endpoints` spells them: `vpce-…`, `azure:<LinkID>`, `psc:<id>`.
impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Aws(id) => f.write_str(id),
            Endpoint::Azure(id) => write!(f, "azure:{id}"),
            Endpoint::Gcp(id) => write!(f, "psc:{id}"),
        }
    }
}

impl std::str::FromStr for Endpoint {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(id) = s.strip_prefix("azure:") {
            return id.parse().map(Endpoint::Azure).map_err(|_| format!("'{id}' is not an Azure LinkID (a u32)"));
        }
        if let Some(id) = s.strip_prefix("psc:") {
            return id.parse().map(Endpoint::Gcp).map_err(|_| format!("'{id}' is not a PSC connection ID (a u64)"));
        }
        if s.starts_with("vpce-") && s.len() > 5 && s[5..].bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Ok(Endpoint::Aws(s.to_owned()));
        }
        Err(format!("'{s}' is not an endpoint: write vpce-… (AWS), azure:<LinkID> or psc:<connection id>"))
    }
}

/// What a header says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Header {
    /// v2 LOCAL: the load balancer's own connection (a health check); no client behind it.
    Local,
    /// A relayed connection: the real client's address when the header names one (TCP over IPv4
    /// or IPv6; v1 `UNKNOWN` and v2 `UNSPEC`, UNIX or UDP families do not), and its endpoint.
    Proxy { source: Option<SocketAddr>, endpoint: Option<Endpoint> },
}

/// The outcome of looking at the start of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// Not enough bytes yet: the header is at least this long (always more than was given).
    NeedMore(usize),
    /// A whole header of this many bytes.
    Done(Header, usize),
}

/// Why a header was refused. Each is a sentence an operator can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    #[error("no PROXY protocol header (the listener requires one: is PROXY protocol v2 on at the load balancer?)")]
    Missing,
    #[error("malformed PROXY v1 header: {0}")]
    V1(&'static str),
    #[error("malformed PROXY v2 header: {0}")]
    V2(&'static str),
    #[error("PROXY v2 header of {0} bytes, above the gateway's limit of {MAX_HEADER}")]
    TooLong(usize),
    #[error("PROXY v2 header whose CRC32c does not match its bytes")]
    Checksum,
    #[error("PROXY v2 header with two {0} TLVs")]
    Duplicate(&'static str),
}

/// Looks at the bytes a connection starts with.
pub fn parse(buf: &[u8]) -> Result<Parsed, ProxyError> {
    // Decide v1 or v2 on as few bytes as tell them apart; anything else is refused at once.
    let v2 = V2_SIGNATURE.starts_with(&buf[..buf.len().min(12)]);
    let v1 = V1_PREFIX.starts_with(&buf[..buf.len().min(V1_PREFIX.len())]);
    match (v1, v2) {
        (false, false) => Err(ProxyError::Missing),
        _ if buf.len() < FIRST_READ => Ok(Parsed::NeedMore(FIRST_READ)),
        (true, _) => parse_v1(buf),
        (_, true) => parse_v2(buf),
    }
}

/// `PROXY TCP4|TCP6 SRC DST SPORT DPORT\r\n` or `PROXY UNKNOWN…\r\n`.
fn parse_v1(buf: &[u8]) -> Result<Parsed, ProxyError> {
    let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
        if buf.len() >= V1_MAX {
            return Err(ProxyError::V1("no CRLF within 107 bytes"));
        }
        return Ok(Parsed::NeedMore(buf.len() + 1));
    };
    let used = end + 2;
    if used > V1_MAX {
        return Err(ProxyError::V1("longer than 107 bytes"));
    }
    if used < FIRST_READ {
        return Err(ProxyError::V1("shorter than any valid header"));
    }
    let line = std::str::from_utf8(&buf[V1_PREFIX.len()..end]).map_err(|_| ProxyError::V1("not ASCII"))?;
    let mut words = line.split(' ');
    let family = words.next().unwrap_or_default();
    if family == "UNKNOWN" {
        // The sender does not know the addresses; the rest of the line is to be ignored.
        return Ok(Parsed::Done(Header::Proxy { source: None, endpoint: None }, used));
    }
    let v6 = match family {
        "TCP4" => false,
        "TCP6" => true,
        _ => return Err(ProxyError::V1("the protocol is not TCP4, TCP6 or UNKNOWN")),
    };
    let fields: Vec<&str> = words.collect();
    let [src, dst, sport, dport] = fields[..] else { return Err(ProxyError::V1("not four address fields")) };
    let ip = |s: &str| -> Result<IpAddr, ProxyError> {
        let ip: IpAddr = s.parse().map_err(|_| ProxyError::V1("an address does not parse"))?;
        if ip.is_ipv6() != v6 {
            return Err(ProxyError::V1("an address of the other family"));
        }
        Ok(ip)
    };
    let port = |s: &str| -> Result<u16, ProxyError> {
        // Decimal without leading zeros, as the specification writes them.
        if s.is_empty() || (s.len() > 1 && s.starts_with('0')) || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ProxyError::V1("a port is not a decimal number"));
        }
        s.parse().map_err(|_| ProxyError::V1("a port above 65535"))
    };
    let source = SocketAddr::new(ip(src)?, port(sport)?);
    ip(dst)?;
    port(dport)?;
    Ok(Parsed::Done(Header::Proxy { source: Some(source), endpoint: None }, used))
}

fn parse_v2(buf: &[u8]) -> Result<Parsed, ProxyError> {
    if buf.len() < V2_FIXED {
        return Ok(Parsed::NeedMore(V2_FIXED));
    }
    let (ver_cmd, family) = (buf[12], buf[13]);
    let len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    if ver_cmd >> 4 != 2 {
        return Err(ProxyError::V2("version is not 2"));
    }
    let local = match ver_cmd & 0x0f {
        0 => true,
        1 => false,
        _ => return Err(ProxyError::V2("command is neither LOCAL nor PROXY")),
    };
    let total = V2_FIXED + len;
    if total > MAX_HEADER {
        return Err(ProxyError::TooLong(total));
    }
    if buf.len() < total {
        return Ok(Parsed::NeedMore(total));
    }
    if local {
        // Receivers must ignore the addresses (and so anything after them) of a LOCAL header.
        return Ok(Parsed::Done(Header::Local, total));
    }
    let header = &buf[..total];
    let mut c = Cursor::at(header, V2_FIXED);
    let truncated = |_| ProxyError::V2("the addresses are longer than the header");
    let source = match (family >> 4, family & 0x0f) {
        // TCP over IPv4: source, destination, source port, destination port.
        (1, 1) => {
            let a = c.take(12, "addresses").map_err(truncated)?;
            let ip = Ipv4Addr::new(a[0], a[1], a[2], a[3]);
            Some(SocketAddr::new(ip.into(), u16::from_be_bytes([a[8], a[9]])))
        }
        (2, 1) => {
            let a = c.take(36, "addresses").map_err(truncated)?;
            let octets: [u8; 16] = a[..16].try_into().expect("16 bytes");
            Some(SocketAddr::new(Ipv6Addr::from(octets).into(), u16::from_be_bytes([a[32], a[33]])))
        }
        (1, _) => c.take(12, "addresses").map(|_| None).map_err(truncated)?,
        (2, _) => c.take(36, "addresses").map(|_| None).map_err(truncated)?,
        (3, _) => c.take(216, "addresses").map(|_| None).map_err(truncated)?,
        (0, _) => None,
        _ => return Err(ProxyError::V2("unknown address family")),
    };
    let mut endpoint = None;
    let mut crc = None;
    while !c.is_at_end() {
        let tlv = |_| ProxyError::V2("a TLV runs past the header");
        let kind = c.take(1, "tlv type").map_err(tlv)?[0];
        let size = c.take(2, "tlv length").map_err(tlv)?;
        let at = c.pos();
        let value = c.take(usize::from(u16::from_be_bytes([size[0], size[1]])), "tlv value").map_err(tlv)?;
        let found = match kind {
            PP2_TYPE_CRC32C => {
                let sum: [u8; 4] = value.try_into().map_err(|_| ProxyError::V2("a CRC32c TLV that is not 4 bytes"))?;
                set(&mut crc, (at, u32::from_be_bytes(sum)), "CRC32c")?;
                None
            }
            PP2_TYPE_AWS => match value.split_first() {
                Some((&PP2_SUBTYPE_AWS_VPCE_ID, id)) => {
                    let id = std::str::from_utf8(id)
                        .ok()
                        .filter(|id| id.parse::<Endpoint>().is_ok())
                        .ok_or(ProxyError::V2("an AWS VPC endpoint ID that is not vpce-…"))?;
                    Some(Endpoint::Aws(id.to_owned()))
                }
                _ => None,
            },
            PP2_TYPE_AZURE => match value.split_first() {
                Some((&PP2_SUBTYPE_AZURE_LINKID, id)) => {
                    let id: [u8; 4] =
                        id.try_into().map_err(|_| ProxyError::V2("an Azure LinkID that is not 4 bytes"))?;
                    Some(Endpoint::Azure(u32::from_le_bytes(id)))
                }
                _ => None,
            },
            PP2_TYPE_GCP => {
                let id: [u8; 8] =
                    value.try_into().map_err(|_| ProxyError::V2("a PSC connection ID that is not 8 bytes"))?;
                Some(Endpoint::Gcp(u64::from_be_bytes(id)))
            }
            // ALPN, authority, unique id, SSL, netns, NOOP and others: nothing the gateway acts on.
            _ => None,
        };
        if let Some(found) = found {
            set(&mut endpoint, found, "endpoint")?;
        }
    }
    if let Some((at, expected)) = crc {
        // Over the whole header with the checksum's own 4 bytes as zeros.
        let sum = crc32c::crc32c_append(crc32c::crc32c(&header[..at]), &[0; 4]);
        if crc32c::crc32c_append(sum, &header[at + 4..]) != expected {
            return Err(ProxyError::Checksum);
        }
    }
    Ok(Parsed::Done(Header::Proxy { source, endpoint }, total))
}

/// A TLV that may appear once: a second one would let a client smuggle its own value past the
/// load balancer's.
fn set<T>(slot: &mut Option<T>, value: T, name: &'static str) -> Result<(), ProxyError> {
    if slot.replace(value).is_some() {
        return Err(ProxyError::Duplicate(name));
    }
    Ok(())
}

/// Whether bytes start like a PROXY header of either version: what a second header (a load
/// balancer that prepends its own to one already there), or a header sent to a listener with
/// `proxy_protocol = "off"`, looks like where a Kafka frame belongs.
pub fn looks_like_header(buf: &[u8]) -> bool {
    buf.len() >= 6 && (buf.starts_with(&V2_SIGNATURE[..6]) || buf.starts_with(V1_PREFIX))
}

/// Why reading a header from a socket failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Header(#[from] ProxyError),
    #[error("the connection closed within the PROXY header")]
    Closed,
    #[error("reading the PROXY header: {0}")]
    Io(#[from] std::io::Error),
}

/// Takes exactly one header off `stream`: never a byte of what follows it.
pub async fn read(stream: &mut (impl tokio::io::AsyncRead + Unpin)) -> Result<Header, ReadError> {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::with_capacity(V2_FIXED);
    let mut want = FIRST_READ;
    loop {
        let at = buf.len();
        buf.resize(want, 0);
        if let Err(e) = stream.read_exact(&mut buf[at..]).await {
            return Err(match e.kind() {
                std::io::ErrorKind::UnexpectedEof => ReadError::Closed,
                _ => ReadError::Io(e),
            });
        }
        match parse(&buf)? {
            Parsed::Done(header, used) => {
                debug_assert_eq!(used, buf.len());
                return Ok(header);
            }
            Parsed::NeedMore(n) => want = n,
        }
    }
}

#[cfg(any(test, feature = "testing"))]
pub mod build;

#[cfg(test)]
mod tests;
