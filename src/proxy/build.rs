//! PROXY v2 headers written byte by byte from the specification, for tests, the fuzz target's seeds
//! and the benches: what AWS, Azure and GCP load balancers put in front of a connection.

use std::net::SocketAddr;

use super::{V2_FIXED, V2_SIGNATURE};

/// A TLV to put in a header.
#[derive(Debug, Clone)]
pub enum Tlv {
    /// AWS PrivateLink's VPC endpoint ID (type 0xEA, subtype 0x01).
    Aws(&'static str),
    /// Azure Private Link Service's LinkID (type 0xEE, subtype 0x01, u32 little-endian).
    Azure(u32),
    /// Google PSC's connection ID (type 0xE0, u64 big-endian).
    Gcp(u64),
    /// Any type with any value.
    Raw(u8, Vec<u8>),
}

impl Tlv {
    fn bytes(&self) -> (u8, Vec<u8>) {
        match self {
            Tlv::Aws(id) => (0xEA, [&[1u8][..], id.as_bytes()].concat()),
            Tlv::Azure(id) => (0xEE, [&[1u8][..], &id.to_le_bytes()].concat()),
            Tlv::Gcp(id) => (0xE0, id.to_be_bytes().to_vec()),
            Tlv::Raw(kind, value) => (*kind, value.clone()),
        }
    }
}

/// A v2 header: LOCAL or PROXY, from `source` (TCP over its family; None: UNSPEC) to a fixed
/// destination, with `tlvs`, and a CRC32c TLV last when `crc`.
pub fn v2(local: bool, source: Option<SocketAddr>, tlvs: &[Tlv], crc: bool) -> Vec<u8> {
    let mut h = V2_SIGNATURE.to_vec();
    h.push(if local { 0x20 } else { 0x21 });
    match source {
        Some(SocketAddr::V4(s)) => {
            h.extend([0x11, 0, 0]);
            h.extend(s.ip().octets());
            h.extend([10, 0, 0, 100]);
            h.extend(s.port().to_be_bytes());
            h.extend(9092u16.to_be_bytes());
        }
        Some(SocketAddr::V6(s)) => {
            h.extend([0x21, 0, 0]);
            h.extend(s.ip().octets());
            h.extend(std::net::Ipv6Addr::LOCALHOST.octets());
            h.extend(s.port().to_be_bytes());
            h.extend(9092u16.to_be_bytes());
        }
        None => h.extend([0x00, 0, 0]),
    }
    for tlv in tlvs {
        let (kind, value) = tlv.bytes();
        h.push(kind);
        h.extend((value.len() as u16).to_be_bytes());
        h.extend(value);
    }
    let crc_at = crc.then(|| {
        h.extend([0x03, 0, 4, 0, 0, 0, 0]);
        h.len() - 4
    });
    let len = (h.len() - V2_FIXED) as u16;
    h[14..16].copy_from_slice(&len.to_be_bytes());
    if let Some(at) = crc_at {
        let sum = crc32c::crc32c(&h);
        h[at..at + 4].copy_from_slice(&sum.to_be_bytes());
    }
    h
}
