//! The floors a proxy is measured against: relays that only move bytes, one port per broker, each
//! run as this bench binary in its own process. One copies in user space (tokio's copy_bidirectional);
//! the other never lets a byte reach user space (a BPF sockmap redirects every segment that
//! arrives on one socket of a pair to the other's send queue, inside the kernel).

use std::collections::HashMap;
use std::convert::Infallible;
use std::io::{self, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

/// Copies bytes between each connection accepted on a pair's port and its target, nothing else.
pub fn copy(pairs: Vec<(u16, String)>) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async move {
        let mut listeners = tokio::task::JoinSet::new();
        for (port, target) in pairs {
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
            listeners.spawn(async move {
                loop {
                    let (mut client, _) = listener.accept().await.unwrap();
                    let target = target.clone();
                    tokio::spawn(async move {
                        let mut upstream = tokio::net::TcpStream::connect(target).await.unwrap();
                        client.set_nodelay(true).unwrap();
                        upstream.set_nodelay(true).unwrap();
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                    });
                }
            });
        }
        listeners.join_next().await;
    });
}

/// Pairs each connection accepted on a pair's port with one to its target in a sockmap, and
/// leaves the bytes to the kernel. Fails before listening where BPF is not allowed (it needs
/// CAP_BPF and CAP_NET_ADMIN).
pub fn sockmap(pairs: Vec<(u16, String)>) -> io::Result<()> {
    let map = Sockmap::new()?;
    let listeners: Vec<_> = pairs
        .into_iter()
        .map(|(port, target)| Ok((TcpListener::bind(("127.0.0.1", port))?, target)))
        .collect::<io::Result<_>>()?;
    // SAFETY: epoll_create1 returns a new descriptor that nothing else owns.
    let epoll = unsafe { OwnedFd::from_raw_fd(check(libc::epoll_create1(libc::EPOLL_CLOEXEC))?) };
    let open = Open { epoll, pairs: Mutex::default() };
    std::thread::scope(|scope| {
        let threads: Vec<_> = listeners
            .iter()
            .map(|(listener, target)| scope.spawn(|| relay_through(&map, &open, listener, target)))
            .collect();
        // A relay that stopped closing would skew every later round: better no relay at all.
        scope.spawn(|| {
            let Err(e) = close_ended(&map, &open);
            eprintln!("the sockmap relay stops: closing a pair failed: {e}");
            std::process::exit(1);
        });
        threads.into_iter().try_for_each(|thread| thread.join().unwrap())
    })
}

/// The pairs in the sockmap, by the first of their two slots, and the epoll set where their
/// sockets are watched for a close.
struct Open {
    epoll: OwnedFd,
    pairs: Mutex<HashMap<u32, (TcpStream, TcpStream)>>,
}

fn relay_through(map: &Sockmap, open: &Open, listener: &TcpListener, target: &str) -> io::Result<()> {
    for client in listener.incoming() {
        let client = client?;
        let upstream = TcpStream::connect(target)?;
        client.set_nodelay(true)?;
        upstream.set_nodelay(true)?;
        // A connection its client already closed (the bench's probe of the port) cannot join.
        let Ok(slot) = map.join(&client, &upstream) else { continue };
        // Bytes that arrived before the sockets joined wait in the receive queue until more
        // arrive; forward them here. Clients here send one request and wait for its answer
        // first (librdkafka's ApiVersions; the raw phases pause after connecting), so no byte
        // can overtake these in the kernel.
        let mut pending = [0; 65536];
        client.set_nonblocking(true)?;
        while let Ok(n @ 1..) = (&client).read(&mut pending) {
            (&upstream).write_all(&pending[..n])?;
        }
        // A segment's FIN is not redirected: the relay must see each side's close itself.
        let mut pairs = open.pairs.lock().unwrap();
        for (socket, token) in [(&client, slot), (&upstream, slot + 1)] {
            // Only EPOLLRDHUP (with the errors epoll always reports): a redirected segment wakes
            // waiters for EPOLLIN, and with it this set would wake on every one.
            let mut event = libc::epoll_event { events: libc::EPOLLRDHUP as u32, u64: token.into() };
            // SAFETY: both descriptors are open and `event` is valid for the call.
            check(unsafe {
                libc::epoll_ctl(open.epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, socket.as_raw_fd(), &mut event)
            })?;
        }
        pairs.insert(slot, (client, upstream));
    }
    Ok(())
}

