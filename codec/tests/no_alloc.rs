//! Proof that decoding and encoding never allocate: a counting global allocator records
//! allocations made by the current thread while the codec runs on typical and worst-case
//! frames (escapes, NUL bodies, heart-beats, partial input, errors, all three writers).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use stomp_relay_codec::{
    encode, encoded_len, write, write_async, Command, Decoded, Decoder, EncodeOptions, Frame,
    Header, Status, Version,
};

struct Counting;

thread_local! {
    // Per thread, so the test harness's own threads do not disturb the count.
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let before = ALLOCS.with(Cell::get);
    let r = f();
    (r, ALLOCS.with(Cell::get) - before)
}

fn block_on<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

#[test]
fn the_counter_sees_allocations() {
    // Guards against a test that cannot fail: the allocator really counts.
    let (_, n) = allocations(|| std::hint::black_box(vec![1u8; 16]));
    assert!(n >= 1);
}

#[test]
fn decode_and_encode_make_zero_allocations() {
    // Input prepared before counting starts.
    let mut stream = Vec::new();
    stream.extend_from_slice(b"\n\r\n");
    stream.extend_from_slice(b"MESSAGE\r\ndestination:/topic/a\\cb\r\nx\\\\y:1\\n2\r\ncontent-length:5\r\n\r\nab\0cd\0\n");
    stream.extend_from_slice(b"SEND\ndestination:/q\nreceipt:7\n\nplain body\0");
    stream.extend_from_slice(b"CONNECT\naccept-version:1.2\nhost:h\n\n\0");
    let big = vec![0xA5u8; 60_000];
    let bad = b"SUBSCRIBE\n\nbody\0".to_vec();
    let mut out = vec![0u8; 70_000];
    let mut storage = [Header::EMPTY; 64];

    let ((), n) = allocations(|| {
        let mut frames = 0;
        for version in Version::ALL {
            let decoder = Decoder::new(version);
            let mut rest = &stream[..];
            // Partial input first.
            assert!(decoder
                .decode(&rest[3..20], &mut storage)
                .unwrap()
                .is_partial());
            while !rest.is_empty() {
                let Status::Complete((item, used)) = decoder.decode(rest, &mut storage).unwrap()
                else {
                    panic!("partial")
                };
                if let Decoded::Frame(f) = item {
                    frames += 1;
                    let _ = f.header(b"x\\y").map(|v| v.eq_bytes(b"1\n2"));
                    let mut tmp = [0u8; 16];
                    let _ = f
                        .destination()
                        .map(|v| v.copy_unescaped(&mut tmp).map(|b| b.len()));
                    for target in Version::ALL {
                        let opts = EncodeOptions::passthrough(target);
                        if let Ok(len) = encoded_len(&f, opts) {
                            assert_eq!(encode(&f, opts, &mut out), Ok(len));
                            let mut w: &mut [u8] = &mut out;
                            assert_eq!(write(&f, opts, &mut w), Ok(len));
                            let mut w: &mut [u8] = &mut out;
                            assert_eq!(block_on(write_async(&f, opts, &mut w)), Ok(len));
                        }
                    }
                }
                rest = &rest[used..];
            }
            assert!(decoder.decode(&bad, &mut storage).is_err());
        }
        assert_eq!(frames, 9);
        let h = [
            Header::new(b"destination", b"/queue/needs:escaping\n"),
            Header::new(b"k", b"v"),
        ];
        let f = Frame::new(Command::Send, &h, &big);
        let n = encode(&f, Version::V1_2, &mut out).unwrap();
        let mut small = [Header::EMPTY; 4];
        let Status::Complete((Decoded::Frame(back), used)) =
            Decoder::with_limits(Version::V1_2, stomp_relay_codec::Limits::UNLIMITED)
                .decode(&out[..n], &mut small)
                .unwrap()
        else {
            panic!()
        };
        assert_eq!((back.body.len(), used), (big.len(), n));
        // Error paths format without allocating into a fixed buffer.
        let e = Decoder::new(Version::V1_2)
            .decode(&bad, &mut small)
            .unwrap_err();
        let mut text = [0u8; 64];
        let mut w: &mut [u8] = &mut text;
        embedded_io::Write::write_fmt(&mut w, format_args!("{e}")).unwrap();
    });
    assert_eq!(n, 0, "the codec allocated {n} times");
}
