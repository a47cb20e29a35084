//! The page heap: pages → spans (Go's `mheap`, tcmalloc's `PageHeap`).
//!
//! Holds every free run of pages of every arena, hands out runs as spans (small spans for the
//! central lists, large spans for single large objects), coalesces freed runs with their free
//! neighbours, and gives free pages back to the OS. Huge blocks (over [`crate::config::HUGE_THRESHOLD`]) bypass the
//! runs and are mapped directly, but are registered here too.
//!
//! Free runs of fewer than [`EXACT`] pages sit on a list per exact length, with a bitmap of the
//! non-empty lists, so a fit is found with two bit scans; longer runs sit on one list, searched
//! best fit, or first fit in heap order (oldest arena, lowest address) for runs of 1 MiB and more.
//! Giving pages back to the OS (the scavenge policy, `release_all`) is in the `scavenge` submodule. Invariants (all under [`HEAP_LOCK`]): two free runs are never adjacent in one arena; a free
//! run's first and last pages map to it in the page map and its other pages map to null; the
//! counters below equal the sums over the spans they describe (checked by [`PageHeap::check`]).
//!
//! Called by: `central` (small spans), `alloc` (large and huge blocks), `collect`, `stats`.

use crate::arena::{self, Arena, Huge};
use crate::config::{
    ARENA_SHIFT, ARENA_SIZE, ARENA_TABLE_LEN, PAGES_PER_ARENA, PAGE_SHIFT, PAGE_SIZE,
};
use crate::lock::Lock;
use crate::meta::FixAlloc;
use crate::os;
use crate::size_class::class_info;
use crate::span::{Span, SpanList, State};
use core::cell::UnsafeCell;
use core::ptr;
use core::sync::atomic::{AtomicU32, Ordering::Relaxed};

mod scavenge;
pub use scavenge::ScavengePolicy;

/// Free runs shorter than this many pages are kept on exact-length lists.
pub const EXACT: usize = 128;

/// Runs of each exact length looked at for an aligned request before a longer one is cut.
const ALIGNED_PROBES: usize = 8;

/// One item of [`PageHeap::for_each_span`].
pub enum Walk<'a> {
    /// A span of an arena, with the end of the arena's committed prefix.
    Span(&'a Span, usize),
    /// A huge block.
    Huge(&'a Huge),
}

/// Coarse monotonic milliseconds (vDSO; no system call, no allocation).
pub fn now_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes `ts`.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

/// Creation rank of every arena, by arena table slot (1 for the first arena reserved). Arenas come
/// from `mmap`, which hands out addresses top down, so the address alone would order the newest
/// arena first; the page heap orders by age instead (8 MiB of `.bss`, of which only the pages
/// holding the slots of arenas in use are ever touched, like the arena table itself).
static ARENA_RANK: [AtomicU32; ARENA_TABLE_LEN] = [const { AtomicU32::new(0) }; ARENA_TABLE_LEN];
static NEXT_RANK: AtomicU32 = AtomicU32::new(1);

fn set_arena_rank(base: usize) {
    if let Some(r) = ARENA_RANK.get(base >> ARENA_SHIFT) {
        r.store(NEXT_RANK.fetch_add(1, Relaxed), Relaxed);
    }
}

/// The heap order of page address `addr`: older arenas first, then lower addresses. Free runs are
/// taken lowest first and, over the cap, released highest first.
fn heap_order(addr: usize) -> u64 {
    let rank = ARENA_RANK
        .get(addr >> ARENA_SHIFT)
        .map_or(u32::MAX, |r| r.load(Relaxed));
    (u64::from(rank) << 32) | ((addr & (ARENA_SIZE - 1)) >> PAGE_SHIFT) as u64
}

/// Page heap counters (pages unless named otherwise). Exact under the heap lock.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeapCounters {
    /// Arenas reserved.
    pub arenas: usize,
    /// Bytes of arenas committed (read-write).
    pub committed_bytes: usize,
    /// Pages in small spans.
    pub small_pages: usize,
    /// Pages in large spans.
    pub large_pages: usize,
    /// Pages in free runs (including released ones).
    pub free_pages: usize,
    /// Pages in free runs that may still be resident (sum of the runs' `dirty`); the rest of the
    /// free pages were given back to the OS or never touched.
    pub dirty_pages: usize,
    /// Small spans in use.
    pub small_spans: usize,
    /// Large objects in use.
    pub large_objects: usize,
    /// Bytes the users of large objects asked for.
    pub large_requested: usize,
    /// Huge blocks in use.
    pub huge_objects: usize,
    /// Bytes mapped for huge blocks.
    pub huge_bytes: usize,
    /// Bytes of metadata (span and huge records).
    pub meta_bytes: usize,
    /// Large objects allocated since start.
    pub large_allocs: u64,
    /// Large objects freed since start.
    pub large_frees: u64,
    /// Huge blocks allocated since start.
    pub huge_allocs: u64,
    /// Huge blocks freed since start.
    pub huge_frees: u64,
    /// Bytes asked for by large and huge allocations since start.
    pub big_bytes_total: u64,
    /// Highest `small_pages + large_pages` seen.
    pub peak_inuse_pages: usize,
    /// Highest `committed_bytes` seen.
    pub peak_committed_bytes: usize,
    /// Scavenger passes that released something, and bytes they released (collect excluded).
    pub scavenges: u64,
    /// See `scavenges`.
    pub scavenged_bytes: u64,
}