/// Closes both sockets of a pair once either side has closed. Left open, every connection a run
/// made stayed open at the brokers too, and the mock cluster's thread, which polls all of its
/// sockets on every turn, got slower round after round: every path's latency with it (direct
/// p50 from 34 to 131 µs over 20 rounds).
fn close_ended(map: &Sockmap, open: &Open) -> io::Result<Infallible> {
    let mut events = [libc::epoll_event { events: 0, u64: 0 }; 64];
    loop {
        // SAFETY: `events` is valid for writes of its length.
        let n = unsafe { libc::epoll_wait(open.epoll.as_raw_fd(), events.as_mut_ptr(), events.len() as i32, -1) };
        let n = match check(n) {
            Ok(n) => n as usize,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        for event in &events[..n] {
            let slot = event.u64 as u32 & !1;
            let Some((client, upstream)) = open.pairs.lock().unwrap().remove(&slot) else { continue };
            // Closing a socket takes it out of the epoll set and the sockmap.
            map.leave(&client)?;
            map.leave(&upstream)?;
        }
    }
}

/// A libc call's result, or the error it left in errno.
fn check<T: Copy + Into<i64>>(ret: T) -> io::Result<T> {
    if ret.into() < 0 { Err(io::Error::last_os_error()) } else { Ok(ret) }
}

/// A sockmap with a verdict program attached: a segment arriving on a socket in `socks` goes out
/// of the socket in the slot that its cookie maps to in `peers`.
struct Sockmap {
    socks: OwnedFd,
    peers: OwnedFd,
    _verdict: OwnedFd,
    /// The next free pair of slots.
    next_slot: AtomicU32,
}

// From linux/bpf.h.
const BPF_MAP_CREATE: i32 = 0;
const BPF_MAP_UPDATE_ELEM: i32 = 2;
const BPF_MAP_DELETE_ELEM: i32 = 3;
const BPF_PROG_LOAD: i32 = 5;
const BPF_PROG_ATTACH: i32 = 8;
const BPF_MAP_TYPE_HASH: u32 = 1;
const BPF_MAP_TYPE_SOCKMAP: u32 = 15;
const BPF_PROG_TYPE_SK_SKB: u32 = 14;
const BPF_SK_SKB_VERDICT: u32 = 38;
const SK_PASS: i32 = 1;
/// Slots in the sockmap, and peers: two per connection a run opens, probes included.
const MAX_ENTRIES: u32 = 8192;

impl Sockmap {
    fn new() -> io::Result<Self> {
        let socks = map_create(BPF_MAP_TYPE_SOCKMAP, 4, 4)?;
        let peers = map_create(BPF_MAP_TYPE_HASH, 8, 4)?;
        let verdict = load_verdict(socks.as_raw_fd(), peers.as_raw_fd())?;
        #[repr(C)]
        struct Attach {
            target_fd: u32,
            attach_bpf_fd: u32,
            attach_type: u32,
            attach_flags: u32,
        }
        let attach = Attach {
            target_fd: socks.as_raw_fd() as u32,
            attach_bpf_fd: verdict.as_raw_fd() as u32,
            attach_type: BPF_SK_SKB_VERDICT,
            attach_flags: 0,
        };
        bpf(BPF_PROG_ATTACH, &attach)?;
        Ok(Self { socks, peers, _verdict: verdict, next_slot: AtomicU32::new(0) })
    }

    /// Puts `a` and `b` in the next two slots, each pointing at the other. The peers come first:
    /// a socket whose cookie has no peer passes its bytes to user space instead.
    fn join(&self, a: &TcpStream, b: &TcpStream) -> io::Result<u32> {
        let slot = self.next_slot.fetch_add(2, Ordering::Relaxed);
        assert!(slot < MAX_ENTRIES, "the sockmap is full");
        map_update(&self.peers, &cookie(a)?, &(slot + 1))?;
        map_update(&self.peers, &cookie(b)?, &slot)?;
        map_update(&self.socks, &(slot + 1), &(b.as_raw_fd() as u32))?;
        map_update(&self.socks, &slot, &(a.as_raw_fd() as u32))?;
        Ok(slot)
    }

    /// Forgets a socket about to be closed (closing it takes it out of the sockmap itself).
    fn leave(&self, socket: &TcpStream) -> io::Result<()> {
        map_delete(&self.peers, &cookie(socket)?)
    }
}

/// One eBPF instruction (struct bpf_insn).
#[repr(C)]
struct Insn {
    code: u8,
    /// dst_reg in the low nibble, src_reg in the high one.
    regs: u8,
    off: i16,
    imm: i32,
}

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn { code, regs: dst | src << 4, off, imm }
}

