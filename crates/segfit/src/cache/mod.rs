//! Per-thread caches (Go's `mcache`, with mimalloc's thread-owned pages): the fast path.
//!
//! Each thread owns spans (see `span.rs`): per size class, a `partial` list of owned spans with
//! objects to give and a `full` list of the rest. It allocates from a per-class list of free
//! objects (`Bin`), refilled from its own spans without a lock: a refill moves a span's whole free
//! list into the bin at once. `free` of an object of an owned span pushes it on the bin while the
//! bin has room, else straight back on the span's list (no lock, no atomic read-modify-write);
//! Rust's sized `dealloc` pushes any object on the bin while it has room. A C `free` into a span
//! another thread owns pushes a block of 64 bytes or more on the bin while the bin is less than
//! 3/4 full (reused here; likewise for a block of an unowned span); otherwise, and always for
//! smaller blocks, it goes on the freeing thread's `remote` list for the class; a full remote
//! list is handed to the owners' *inboxes*
//! (one atomic exchange per owner and batch), and an owner empties its inbox into its spans when
//! it next refills a bin. Objects of unowned spans go back through the central list, in batches.
//!
//! States: a thread's slot (see `tls`) points at the static `UNINIT` cache until the thread first
//! needs one, then at its own `ThreadCache` (a metadata record, registered in a global list), and
//! after its exit destructor ran, at the static `DEAD` cache: a dead thread allocates one object at
//! a time from unowned spans and never gets a new cache. At exit a cache is *parked* whole (its
//! bins, owned spans, id and open inbox) for the next thread that starts, which adopts it instead
//! of building a cache from the central lists; past a few parked caches, or a second after
//! parking (at the next thread exit or span refill), or on `collect`, a cache gives everything
//! back and abandons its spans to the central lists.
//!
//! Free objects hold the next link in word 0 and [`free_key`] in word 1 (every push writes it,
//! Rust's sized free included); `malloc` clears word 1, so a `free` that finds the key is
//! probably a double free and takes the slow path, which confirms it (in this cache or on the
//! span's list) before aborting. The C `malloc` and every refill check the key of the object
//! they pop ([`bad_pop`]): a double free the `free` side could not see (its copies on two
//! threads' lists) is caught when the block is handed out the second time.
//!
//! Invariants: `bin.max - bin.room` is the length of `bin.head`'s list;
//! `remote.len <= remote.lim`; the static caches (and caches without an owner id) have `id == NO_ID`, `max == lim == 0` and empty lists,
//! so the fast paths never write to them; every span whose `owner` is a cache's id is on exactly
//! one of that cache's `partial`/`full` lists.

mod life;
mod remote;

use crate::arena;
use crate::central;
use crate::fatal::fatal;
pub use crate::owner::{inbox_try_push, NO_ID};
use crate::owner::{
    now_us, owner_leave, owner_try_enter, stalled, IdSlot, OwnGuard, LAST_REFILL_US,
};
use crate::size_class::{class_info, BIN_STRIDE, NUM_CLASSES};
use crate::span::{Pushed, Span, SpanList, State};
use crate::tls;
use core::ptr;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
pub use life::{
    after_fork_child, flush_current, fold_counts, fork_lock_own, fork_unlock_own, global_init,
    parked_count, release_parked, set_max_parked, thread_counts, REGISTRY_LOCK,
};
use life::{init_thread, release_stale_parked, with_registry};
pub use remote::inbox_push;
use remote::{drain_inbox, help_idle_owner, help_stalled_owners, route};

/// One class's free list in a thread cache.
///
/// One bin per class, `BIN_STRIDE` bytes apart from the start of the cache, so that `malloc`'s
/// size table and each span hold the byte offset of their class's bin (no shift on the fast path).
#[repr(C, align(32))]
pub struct Bin {
    /// First free object (each holds the next in word 0), or null.
    pub head: *mut u8,
    /// Objects the bin may still take before it is full: `max - len`, negative when a refill
    /// brought more than `max`. A push takes one and a pop gives one back, so the free fast path
    /// tests and updates it in one instruction; the full path gives the one it took back.
    pub room: i32,
    /// The bin's limit (grows while it overflows, see `free_local_full`).
    pub max: u32,
    /// Small objects allocated from this bin (the fast path's one counter; frees are derived:
    /// allocated minus live).
    pub allocs: u64,
    /// The most an overflow may grow `max` to: the class's `BIN_CAP`, lowered to `max` once the
    /// cache's budget cannot pay for another step (0 for caches that keep nothing). A refill's
    /// slow start may still raise `max` past a lowered cap.
    pub cap: u32,
}

