//! Heap snapshots: every span of every arena (free runs, small-object spans, large blocks) and
//! every huge block, with what each holds — the data behind a heap map.
//!
//! Taken under the page heap lock into a caller-provided buffer (nothing is allocated while the
//! lock is held). Span object counts are read without the class locks, so they are exact only when
//! other threads are quiescent. Called by users and the `segfit` tools.

use crate::config::PAGE_SIZE;
use crate::page_heap::{self, Walk};
use crate::span::State;

/// What a span holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SpanKind {
    /// A free run of pages.
    #[default]
    Free,
    /// Objects of one size class.
    Small,
    /// One large block.
    Large,
    /// A huge block mapped directly.
    Huge,
}

impl SpanKind {
    /// Lower-case name, as in the JSON form.
    pub const fn name(self) -> &'static str {
        match self {
            SpanKind::Free => "free",
            SpanKind::Small => "small",
            SpanKind::Large => "large",
            SpanKind::Huge => "huge",
        }
    }
}

/// One span in a snapshot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SpanInfo {
    /// First byte.
    pub start: usize,
    /// Length in bytes.
    pub bytes: usize,
    /// What it holds.
    pub kind: SpanKind,
    /// Small: object size.
    pub object_size: u32,
    /// Small: objects the span holds in all.
    pub objects: u32,
    /// Small: objects out of the span (with users or in thread caches); large/huge: 1.
    pub in_use: u32,
    /// Large/huge: bytes the user asked for.
    pub requested: usize,
    /// Bytes of the span that are committed (read-write); the rest is reserved address space.
    pub committed: usize,
    /// Free: bytes that may still be resident (not yet given back to the OS).
    pub resident_free: usize,
}

/// Fills `buf` with the heap's spans in address order (arena by arena, newest arena first, then
/// huge blocks) and returns how many there are; if that is more than `buf.len()`, only the first
/// `buf.len()` were written: retry with a bigger buffer.
pub fn snapshot(buf: &mut [SpanInfo]) -> usize {
    let mut n = 0;
    for_each(|info| {
        if let Some(slot) = buf.get_mut(n) {
            *slot = *info;
        }
        n += 1;
    });
    n
}

/// Calls `f` on every span, in the order of [`snapshot`], with the page heap locked: `f` must not
/// allocate (through segfit) or call into segfit. Writing to a file descriptor is fine; this is
/// how the C library streams a heap map without a buffer.
pub fn for_each(mut f: impl FnMut(&SpanInfo)) {
    page_heap::with(|h| {
        h.for_each_span(|item| {
            let info = match item {
                Walk::Span(s, committed_end) => {
                    let start = s.start;
                    let bytes = s.npages * PAGE_SIZE;
                    let committed = committed_end.max(start).min(start + bytes) - start;
                    let mut info = SpanInfo {
                        start,
                        bytes,
                        committed,
                        ..SpanInfo::default()
                    };
                    match s.state {
                        State::Free => {
                            info.kind = SpanKind::Free;
                            info.resident_free = s.dirty * PAGE_SIZE;
                        }
                        State::Small => {
                            info.kind = SpanKind::Small;
                            info.object_size = s.size;
                            info.objects = ((s.end - s.start) / (s.size as usize).max(1)) as u32;
                            // SAFETY: a plain read of a counter another thread may be updating under
                            // its class lock; a torn or stale value only makes the snapshot inexact.
                            info.in_use = unsafe { core::ptr::read_volatile(&s.used) };
                        }
                        State::Large => {
                            info.kind = SpanKind::Large;
                            info.in_use = 1;
                            info.requested = s.requested;
                        }
                    }
                    info
                }
                Walk::Huge(hb) => SpanInfo {
                    start: hb.base,
                    bytes: hb.len,
                    kind: SpanKind::Huge,
                    in_use: 1,
                    requested: hb.requested,
                    committed: hb.len,
                    ..SpanInfo::default()
                },
            };
            f(&info);
        })
    });
}

/// The snapshot as a vector (allocates, outside the heap lock; feature `std`).
#[cfg(any(test, feature = "std"))]
pub fn snapshot_vec() -> Vec<SpanInfo> {
    let mut v = vec![SpanInfo::default(); 256];
    loop {
        let n = snapshot(&mut v);
        if n <= v.len() {
            v.truncate(n);
            return v;
        }
        v.resize(n + n / 4 + 16, SpanInfo::default());
    }
}

/// Writes spans as a JSON array of objects with the fields of [`SpanInfo`] (`kind` as a string).
pub fn write_json(spans: &[SpanInfo], w: &mut impl core::fmt::Write) -> core::fmt::Result {
    write!(w, "[")?;
    for (i, s) in spans.iter().enumerate() {
        if i > 0 {
            write!(w, ",\n ")?;
        }
        write_span_json(s, w)?;
    }
    write!(w, "]")
}

/// Writes the whole heap as a JSON array straight to `w` while walking it (no buffer; `w` must
/// not allocate through segfit, e.g. [`crate::fatal::FdWriter`]).
pub fn stream_json(w: &mut impl core::fmt::Write) -> core::fmt::Result {
    let mut r = write!(w, "[");
    let mut first = true;
    for_each(|s| {
        if r.is_ok() {
            if !first {
                r = write!(w, ",\n ");
            }
            first = false;
            if r.is_ok() {
                r = write_span_json(s, w);
            }
        }
    });
    r?;
    write!(w, "]")
}

fn write_span_json(s: &SpanInfo, w: &mut impl core::fmt::Write) -> core::fmt::Result {
    write!(
            w,
            "{{\"start\":\"{:#x}\",\"bytes\":{},\"kind\":\"{}\",\"object_size\":{},\"objects\":{},\"in_use\":{},\"requested\":{},\"committed\":{},\"resident_free\":{}}}",
            s.start,
            s.bytes,
            s.kind.name(),
            s.object_size,
            s.objects,
            s.in_use,
            s.requested,
            s.committed,
            s.resident_free
        )
}
