//! Giving free pages back to the OS: the scavenge policy (decay, and a cap that follows the recent
//! peak of in-use pages) and the page heap's release functions. Part of the page heap (same lock,
//! same invariants: `dirty` bounds the resident pages of a free run, `counters.dirty_pages` is
//! their sum); called from the page heap's own slow paths, `collect()` and the scavenger thread.

use super::*;

/// When free pages go back to the OS without anyone calling `collect()`.
///
/// A free run that has stayed free for `decay_ms` is released (jemalloc-style decay: memory
/// that a steady workload frees and re-takes within the window is never given back and re-faulted,
/// so the workload does not thrash). Independently, free-but-resident memory is capped at
/// `max(min_retain, peak / retain_divisor + (peak - in_use))`, where `peak` is the highest in-use
/// of the last one to two `decay_ms` windows: with the default divisor, the heap keeps up to
/// `max(in_use + min_retain, 2 * peak)` resident. Past the cap, just the excess is released, from
/// the top of the heap down (the newest arena's highest free pages: the ones first fit takes
/// last), cutting the tail off a run rather than releasing whole runs.
/// The checks run from the page heap's own slow paths, at most every `scan_ms`; an optional
/// background thread (`scavenger::start`) covers a program that goes idle.
///
/// Why the cap follows the recent peak rather than the instantaneous in-use: measured on the
/// `large` workload (64 KiB–16 MiB blocks, 8 live, every page touched; 72–75 MiB peak in use,
/// often under 20 MiB), a cap of `max(64 MiB, in_use)` released 632 MiB in 20 `madvise` calls that
/// faulted back in: 99,000 minor faults against 27,700 for tcmalloc, 0.19 s against 0.06 s.
/// Most of it was not the cap being tight but the heap being spread out: best fit over long runs
/// used both 64 MiB arenas (128 MiB touched); address-ordered first fit (see `find`) touches
/// 92 MiB. With first fit and an in-use cap that releases only the excess, 54 `madvise` calls
/// still brought 44,000 faults (0.09 s), since in-use keeps dipping under `footprint - 64 MiB`;
/// with the peak-following cap, no `madvise` and 23,600 faults (0.05 s), peak RSS 95 MB (was 97;
/// glibc 94, tcmalloc 103, mimalloc 112). The worst-case bound at a peak is unchanged
/// (`in_use + max(min_retain, in_use)`); a heap that shrinks is released within one to two
/// windows (and by the decay in any case), no longer at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScavengePolicy {
    /// Release a free run after it has been free this long (ms); also the length of the window
    /// over which the cap's peak in-use is taken.
    pub decay_ms: u64,
    /// Minimum interval between two decay scans (ms).
    pub scan_ms: u64,
    /// Free resident bytes always allowed.
    pub min_retain: usize,
    /// Free resident bytes allowed as a fraction of the recent peak in-use (plus what in-use has
    /// dropped from that peak): `peak / retain_divisor + (peak - in_use)`.
    pub retain_divisor: usize,
}

impl ScavengePolicy {
    /// The default: 1 s decay (and peak window), scans at most every 100 ms, resident memory at
    /// most `max(in_use + 64 MiB, 2 * recent peak in-use)`.
    /// (A cap of max(8 MiB, 25% of in-use) made a workload that cycles 64 KiB–16 MiB blocks 40x
    /// slower: 546 `madvise` calls and re-faulted pages; max(64 MiB, in-use) made 20, and the
    /// peak-following cap none: see above and BENCHMARKS.md.)
    pub const DEFAULT: ScavengePolicy = ScavengePolicy {
        decay_ms: 1000,
        scan_ms: 100,
        min_retain: 64 << 20,
        retain_divisor: 1,
    };
}

impl PageHeap {
    /// Gives every free page that is not yet released back to the OS. Returns the bytes released.
    pub fn release_all(&mut self) -> usize {
        self.release(|_| true, 0)
    }

    /// Releases one free run's resident pages (the committed part). Returns the bytes that may have
    /// been resident (its `dirty` pages), which is what the release gives back.
    unsafe fn purge_run(&mut self, s: *mut Span) -> usize {
        // SAFETY: `s` is a free run on a list (caller); free runs hold no live data.
        unsafe {
            let a = arena::arena_of((*s).start);
            let committed_end = (*a).base + (*a).committed;
            let bytes = (*s).dirty * PAGE_SIZE;
            if (*s).start < committed_end {
                let end = (*s).limit().min(committed_end);
                os::purge((*s).start as *mut u8, end - (*s).start);
            }
            self.counters.dirty_pages -= (*s).dirty;
            (*s).dirty = 0;
            (*s).zeroed = true;
            bytes
        }
    }