/// The page heap proper. Only reachable through [`with`], which holds [`HEAP_LOCK`].
pub struct PageHeap {
    exact: [SpanList; EXACT],
    big: SpanList,
    nonempty: [u64; EXACT / 64],
    spans: FixAlloc<Span>,
    huges: FixAlloc<Huge>,
    newest: *mut Arena,
    huge_list: *mut Huge,
    /// Counters (see [`HeapCounters`]).
    pub counters: HeapCounters,
    /// When free pages are given back without `collect()`.
    pub policy: ScavengePolicy,
    last_scan: u64,
    /// Highest in-use pages since `window_start`, and over the window before it: the recent peak
    /// the cap follows (see [`ScavengePolicy`]).
    peak_cur: usize,
    /// See `peak_cur`.
    peak_prev: usize,
    /// When the current peak window began (ms).
    window_start: u64,
}

struct Global {
    heap: UnsafeCell<PageHeap>,
}
// SAFETY: `heap` is only accessed with HEAP_LOCK held (see `with`).
unsafe impl Sync for Global {}

/// The lock of the page heap (Go's `mheap_.lock`). Lock order: central → heap.
pub static HEAP_LOCK: Lock = Lock::new();
static GLOBAL: Global = Global {
    heap: UnsafeCell::new(PageHeap::new()),
};

/// Runs `f` with the page heap locked.
#[inline]
pub fn with<R>(f: impl FnOnce(&mut PageHeap) -> R) -> R {
    HEAP_LOCK.lock();
    // SAFETY: HEAP_LOCK is held, so this is the only reference to the heap.
    let r = f(unsafe { &mut *GLOBAL.heap.get() });
    #[cfg(feature = "expensive-checks")]
    // SAFETY: HEAP_LOCK is still held.
    unsafe { &*GLOBAL.heap.get() }.check();
    HEAP_LOCK.unlock();
    r
}

impl Default for PageHeap {
    fn default() -> Self {
        Self::new()
    }
}

impl PageHeap {
    /// An empty page heap (the process uses the one global heap; tests make their own).
    pub const fn new() -> Self {
        PageHeap {
            exact: [const { SpanList::new() }; EXACT],
            big: SpanList::new(),
            nonempty: [0; EXACT / 64],
            spans: FixAlloc::new(),
            huges: FixAlloc::new(),
            newest: ptr::null_mut(),
            huge_list: ptr::null_mut(),
            counters: HeapCounters {
                arenas: 0,
                committed_bytes: 0,
                small_pages: 0,
                large_pages: 0,
                free_pages: 0,
                dirty_pages: 0,
                small_spans: 0,
                large_objects: 0,
                large_requested: 0,
                huge_objects: 0,
                huge_bytes: 0,
                meta_bytes: 0,
                large_allocs: 0,
                large_frees: 0,
                huge_allocs: 0,
                huge_frees: 0,
                big_bytes_total: 0,
                peak_inuse_pages: 0,
                peak_committed_bytes: 0,
                scavenges: 0,
                scavenged_bytes: 0,
            },
            policy: ScavengePolicy::DEFAULT,
            last_scan: 0,
            peak_cur: 0,
            peak_prev: 0,
            window_start: 0,
        }
    }

    fn list_of(&mut self, npages: usize) -> &mut SpanList {
        if npages < EXACT {
            &mut self.exact[npages]
        } else {
            &mut self.big
        }
    }

    /// Puts a free span on its list and sets its boundary page map entries.
    unsafe fn insert_free(&mut self, s: *mut Span) {
        // SAFETY: `s` is a valid, unlinked free span record (caller).
        let (start, n, dirty) = unsafe { ((*s).start, (*s).npages, (*s).dirty) };
        // SAFETY: s is valid and unlinked; its pages lie in one arena.
        unsafe {
            (*s).state = State::Free;
            (*s).class = 0;
            (*s).clear_objects();
            self.list_of(n).push(s);
            arena::set_pages(start, 1, s);
            arena::set_pages(start + (n - 1) * PAGE_SIZE, 1, s);
        }
        if n < EXACT {
            self.nonempty[n / 64] |= 1 << (n % 64);
        }
        self.counters.free_pages += n;
        self.counters.dirty_pages += dirty;
    }