/// The verdict program, assembled by hand so that the bench needs no BPF compiler:
///
/// ```c
/// u64 cookie = bpf_get_socket_cookie(skb);
/// u32 *peer = bpf_map_lookup_elem(&peers, &cookie);
/// if (!peer) return SK_PASS;
/// return bpf_sk_redirect_map(skb, &socks, *peer, 0);  // to the peer's egress
/// ```
fn load_verdict(socks: RawFd, peers: RawFd) -> io::Result<OwnedFd> {
    const MOV_X: u8 = 0x07 | 0xb0 | 0x08; // BPF_ALU64 | BPF_MOV | BPF_X
    const MOV_K: u8 = 0x07 | 0xb0; // BPF_ALU64 | BPF_MOV | BPF_K
    const ADD_K: u8 = 0x07; // BPF_ALU64 | BPF_ADD | BPF_K
    const CALL: u8 = 0x05 | 0x80; // BPF_JMP | BPF_CALL
    const EXIT: u8 = 0x05 | 0x90; // BPF_JMP | BPF_EXIT
    const JEQ_K: u8 = 0x05 | 0x10; // BPF_JMP | BPF_JEQ | BPF_K
    const STX_DW: u8 = 0x03 | 0x60 | 0x18; // BPF_STX | BPF_MEM | BPF_DW
    const LDX_W: u8 = 0x01 | 0x60; // BPF_LDX | BPF_MEM | BPF_W
    const LD_IMM64: u8 = 0x18; // BPF_LD | BPF_IMM | BPF_DW, two slots
    const PSEUDO_MAP_FD: u8 = 1;
    const MAP_LOOKUP_ELEM: i32 = 1;
    const GET_SOCKET_COOKIE: i32 = 46;
    const SK_REDIRECT_MAP: i32 = 52;
    let program = [
        insn(MOV_X, 6, 1, 0, 0), // r6 = skb
        insn(CALL, 0, 0, 0, GET_SOCKET_COOKIE),
        insn(STX_DW, 10, 0, -8, 0), // the cookie on the stack, as the lookup's key
        insn(MOV_X, 2, 10, 0, 0),
        insn(ADD_K, 2, 0, 0, -8),
        insn(LD_IMM64, 1, PSEUDO_MAP_FD, 0, peers),
        insn(0, 0, 0, 0, 0),
        insn(CALL, 0, 0, 0, MAP_LOOKUP_ELEM),
        insn(JEQ_K, 0, 0, 7, 0), // no peer: to the last two instructions
        insn(LDX_W, 3, 0, 0, 0), // r3 = the peer's slot
        insn(MOV_X, 1, 6, 0, 0),
        insn(LD_IMM64, 2, PSEUDO_MAP_FD, 0, socks),
        insn(0, 0, 0, 0, 0),
        insn(MOV_K, 4, 0, 0, 0), // flags 0: the peer's egress
        insn(CALL, 0, 0, 0, SK_REDIRECT_MAP),
        insn(EXIT, 0, 0, 0, 0),
        insn(MOV_K, 0, 0, 0, SK_PASS),
        insn(EXIT, 0, 0, 0, 0),
    ];
    #[repr(C)]
    struct ProgLoad {
        prog_type: u32,
        insn_cnt: u32,
        insns: u64,
        license: u64,
        log_level: u32,
        log_size: u32,
        log_buf: u64,
        kern_version: u32,
        prog_flags: u32,
        prog_name: [u8; 16],
        prog_ifindex: u32,
        expected_attach_type: u32,
    }
    let mut log = vec![0u8; 16 * 1024];
    let load = ProgLoad {
        prog_type: BPF_PROG_TYPE_SK_SKB,
        insn_cnt: program.len() as u32,
        insns: program.as_ptr() as u64,
        license: c"GPL".as_ptr() as u64,
        log_level: 1,
        log_size: log.len() as u32,
        log_buf: log.as_mut_ptr() as u64,
        kern_version: 0,
        prog_flags: 0,
        prog_name: *b"kgw_bench_relay\0",
        prog_ifindex: 0,
        expected_attach_type: BPF_SK_SKB_VERDICT,
    };
    bpf_fd(BPF_PROG_LOAD, &load).map_err(|e| {
        let log = String::from_utf8_lossy(&log);
        io::Error::new(e.kind(), format!("loading the verdict program: {e}: {}", log.trim_end_matches('\0')))
    })
}

