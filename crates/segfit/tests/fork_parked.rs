//! A fork while exited threads' caches are parked: the child gives the objects in their bins back
//! (their spans are rebuilt from their free lists, which do not hold those objects), so nothing of
//! the class is left out of its spans in the child. (Found in review: the child leaked them.)

use segfit::alloc::{free, malloc};

/// A size no other code in this test process allocates.
const SIZE: usize = 7000;

#[test]
fn a_forked_child_takes_back_the_objects_in_parked_bins() {
    let c = segfit::size_class::class_of(SIZE);
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(4));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let b = barrier.clone();
            std::thread::spawn(move || {
                let v: Vec<usize> = (0..4).map(|_| malloc(SIZE) as usize).collect();
                b.wait();
                for p in v {
                    // SAFETY: allocated just above; they stay in this thread's bin.
                    unsafe { free(p as *mut u8) };
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert!(segfit::cache::parked_count() > 0, "nothing parked to test");
    assert!(
        segfit::stats().by_size[c].cached > 0,
        "the parked bins hold objects"
    );
    // SAFETY: fork in a test process; the child only uses segfit and async-signal-safe calls
    // before `_exit`.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        // SAFETY: in the child: a deadlock is turned into SIGALRM; `_exit` ends it.
        unsafe {
            libc::alarm(10);
            let k = segfit::stats().by_size[c];
            libc::_exit(if k.out == 0 && k.cached == 0 { 0 } else { 3 });
        }
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "child status {status:#x}: objects of parked bins left out of their spans"
    );
    segfit::collect();
}