    /// Takes a free span off its list (its page map entries are left for the caller to rewrite).
    unsafe fn unlink_free(&mut self, s: *mut Span) {
        // SAFETY: `s` is a free span on its list (caller).
        let (n, dirty) = unsafe { ((*s).npages, (*s).dirty) };
        // SAFETY: as above.
        unsafe { self.list_of(n).remove(s) };
        if n < EXACT && self.exact[n].is_empty() {
            self.nonempty[n / 64] &= !(1 << (n % 64));
        }
        self.counters.free_pages -= n;
        self.counters.dirty_pages -= dirty;
    }

    /// The free run that best fits `n` pages starting at a multiple of `align_pages` pages, or
    /// null. A run of `n + align_pages - 1` pages always fits; a shorter one fits when its start
    /// happens to sit right, which is looked for first (a few runs of each shorter length), so an
    /// aligned request reuses a freed aligned block's pages instead of cutting a longer run.
    fn find(&mut self, n: usize, align_pages: usize) -> *mut Span {
        let need = n + align_pages - 1;
        let fits = |s: &Span| {
            let lead = (s.start.next_multiple_of(align_pages * PAGE_SIZE) - s.start) / PAGE_SIZE;
            lead + n <= s.npages
        };
        if n < EXACT {
            let mut w = n / 64;
            let mut bits = self.nonempty[w] & (!0u64 << (n % 64));
            loop {
                while bits != 0 {
                    let k = w * 64 + bits.trailing_zeros() as usize;
                    if k >= need {
                        return self.exact[k].head;
                    }
                    // Shorter than `need`: one of its first runs may still sit right.
                    let mut s = self.exact[k].head;
                    for _ in 0..ALIGNED_PROBES {
                        if s.is_null() {
                            break;
                        }
                        // SAFETY: runs on the free lists are valid.
                        let sp = unsafe { &*s };
                        if fits(sp) {
                            return s;
                        }
                        s = sp.next;
                    }
                    bits &= bits - 1;
                }
                w += 1;
                if w == EXACT / 64 {
                    break;
                }
                bits = self.nonempty[w];
            }
        }
        // Long runs: address-ordered first fit (oldest arena first, then lowest address), as Go's
        // page allocator does. Best fit here left the large workload's free holes spread over
        // two whole arenas (128 MiB touched for 72 MiB peak in use); first fit keeps the reused
        // pages at the low end (88 MiB touched) and the top of the heap idle, which is what
        // the cap releases first (see `ScavengePolicy`).
        let mut best: *mut Span = ptr::null_mut();
        let mut best_key = u64::MAX;
        let mut s = self.big.head;
        while !s.is_null() {
            // SAFETY: spans on the list are valid.
            let sp = unsafe { &*s };
            if fits(sp) {
                let key = heap_order(sp.start);
                if key < best_key {
                    best = s;
                    best_key = key;
                }
            }
            s = sp.next;
        }
        best
    }

    /// Reserves a new arena and adds it as one free run. `false` if the OS refuses.
    fn grow(&mut self) -> bool {
        let a = arena::new_arena();
        if a.is_null() {
            return false;
        }
        let s = self.spans.alloc();
        if s.is_null() {
            return false;
        }
        // SAFETY: `a` is a fresh arena, `s` a fresh zeroed span record.
        unsafe {
            set_arena_rank((*a).base);
            (*a).older = self.newest;
            (*s).start = (*a).base;
            (*s).npages = PAGES_PER_ARENA;
            (*s).zeroed = true;
            (*s).dirty = 0; // reserved, never touched: nothing resident
            self.newest = a;
            self.insert_free(s);
        }
        self.counters.arenas += 1;
        self.counters.meta_bytes = self.spans.mapped + self.huges.mapped;
        true
    }

    /// Splits the first `n` pages off free-run record `s` (already unlinked) into a new record
    /// that is inserted as free; returns it (null if metadata ran out, leaving `s` whole).
    unsafe fn split_front(&mut self, s: *mut Span, n: usize) -> *mut Span {
        let f = self.spans.alloc();
        if f.is_null() {
            return f;
        }
        // SAFETY: both records are valid; `s` has more than `n` pages.
        unsafe {
            (*f).start = (*s).start;
            (*f).npages = n;
            (*f).zeroed = (*s).zeroed;
            // Arenas are used front to back, so resident pages sit at the front of a run.
            (*f).dirty = (*s).dirty.min(n);
            (*s).dirty -= (*f).dirty;
            (*s).start += n * PAGE_SIZE;
            (*s).npages -= n;
        }
        f
    }