impl Bin {
    /// Objects on the list.
    #[inline]
    pub fn count(&self) -> u32 {
        (self.max as i64 - self.room as i64).max(0) as u32
    }

    /// Records that `n` objects joined the list.
    #[inline]
    pub(super) fn added(&mut self, n: usize) {
        self.room -= n as i32;
    }

    /// Sets the limit to `max`, keeping `room == max - count`.
    #[inline]
    pub(super) fn set_max(&mut self, max: u32) {
        self.room += max as i32 - self.max as i32;
        self.max = max;
    }

    /// Takes the head off the list and hands it out: word 1 cleared, counted. With `CHECK`, the
    /// head must carry the free key (else it was handed out already, or written after its free:
    /// abort, see [`bad_pop`]), tested before its link is followed.
    ///
    /// # Safety
    /// The list is not empty; its objects hold the next link in word 0.
    #[inline(always)]
    pub unsafe fn pop<const CHECK: bool>(&mut self) -> *mut u8 {
        let p = self.head;
        debug_assert!(!p.is_null());
        // SAFETY: `p` is a free object of at least 16 bytes (caller).
        unsafe {
            if CHECK && *(p as *mut usize).add(1) != free_key() {
                bad_pop(p);
            }
            self.head = *(p as *mut *mut u8);
            *(p as *mut usize).add(1) = 0;
        }
        self.room += 1;
        self.allocs += 1;
        p
    }

    /// Puts free object `p` in front of the list (word 0 ← the old head, word 1 ← `key`); the
    /// caller accounts for it in `room`.
    ///
    /// # Safety
    /// `p` is a free object (at least 16 bytes) of this bin's class that nothing else uses.
    #[inline(always)]
    pub unsafe fn link(&mut self, p: *mut u8, key: usize) {
        // SAFETY: caller's contract.
        unsafe {
            *(p as *mut *mut u8) = self.head;
            *(p as *mut usize).add(1) = key;
        }
        self.head = p;
    }
}

const _: () = assert!(core::mem::size_of::<Bin>() == BIN_STRIDE);
const _: () = assert!(core::mem::offset_of!(ThreadCache, bins) == 0);

/// The bin of the class whose bin offset (`class * BIN_STRIDE`, from `size_class::bin_offset`
/// or a span's `bin`) is `off`.
///
/// # Safety
/// `tc` is a valid cache and `off` is `c * BIN_STRIDE` for a class `c < NUM_CLASSES`.
#[inline(always)]
pub unsafe fn bin_at(tc: *mut ThreadCache, off: usize) -> *mut Bin {
    debug_assert!(off.is_multiple_of(BIN_STRIDE) && off / BIN_STRIDE < NUM_CLASSES);
    // SAFETY: bins start the cache and are `BIN_STRIDE` apart (asserted above).
    unsafe { (tc as *mut u8).add(off) as *mut Bin }
}

/// Objects of one class freed by this thread into spans it does not own: they go to their owners'
/// inboxes (or the central list) in batches and are never reused here (reusing them would put this
/// thread's data on cache lines the owner is using: passive false sharing).
#[repr(C)]
pub struct Remote {
    /// First object (each holds the next in word 0), or null.
    pub head: *mut u8,
    /// Objects on the list.
    pub len: u32,
    /// The fast path pushes while `len < lim` (0 for the static caches).
    pub lim: u32,
}

const EMPTY_REMOTE: Remote = Remote {
    head: ptr::null_mut(),
    len: 0,
    lim: 0,
};

