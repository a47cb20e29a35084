//! The statistics printer: `segfit_stats_print_fd`, `segfit_stats_print` and the
//! `SEGFIT_SHOW_STATS=1` exit report.
//!
//! Every line is formatted into a `StackBuf` on the stack and written with raw `write(2)`: nothing
//! here allocates, so it is safe from an `atexit` handler, a signal-free slow path, or a program
//! whose heap is in trouble. Lines start with `segfit: stats:` so tests and users can grep them.
//! Called by `init` (exit report) and the exported functions in `lib.rs`.

use segfit_core::fatal::StackBuf;
use segfit_core::os::Why;

fn line() -> StackBuf {
    let mut b = StackBuf::new();
    b.str("segfit: stats: ");
    b
}

/// Writes the current statistics to file descriptor `fd`.
pub fn print_fd(fd: i32) {
    let s = segfit_core::stats();
    let mut b = line();
    b.str("heap_alloc=")
        .dec(s.heap_alloc)
        .str(" heap_inuse=")
        .dec(s.heap_inuse)
        .str(" heap_idle=")
        .dec(s.heap_idle)
        .str(" heap_released=")
        .dec(s.heap_released)
        .str(" objects=")
        .dec(s.heap_objects)
        .str("\n");
    b.write_to(fd);
    let mut b = line();
    b.str("mapped: heap_sys=")
        .dec(s.heap_sys)
        .str(" heap_committed=")
        .dec(s.heap_committed)
        .str(" peak_inuse=")
        .dec(s.peak_inuse)
        .str(" meta_sys=")
        .dec(s.meta_sys)
        .str("\n");
    b.write_to(fd);
    let mut b = line();
    b.str("threads: live=")
        .dec(s.threads.0 as u64)
        .str(" created=")
        .dec(s.threads.1)
        .str("\n");
    b.write_to(fd);
    // OS calls by kind, four kinds a line (a StackBuf holds 256 bytes): `kind=calls/bytesB`.
    for chunk in 0..Why::ALL.len().div_ceil(4) {
        let mut b = line();
        b.str("os calls:");
        for (i, why) in Why::ALL.iter().enumerate().skip(chunk * 4).take(4) {
            b.str(" ")
                .str(why.name())
                .str("=")
                .dec(s.os[i].calls)
                .str("/")
                .dec(s.os[i].bytes)
                .str("B");
        }
        b.str("\n");
        b.write_to(fd);
    }
}
