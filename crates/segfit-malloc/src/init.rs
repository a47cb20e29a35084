//! Process-wide setup of the C library, done once, lazily, on the first allocation that reaches a
//! slow path (every process's first allocation does: all thread caches start empty).
//!
//! What it does: the core's `global_init` (which also installs the fork handlers),
//! `SEGFIT_TRACE=os` (OS-call trace), and `SEGFIT_SHOW_STATS=1` (statistics at exit via `atexit`).
//!
//! Invariants: `STATE` goes 0 → 1 (one thread is setting up) → 2 (done) and never back. Setup
//! runs at most once. `atexit` may itself call `malloc`: such a nested
//! call (or any call from another thread meanwhile) sees `STATE != 0` and simply allocates
//! without waiting, so setup never recurses and never blocks. Environment variables are read with
//! libc `getenv`, which does not allocate. Called by the entry points in `lib.rs`.

use core::ffi::{c_char, CStr};
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicU8, Ordering};

static STATE: AtomicU8 = AtomicU8::new(0);
/// Where the `SEGFIT_SHOW_STATS` exit report goes.
static STATS_FD: AtomicI32 = AtomicI32::new(2);
/// `SEGFIT_SHOW_STATS=json`: the exit report as one JSON object.
static STATS_JSON: AtomicBool = AtomicBool::new(false);

/// Makes sure process setup has run (or is running). Cheap after the first call.
#[inline(always)]
pub fn ensure() {
    if STATE.load(Ordering::Acquire) == 0 {
        setup();
    }
}

#[cold]
#[inline(never)]
fn setup() {
    if STATE
        .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        return;
    }
    segfit_core::cache::global_init();
    if env_is(c"SEGFIT_TRACE", b"os") {
        segfit_core::os::set_trace(true);
    }
    let json = env_is(c"SEGFIT_SHOW_STATS", b"json");
    if json || env_is(c"SEGFIT_SHOW_STATS", b"1") {
        STATS_JSON.store(json, Ordering::Relaxed);
        // Some programs close stderr in their own exit handlers (coreutils' close_stdout runs
        // before ours): print to a private duplicate taken now, if one can be had.
        // SAFETY: fcntl(F_DUPFD_CLOEXEC) on fd 2 has no memory effects.
        let fd = unsafe { libc::fcntl(2, libc::F_DUPFD_CLOEXEC, 200) };
        STATS_FD.store(if fd >= 0 { fd } else { 2 }, Ordering::Relaxed);
        // SAFETY: `show_stats_at_exit` has the C ABI; atexit may allocate (see above).
        unsafe { libc::atexit(show_stats_at_exit) };
    }
    STATE.store(2, Ordering::Release);
}

/// Whether environment variable `name` is set to exactly `want`.
///
/// The first allocation may come from the dynamic loader before libc's own constructor has set
/// `environ` (then `getenv` sees nothing), so when `environ` is still null the process's initial
/// environment is read from `/proc/self/environ` instead, through a stack buffer.
fn env_is(name: &CStr, want: &[u8]) -> bool {
    extern "C" {
        static environ: *const *const c_char;
    }
    // SAFETY: `environ` is libc's environment pointer; reading it is a plain load.
    let env_ready = unsafe { !core::ptr::read_volatile(&raw const environ).is_null() };
    if env_ready {
        // SAFETY: `name` is NUL-terminated; getenv returns null or a NUL-terminated string
        // that stays valid while the environment is not modified (we read it at once).
        return unsafe {
            let v = libc::getenv(name.as_ptr());
            !v.is_null() && CStr::from_ptr(v).to_bytes() == want
        };
    }
    proc_environ_is(name.to_bytes(), want)
}

/// Scans `/proc/self/environ` (NUL-separated `NAME=value` entries) for `name=want`, reading
/// through a small stack buffer and keeping only the first 128 bytes of each entry.
fn proc_environ_is(name: &[u8], want: &[u8]) -> bool {
    // SAFETY: a NUL-terminated path; open does not allocate.
    let fd = unsafe {
        libc::open(
            c"/proc/self/environ".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return false;
    }
    let mut entry = [0u8; 128];
    let mut len = 0usize; // bytes of the current entry seen (may exceed entry.len())
    let mut buf = [0u8; 512];
    let mut found = false;
    'read: loop {
        // SAFETY: reads at most `buf.len()` bytes into `buf`.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            break;
        }
        for &b in buf.get(..n as usize).unwrap_or(&buf) {
            if b == 0 {
                let e = entry.get(..len).unwrap_or(&entry);
                if len <= entry.len()
                    && e.len() == name.len() + 1 + want.len()
                    && e.starts_with(name)
                    && e.get(name.len()) == Some(&b'=')
                    && e.ends_with(want)
                {
                    found = true;
                    break 'read;
                }
                len = 0;
            } else {
                if let Some(slot) = entry.get_mut(len) {
                    *slot = b;
                }
                len += 1;
            }
        }
    }
    // SAFETY: `fd` is the descriptor opened above.
    unsafe { libc::close(fd) };
    found
}

extern "C" fn show_stats_at_exit() {
    let fd = STATS_FD.load(Ordering::Relaxed);
    if STATS_JSON.load(Ordering::Relaxed) {
        crate::segfit_stats_json_fd(fd);
    } else {
        crate::report::print_fd(fd);
    }
}

/// `SEGFIT_SCAVENGER=1`: start the background scavenger (free pages go back to the OS within
/// about a second of going idle even if the program stops calling the allocator). Creating a
/// thread allocates, so this runs as a library constructor, after libc is initialised, and never
/// from inside `malloc`.
extern "C" fn start_scavenger_if_asked() {
    if env_is(c"SEGFIT_SCAVENGER", b"1") {
        segfit_core::scavenger::start(250);
    }
}

#[used]
#[link_section = ".init_array"]
static START_SCAVENGER: extern "C" fn() = start_scavenger_if_asked;