    /// A run of `n` pages whose start is aligned to `align_pages` pages, as a span with every page
    /// mapped to it and its state still `Free` (the caller sets it). Null if out of memory.
    pub fn alloc_run(&mut self, n: usize, align_pages: usize) -> *mut Span {
        debug_assert!(n >= 1 && align_pages.is_power_of_two());
        if n + align_pages - 1 > PAGES_PER_ARENA {
            return ptr::null_mut();
        }
        let mut s = self.find(n, align_pages);
        if s.is_null() {
            if !self.grow() {
                return ptr::null_mut();
            }
            s = self.find(n, align_pages);
            debug_assert!(!s.is_null());
            if s.is_null() {
                return s;
            }
        }
        // SAFETY: `s` is a free run on its list with room for `n` pages from its first aligned page
        // on (`find`).
        unsafe {
            self.unlink_free(s);
            let align = align_pages * PAGE_SIZE;
            let lead = ((*s).start.next_multiple_of(align) - (*s).start) / PAGE_SIZE;
            if lead > 0 {
                let f = self.split_front(s, lead);
                if f.is_null() {
                    self.insert_free(s);
                    return ptr::null_mut();
                }
                self.insert_free(f);
            }
            if (*s).npages > n {
                let f = self.split_front(s, n);
                if f.is_null() {
                    self.insert_free(s);
                    return ptr::null_mut();
                }
                // `f` is the run we hand out; `s` is the tail that stays free.
                self.insert_free(s);
                s = f;
            }
            let a = arena::arena_of((*s).start);
            let before = (*a).committed;
            if !arena::commit_prefix(a, (*s).limit() - (*a).base) {
                self.free_run(s);
                return ptr::null_mut();
            }
            self.counters.committed_bytes += (*a).committed - before;
            self.counters.peak_committed_bytes = self
                .counters
                .peak_committed_bytes
                .max(self.counters.committed_bytes);
            let inuse = self.counters.small_pages + self.counters.large_pages + n;
            self.counters.peak_inuse_pages = self.counters.peak_inuse_pages.max(inuse);
            self.peak_cur = self.peak_cur.max(inuse);
            arena::set_pages((*s).start, n, s);
        }
        s
    }

    /// Returns span `s` (small or large, or a run from `alloc_run`) to the free runs, coalescing.
    ///
    /// # Safety
    /// `s` is an in-use span of this heap with every page mapped to it; nothing uses its memory.
    pub unsafe fn free_run(&mut self, s: *mut Span) {
        // SAFETY: `s` is valid (caller); its neighbours found through the page map are valid spans.
        unsafe {
            let a = arena::arena_of((*s).start);
            let base = (*a).base;
            arena::set_pages((*s).start, (*s).npages, ptr::null_mut());
            (*s).state = State::Free;
            (*s).zeroed = false;
            (*s).dirty = (*s).npages;
            (*s).class = 0;
            (*s).clear_objects();
            if (*s).start > base {
                let p = arena::span_of((*s).start - PAGE_SIZE);
                if !p.is_null() && (*p).state == State::Free {
                    self.unlink_free(p);
                    arena::set_pages((*p).start, (*p).npages, ptr::null_mut());
                    (*s).start = (*p).start;
                    (*s).npages += (*p).npages;
                    (*s).dirty += (*p).dirty;
                    self.spans.free(p);
                }
            }
            let end = (*s).limit();
            if end < base + ARENA_SIZE {
                let q = arena::span_of(end);
                if !q.is_null() && (*q).state == State::Free {
                    self.unlink_free(q);
                    arena::set_pages((*q).start, (*q).npages, ptr::null_mut());
                    (*s).npages += (*q).npages;
                    (*s).dirty += (*q).dirty;
                    self.spans.free(q);
                }
            }
            (*s).freed_at = now_ms();
            self.insert_free(s);
        }
        self.maybe_scavenge();
    }

    /// A new small span for class `c`, or null if out of memory.
    pub fn alloc_small(&mut self, c: usize) -> *mut Span {
        let k = class_info(c);
        let s = self.alloc_run(k.pages as usize, 1);
        if !s.is_null() {
            // SAFETY: `s` is a fresh in-use run of `k.pages` pages.
            unsafe { (*s).init_small(c, k) };
            self.counters.small_pages += k.pages as usize;
            self.counters.small_spans += 1;
        }
        s
    }

