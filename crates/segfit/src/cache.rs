//! Per-thread caches (Go's `mcache`): the fast path.
//!
//! Each thread has, per size class, a singly linked list of free objects (`Bin`). `malloc` pops
//! from it and `free` pushes onto it: no lock, no atomic read-modify-write. An empty bin is refilled
//! with one batch from the central list; a bin that reaches `max` objects gives one batch back. A
//! free into a span another live thread owns goes on the freeing thread's remote list and
//! goes back to the central list with its batch.
//!
//! States: a thread's slot (see `tls`) points at the static `UNINIT` cache until the thread first
//! needs one, then at its own `ThreadCache` (a metadata record, registered in a global list), and
//! after its exit destructor ran, at the static `DEAD` cache: a dead thread allocates and frees
//! through the central lists one object at a time and never gets a new cache.
//!
//! Free objects in a bin hold the next link in word 0 and [`free_key`] in word 1; `malloc` clears
//! word 1, so a `free` that finds the key is probably a double free and takes the slow path, which
//! confirms it (in this cache or in the span's bitmap) before aborting.
//!
//! Invariants: `bin.len` is the length of `bin.head`'s list and `bin.len <= bin.max`; the static
//! caches have `max == 0` and empty lists, so the fast paths never write to them.

use crate::central;
use crate::fatal::fatal;
use crate::lock::Lock;
use crate::meta::FixAlloc;
use crate::size_class::{class_info, NUM_CLASSES};
use crate::tls;
use core::cell::UnsafeCell;
use core::ptr;
use core::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};

/// One class's free list in a thread cache.
#[repr(C)]
pub struct Bin {
    /// First free object (each holds the next in word 0), or null.
    pub head: *mut u8,
    /// Objects on the list.
    pub len: u32,
    /// Objects the list may hold before a batch goes back to the central list.
    pub max: u32,
}

/// Objects of one class freed by this thread into spans another live thread owns: they go back
/// to their spans in batches and are never reused here (reusing them would put this thread's
/// data on cache lines the owner is using: passive false sharing).
#[repr(C)]
pub struct Remote {
    /// First object (each holds the next in word 0), or null.
    pub head: *mut u8,
    /// Objects on the list.
    pub len: u32,
}

const EMPTY_REMOTE: Remote = Remote {
    head: ptr::null_mut(),
    len: 0,
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
    /// Free lists, indexed by size class (index 0 unused, always empty).
    pub bins: [Bin; NUM_CLASSES],
    /// Small objects allocated by this thread, per class (the fast path's one counter; frees are
    /// derived: allocated minus live).
    pub allocs: [u64; NUM_CLASSES],
    /// Bytes by which this cache may still raise its bins' limits (see `free_slow`).
    budget: usize,
    /// This cache's owner id for spans (1..=MAX_IDS; 0 for the static caches).
    pub id: u32,
    /// Remote frees waiting to go back, per class.
    pub remote: [Remote; NUM_CLASSES],
    /// See [`CacheState`].
    pub state: CacheState,
    next: *mut ThreadCache,
    prev: *mut ThreadCache,
}

struct ReadOnly(ThreadCache);
// SAFETY: the static caches are never written (their bins are empty with max 0).
unsafe impl Sync for ReadOnly {}

const EMPTY_BIN: Bin = Bin {
    head: ptr::null_mut(),
    len: 0,
    max: 0,
};

/// A read-only cache with every bin empty and limit 0, in state `state`.
const fn empty_cache(state: CacheState) -> ThreadCache {
    ThreadCache {
        bins: [EMPTY_BIN; NUM_CLASSES],
        allocs: [0; NUM_CLASSES],
        budget: 0,
        id: 0,
        remote: [EMPTY_REMOTE; NUM_CLASSES],
        state,
        next: ptr::null_mut(),
        prev: ptr::null_mut(),
    }
}

static UNINIT: ReadOnly = ReadOnly(empty_cache(CacheState::Uninit));
static DEAD: ReadOnly = ReadOnly(empty_cache(CacheState::Dead));

/// The slot value of a thread without a cache yet.
pub const UNINIT_PTR: *mut ThreadCache = &raw const UNINIT.0 as *mut ThreadCache;
const DEAD_PTR: *mut ThreadCache = &raw const DEAD.0 as *mut ThreadCache;