    /// Releases the last `pages` of the possibly resident pages of free run `s` (all of them if it
    /// has fewer): the pages from `start + (dirty - pages)` to the end of the run. Returns the bytes
    /// released (taken off `dirty`).
    ///
    /// Runs are carved from their front, so the front of a run is what is reused next and its tail
    /// is what stays idle; `dirty` counts resident pages as if they sat at the front, which holds
    /// for runs that are split from the front, purged from the tail and coalesced with a freed
    /// span below them. (Where it does not hold, e.g. after a span freed above a partly purged run
    /// is coalesced into it, the range purged is larger than `pages`, and `dirty` stays an upper
    /// bound of the resident pages.)
    unsafe fn purge_tail(&mut self, s: *mut Span, pages: usize) -> usize {
        // SAFETY: `s` is a free run on a list (caller); free runs hold no live data.
        unsafe {
            if pages >= (*s).dirty {
                return self.purge_run(s);
            }
            let keep = (*s).dirty - pages;
            let a = arena::arena_of((*s).start);
            let committed_end = (*a).base + (*a).committed;
            let from = (*s).start + keep * PAGE_SIZE;
            if from < committed_end {
                let end = (*s).limit().min(committed_end);
                os::purge(from as *mut u8, end - from);
            }
            self.counters.dirty_pages -= pages;
            (*s).dirty = keep;
            pages * PAGE_SIZE
        }
    }

    /// Releases free runs that are not released yet and satisfy `pick`, visiting the biggest runs
    /// first, until at most `keep` resident free bytes remain. Returns the bytes purged.
    fn release(&mut self, mut pick: impl FnMut(&Span) -> bool, keep: usize) -> usize {
        let mut bytes = 0;
        for list in (0..=EXACT).rev() {
            let mut s = self.exact.get(list).map_or(self.big.head, |l| l.head);
            while !s.is_null() {
                if self.resident_free_bytes() <= keep {
                    return bytes;
                }
                // SAFETY: spans on the free lists are valid free runs.
                unsafe {
                    if (*s).dirty > 0 && pick(&*s) {
                        bytes += self.purge_run(s);
                    }
                    s = (*s).next;
                }
            }
        }
        bytes
    }

    /// The free run with resident pages that comes last in heap order (newest arena, highest
    /// address), or null.
    fn last_dirty(&self) -> *mut Span {
        let mut best: *mut Span = ptr::null_mut();
        let mut best_key = 0;
        for list in 0..=EXACT {
            let mut s = self.exact.get(list).map_or(self.big.head, |l| l.head);
            while !s.is_null() {
                // SAFETY: spans on the free lists are valid.
                unsafe {
                    if (*s).dirty > 0 {
                        let key = heap_order((*s).start) + 1;
                        if key > best_key {
                            best = s;
                            best_key = key;
                        }
                    }
                    s = (*s).next;
                }
            }
        }
        best
    }

    /// Bytes of free runs that may still be resident.
    pub fn resident_free_bytes(&self) -> usize {
        self.counters.dirty_pages * PAGE_SIZE
    }

    pub(super) fn inuse_pages(&self) -> usize {
        self.counters.small_pages + self.counters.large_pages
    }

    /// Starts a new peak window if the current one is `decay_ms` old, forgetting the peak of the
    /// window before. Called on every `free_run` (in-use pages only go down there, so the current
    /// window's peak may be recent however old the window is: it is kept one more window).
    fn roll_window(&mut self, now: u64) {
        if now.saturating_sub(self.window_start) < self.policy.decay_ms {
            return;
        }
        self.peak_prev = self.peak_cur;
        self.peak_cur = self.inuse_pages();
        self.window_start = now;
    }

    /// The resident free bytes the policy allows right now:
    /// `max(min_retain, peak / retain_divisor + (peak - in_use))`, `peak` being the highest in-use
    /// of the last one to two decay windows.
    fn retain_limit(&self) -> usize {
        let inuse = self.inuse_pages();
        let peak = inuse.max(self.peak_cur).max(self.peak_prev);
        let allowed = peak / self.policy.retain_divisor.max(1) + (peak - inuse);
        self.policy.min_retain.max(allowed * PAGE_SIZE)
    }

    /// Applies the scavenge policy (see [`ScavengePolicy`]) if a scan is due or the cap is passed.
    pub fn maybe_scavenge(&mut self) {
        let now = now_ms();
        self.roll_window(now);
        let over = self.resident_free_bytes() > self.retain_limit();
        if !over && self.resident_free_bytes() == 0 {
            return;
        }
        if over || now.saturating_sub(self.last_scan) >= self.policy.scan_ms {
            self.scavenge(now);
        }
    }

    /// One scavenger pass at time `now`: release runs idle past the decay, then enforce the cap.
    pub fn scavenge(&mut self, now: u64) -> usize {
        self.last_scan = now;
        self.roll_window(now);
        let decay = self.policy.decay_ms;
        let mut bytes = self.release(|s| now.saturating_sub(s.freed_at) >= decay, 0);
        let limit = self.retain_limit();
        while self.resident_free_bytes() > limit {
            // Over the cap: release just the excess, from the top of the heap down (the pages
            // first fit takes last), one run tail at a time.
            let victim = self.last_dirty();
            if victim.is_null() {
                break;
            }
            let excess = (self.resident_free_bytes() - limit).div_ceil(PAGE_SIZE);
            // SAFETY: a free run on a list.
            bytes += unsafe { self.purge_tail(victim, excess) };
        }
        if bytes > 0 {
            self.counters.scavenges += 1;
            self.counters.scavenged_bytes += bytes as u64;
        }
        bytes
    }
}