/// What a cache pointer refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum CacheState {
    /// The static cache of a thread that has not allocated yet.
    Uninit = 0,
    /// A thread's own cache.
    Live = 1,
    /// The static cache of a thread whose cache was torn down.
    Dead = 2,
}

/// A thread's cache.
#[repr(C)]
pub struct ThreadCache {
    /// Free lists, indexed by size class (index 0 unused, always empty). First in the record:
    /// see [`bin_at`].
    pub bins: [Bin; NUM_CLASSES],
    /// This cache's owner id for spans (1..=MAX_IDS, or `NO_ID`).
    pub id: u32,
    /// Bytes by which this cache may still raise its bins' limits (see `free_local_full`).
    budget: usize,
    /// This cache's id slot (`IDS[id - 1]`; null for caches without an id).
    pub(crate) own: *const IdSlot,
    /// Remote frees waiting to go back, per class.
    pub remote: [Remote; NUM_CLASSES],
    /// Owned spans with an object to give, per class.
    partial: [SpanList; NUM_CLASSES],
    /// Owned spans without, per class.
    full: [SpanList; NUM_CLASSES],
    /// See [`CacheState`].
    pub state: CacheState,
    next: *mut ThreadCache,
    prev: *mut ThreadCache,
    /// Next parked cache (see `life::park`; registry lock).
    parked_next: *mut ThreadCache,
    /// When this cache was parked (ms, `page_heap::now_ms`; registry lock).
    parked_ms: u64,
}

pub(crate) struct ReadOnly(ThreadCache);
// SAFETY: the static caches are never written (their bins and remote lists have limit 0).
unsafe impl Sync for ReadOnly {}

const EMPTY_BIN: Bin = Bin {
    head: ptr::null_mut(),
    room: 0,
    max: 0,
    allocs: 0,
    cap: 0,
};

/// A read-only cache with every list empty and limit 0, in state `state`.
const fn empty_cache(state: CacheState) -> ThreadCache {
    ThreadCache {
        bins: [EMPTY_BIN; NUM_CLASSES],
        id: NO_ID,
        budget: 0,
        own: ptr::null(),
        remote: [EMPTY_REMOTE; NUM_CLASSES],
        partial: [const { SpanList::new() }; NUM_CLASSES],
        full: [const { SpanList::new() }; NUM_CLASSES],
        state,
        next: ptr::null_mut(),
        prev: ptr::null_mut(),
        parked_next: ptr::null_mut(),
        parked_ms: 0,
    }
}

/// The cache every thread's slot points at before its first allocation (its address is also the
/// initial value of the initial-exec TLS slot, see `tls`).
pub(crate) static UNINIT: ReadOnly = ReadOnly(empty_cache(CacheState::Uninit));
static DEAD: ReadOnly = ReadOnly(empty_cache(CacheState::Dead));

/// The slot value of a thread without a cache yet.
pub const UNINIT_PTR: *mut ThreadCache = &raw const UNINIT.0 as *mut ThreadCache;
const DEAD_PTR: *mut ThreadCache = &raw const DEAD.0 as *mut ThreadCache;

/// Small objects allocated by threads without a cache (dead threads), per class.
static UNCACHED_ALLOCS: [AtomicU64; NUM_CLASSES] = [const { AtomicU64::new(0) }; NUM_CLASSES];

/// Bytes a remote list of one class holds before it goes to the owners (within the class's
/// batch, and at least `REMOTE_MIN` objects). Objects on a remote list are free but reusable by
/// nobody until they are handed over, so this bounds the memory a thread that frees other
/// threads' blocks keeps in transit: with whole batches (32 KiB of 512-byte objects and up)
/// larson's peak in-use was 9.3 MiB, with 8 KiB 8.4 MiB (prodcons 3.4 → 3.2 MiB); no time moved.
const REMOTE_BYTES: u32 = 8 << 10;
/// See `REMOTE_BYTES`: a handover costs about three atomic operations (one exchange per owner,
/// two counters), so no list is handed over with fewer objects than this.
const REMOTE_MIN: u32 = 4;

