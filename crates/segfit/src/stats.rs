//! Statistics: a snapshot of the heap in the spirit of Go's `runtime.MemStats`.
//!
//! Read from the page heap counters (under its lock), the central lists' counters (under each class
//! lock) and the thread caches' lengths (racy while threads run; exact when they are quiescent).
//! Called by users, the C library's stats printer and the tests.

use crate::cache;
use crate::central::CENTRAL;
use crate::config::PAGE_SIZE;
use crate::os::{self, OsCount, WHY_COUNT};
use crate::page_heap::{self, HeapCounters};
use crate::size_class::{CLASSES, NUM_CLASSES};

/// Per-class figures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClassStats {
    /// Object size.
    pub size: u32,
    /// Objects out of their spans (with users or in thread caches).
    pub out: u64,
    /// Of those, objects sitting in thread caches.
    pub cached: u64,
    /// Spans in use.
    pub spans: u64,
}

/// A snapshot of the allocator's state.
#[derive(Clone, Copy, Debug)]
pub struct Stats {
    /// Bytes of live small objects (class sizes) plus large and huge blocks (usable sizes).
    pub heap_alloc: u64,
    /// Bytes in spans that are in use (small and large) plus huge blocks.
    pub heap_inuse: u64,
    /// Bytes in free page runs.
    pub heap_idle: u64,
    /// Bytes of free page runs given back to the OS.
    pub heap_released: u64,
    /// Bytes of arenas reserved from the OS.
    pub heap_reserved: u64,
    /// Bytes of arenas committed plus huge blocks mapped.
    pub heap_sys: u64,
    /// Bytes of metadata mapped (span records; arena page maps are counted in `os`).
    pub meta_sys: u64,
    /// Live small objects plus large and huge blocks.
    pub heap_objects: u64,
    /// Live thread caches, and caches created since start.
    pub threads: (usize, u64),
    /// Page heap counters.
    pub page_heap: HeapCounters,
    /// OS calls by kind (indexed like `os::Why::ALL`).
    pub os: [OsCount; WHY_COUNT],
    /// Per size class (index 0 unused).
    pub by_size: [ClassStats; NUM_CLASSES],
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            heap_alloc: 0,
            heap_inuse: 0,
            heap_idle: 0,
            heap_released: 0,
            heap_reserved: 0,
            heap_sys: 0,
            meta_sys: 0,
            heap_objects: 0,
            threads: (0, 0),
            page_heap: HeapCounters::default(),
            os: [OsCount::default(); WHY_COUNT],
            by_size: [ClassStats::default(); NUM_CLASSES],
        }
    }
}

/// Takes a snapshot of the allocator's statistics. Allocates nothing.
pub fn stats() -> Stats {
    let mut s = Stats::default();
    let mut cached = [0u64; NUM_CLASSES];
    cache::cached_objects(&mut cached);
    for c in 1..NUM_CLASSES {
        let k = CENTRAL[c].counters();
        let out = k.fetched - k.released;
        s.by_size[c] = ClassStats { size: CLASSES[c].size, out, cached: cached[c], spans: k.spans };
        let live = out.saturating_sub(cached[c]);
        s.heap_alloc += live * CLASSES[c].size as u64;
        s.heap_objects += live;
    }
    let h = page_heap::with(|h| h.counters);
    s.page_heap = h;
    s.heap_alloc += (h.large_pages * PAGE_SIZE + h.huge_bytes) as u64;
    s.heap_objects += (h.large_objects + h.huge_objects) as u64;
    s.heap_inuse = ((h.small_pages + h.large_pages) * PAGE_SIZE + h.huge_bytes) as u64;
    s.heap_idle = (h.free_pages * PAGE_SIZE) as u64;
    s.heap_released = (h.released_pages * PAGE_SIZE) as u64;
    s.heap_reserved = (h.arenas * crate::config::ARENA_SIZE) as u64;
    s.heap_sys = (h.committed_bytes + h.huge_bytes) as u64;
    s.meta_sys = h.meta_bytes as u64;
    s.threads = cache::thread_counts();
    s.os = os::counts();
    s
}