    /// Frees an empty small span.
    ///
    /// # Safety
    /// `s` is a small span with no object out, on no list.
    pub unsafe fn free_small(&mut self, s: *mut Span) {
        // SAFETY: caller's contract.
        unsafe {
            debug_assert_eq!((*s).used, 0);
            self.counters.small_pages -= (*s).npages;
            self.counters.small_spans -= 1;
            self.free_run(s);
        }
    }

    /// A large object of `size` bytes aligned to `align` (at most `MAX_PAGE_HEAP_ALIGN`); returns
    /// its span (null if out of memory) and whether its memory is known to be zero.
    pub fn alloc_large(&mut self, size: usize, align: usize) -> (*mut Span, bool) {
        let n = size.div_ceil(PAGE_SIZE);
        let s = self.alloc_run(n, (align >> PAGE_SHIFT).max(1));
        if s.is_null() {
            return (s, false);
        }
        // SAFETY: `s` is a fresh in-use run.
        let zeroed = unsafe {
            (*s).state = State::Large;
            (*s).clear_objects();
            (*s).requested = size;
            let z = (*s).zeroed;
            (*s).zeroed = false;
            z
        };
        self.counters.large_pages += n;
        self.counters.large_objects += 1;
        self.counters.large_requested += size;
        self.counters.large_allocs += 1;
        self.counters.big_bytes_total += size as u64;
        (s, zeroed)
    }

    /// Frees a large object's span.
    ///
    /// # Safety
    /// `s` is a large span whose object is no longer used.
    pub unsafe fn free_large(&mut self, s: *mut Span) {
        // SAFETY: caller's contract.
        unsafe {
            self.counters.large_pages -= (*s).npages;
            self.counters.large_objects -= 1;
            self.counters.large_requested -= (*s).requested;
            self.counters.large_frees += 1;
            self.free_run(s);
        }
    }

    /// Resizes a large span in place to hold `size` bytes: shrinks by freeing tail pages, grows by
    /// taking the free run right after it. `false` (nothing changed) if it cannot grow in place.
    ///
    /// # Safety
    /// `s` is a large span in use.
    pub unsafe fn resize_large(&mut self, s: *mut Span, size: usize) -> bool {
        let n = size.div_ceil(PAGE_SIZE);
        // SAFETY: `s` is a valid large span; neighbours from the page map are valid spans.
        unsafe {
            let old = (*s).npages;
            if n < old {
                let tail = self.spans.alloc();
                if tail.is_null() {
                    return false;
                }
                (*tail).start = (*s).start + n * PAGE_SIZE;
                (*tail).npages = old - n;
                (*s).npages = n;
                arena::set_pages((*tail).start, old - n, tail);
                self.free_run(tail);
            } else if n > old {
                let end = (*s).limit();
                let a = arena::arena_of((*s).start);
                if end >= (*a).base + ARENA_SIZE {
                    return false;
                }
                let q = arena::span_of(end);
                if q.is_null() || (*q).state != State::Free || old + (*q).npages < n {
                    return false;
                }
                let before = (*a).committed;
                if !arena::commit_prefix(a, (*s).start + n * PAGE_SIZE - (*a).base) {
                    return false;
                }
                self.counters.committed_bytes += (*a).committed - before;
                self.unlink_free(q);
                let take = n - old;
                arena::set_pages((*q).start, (*q).npages, ptr::null_mut());
                if (*q).npages > take {
                    (*q).start += take * PAGE_SIZE;
                    (*q).npages -= take;
                    (*q).dirty -= (*q).dirty.min(take);
                    self.insert_free(q);
                } else {
                    self.spans.free(q);
                }
                (*s).npages = n;
                arena::set_pages(end, take, s);
            }
            self.counters.large_pages = self.counters.large_pages + n - old;
            self.peak_cur = self.peak_cur.max(self.inuse_pages());
            self.counters.large_requested = self.counters.large_requested + size - (*s).requested;
            (*s).requested = size;
        }
        true
    }

    /// A record for a huge block at `base` (mapped by the caller); registers it. Null if metadata
    /// ran out.
    pub fn add_huge(&mut self, base: usize, len: usize, requested: usize) -> *mut Huge {
        let h = self.huges.alloc();
        if h.is_null() {
            return h;
        }
        // SAFETY: `h` is a fresh record; the mapping is aligned to ARENA_SIZE (caller).
        unsafe {
            (*h).base = base;
            (*h).len = len;
            (*h).requested = requested;
            arena::set_huge(base, len, h);
        }
        self.counters.huge_objects += 1;
        self.counters.huge_bytes += len;
        self.counters.huge_allocs += 1;
        self.counters.big_bytes_total += requested as u64;
        // SAFETY: `h` is a fresh record; the list holds live records only.
        unsafe { (*h).next = self.huge_list };
        self.huge_list = h;
        self.counters.meta_bytes = self.spans.mapped + self.huges.mapped;
        h
    }

