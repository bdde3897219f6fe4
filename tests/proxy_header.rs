//! Property tests (proptest) of the PROXY protocol header parser, which reads the first bytes of
//! every connection on a listener that requires the header:
//! 1. any v2 header a load balancer could write (either family or none, any cloud's endpoint TLV,
//!    other TLVs, with or without CRC32c) reads back as what it says, taking exactly its own bytes
//!    whatever follows it, and the socket reader takes the same from any split into pieces;
//! 2. a header with a CRC32c never reads as a different client or endpoint once a byte of it has
//!    changed: it is refused, or asks for more, or says the same;
//! 3. v1 lines of any TCP4/TCP6 address read back as their source;
//! 4. arbitrary bytes never panic it, and it never asks for less than it has or more than its bound.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use kafka_gateway::proxy::build::{Tlv, v2};
use kafka_gateway::proxy::{self, Endpoint, Header, MAX_HEADER, Parsed, parse};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;
use tokio::io::AsyncReadExt;

const VPCES: [&str; 3] = ["vpce-0a1b2c3d4e5f67890", "vpce-1", "vpce-ffffffffffffffffff"];

fn source() -> impl Strategy<Value = Option<SocketAddr>> {
    prop_oneof![
        Just(None),
        (any::<u32>(), any::<u16>()).prop_map(|(ip, port)| Some(SocketAddr::new(Ipv4Addr::from(ip).into(), port))),
        (any::<u128>(), any::<u16>()).prop_map(|(ip, port)| Some(SocketAddr::new(Ipv6Addr::from(ip).into(), port))),
    ]
}

fn endpoint() -> impl Strategy<Value = Option<(Tlv, Endpoint)>> {
    prop_oneof![
        Just(None),
        (0..3usize).prop_map(|i| Some((Tlv::Aws(VPCES[i]), Endpoint::Aws(VPCES[i].into())))),
        any::<u32>().prop_map(|id| Some((Tlv::Azure(id), Endpoint::Azure(id)))),
        any::<u64>().prop_map(|id| Some((Tlv::Gcp(id), Endpoint::Gcp(id)))),
    ]
}

/// TLVs the gateway skips: ALPN, authority, NOOP, unique id, SSL, netns, and the clouds' types
/// with other subtypes.
fn other_tlvs() -> impl Strategy<Value = Vec<Tlv>> {
    let kind = prop_oneof![Just(0x01u8), Just(0x02), Just(0x04), Just(0x05), Just(0x20), Just(0x30)];
    let other = (kind, vec(any::<u8>(), 0..40)).prop_map(|(k, v)| Tlv::Raw(k, v));
    let subtype = (prop_oneof![Just(0xEAu8), Just(0xEE)], 2..=255u8, vec(any::<u8>(), 0..8))
        .prop_map(|(k, sub, rest)| Tlv::Raw(k, [vec![sub], rest].concat()));
    vec(prop_oneof![other, subtype], 0..4)
}

/// Reads `bytes` through the socket reader, delivered in pieces of `piece` bytes.
fn read_in_pieces(bytes: Vec<u8>, piece: usize) -> (Result<Header, String>, Vec<u8>) {
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    rt.block_on(async move {
        let (mut w, mut r) = tokio::io::duplex(piece);
        let writer = async move {
            use tokio::io::AsyncWriteExt;
            for chunk in bytes.chunks(piece) {
                w.write_all(chunk).await.unwrap();
            }
        };
        let reader = async {
            let header = proxy::read(&mut r).await.map_err(|e| e.to_string());
            let mut rest = Vec::new();
            if header.is_ok() {
                r.read_to_end(&mut rest).await.unwrap();
            }
            (header, rest)
        };
        let ((), out) = tokio::join!(writer, reader);
        out
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn any_v2_header_reads_back_as_what_it_says(
        source in source(),
        endpoint in endpoint(),
        others in other_tlvs(),
        at in 0..5usize,
        crc in any::<bool>(),
        after in vec(any::<u8>(), 0..64),
        piece in 1..40usize,
    ) {
        let mut tlvs = others.clone();
        if let Some((tlv, _)) = &endpoint {
            tlvs.insert(at.min(tlvs.len()), tlv.clone());
        }
        let header = v2(false, source, &tlvs, crc);
        let expected = Header::Proxy { source, endpoint: endpoint.map(|(_, e)| e) };
        let mut bytes = header.clone();
        bytes.extend(&after);
        prop_assert_eq!(parse(&bytes), Ok(Parsed::Done(expected.clone(), header.len())));
        let (read, rest) = read_in_pieces(bytes, piece);
        prop_assert_eq!(read, Ok(expected));
        prop_assert_eq!(rest, after);
    }

    #[test]
    fn a_changed_byte_never_names_another_client_or_endpoint(
        source in source(),
        endpoint in endpoint(),
        position in any::<prop::sample::Index>(),
        flip in 1..=255u8,
    ) {
        let tlvs: Vec<Tlv> = endpoint.iter().map(|(tlv, _)| tlv.clone()).collect();
        let mut header = v2(false, source, &tlvs, true);
        let expected = Header::Proxy { source, endpoint: endpoint.map(|(_, e)| e) };
        let i = position.index(header.len());
        header[i] ^= flip;
        match parse(&header) {
            Ok(Parsed::Done(h, _)) => prop_assert!(h == expected || h == Header::Local, "byte {i}: {h:?}"),
            Ok(Parsed::NeedMore(n)) => prop_assert!(n > header.len()),
            Err(_) => {}
        }
    }

    #[test]
    fn v1_lines_read_back_as_their_source(src in any::<[u8; 4]>().prop_map(Ipv4Addr::from).prop_map(IpAddr::from), v6 in any::<u128>(), use_v6 in any::<bool>(), sport in any::<u16>(), dport in any::<u16>()) {
        let (family, src, dst) = if use_v6 {
            ("TCP6", IpAddr::from(Ipv6Addr::from(v6)), IpAddr::from(Ipv6Addr::LOCALHOST))
        } else {
            ("TCP4", src, IpAddr::from(Ipv4Addr::LOCALHOST))
        };
        let line = format!("PROXY {family} {src} {dst} {sport} {dport}\r\n");
        prop_assert_eq!(
            parse(line.as_bytes()),
            Ok(Parsed::Done(Header::Proxy { source: Some(SocketAddr::new(src, sport)), endpoint: None }, line.len()))
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic_it_and_it_stays_within_its_bound(
        start in prop_oneof![Just(Vec::new()), Just(b"PROXY ".to_vec()), Just(proxy::V2_SIGNATURE.to_vec())],
        bytes in vec(any::<u8>(), 0..600),
    ) {
        let data = [start, bytes].concat();
        kafka_gateway::fuzzing::proxy_header(&data);
        if let Ok(Parsed::NeedMore(n)) = parse(&data) {
            prop_assert!(n <= MAX_HEADER);
        }
    }
}
