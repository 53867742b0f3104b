//! A bare-metal program that verifies one receipt with
//! `belfry-verify-nostd`: no OS, no std, a fixed arena as the heap.
//!
//! It exists to prove the verifier builds and links without std and to
//! measure what it costs a device (docs/verify-anywhere.md, "On a device"):
//! the receipt arrives in `INBOX` (a real device would fill it from its
//! link), is verified against the trust anchor, and the verdict is kept
//! where a debugger can read it. `black_box` keeps the compiler from
//! deciding the verdict at build time, so the whole verifier is linked.

#![no_std]
#![no_main]

use belfry_verify_nostd::{verify, Expected, TrustAnchor};
use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::hint::black_box;
use core::panic::PanicInfo;
use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

/// The trust anchor of testdata/vectors (the test cluster).
const ANCHOR: &str = "belfry1:908a6a48626931f1b1451d596204c1683f1d4f9f9ee06b86259dd5ce555fe788c866267772af319b3bd4c3a3091bf4b0";

/// Longest receipt taken: an aggregated one of 8 gateway steps of 64
/// hashes each around a version-1 receipt of 64 hashes.
const INBOX_BYTES: usize = 40 + 8 * (17 + 64 * 32) + 227 + 213 + 64 * 32;

/// Where the receipt is received (in `.bss`: the link writes it).
struct Inbox(UnsafeCell<[u8; INBOX_BYTES]>);

// One core: the link fills the inbox before `INBOX_LEN` says so.
unsafe impl Sync for Inbox {}

static INBOX: Inbox = Inbox(UnsafeCell::new([0; INBOX_BYTES]));
/// How many bytes of `INBOX` the link filled.
static INBOX_LEN: AtomicUsize = AtomicUsize::new(0);
/// The verdict: 0 not yet, 1 verified, 2 + the failed check's position.
static VERDICT: AtomicU32 = AtomicU32::new(0);

/// The entry point (no runtime calls `main` here).
#[no_mangle]
pub extern "C" fn _start() -> ! {
    let len = black_box(INBOX_LEN.load(Ordering::Relaxed)).min(INBOX_BYTES);
    // Nothing writes the inbox while it is read.
    let inbox = unsafe { &*INBOX.0.get() };
    let receipt = black_box(&inbox[..len]);
    let verdict = match TrustAnchor::parse(black_box(ANCHOR)) {
        Ok(anchor) => {
            let expected = Expected {
                anchor: &anchor,
                digest: None,
                cluster_id: None,
            };
            match verify(receipt, &expected) {
                Ok(_) => 1,
                Err(failure) => 2 + failure.check() as u32,
            }
        }
        Err(_) => u32::MAX,
    };
    VERDICT.store(verdict, Ordering::Relaxed);
    loop {
        core::hint::spin_loop();
    }
}

#[panic_handler]
fn panic(_: &PanicInfo) -> ! {
    loop {
        core::hint::spin_loop();
    }
}

/// blst's verify allocates its message (93 bytes) and one pairing context
/// (3,184 bytes on thumbv7em, 3,192 on x86-64) and frees both before it
/// returns: a bump arena that starts over whenever nothing is live is
/// enough, and bounds the heap.
const ARENA_BYTES: usize = 4 * 1024;

#[repr(C, align(16))]
struct Arena {
    bytes: UnsafeCell<[u8; ARENA_BYTES]>,
    next: AtomicUsize,
    live: AtomicUsize,
}

// One core, no interrupts allocating: the arena is used from one context.
unsafe impl Sync for Arena {}

unsafe impl GlobalAlloc for Arena {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let start =
            (self.next.load(Ordering::Relaxed) + layout.align() - 1) & !(layout.align() - 1);
        let Some(end) = start
            .checked_add(layout.size())
            .filter(|e| *e <= ARENA_BYTES)
        else {
            return core::ptr::null_mut();
        };
        if layout.align() > 16 {
            return core::ptr::null_mut();
        }
        self.next.store(end, Ordering::Relaxed);
        self.live.fetch_add(1, Ordering::Relaxed);
        // In bounds: end <= ARENA_BYTES.
        unsafe { self.bytes.get().cast::<u8>().add(start) }
    }

    unsafe fn dealloc(&self, _ptr: *mut u8, _layout: Layout) {
        if self.live.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.next.store(0, Ordering::Relaxed);
        }
    }
}

#[global_allocator]
static HEAP: Arena = Arena {
    bytes: UnsafeCell::new([0; ARENA_BYTES]),
    next: AtomicUsize::new(0),
    live: AtomicUsize::new(0),
};
