//! Statistics: a snapshot of the heap in the spirit of Go's `runtime.MemStats`.
//!
//! Read from the page heap counters and its spans' object counts (under the heap lock), the central
//! lists' counters (under each class lock) and the thread caches' lengths and allocation counters
//! (racy while threads run; exact when they are quiescent). The malloc fast path keeps one counter
//! per thread and class; frees are derived as allocations minus live objects. Called by users, the C library's stats printer and
//! the tests. Taking a snapshot allocates nothing.

use crate::cache;
use crate::central::CENTRAL;
use crate::config::PAGE_SIZE;
use crate::os::{self, OsCount, WHY_COUNT};
use crate::page_heap::{self, HeapCounters};
use crate::size_class::{class_info, NUM_CLASSES};
use crate::span::State;

/// Per-class figures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClassStats {
    /// Object size.
    pub size: u32,
    /// Objects allocated since start.
    pub mallocs: u64,
    /// Objects freed since start.
    pub frees: u64,
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
    /// Bytes of address space obtained from the OS for the heap: arenas reserved plus huge blocks
    /// (Go's `HeapSys`; equals `heap_inuse + heap_idle`).
    pub heap_sys: u64,
    /// Bytes of arenas committed (read-write) plus huge blocks mapped.
    pub heap_committed: u64,
    /// Highest `heap_inuse` seen (pages of spans; huge blocks excluded).
    pub peak_inuse: u64,
    /// Highest committed arena bytes seen.
    pub peak_committed: u64,
    /// Bytes of metadata mapped (span records; arena page maps are counted in `os`).
    pub meta_sys: u64,
    /// Live small objects plus large and huge blocks.
    pub heap_objects: u64,
    /// Allocations since start (small, large and huge).
    pub mallocs: u64,
    /// Frees since start (`mallocs - heap_objects`).
    pub frees: u64,
    /// Bytes allocated since start (small objects at their class size, large and huge at the size
    /// asked for).
    pub total_alloc: u64,
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
            heap_sys: 0,
            heap_committed: 0,
            peak_inuse: 0,
            peak_committed: 0,
            meta_sys: 0,
            heap_objects: 0,
            mallocs: 0,
            frees: 0,
            total_alloc: 0,
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
    let mut allocs = [0u64; NUM_CLASSES];
    cache::fold_counts(&mut cached, &mut allocs);
    let mut outs = [0u64; NUM_CLASSES];
    page_heap::with(|h| {
        h.for_each_span(|w| {
            if let page_heap::Walk::Span(span, _) = w {
                if span.state == State::Small {
                    // SAFETY: a plain read of a counter the span's owner may be updating; a stale
                    // value only makes the figures inexact while threads run.
                    let used = unsafe { core::ptr::read_volatile(&span.used) };
                    if let Some(o) = outs.get_mut(span.class as usize) {
                        *o += used as u64;
                    }
                }
            }
        })
    });
    for c in 1..NUM_CLASSES {
        let k = CENTRAL[c].counters();
        let out = outs[c];
        let live = out.saturating_sub(cached[c]);
        let size = class_info(c).size;
        s.by_size[c] = ClassStats {
            size,
            mallocs: allocs[c],
            frees: allocs[c].saturating_sub(live),
            out,
            cached: cached[c],
            spans: k.spans,
        };
        s.heap_alloc += live * size as u64;
        s.heap_objects += live;
        s.mallocs += allocs[c];
        s.total_alloc += allocs[c] * size as u64;
    }
    let h = page_heap::with(|h| h.counters);
    s.page_heap = h;
    s.heap_alloc += (h.large_pages * PAGE_SIZE + h.huge_bytes) as u64;
    s.heap_objects += (h.large_objects + h.huge_objects) as u64;
    s.mallocs += h.large_allocs + h.huge_allocs;
    s.frees = s.mallocs.saturating_sub(s.heap_objects);
    s.total_alloc += h.big_bytes_total;
    s.heap_inuse = ((h.small_pages + h.large_pages) * PAGE_SIZE + h.huge_bytes) as u64;
    s.heap_idle = (h.free_pages * PAGE_SIZE) as u64;
    s.heap_released = ((h.free_pages - h.dirty_pages) * PAGE_SIZE) as u64;
    s.heap_sys = (h.arenas * crate::config::ARENA_SIZE + h.huge_bytes) as u64;
    s.heap_committed = (h.committed_bytes + h.huge_bytes) as u64;
    s.peak_inuse = (h.peak_inuse_pages * PAGE_SIZE) as u64;
    s.peak_committed = h.peak_committed_bytes as u64;
    s.meta_sys = h.meta_bytes as u64;
    s.threads = cache::thread_counts();
    s.os = os::counts();
    s
}

