//! Fork while other threads allocate: the child (whose other threads vanished, maybe holding an
//! allocator lock) can allocate, free, and free blocks allocated before the fork. The fork
//! handlers are installed by segfit itself at its first allocation.

use segfit::alloc::{free, malloc};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[test]
fn children_forked_during_allocation_can_allocate_and_free() {
    let pre: Vec<usize> = [24, 100, 3000, 100_000]
        .iter()
        .map(|&s| malloc(s) as usize)
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..4)
        .map(|t| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut i = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let v: Vec<usize> = (0..64)
                        .map(|k| malloc(16 + (i * 31 + k * 7 + t) % 5000) as usize)
                        .collect();
                    for p in v {
                        // SAFETY: allocated just above.
                        unsafe { free(p as *mut u8) };
                    }
                    i += 1;
                }
            })
        })
        .collect();
    for _ in 0..100 {
        // SAFETY: fork in a test process; the child only uses segfit and async-signal-safe calls
        // before `_exit`.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            // SAFETY: in the child: a deadlock is turned into SIGALRM, then `_exit`.
            unsafe {
                libc::alarm(10);
                for k in 0..1000 {
                    let p = malloc(8 + k % 4000);
                    if p.is_null() {
                        libc::_exit(2);
                    }
                    free(p);
                }
                for &p in &pre {
                    free(p as *mut u8);
                }
                libc::_exit(0);
            }
        }
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "child status {status:#x}"
        );
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    for p in pre {
        // SAFETY: allocated above; freed once in this (parent) process.
        unsafe { free(p as *mut u8) };
    }
}