/// The remote list limit of class `c` (see `REMOTE_BYTES`).
pub(super) fn remote_limit(c: usize) -> u32 {
    let k = class_info(c);
    (REMOTE_BYTES / k.size).max(REMOTE_MIN).min(k.batch)
}

/// A new thread's bins start with this limit (see the slow start in `alloc_slow`).
const START_MAX: u32 = 8;

/// The limit a new thread's bin of class `c` starts with (and a parked cache's returns to).
pub(super) fn start_max(c: usize) -> u32 {
    START_MAX.min(2 * class_info(c).batch)
}

/// Bytes a thread cache may grow its bins' limits by, in all (tcmalloc bounds its thread caches
/// similarly). Bins start at two batches and grow by a batch each time they overflow, up to
/// [`BIN_CAP`], while the budget lasts.
const CACHE_BUDGET: usize = 2 << 20;

/// The most objects a bin of class `c` may hold: 2 MiB worth, between 2 batches and 131072 (so a
/// thread that builds and drops structures of up to ~128K small nodes reuses them through its
/// bin; all bins together still grow by at most `CACHE_BUDGET`). C binary_trees went from 2.81G
/// to 2.66G instructions and 0.84 s to 0.71 s when this was raised from two batches to 512 KiB /
/// 16384, from 966M to 927M instructions (scale 0.1) and 0.86 s to 0.81 s when raised to 1 MiB /
/// 65536, and from 848M to 820M and 0.496 to 0.482 s (7 interleaved runs, another day) when
/// raised to 2 MiB / 131072; fragment's time and every peak RSS stayed.
pub(super) static BIN_CAP: [u32; NUM_CLASSES] = bin_caps();

const fn bin_caps() -> [u32; NUM_CLASSES] {
    let k = crate::size_class::build();
    let mut caps = [0u32; NUM_CLASSES];
    let mut c = 1;
    while c < NUM_CLASSES {
        let by_bytes = (2 << 20) / k[c].size;
        let floor = 2 * k[c].batch;
        let cap = if by_bytes > floor { by_bytes } else { floor };
        caps[c] = if cap < 131072 { cap } else { 131072 };
        c += 1;
    }
    caps
}

static FREE_KEY: AtomicUsize = AtomicUsize::new(0);
/// The per-process secret stored in word 1 of every free object in a cache.
#[inline(always)]
pub fn free_key() -> usize {
    FREE_KEY.load(Ordering::Relaxed)
}

/// A bin's head `p` lacks the free key that every object on a free list carries: it was handed
/// out before (a double free `free` could not see: the copies were on two threads' lists, or
/// one was spliced into a bin with its inbox chain) or written after it was freed. Aborts.
#[cold]
#[inline(never)]
pub fn bad_pop(p: *mut u8) -> ! {
    fatal(
        "malloc",
        "free block handed out twice or changed after free (double free or use after free)",
        p as usize,
    )
}

/// The span of free object `p` of class `c`, checked (a corrupted list entry aborts).
#[inline]
fn span_of_object(p: *mut u8, c: usize) -> *mut Span {
    let s = arena::span_of(p as usize);
    // SAFETY: page map entries are valid span records.
    match unsafe { s.as_ref() } {
        Some(span)
            if span.state == State::Small
                && span.class as usize == c
                && span.object_index(p as usize).is_some() =>
        {
            s
        }
        _ => fatal("free", "corrupted free list entry", p as usize),
    }
}

/// Puts free object `p` back on its span `s`, which `tc` owns, and moves the span between the
/// cache's lists (or gives it back) as needed.
///
/// # Safety
/// `tc` is the calling thread's live cache (or exclusively ours) and owns `s`; `p` is an object
/// start of `s`, of class `c`, no longer used.
#[inline]
unsafe fn free_owned(tc: *mut ThreadCache, s: *mut Span, p: *mut u8, c: usize) {
    // SAFETY: caller's contract.
    unsafe {
        let Some(i) = (*s).object_index(p as usize) else {
            fatal("free", "corrupted span", p as usize)
        };
        let r = (*s).push_free(p, i, free_key());
        if r != Pushed::Ok {
            span_changed(tc, s, c, r);
        }
    }
}