    /// Unregisters huge block `h` and frees its record; the caller unmaps the memory.
    ///
    /// # Safety
    /// `h` is a registered huge block.
    pub unsafe fn remove_huge(&mut self, h: *mut Huge) {
        // SAFETY: caller's contract.
        unsafe {
            let mut link: *mut *mut Huge = &mut self.huge_list;
            while *link != h {
                link = &mut (**link).next;
            }
            *link = (*h).next;
            arena::set_huge((*h).base, (*h).len, ptr::null_mut());
            self.counters.huge_objects -= 1;
            self.counters.huge_bytes -= (*h).len;
            self.counters.huge_frees += 1;
            self.huges.free(h);
        }
    }

    /// Re-registers huge block `h` after an in-place resize to `len` mapped bytes.
    ///
    /// # Safety
    /// `h` is registered; the mapping at `(*h).base` now has `len` bytes.
    pub unsafe fn resize_huge(&mut self, h: *mut Huge, len: usize, requested: usize) {
        // SAFETY: caller's contract.
        unsafe {
            arena::set_huge((*h).base, (*h).len, ptr::null_mut());
            self.counters.huge_bytes = self.counters.huge_bytes + len - (*h).len;
            (*h).len = len;
            (*h).requested = requested;
            arena::set_huge((*h).base, len, h);
        }
    }

