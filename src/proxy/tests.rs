//! The PROXY header parser against headers built byte by byte from the specification.

use super::*;
use crate::proxy::build::{Tlv, v2};

fn done(buf: &[u8]) -> (Header, usize) {
    match parse(buf) {
        Ok(Parsed::Done(h, n)) => (h, n),
        other => panic!("{other:?}"),
    }
}

fn src(s: &str) -> Option<SocketAddr> {
    Some(s.parse().unwrap())
}

#[test]
fn v1_tcp4_tcp6_and_unknown() {
    let line = b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 9092\r\n";
    assert_eq!(done(line), (Header::Proxy { source: src("192.0.2.7:56324"), endpoint: None }, line.len()));
    let line = b"PROXY TCP6 2001:db8::7 2001:db8::1 4000 9093\r\nkafka";
    assert_eq!(done(line), (Header::Proxy { source: src("[2001:db8::7]:4000"), endpoint: None }, line.len() - 5));
    assert_eq!(done(b"PROXY UNKNOWN\r\n"), (Header::Proxy { source: None, endpoint: None }, 15));
    assert_eq!(done(b"PROXY UNKNOWN ffff::1 ::1 1 2\r\n").1, 31);
}

#[test]
fn v1_refusals() {
    for bad in [
        &b"PROXY TCP4 192.0.2.7 198.51.100.1 56324\r\n"[..],
        b"PROXY TCP4 2001:db8::7 198.51.100.1 1 2\r\n",
        b"PROXY TCP4 192.0.2.7 198.51.100.1 056324 9092\r\n",
        b"PROXY TCP4 192.0.2.7 198.51.100.1 65536 9092\r\n",
        b"PROXY UDP4 192.0.2.7 198.51.100.1 1 2\r\n",
        b"PROXY TCP4  192.0.2.7 198.51.100.1 1 2\r\n",
        b"PROXY X\r\n\0\0\0\0\0\0\0\0",
    ] {
        assert!(matches!(parse(bad), Err(ProxyError::V1(_))), "{:?}", String::from_utf8_lossy(bad));
    }
    let mut long = b"PROXY UNKNOWN ".to_vec();
    long.resize(120, b'x');
    assert!(matches!(parse(&long), Err(ProxyError::V1(_))));
}

#[test]
fn v1_asks_for_one_byte_at_a_time_after_the_first_read() {
    assert_eq!(parse(b"PROX"), Ok(Parsed::NeedMore(FIRST_READ)));
    assert_eq!(parse(b"PROXY TCP4 192.0.2"), Ok(Parsed::NeedMore(19)));
}

#[test]
fn anything_else_is_refused_on_its_first_bytes() {
    assert_eq!(parse(b"\0\0\0\x16\0\x12"), Err(ProxyError::Missing));
    assert_eq!(parse(&[0x16, 3, 1]), Err(ProxyError::Missing));
    assert_eq!(parse(b"PRO"), Ok(Parsed::NeedMore(FIRST_READ)));
    assert_eq!(parse(b"\r\n\r\n\0"), Ok(Parsed::NeedMore(FIRST_READ)));
}

#[test]
fn v2_each_clouds_endpoint() {
    let client = src("10.1.2.3:40000");
    let cases = [
        (Tlv::Aws("vpce-0a1b2c3d4e5f67890"), Endpoint::Aws("vpce-0a1b2c3d4e5f67890".into())),
        (Tlv::Azure(1_234_567), Endpoint::Azure(1_234_567)),
        (Tlv::Gcp(9_876_543_210), Endpoint::Gcp(9_876_543_210)),
    ];
    for (tlv, endpoint) in cases {
        for crc in [false, true] {
            let h = v2(false, client, std::slice::from_ref(&tlv), crc);
            assert_eq!(done(&h), (Header::Proxy { source: client, endpoint: Some(endpoint.clone()) }, h.len()));
        }
    }
}

#[test]
fn v2_wire_layout_of_the_cloud_tlvs() {
    // Azure's LinkID is little-endian after subtype 0x01; GCP's ID big-endian without subtype.
    let h = v2(false, src("10.0.0.1:1"), &[Tlv::Azure(0x0403_0201)], false);
    assert_eq!(&h[28..], &[0xEE, 0, 5, 1, 1, 2, 3, 4]);
    let h = v2(false, src("10.0.0.1:1"), &[Tlv::Gcp(0x0102_0304_0506_0708)], false);
    assert_eq!(&h[28..], &[0xE0, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8]);
    let h = v2(false, src("10.0.0.1:1"), &[Tlv::Aws("vpce-1")], false);
    assert_eq!(&h[28..], b"\xEA\0\x07\x01vpce-1");
}

#[test]
fn v2_tcp6_local_and_unspec() {
    let h = v2(false, src("[2001:db8::5]:7000"), &[], false);
    assert_eq!(done(&h).0, Header::Proxy { source: src("[2001:db8::5]:7000"), endpoint: None });
    assert_eq!(done(&v2(true, None, &[], false)).0, Header::Local);
    // LOCAL with addresses and TLVs: all ignored.
    assert_eq!(done(&v2(true, client_v4(), &[Tlv::Aws("vpce-1")], true)).0, Header::Local);
    assert_eq!(done(&v2(false, None, &[], false)).0, Header::Proxy { source: None, endpoint: None });
}