/// After `free` put an object back on owned span `s`: a span that had nothing to give moves to the
/// partial list; a span with no object out is given back unless it is the class's only span with
/// objects to give.
///
/// # Safety
/// `tc` owns `s` (exclusively accessed), a small span of class `c`.
#[cold]
#[inline(never)]
pub unsafe fn span_changed(tc: *mut ThreadCache, s: *mut Span, c: usize, r: Pushed) {
    let c = checked(c);
    // SAFETY: caller's contract; `s` is on one of `tc`'s lists per `in_full`.
    unsafe {
        let (partial, full) = (&mut (*tc).partial[c], &mut (*tc).full[c]);
        if (*s).in_full {
            // To the back: by the time refills reach it, more of its objects are back, so a
            // refill moves many objects at once (mimalloc queues pages that get room the same way).
            full.remove(s);
            (*s).in_full = false;
            partial.push_back(s);
        }
        if r == Pushed::Empty && partial.len > 1 {
            partial.remove(s);
            central::abandon(c, s);
        }
    }
}

/// `c`, after checking it is a class index (corrupted metadata aborts with one line): indexing the
/// per-class arrays with it then needs no bounds check that could panic.
#[inline(always)]
fn checked(c: usize) -> usize {
    if c >= NUM_CLASSES {
        fatal("segfit", "corrupted size class", c);
    }
    c
}

/// Slow path of a small allocation of class `c`: refill the bin from the thread's spans (or set
/// the thread up) and pop. Null if out of memory.
#[cold]
#[inline(never)]
pub fn alloc_slow(c: usize) -> *mut u8 {
    let c = checked(c);
    let mut tc = tls::get();
    // SAFETY: the slot always holds a valid cache; only a Live one with an id is written, and its
    // spans are ours.
    unsafe {
        if (*tc).state == CacheState::Uninit {
            tc = init_thread();
        }
        if (*tc).id == NO_ID {
            let p = central::alloc_one(c);
            if !p.is_null() {
                *(p as *mut usize).add(1) = 0;
                UNCACHED_ALLOCS[c].fetch_add(1, Ordering::Relaxed);
            }
            return p;
        }
        let _own = OwnGuard::lock((*tc).id);
        if let Some(t) = LAST_REFILL_US.get((*tc).id as usize - 1) {
            t.store(now_us(), Ordering::Relaxed);
        }
        drain_inbox(tc, true);
        // Gather about a batch (fewer while the bin's limit slow-starts) from the owned spans:
        // whole free lists first, then never-used objects, from at most `SCAN` spans once some
        // objects were found. A thread that uses a class a little (short-lived threads touch many
        // classes a few times) carves a few objects, not a whole span.
        const SCAN: usize = 4;
        let batch = class_info(c).batch;
        let bin = &mut (*tc).bins[c];
        let target = batch.min(bin.max.max(1));
        if bin.max < 2 * batch {
            bin.set_max((bin.max * 2).min(2 * batch));
        }
        let mut scanned = 0;
        while bin.count() < target && (bin.count() == 0 || scanned < SCAN) {
            scanned += 1;
            let partial = &mut (*tc).partial[c];
            let mut s = partial.head;
            if s.is_null() {
                if bin.count() > 0 {
                    break;
                }
                help_stalled_owners((*tc).id);
                release_stale_parked();
                s = central::take_span(c, (*tc).id);
                if s.is_null() {
                    return ptr::null_mut();
                }
                partial.push(s);
            }
            let (head, n) = (*s).take_all();
            if n > 0 {
                // Join the span's list and the bin's (usually empty: then no walk at all),
                // walking the shorter one to its tail (bounded by its count).
                let (first, walk, other) = if (bin.count() as usize) < n {
                    (bin.head, bin.count() as usize, head)
                } else {
                    (head, n, bin.head)
                };
                if walk == 0 {
                    bin.head = other;
                } else {
                    let mut tail = first;
                    let mut k = 1;
                    while k < walk && !(*(tail as *mut *mut u8)).is_null() {
                        tail = *(tail as *mut *mut u8);
                        k += 1;
                    }
                    *(tail as *mut *mut u8) = other;
                    bin.head = first;
                }
                bin.added(n);
            }
            if bin.count() < target {
                let k = (*s).carve((target - bin.count()) as usize, &mut bin.head, free_key());
                bin.added(k);
            }
            if !(*s).has_free() {
                partial.remove(s);
                (*s).in_full = true;
                (*tc).full[c].push(s);
            }
        }
        bin.pop::<true>()
    }
}