    /// Calls `f` on every span of every arena in address order (free, small and large) with the
    /// arena's committed end, then on every huge block.
    pub fn for_each_span(&self, mut f: impl FnMut(Walk<'_>)) {
        let mut a = self.newest;
        while !a.is_null() {
            // SAFETY: arenas are never freed; the arena is partitioned into spans, each of whose
            // first page maps to it (in-use spans map every page, free runs their boundaries).
            unsafe {
                let committed_end = (*a).base + (*a).committed;
                let mut i = 0;
                while i < PAGES_PER_ARENA {
                    let s = (*a).pages[i].load(core::sync::atomic::Ordering::Relaxed);
                    if s.is_null() {
                        debug_assert!(false, "arena page {i} maps to no span");
                        break;
                    }
                    f(Walk::Span(&*s, committed_end));
                    i += (*s).npages;
                }
                a = (*a).older;
            }
        }
        let mut h = self.huge_list;
        while !h.is_null() {
            // SAFETY: the list holds live huge records.
            unsafe {
                f(Walk::Huge(&*h));
                h = (*h).next;
            }
        }
    }

    /// Calls `f` on every small span of every arena, as a raw pointer: `f` may change the span's
    /// object state and list links, but not its pages or state, and must not call the page heap.
    pub fn for_each_small_span(&self, mut f: impl FnMut(*mut Span)) {
        let mut a = self.newest;
        while !a.is_null() {
            // SAFETY: as in `for_each_span`; `npages` is read before `f` runs and `f` leaves it.
            unsafe {
                let mut i = 0;
                while i < PAGES_PER_ARENA {
                    let s = (*a).pages[i].load(core::sync::atomic::Ordering::Relaxed);
                    if s.is_null() {
                        break;
                    }
                    let n = (*s).npages;
                    if (*s).state == State::Small {
                        f(s);
                    }
                    i += n.max(1);
                }
                a = (*a).older;
            }
        }
    }

    /// Checks the page heap invariants (O(free runs + pages); tests and `expensive-checks`).
    pub fn check(&self) {
        let mut free = 0;
        let mut dirty = 0;
        let lists = self
            .exact
            .iter()
            .enumerate()
            .map(|(n, l)| (Some(n), l))
            .chain(core::iter::once((None, &self.big)));
        for (exact, list) in lists {
            let mut s = list.head;
            let mut count = 0;
            while !s.is_null() {
                // SAFETY: spans on the free lists are valid.
                let sp = unsafe { &*s };
                assert_eq!(sp.state, State::Free);
                match exact {
                    Some(n) => assert_eq!(sp.npages, n),
                    None => assert!(sp.npages >= EXACT),
                }
                assert_eq!(
                    arena::span_of(sp.start),
                    s,
                    "first page not mapped to its free run"
                );
                assert_eq!(
                    arena::span_of(sp.limit() - PAGE_SIZE),
                    s,
                    "last page not mapped"
                );
                let a = arena::arena_of(sp.start);
                // SAFETY: arenas are never freed.
                let (base, end) = unsafe { ((*a).base, (*a).base + ARENA_SIZE) };
                if sp.start > base {
                    let p = arena::span_of(sp.start - PAGE_SIZE);
                    // SAFETY: mapped spans are valid.
                    let free = !p.is_null() && unsafe { (*p).state } == State::Free;
                    assert!(!free, "adjacent free runs");
                }
                if sp.limit() < end {
                    let q = arena::span_of(sp.limit());
                    // SAFETY: mapped spans are valid.
                    let free = !q.is_null() && unsafe { (*q).state } == State::Free;
                    assert!(!free, "adjacent free runs");
                }
                free += sp.npages;
                assert!(sp.dirty <= sp.npages);
                dirty += sp.dirty;
                count += 1;
                s = sp.next;
            }
            assert_eq!(count, list.len);
            if let Some(n) = exact {
                assert_eq!(
                    self.nonempty[n / 64] >> (n % 64) & 1 == 1,
                    count > 0,
                    "bitmap of list {n}"
                );
            }
        }
        assert_eq!(free, self.counters.free_pages);
        assert_eq!(dirty, self.counters.dirty_pages);
        let total = self.counters.arenas * PAGES_PER_ARENA;
        assert_eq!(
            total,
            free + self.counters.small_pages + self.counters.large_pages
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(h: &mut PageHeap, n: usize, align: usize) -> *mut Span {
        let s = h.alloc_run(n, align);
        assert!(!s.is_null());
        // SAFETY: a fresh run.
        unsafe { (*s).state = State::Large };
        h.counters.large_pages += n;
        s
    }

    fn free(h: &mut PageHeap, s: *mut Span) {
        // SAFETY: `s` is an in-use run of `h`.
        unsafe {
            h.counters.large_pages -= (*s).npages;
            h.free_run(s);
        }
    }

    #[test]
    fn split_runs_are_adjacent_and_coalesce_back_to_one_arena() {
        let mut h = PageHeap::new();
        let a = run(&mut h, 3, 1);
        let b = run(&mut h, 5, 1);
        let c = run(&mut h, 1, 1);
        h.check();
        // SAFETY: live runs.
        unsafe {
            assert_eq!(
                (*b).start,
                (*a).limit(),
                "best fit carves the arena front to back"
            );
            assert_eq!((*c).start, (*b).limit());
            assert_eq!(arena::span_of((*b).start + 4 * PAGE_SIZE), b);
        }
        free(&mut h, b);
        h.check();
        assert_eq!(h.exact[5].len, 1, "the hole is a free run of 5 pages");
        let d = run(&mut h, 4, 1);
        // SAFETY: live runs.
        unsafe {
            assert_eq!(
                (*d).start,
                (*a).limit(),
                "a 4-page request takes the best-fitting hole"
            )
        };
        free(&mut h, a);
        free(&mut h, c);
        free(&mut h, d);
        h.check();
        assert_eq!(h.counters.free_pages, PAGES_PER_ARENA);
        assert_eq!(h.big.len, 1, "everything coalesced into one run");
    }

    #[test]
    fn aligned_runs_are_aligned_and_leave_no_leak() {
        let mut h = PageHeap::new();
        let small = run(&mut h, 1, 1);
        let big = run(&mut h, 10, 64);
        // SAFETY: live runs.
        unsafe { assert_eq!((*big).start % (64 * PAGE_SIZE), 0) };
        h.check();
        free(&mut h, small);
        free(&mut h, big);
        h.check();
        assert_eq!(h.counters.free_pages, PAGES_PER_ARENA);
    }

    #[test]
    fn an_aligned_request_reuses_a_freed_aligned_hole_of_its_own_length() {
        let mut h = PageHeap::new();
        let lead = run(&mut h, 16, 1);
        let a = run(&mut h, 10, 16);
        let after = run(&mut h, 1, 1);
        // SAFETY: live runs.
        let start = unsafe { (*a).start };
        // SAFETY: live runs.
        unsafe { assert_eq!(start, (*lead).limit(), "no hole in front of `a`") };
        free(&mut h, a);
        h.check();
        assert_eq!(
            h.exact[10].len, 1,
            "the freed block is a free run of exactly 10 pages"
        );
        // A 10-page hole cannot hold 10 pages at an alignment of 16 unless it starts aligned;
        // this one does, so it is taken rather than a 25-page stretch cut from the arena's tail.
        let b = run(&mut h, 10, 16);
        // SAFETY: live run.
        unsafe { assert_eq!((*b).start, start) };
        h.check();
        for s in [lead, b, after] {
            free(&mut h, s);
        }
        h.check();
        assert_eq!(h.counters.free_pages, PAGES_PER_ARENA);
    }

    #[test]
    fn large_spans_grow_and_shrink_in_place() {
        let mut h = PageHeap::new();
        let (s, zeroed) = h.alloc_large(5 * PAGE_SIZE, 16);
        assert!(zeroed, "fresh arena pages are known zero");
        // SAFETY: live large span.
        unsafe {
            assert!(h.resize_large(s, 9 * PAGE_SIZE));
            assert_eq!((*s).npages, 9);
            h.check();
            assert!(h.resize_large(s, 2 * PAGE_SIZE + 1));
            assert_eq!((*s).npages, 3);
            h.check();
            h.free_large(s);
        }
        h.check();
        assert_eq!(h.counters.large_pages, 0);
    }

    #[test]
    fn release_all_marks_runs_released_and_zeroed() {
        let mut h = PageHeap::new();
        let (s, _) = h.alloc_large(4 * PAGE_SIZE, 16);
        // SAFETY: a live large span of 4 pages.
        unsafe {
            core::ptr::write_bytes((*s).start as *mut u8, 0xAB, 4 * PAGE_SIZE);
            let start = (*s).start;
            h.policy.min_retain = usize::MAX; // no automatic scavenging in this test
            h.free_large(s);
            assert!(h.release_all() >= 4 * PAGE_SIZE);
            h.check();
            assert_eq!(h.counters.dirty_pages, 0);
            assert_eq!(*(start as *const u8), 0, "released pages read back as zero");
        }
    }

    #[test]
    fn long_runs_are_taken_first_fit_in_heap_order() {
        let mut h = PageHeap::new();
        h.policy.min_retain = usize::MAX; // no automatic scavenging in this test
        let a = run(&mut h, 300, 1);
        let _b = run(&mut h, 10, 1);
        let c = run(&mut h, 200, 1);
        let _d = run(&mut h, 10, 1);
        // SAFETY: live runs.
        let (a_start, c_start) = unsafe { ((*a).start, (*c).start) };
        free(&mut h, a);
        free(&mut h, c);
        let e = run(&mut h, 200, 1);
        // SAFETY: a live run.
        let e_start = unsafe { (*e).start };
        assert_eq!(
            e_start, a_start,
            "the lowest fitting run, not the exact fit at {c_start:#x}"
        );
        h.check();
        // A newer arena comes later in heap order whatever its address.
        assert!(h.grow());
        // SAFETY: `newest` is the arena just reserved.
        let newer = unsafe { (*h.newest).base };
        assert!(heap_order(a_start + 1000 * PAGE_SIZE) < heap_order(newer));
    }

    #[test]
    fn the_cap_follows_the_recent_peak_and_releases_only_the_excess_from_the_top() {
        let mut h = PageHeap::new();
        h.policy = ScavengePolicy {
            decay_ms: 1000,
            scan_ms: 100,
            min_retain: 2 << 20,
            retain_divisor: 1,
        };
        let runs: [*mut Span; 4] = core::array::from_fn(|_| run(&mut h, 256, 1));
        for &s in &runs {
            // SAFETY: live runs of 256 pages.
            unsafe { core::ptr::write_bytes((*s).start as *mut u8, 0xAB, 256 * PAGE_SIZE) };
        }
        // SAFETY: live runs.
        let (low, high) = unsafe { ((*runs[0]).start, (*runs[3]).start) };
        for &s in &runs {
            free(&mut h, s);
        }
        h.check();
        assert_eq!(
            h.resident_free_bytes(),
            8 << 20,
            "within the window the freed 8 MiB (the peak) stay for reuse"
        );
        // The peak is forgotten (two windows later, with nothing in use in between; the decay is
        // not due): the cap is min_retain, and exactly the excess goes, from the top.
        h.peak_cur = 0;
        h.peak_prev = 0;
        h.window_start = now_ms();
        let released = h.scavenge(h.window_start);
        h.check();
        assert_eq!(released, 6 << 20);
        assert_eq!(h.resident_free_bytes(), 2 << 20);
        // SAFETY: the run is free but committed; released pages read as zero, kept ones keep data.
        unsafe {
            assert_eq!(*(low as *const u8), 0xAB, "the lowest pages are kept");
            assert_eq!(*((low + (2 << 20) - 1) as *const u8), 0xAB);
            assert_eq!(*((low + (2 << 20)) as *const u8), 0, "the rest is released");
            assert_eq!(*(high as *const u8), 0);
        }
        assert_eq!(h.counters.scavenged_bytes, 6 << 20);
    }
}