fn client_v4() -> Option<SocketAddr> {
    src("192.0.2.1:1234")
}

#[test]
fn v2_refusals_name_what_is_wrong() {
    let good = v2(false, client_v4(), &[Tlv::Aws("vpce-1")], true);
    let mut bad_crc = good.clone();
    *bad_crc.last_mut().unwrap() ^= 1;
    assert_eq!(parse(&bad_crc), Err(ProxyError::Checksum));
    let dup = v2(false, client_v4(), &[Tlv::Aws("vpce-1"), Tlv::Gcp(1)], false);
    assert_eq!(parse(&dup), Err(ProxyError::Duplicate("endpoint")));
    let dup = v2(false, client_v4(), &[Tlv::Raw(0x03, vec![0; 4]), Tlv::Raw(0x03, vec![0; 4])], false);
    assert_eq!(parse(&dup), Err(ProxyError::Duplicate("CRC32c")));
    let mut version = good.clone();
    version[12] = 0x11;
    assert!(matches!(parse(&version), Err(ProxyError::V2(_))));
    let mut command = good.clone();
    command[12] = 0x22;
    assert!(matches!(parse(&command), Err(ProxyError::V2(_))));
    let mut family = good.clone();
    family[13] = 0x41;
    assert!(matches!(parse(&family), Err(ProxyError::V2(_))));
    // A length shorter than the addresses.
    let mut short = good[..16].to_vec();
    short[15] = 4;
    short.extend([0; 4]);
    assert!(matches!(parse(&short), Err(ProxyError::V2(_))));
    // A TLV running past the header.
    let over = v2(false, client_v4(), &[Tlv::Raw(0x05, vec![1; 3])], false);
    let mut cut = over.clone();
    cut[15] -= 1;
    cut.pop();
    assert!(matches!(parse(&cut), Err(ProxyError::V2(_))));
    for (tlv, what) in [
        (Tlv::Raw(0xEE, vec![1, 2, 3]), "Azure"),
        (Tlv::Raw(0xE0, vec![1; 7]), "PSC"),
        (Tlv::Raw(0xEA, b"\x01nope".to_vec()), "AWS"),
    ] {
        match parse(&v2(false, client_v4(), &[tlv], false)) {
            Err(ProxyError::V2(m)) => assert!(m.contains(what), "{m}"),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn v2_length_is_bounded_before_anything_is_read() {
    let mut huge = v2(false, client_v4(), &[], false)[..16].to_vec();
    huge[14..16].copy_from_slice(&60_000u16.to_be_bytes());
    assert_eq!(parse(&huge), Err(ProxyError::TooLong(60_016)));
    let mut edge = huge.clone();
    edge[14..16].copy_from_slice(&((MAX_HEADER - 16) as u16).to_be_bytes());
    assert_eq!(parse(&edge), Ok(Parsed::NeedMore(MAX_HEADER)));
}

#[test]
fn other_tlvs_are_skipped() {
    let h = v2(false, client_v4(), &[Tlv::Raw(0x04, vec![0; 10]), Tlv::Raw(0xEA, vec![2, 1]), Tlv::Gcp(5)], true);
    assert_eq!(done(&h).0, Header::Proxy { source: client_v4(), endpoint: Some(Endpoint::Gcp(5)) });
}

#[test]
fn endpoints_read_as_allow_endpoints_writes_them() {
    for s in ["vpce-0a1b2c3d4e5f67890", "azure:1234567", "psc:9876543210"] {
        assert_eq!(s.parse::<Endpoint>().unwrap().to_string(), s);
    }
    for bad in ["vpce-", "vpce-x y", "azure:-1", "azure:4294967296", "psc:x", "pl-123", ""] {
        assert!(bad.parse::<Endpoint>().is_err(), "{bad}");
    }
}

#[tokio::test]
async fn the_reader_takes_exactly_the_header() {
    use tokio::io::AsyncReadExt;
    for header in [
        v2(false, client_v4(), &[Tlv::Aws("vpce-1")], true),
        b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 9092\r\n".to_vec(),
        b"PROXY UNKNOWN\r\n".to_vec(),
        v2(true, None, &[], false),
    ] {
        let mut bytes = header.clone();
        bytes.extend(b"\0\0\0\x05kafka");
        // Delivered in 3-byte pieces.
        let mut builder = tokio_test_reader(&bytes);
        read(&mut builder).await.unwrap();
        let mut rest = Vec::new();
        builder.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, b"\0\0\0\x05kafka");
    }
    let mut cut = tokio_test_reader(&v2(false, client_v4(), &[], false)[..20]);
    assert!(matches!(read(&mut cut).await, Err(ReadError::Closed)));
}

/// A reader that hands out `bytes` three at a time.
fn tokio_test_reader(bytes: &[u8]) -> impl tokio::io::AsyncRead + Unpin + use<> {
    let (mut w, r) = tokio::io::duplex(3);
    let bytes = bytes.to_vec();
    tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        let _ = w.write_all(&bytes).await;
    });
    r
}