fn map_create(map_type: u32, key_size: u32, value_size: u32) -> io::Result<OwnedFd> {
    #[repr(C)]
    struct MapCreate {
        map_type: u32,
        key_size: u32,
        value_size: u32,
        max_entries: u32,
    }
    bpf_fd(BPF_MAP_CREATE, &MapCreate { map_type, key_size, value_size, max_entries: MAX_ENTRIES })
}

fn map_update<K, V>(map: &OwnedFd, key: &K, value: &V) -> io::Result<()> {
    map_elem(BPF_MAP_UPDATE_ELEM, map, key, value as *const V as u64)
}

fn map_delete<K>(map: &OwnedFd, key: &K) -> io::Result<()> {
    map_elem(BPF_MAP_DELETE_ELEM, map, key, 0)
}

/// A command on one element of `map`: both take the same attributes (`value` is unused by delete).
fn map_elem<K>(cmd: i32, map: &OwnedFd, key: &K, value: u64) -> io::Result<()> {
    #[repr(C)]
    struct MapElem {
        map_fd: u32,
        _pad: u32,
        key: u64,
        value: u64,
        flags: u64,
    }
    let elem = MapElem {
        map_fd: map.as_raw_fd() as u32,
        _pad: 0,
        key: key as *const K as u64,
        value,
        flags: 0, // BPF_ANY
    };
    bpf(cmd, &elem).map(drop)
}

/// bpf(2) with `attr` as its union bpf_attr: the kernel reads `size_of::<A>()` bytes and takes
/// the rest of the union as zero.
fn bpf<A>(cmd: i32, attr: &A) -> io::Result<i64> {
    // SAFETY: `attr` is a #[repr(C)] prefix of union bpf_attr for `cmd`, and every pointer in it
    // is valid for the call.
    check(unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *const A, size_of::<A>()) })
}

/// bpf(2) for a command that creates a map or a program: its descriptor.
fn bpf_fd<A>(cmd: i32, attr: &A) -> io::Result<OwnedFd> {
    // SAFETY: these commands return a new descriptor that nothing else owns.
    bpf(cmd, attr).map(|fd| unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// The socket's cookie, the key a BPF program can read for it.
fn cookie(socket: &TcpStream) -> io::Result<u64> {
    let mut cookie = 0u64;
    let mut len = size_of::<u64>() as libc::socklen_t;
    // SAFETY: `cookie` and `len` are valid for writes of the sizes given.
    check(unsafe {
        libc::getsockopt(socket.as_raw_fd(), libc::SOL_SOCKET, libc::SO_COOKIE, (&raw mut cookie).cast(), &mut len)
    })?;
    Ok(cookie)
}