/// A free of object `p` of span `s`, which this thread owns, found the bin at offset `off`
/// (`class * BIN_STRIDE`) full: a class that keeps overflowing gets a longer bin while the cache's
/// budget lasts (a thread that frees what it allocated in bursts then reuses its objects through
/// the bin); otherwise `p` goes straight back on its span.
///
/// # Safety
/// `tc` is the calling thread's live cache and owns `s`; `p` is an object of `s`, no longer used;
/// `off` is the bin offset of the class of `s`; the caller took one from the bin's `room` (which
/// left it negative), as `free`'s fast path does.
#[cold]
#[inline(never)]
pub unsafe fn free_local_full(tc: *mut ThreadCache, s: *mut Span, p: *mut u8, off: usize) {
    debug_assert!(off.is_multiple_of(BIN_STRIDE) && off / BIN_STRIDE < NUM_CLASSES);
    // SAFETY: caller's contract. Everything but the common case (no growth, no helper, the span
    // keeps its list) is a tail call, so that this path saves no registers.
    unsafe {
        let bin = bin_at(tc, off);
        (*bin).room += 1;
        if (*bin).max < (*bin).cap {
            return free_local_grow(tc, s, p, off / BIN_STRIDE);
        }
        free_to_span(tc, s, p, off);
    }
}

/// `free_local_full` for a bin that may still grow: grow it and push `p`, or put `p` on its span.
///
/// # Safety
/// As `free_local_full`, with the bin's `room` given back.
#[cold]
#[inline(never)]
unsafe fn free_local_grow(tc: *mut ThreadCache, s: *mut Span, p: *mut u8, c: usize) {
    // SAFETY: caller's contract.
    unsafe {
        if grow_bin(tc, c) {
            let bin = (*tc).bins.get_unchecked_mut(c);
            bin.link(p, free_key());
            bin.room -= 1;
            return;
        }
        free_to_span(tc, s, p, c * BIN_STRIDE);
    }
}

/// Puts `p` back on `s`, which this thread owns (`off`: its class's bin offset).
///
/// # Safety
/// As `free_local_full`, with the bin's `room` given back.
#[inline(always)]
unsafe fn free_to_span(tc: *mut ThreadCache, s: *mut Span, p: *mut u8, off: usize) {
    let c = off / BIN_STRIDE;
    // SAFETY: caller's contract.
    unsafe {
        // The span, unlike the bin, may be changed by a helper emptying our inbox: go in as the
        // owner (a store and a load).
        let Some(l) = (*tc).own.as_ref() else {
            // A cache without an id owns no span: only a corrupted span names it.
            fatal("free", "corrupted span owner", p as usize)
        };
        if !owner_try_enter(l) {
            return free_local_wait(tc, s, p, c);
        }
        let r = (*s).push_free(p, (*s).index_of(p), free_key());
        if r != Pushed::Ok {
            return free_local_changed(tc, s, c, r);
        }
        owner_leave(l);
    }
}

/// `free_local_full` when a helper is in: wait for it (the owner is flagged `busy`), then put `p`
/// back.
///
/// # Safety
/// As `free_local_full`; `tc` has an id and its owner flag is set.
#[cold]
#[inline(never)]
unsafe fn free_local_wait(tc: *mut ThreadCache, s: *mut Span, p: *mut u8, c: usize) {
    // SAFETY: caller's contract.
    unsafe {
        let l = &*(*tc).own;
        crate::owner::wait_for_helper(l);
        free_owned(tc, s, p, c);
        owner_leave(l);
    }
}