impl Stats {
    /// The byte-valued fields, by name, in report order.
    fn byte_fields(&self) -> [(&'static str, u64); 9] {
        [
            ("heap_alloc", self.heap_alloc),
            ("heap_inuse", self.heap_inuse),
            ("heap_idle", self.heap_idle),
            ("heap_released", self.heap_released),
            ("heap_sys", self.heap_sys),
            ("heap_committed", self.heap_committed),
            ("peak_inuse", self.peak_inuse),
            ("peak_committed", self.peak_committed),
            ("meta_sys", self.meta_sys),
        ]
    }

    /// Writes the snapshot as one JSON object (field names as in this struct; `os` keyed by
    /// reason; `by_size` lists the classes that were ever used). Uses only `core::fmt`: with a
    /// non-allocating writer (e.g. [`crate::fatal::FdWriter`]) it allocates nothing.
    pub fn write_json(&self, w: &mut impl core::fmt::Write) -> core::fmt::Result {
        write!(w, "{{")?;
        let counts: [(&str, u64); 7] = [
            ("heap_objects", self.heap_objects),
            ("mallocs", self.mallocs),
            ("frees", self.frees),
            ("total_alloc", self.total_alloc),
            ("threads_live", self.threads.0 as u64),
            ("threads_created", self.threads.1),
            ("scavenged_bytes", self.page_heap.scavenged_bytes),
        ];
        let fields = self.byte_fields().into_iter().chain(counts);
        for (name, v) in fields {
            write!(w, "\"{name}\":{v},")?;
        }
        write!(w, "\"os\":{{")?;
        for (i, (why, c)) in os::Why::ALL.iter().zip(self.os.iter()).enumerate() {
            let comma = if i + 1 < WHY_COUNT { "," } else { "" };
            write!(
                w,
                "\"{}\":{{\"calls\":{},\"bytes\":{}}}{comma}",
                why.name(),
                c.calls,
                c.bytes
            )?;
        }
        write!(w, "}},\"by_size\":[")?;
        let mut first = true;
        for k in self
            .by_size
            .iter()
            .skip(1)
            .filter(|k| k.mallocs > 0 || k.out > 0)
        {
            if !first {
                write!(w, ",")?;
            }
            first = false;
            write!(
                w,
                "{{\"size\":{},\"mallocs\":{},\"frees\":{},\"out\":{},\"cached\":{},\"spans\":{}}}",
                k.size, k.mallocs, k.frees, k.out, k.cached, k.spans
            )?;
        }
        write!(w, "]}}")
    }
}

/// Writes `bytes` as a short human figure (B, KiB, MiB, GiB).
fn human(f: &mut core::fmt::Formatter<'_>, bytes: u64) -> core::fmt::Result {
    const K: u64 = 1024;
    if bytes < 10 * K {
        write!(f, "{bytes} B")
    } else if bytes < 10 * K * K {
        write!(f, "{:.1} KiB", bytes as f64 / K as f64)
    } else if bytes < 10 * K * K * K {
        write!(f, "{:.1} MiB", bytes as f64 / (K * K) as f64)
    } else {
        write!(f, "{:.2} GiB", bytes as f64 / (K * K * K) as f64)
    }
}

/// A multi-line report (uses `core::fmt`: call it outside allocator paths, e.g. from user code).
impl core::fmt::Display for Stats {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let rows = self.byte_fields();
        for (name, v) in rows {
            write!(f, "{name:<15} ")?;
            human(f, v)?;
            writeln!(f)?;
        }
        writeln!(f, "{:<15} {}", "heap_objects", self.heap_objects)?;
        writeln!(
            f,
            "{:<15} {} mallocs, {} frees, {} bytes allocated in all",
            "totals", self.mallocs, self.frees, self.total_alloc
        )?;
        writeln!(
            f,
            "{:<15} {} live, {} created",
            "threads", self.threads.0, self.threads.1
        )?;
        write!(f, "{:<15}", "os calls")?;
        for (why, c) in os::Why::ALL.iter().zip(self.os.iter()) {
            if c.calls > 0 {
                write!(f, " {}={}", why.name(), c.calls)?;
            }
        }
        writeln!(f)?;
        writeln!(
            f,
            "{:>7} {:>12} {:>12} {:>10} {:>10} {:>7}",
            "class", "mallocs", "frees", "out", "cached", "spans"
        )?;
        for k in self
            .by_size
            .iter()
            .skip(1)
            .filter(|k| k.mallocs > 0 || k.out > 0)
        {
            writeln!(
                f,
                "{:>7} {:>12} {:>12} {:>10} {:>10} {:>7}",
                k.size, k.mallocs, k.frees, k.out, k.cached, k.spans
            )?;
        }
        Ok(())
    }
}