/// Registry of live caches (for statistics and fork), and the records they live in.
struct Registry {
    head: *mut ThreadCache,
    records: FixAlloc<ThreadCache>,
    live: usize,
    created: u64,
    /// Allocation counts of caches that were torn down.
    retired_allocs: [u64; NUM_CLASSES],
}
struct RegistryCell(UnsafeCell<Registry>);
// SAFETY: only accessed with REGISTRY_LOCK held.
unsafe impl Sync for RegistryCell {}

/// Lock of the cache registry. Lock order: registry → central → heap.
pub static REGISTRY_LOCK: Lock = Lock::new();
static REGISTRY: RegistryCell = RegistryCell(UnsafeCell::new(Registry {
    head: ptr::null_mut(),
    records: FixAlloc::new(),
    live: 0,
    created: 0,
    retired_allocs: [0; NUM_CLASSES],
}));

/// Small objects allocated by threads without a cache (dead threads), per class.
static UNCACHED_ALLOCS: [AtomicU64; NUM_CLASSES] = [const { AtomicU64::new(0) }; NUM_CLASSES];

fn with_registry<R>(f: impl FnOnce(&mut Registry) -> R) -> R {
    REGISTRY_LOCK.lock();
    // SAFETY: the lock is held.
    let r = f(unsafe { &mut *REGISTRY.0.get() });
    REGISTRY_LOCK.unlock();
    r
}

/// A new thread's bins start with this limit (see the slow start in `alloc_slow`).
const START_MAX: u32 = 8;

/// Bytes a thread cache may grow its bins' limits by, in all (tcmalloc bounds its thread caches
/// similarly). Bins start at two batches and grow by a batch each time they overflow, up to
/// [`bin_cap`], while the budget lasts.
const CACHE_BUDGET: usize = 2 << 20;

/// The most objects a bin of class `c` may hold: 512 KiB worth, between 2 batches and 16384 (so a
/// thread that builds and drops structures of up to ~16K small nodes never touches the central
/// list: C binary_trees went from 2.81G to 2.66G instructions and 0.84 s to 0.71 s).
fn bin_cap(c: usize) -> u32 {
    let k = class_info(c);
    ((512 << 10) / k.size.max(1)).max(2 * k.batch).min(16384)
}

/// Most thread caches alive at once that get an owner id; later ones share spans (id 0).
const MAX_IDS: usize = 1 << 16;
/// Bit `id - 1` is set while the cache with that id is alive.
static LIVE_IDS: [AtomicU64; MAX_IDS / 64] = [const { AtomicU64::new(0) }; MAX_IDS / 64];

/// Whether the thread cache with owner id `id` is alive (racy: a stale answer only sends a free
/// down the slower correct path).
#[inline]
pub fn is_live(id: u32) -> bool {
    let i = id.wrapping_sub(1) as usize;
    i < MAX_IDS && LIVE_IDS[i / 64].load(Ordering::Relaxed) & (1 << (i % 64)) != 0
}

/// The smallest free owner id, marked alive; 0 if all are taken. Registry lock held.
fn take_id() -> u32 {
    for (w, word) in LIVE_IDS.iter().enumerate() {
        let v = word.load(Ordering::Relaxed);
        if v != !0 {
            let b = (!v).trailing_zeros() as usize;
            word.fetch_or(1 << b, Ordering::Relaxed);
            return (w * 64 + b + 1) as u32;
        }
    }
    0
}

/// Marks owner id `id` free. Registry lock held.
fn drop_id(id: u32) {
    if id != 0 {
        let i = id as usize - 1;
        if let Some(word) = LIVE_IDS.get(i / 64) {
            word.fetch_and(!(1 << (i % 64)), Ordering::Relaxed);
        }
    }
}

static FREE_KEY: AtomicUsize = AtomicUsize::new(0);
static PTHREAD_KEY: AtomicUsize = AtomicUsize::new(usize::MAX);
static INIT: AtomicU8 = AtomicU8::new(0);

/// The per-process secret stored in word 1 of every free object in a cache.
#[inline(always)]
pub fn free_key() -> usize {
    FREE_KEY.load(Ordering::Relaxed)
}