/// `free_local_full` when the span changed lists: move it, then leave.
///
/// # Safety
/// `tc` has an id and is in as the owner; `s` is its span of class `c`, changed as `r` says.
#[cold]
#[inline(never)]
unsafe fn free_local_changed(tc: *mut ThreadCache, s: *mut Span, c: usize, r: Pushed) {
    // SAFETY: caller's contract.
    unsafe {
        span_changed(tc, s, c, r);
        owner_leave(&*(*tc).own);
    }
}

/// Raises the limit of `tc`'s full bin of class `c` by up to a batch (not past its cap) if the
/// cache's budget pays for it; whether the bin has room now. A bin the budget cannot grow any
/// more gets `cap = max`, so its later overflows skip this call.
///
/// # Safety
/// `tc` is the calling thread's live cache; `c < NUM_CLASSES`.
#[inline(always)]
unsafe fn grow_bin(tc: *mut ThreadCache, c: usize) -> bool {
    debug_assert!(c < NUM_CLASSES);
    // SAFETY: caller's contract.
    unsafe {
        let bin = (*tc).bins.get_unchecked_mut(c);
        if bin.max >= bin.cap {
            return false;
        }
        let k = class_info(c);
        let grow = k.batch as usize * k.size as usize;
        if (*tc).budget < grow {
            // The budget only shrinks: this bin has reached its limit for good.
            bin.cap = bin.max;
            return false;
        }
        let step = k.batch.min(bin.cap - bin.max);
        bin.set_max(bin.max + step);
        (*tc).budget -= step as usize * k.size as usize;
        bin.room > 0
    }
}

/// Slow path of Rust's sized free of small object `p` of class `c`: the bin is full. Its span is
/// looked up (the layout is trusted, as Rust's contract allows, so there is no object-start or
/// free-key check): an object of this thread's span may then grow the bin or go back to the span
/// (`free_local_full`), one of another thread's span goes on the remote list instead of filling
/// this thread's bin with objects it would reuse next to the owner's data.
///
/// # Safety
/// `p` is a live object of class `c` (Rust's `dealloc` contract).
#[cold]
#[inline(never)]
pub unsafe fn free_sized_slow(p: *mut u8, c: usize) {
    let s = arena::span_of(p as usize);
    // SAFETY: page map entries are valid span records; `class` is immutable while a span is
    // small, and a span of class `c` (a small one) holds `p` (caller). The static caches have
    // `id == NO_ID` (never an owner) and remote limit 0, so they end in `free_slow`.
    unsafe {
        if s.is_null() || (*s).class as usize != c || c >= NUM_CLASSES {
            // Not what Rust's contract promises: let the validating path report it.
            return crate::alloc::free(p);
        }
        let tc = tls::get();
        let owner = (*s).owner.load(Ordering::Relaxed);
        if owner == (*tc).id {
            (*tc).bins[c].room -= 1;
            return free_local_full(tc, s, p, c * BIN_STRIDE);
        }
        if try_remote_push(tc, p, c, owner, free_key()) {
            return;
        }
        free_slow(p, c, s)
    }
}

/// A free of object `p` (class `c`) of a span that `owner` owns, not this thread: pushes it on
/// `tc`'s remote list if that has room (handed to the owner with the next batch, never reused
/// here) and the span is owned; false (nothing done) otherwise. The static caches have limit 0.
///
/// # Safety
/// `tc` is this thread's cache; `p` is a free object of class `c < NUM_CLASSES` of a span whose
/// owner read `owner`; `key` is `free_key()`.
#[inline(always)]
pub unsafe fn try_remote_push(
    tc: *mut ThreadCache,
    p: *mut u8,
    c: usize,
    owner: u32,
    key: usize,
) -> bool {
    // SAFETY: caller's contract.
    unsafe {
        let r = (*tc).remote.get_unchecked_mut(c);
        if r.len + 1 < r.lim && owner != 0 {
            *(p as *mut *mut u8) = r.head;
            *(p as *mut usize).add(1) = key;
            r.head = p;
            r.len += 1;
            return true;
        }
        false
    }
}

/// Slow path of freeing small object `p` of class `c` in span `span`: `p` carries the free key (a
/// possible double free), its span is not this thread's and the remote list is full, or the thread
/// has no cache yet or any more.
///
/// # Safety
/// `p` is the start of an object of a small span of class `c` (checked by the caller).
#[cold]
#[inline(never)]
pub unsafe fn free_slow(p: *mut u8, c: usize, span: *mut Span) {
    let c = checked(c);
    let mut tc = tls::get();
    // SAFETY: the slot holds a valid cache; `p` is an object of class `c` (caller).
    unsafe {
        if (*tc).state == CacheState::Uninit {
            tc = init_thread();
        }
        // Held from here: the double-free check reads this thread's own spans, which a helper may
        // be changing otherwise (a no-op for caches without an id).
        let _own = OwnGuard::lock((*tc).id);
        if *(p as *mut usize).add(1) == free_key() && is_double_free(tc, p, c, span) {
            fatal("free", "double free", p as usize);
        }
        if (*tc).id == NO_ID {
            // No remote list to batch on: straight to the central list or the owner's inbox.
            let owner = (*span).owner.load(Ordering::Relaxed);
            if owner == 0 {
                *(p as *mut *mut u8) = ptr::null_mut();
                central::release(c, p, 1);
            } else {
                *(p as *mut usize).add(1) = free_key();
                if inbox_push(owner, p, p, 1, c) && stalled(owner) {
                    help_idle_owner(owner);
                }
            }
            return;
        }
        route(tc, p, span, c);
    }
}

/// Whether small object `p` (of class `c` in `span`) is known to be free already: it carries the
/// free key and is in this thread's cache or back on its span's list.
///
/// # Safety
/// `p` is the start of an object of the small span `span` of class `c`.
pub unsafe fn is_freed(p: *mut u8, c: usize, span: *mut Span) -> bool {
    // SAFETY: `p` is an object of at least 16 bytes (caller).
    unsafe {
        if *(p as *mut usize).add(1) != free_key() {
            return false;
        }
        let tc = tls::get();
        let _own = OwnGuard::lock((*tc).id);
        is_double_free(tc, p, c, span)
    }
}

/// Confirms a suspected double free: `p` is on this thread's bin or remote list, or on its span's
/// free list (checked by the span's owner; another thread's span is checked by that owner when the
/// object reaches it). A block whose user data merely equals the key is none of these.
unsafe fn is_double_free(tc: *mut ThreadCache, p: *mut u8, c: usize, span: *mut Span) -> bool {
    let c = checked(c);
    // SAFETY: `tc` is this thread's cache; list entries hold the next link.
    unsafe {
        let bin = &(*tc).bins[c];
        let r = &(*tc).remote[c];
        for (mut q, len) in [(bin.head, bin.count()), (r.head, r.len)] {
            let mut n = 0;
            while !q.is_null() && n < len {
                if q == p {
                    return true;
                }
                q = *(q as *mut *mut u8);
                n += 1;
            }
        }
        let owner = (*span).owner.load(Ordering::Relaxed);
        if owner == (*tc).id {
            return (*span)
                .object_index(p as usize)
                .is_some_and(|i| (*span).is_listed(i));
        }
        owner == 0 && central::is_listed(span, p) == Some(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::size_class::NUM_CLASSES;

    #[test]
    fn remote_lists_hold_at_most_remote_bytes_or_remote_min_objects_and_never_more_than_a_batch() {
        for c in 1..NUM_CLASSES {
            let k = class_info(c);
            let lim = remote_limit(c);
            assert!(lim <= k.batch, "class {c}: limit {lim} over its batch");
            assert!(
                lim >= 2,
                "class {c}: the fast path pushes only while len + 1 < lim"
            );
            assert!(
                lim * k.size <= REMOTE_BYTES.max(REMOTE_MIN * k.size),
                "class {c} ({} B): {lim} objects",
                k.size
            );
            assert!(
                lim >= REMOTE_MIN.min(k.batch),
                "class {c}: handed over in lists of {lim}"
            );
        }
    }
}