/// One-time process setup: the free key, the pthread key whose destructor flushes caches, and the
/// fork handlers.
/// Safe to call from any thread, any number of times; allocates nothing.
pub fn global_init() {
    if INIT.load(Ordering::Acquire) == 2 {
        return;
    }
    if INIT
        .compare_exchange(0, 1, Ordering::Acquire, Ordering::Acquire)
        .is_ok()
    {
        let mut key = 0usize;
        // SAFETY: getrandom writes at most 8 bytes into `key`; no allocation.
        let n = unsafe { libc::getrandom((&raw mut key).cast(), 8, libc::GRND_NONBLOCK) };
        if n != 8 {
            // No entropy yet (early boot): fall back on address-space randomisation and time.
            key = (&raw const key as usize).rotate_left(29) ^ (global_init as fn() as usize);
            let mut ts = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: clock_gettime writes into `ts`.
            unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
            key ^= (ts.tv_nsec as usize).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
        FREE_KEY.store(key | 1, Ordering::Relaxed);
        let mut k: libc::pthread_key_t = 0;
        // SAFETY: pthread_key_create stores a key in `k`; `thread_exit` has the required ABI.
        if unsafe { libc::pthread_key_create(&mut k, Some(thread_exit)) } == 0 {
            PTHREAD_KEY.store(k as usize, Ordering::Relaxed);
        }
        INIT.store(2, Ordering::Release);
        // After INIT is 2: registering may allocate, which must find setup done.
        crate::fork::install();
    } else {
        while INIT.load(Ordering::Acquire) != 2 {
            core::hint::spin_loop();
        }
    }
}

/// Gives this thread a cache. Returns the slot's new value (a live cache, or `DEAD` if metadata
/// could not be had, in which case the thread works through the central lists).
#[cold]
fn init_thread() -> *mut ThreadCache {
    global_init();
    // Anything allocated while we set up (a libc that allocates in pthread_setspecific) is served
    // by the central lists instead of recursing into this function.
    tls::set(DEAD_PTR);
    let tc = with_registry(|r| {
        let tc = r.records.alloc();
        if tc.is_null() {
            return tc;
        }
        // SAFETY: `tc` is a fresh zeroed record; linking it into the registry under its lock.
        unsafe {
            for c in 1..NUM_CLASSES {
                (*tc).bins[c].max = START_MAX.min(2 * class_info(c).batch);
            }
            (*tc).state = CacheState::Live;
            (*tc).budget = CACHE_BUDGET;
            (*tc).id = take_id();
            (*tc).next = r.head;
            if !r.head.is_null() {
                (*r.head).prev = tc;
            }
        }
        r.head = tc;
        r.live += 1;
        r.created += 1;
        tc
    });
    if tc.is_null() {
        return DEAD_PTR;
    }
    let key = PTHREAD_KEY.load(Ordering::Relaxed);
    if key != usize::MAX {
        // SAFETY: `key` is a valid pthread key; the value is our cache record.
        unsafe { libc::pthread_setspecific(key as libc::pthread_key_t, tc.cast()) };
    }
    tls::set(tc);
    tc
}

/// Returns every object of `tc`'s bins to the central lists.
///
/// # Safety
/// Nothing else uses `tc` (its thread is exiting, is the caller, or is gone after fork).
unsafe fn flush_all(tc: *mut ThreadCache) {
    for c in 1..NUM_CLASSES {
        // SAFETY: exclusive access to `tc` (caller).
        let (bin, r) = unsafe { (&mut (*tc).bins[c], &mut (*tc).remote[c]) };
        let lists = [(bin.head, bin.len), (r.head, r.len)];
        // Detach before giving back: a fork between the two must not find the objects still
        // listed here (the child would give them back a second time).
        *bin = Bin {
            head: ptr::null_mut(),
            len: 0,
            max: bin.max,
        };
        *r = EMPTY_REMOTE;
        for (head, len) in lists {
            // Count the real list (bounded by len; lists end in null): robust even if a
            // forked-away thread was cut off in the middle of a push or pop.
            let mut n = 0;
            let mut p = head;
            while !p.is_null() && n < len as usize {
                n += 1;
                // SAFETY: list entries are free objects holding the next link.
                p = unsafe { *(p as *mut *mut u8) };
            }
            if n > 0 {
                // SAFETY: the first `n` objects of the list are free objects of class `c`.
                unsafe { central::release(c, head, n) };
            }
        }
    }
}

/// Unlinks and frees a cache record. Registry lock held.
unsafe fn unregister(r: &mut Registry, tc: *mut ThreadCache) {
    // SAFETY: `tc` is a registered record (caller).
    unsafe {
        for (sum, n) in r.retired_allocs.iter_mut().zip((*tc).allocs.iter()) {
            *sum += n;
        }
        drop_id((*tc).id);
        if (*tc).prev.is_null() {
            r.head = (*tc).next;
        } else {
            (*(*tc).prev).next = (*tc).next;
        }
        if !(*tc).next.is_null() {
            (*(*tc).next).prev = (*tc).prev;
        }
        r.records.free(tc);
    }
    r.live -= 1;
}

/// The pthread key destructor: runs at thread exit, after the thread's other TLS destructors.
extern "C" fn thread_exit(arg: *mut libc::c_void) {
    let tc = arg as *mut ThreadCache;
    tls::set(DEAD_PTR);
    // SAFETY: `tc` is this thread's registered cache; the slot no longer points to it, so nothing
    // else uses it.
    unsafe {
        flush_all(tc);
        with_registry(|r| unregister(r, tc));
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

/// Slow path of a small allocation of class `c`: refill the bin (or set the thread up) and pop.
/// Null if out of memory.
#[cold]
#[inline(never)]
pub fn alloc_slow(c: usize) -> *mut u8 {
    let c = checked(c);
    let mut tc = tls::get();
    // SAFETY: the slot always holds a valid cache; only a Live one is written.
    unsafe {
        if (*tc).state == CacheState::Uninit {
            tc = init_thread();
        }
        if (*tc).state == CacheState::Dead {
            let mut p = ptr::null_mut();
            central::fetch(c, 1, &mut p, 0);
            if !p.is_null() {
                *(p as *mut usize).add(1) = 0;
                UNCACHED_ALLOCS[c].fetch_add(1, Ordering::Relaxed);
            }
            return p;
        }
        let bin = &mut (*tc).bins[c];
        if bin.head.is_null() {
            // Slow start: a bin fetches at most its limit, and the limit doubles up to two batches
            // each time the bin runs dry. A thread that uses a class a little (short-lived threads
            // touch many classes a few times) moves a few objects, not whole batches, through the
            // central list.
            let batch = class_info(c).batch;
            let n = batch.min(bin.max);
            if bin.max < 2 * batch {
                bin.max = (bin.max * 2).min(2 * batch);
            }
            let got = central::fetch(c, n as usize, &mut bin.head, (*tc).id);
            bin.len += got as u32;
            if got == 0 {
                return ptr::null_mut();
            }
        }
        let p = bin.head;
        bin.head = *(p as *mut *mut u8);
        bin.len -= 1;
        *(p as *mut usize).add(1) = 0;
        (*tc).allocs[c] += 1;
        p
    }
}

/// Slow path of freeing small object `p` of class `c`: the bin is full, the thread has no cache
/// yet or any more, or `p` carries the free key (a possible double free).
///
/// # Safety
/// `p` is the start of an object of a small span of class `c` (checked by the caller).
#[cold]
#[inline(never)]
pub unsafe fn free_slow(p: *mut u8, c: usize, span: *mut crate::span::Span) {
    let c = checked(c);
    let mut tc = tls::get();
    // SAFETY: the slot holds a valid cache; `p` is an object of class `c` (caller).
    unsafe {
        if *(p as *mut usize).add(1) == free_key() && is_double_free(tc, p, c, span) {
            fatal("free", "double free", p as usize);
        }
        if (*tc).state == CacheState::Uninit {
            tc = init_thread();
        }
        if (*tc).state == CacheState::Dead {
            central::release(c, p, 1);
            return;
        }
        let batch = class_info(c).batch;
        let owner = (*span).owner.load(Ordering::Relaxed);
        if owner != (*tc).id && owner != 0 && is_live(owner) {
            let r = &mut (*tc).remote[c];
            *(p as *mut *mut u8) = r.head;
            *(p as *mut usize).add(1) = free_key();
            r.head = p;
            r.len += 1;
            if r.len >= batch {
                // Detach first (see `flush_all`).
                let (head, n) = (r.head, r.len as usize);
                *r = EMPTY_REMOTE;
                central::release(c, head, n);
            }
            return;
        }
        let bin = &mut (*tc).bins[c];
        let grow = batch as usize * class_info(c).size as usize;
        if bin.len >= bin.max && bin.max < bin_cap(c) && (*tc).budget >= grow {
            // A class that keeps overflowing gets a longer list, so that a thread that frees what
            // it allocated in bursts stops going through the central list.
            bin.max += batch;
            (*tc).budget -= grow;
        }
        if bin.len >= bin.max {
            // Give back one batch from the front of the list.
            let n = batch.min(bin.len) as usize;
            let first = bin.head;
            let mut last = first;
            for _ in 1..n {
                last = *(last as *mut *mut u8);
            }
            bin.head = *(last as *mut *mut u8);
            bin.len -= n as u32;
            central::release(c, first, n);
        }
        *(p as *mut *mut u8) = bin.head;
        *(p as *mut usize).add(1) = free_key();
        bin.head = p;
        bin.len += 1;
    }
}

/// Whether small object `p` (of class `c` in `span`) is known to be free already: it carries the
/// free key and is in this thread's cache or back in its span.
///
/// # Safety
/// `p` is the start of an object of the small span `span` of class `c`.
pub unsafe fn is_freed(p: *mut u8, c: usize, span: *mut crate::span::Span) -> bool {
    // SAFETY: `p` is an object of at least 16 bytes (caller).
    unsafe { *(p as *mut usize).add(1) == free_key() && is_double_free(tls::get(), p, c, span) }
}

/// Confirms a suspected double free: `p` is on this thread's bin, or its span says it is not out.
/// A block whose user data merely equals the key is neither, and is freed normally.
unsafe fn is_double_free(
    tc: *mut ThreadCache,
    p: *mut u8,
    c: usize,
    span: *mut crate::span::Span,
) -> bool {
    let c = checked(c);
    // SAFETY: `tc` is this thread's cache; list entries hold the next link.
    unsafe {
        let bin = &(*tc).bins[c];
        let r = &(*tc).remote[c];
        for (mut q, len) in [(bin.head, bin.len), (r.head, r.len)] {
            let mut n = 0;
            while !q.is_null() && n < len {
                if q == p {
                    return true;
                }
                q = *(q as *mut *mut u8);
                n += 1;
            }
        }
        !central::is_out(span, p)
    }
}

/// Returns the calling thread's cached objects to the central lists (used by `collect`).
pub fn flush_current() {
    let tc = tls::get();
    // SAFETY: the slot holds a valid cache; only a Live one is ours to flush.
    unsafe {
        if (*tc).state == CacheState::Live {
            flush_all(tc);
        }
    }
}

/// Adds, per class, the objects held in all live thread caches to `cached` and the small objects
/// allocated since start (all threads, live or gone) to `allocs`. Racy while other threads
/// allocate; exact when they are quiescent.
pub fn fold_counts(cached: &mut [u64; NUM_CLASSES], allocs: &mut [u64; NUM_CLASSES]) {
    with_registry(|r| {
        for c in 0..NUM_CLASSES {
            allocs[c] += r.retired_allocs[c] + UNCACHED_ALLOCS[c].load(Ordering::Relaxed);
        }
        let mut tc = r.head;
        while !tc.is_null() {
            // SAFETY: registered caches are valid records; their counters may be read racily.
            unsafe {
                for c in 0..NUM_CLASSES {
                    cached[c] += core::ptr::read_volatile(&(*tc).bins[c].len) as u64;
                    cached[c] += core::ptr::read_volatile(&(*tc).remote[c].len) as u64;
                    allocs[c] += core::ptr::read_volatile(&(*tc).allocs[c]);
                }
                tc = (*tc).next;
            }
        }
    })
}

/// Live caches and caches created since start.
pub fn thread_counts() -> (usize, u64) {
    with_registry(|r| (r.live, r.created))
}

/// In a forked child: every other thread is gone, so give their cached objects back and drop their
/// caches. Locks must already have been reset.
pub fn after_fork_child() {
    let me = tls::get();
    with_registry(|r| {
        let mut tc = r.head;
        while !tc.is_null() {
            // SAFETY: registered records are valid; their threads no longer exist in the child.
            unsafe {
                let next = (*tc).next;
                if tc != me {
                    flush_all(tc);
                    unregister(r, tc);
                }
                tc = next;
            }
        }
    });
}
