//! Size classes: the segregated-fit table, and the O(1) size → class lookup.
//!
//! The rule (computed at compile time by `build`; `cargo run -p segfit --example sizeclasses` prints
//! the table with its waste):
//! - classes are multiples of 16 bytes (the minimum alignment) up to 128 bytes;
//! - above 128, every power-of-two range `(2^k, 2^(k+1)]` is cut into 8 equal steps of `2^k / 8`,
//!   up to [`MAX_SMALL`] (32 KiB). That gives 72 classes, and every power of two from 16 to 32 KiB
//!   is a class (which is what aligned small allocations use).
//!
//! Waste bound (tested exhaustively): a request of `n` bytes is rounded up by less than 16 bytes
//! when `n <= 128`, and by at most 12.5% of `n` above that.
//!
//! Each class gets a span of `pages` pages: the smallest page count that holds at least 8 objects
//! (capped at 64 KiB of span) and wastes at most 1/8 of the span in its tail. At most 512 objects
//! fit one span, so a span's allocated-object bitmap is 8 words.
//!
//! Class 0 means "not a small object" (large, free or huge). Lookup: one table indexed by
//! `(size + 15) >> 4` holding `class * BIN_STRIDE` (4 KiB of `u16`, so `malloc` indexes its cache
//! without a shift; Go splits its byte table in two, `size_to_class8` and
//! `size_to_class128`, to save space, at the cost of a branch on the fast path).

use crate::config::{MAX_SMALL, MIN_ALIGN, PAGE_SIZE};

/// Number of small size classes (class indices are `1..=NUM_SMALL`).
pub const NUM_SMALL: usize = 72;
/// Length of per-class arrays (index 0 unused).
pub const NUM_CLASSES: usize = NUM_SMALL + 1;
/// Most objects one span may hold (the span's bitmap has this many bits).
pub const MAX_OBJECTS: usize = 512;

/// What the layers need to know about one class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Class {
    /// Object size in bytes.
    pub size: u32,
    /// Pages in a span of this class.
    pub pages: u32,
    /// Objects in a span (`pages * PAGE_SIZE / size`).
    pub objects: u32,
    /// Objects moved between a thread cache and the central list at once.
    pub batch: u32,
    /// `ceil(2^32 / size)`: `(offset * magic) >> 32 == offset / size` for every offset in a span.
    pub magic: u32,
}

const EMPTY: Class = Class {
    size: 0,
    pages: 0,
    objects: 0,
    batch: 0,
    magic: 0,
};

const fn class_sizes() -> [u32; NUM_CLASSES] {
    let mut out = [0u32; NUM_CLASSES];
    let mut i = 1;
    let mut size = 16;
    while size <= 128 {
        out[i] = size;
        i += 1;
        size += 16;
    }
    let mut base = 128;
    while base < MAX_SMALL as u32 {
        let step = base / 8;
        let mut j = 1;
        while j <= 8 {
            out[i] = base + j * step;
            i += 1;
            j += 1;
        }
        base *= 2;
    }
    assert!(
        i == NUM_CLASSES,
        "the class count changed: update NUM_SMALL"
    );
    out
}

pub(crate) const fn build() -> [Class; NUM_CLASSES] {
    let sizes = class_sizes();
    let mut out = [EMPTY; NUM_CLASSES];
    let mut c = 1;
    while c < NUM_CLASSES {
        let size = sizes[c] as usize;
        let target = {
            let t = if 8 * size < 64 << 10 {
                8 * size
            } else {
                64 << 10
            };
            if t < PAGE_SIZE {
                PAGE_SIZE
            } else {
                t
            }
        };
        let mut pages = target.div_ceil(PAGE_SIZE);
        while (pages * PAGE_SIZE) % size > pages * PAGE_SIZE / 8 {
            pages += 1;
        }
        let objects = pages * PAGE_SIZE / size;
        assert!(objects <= MAX_OBJECTS && objects >= 1);
        let batch = {
            let b = (32 << 10) / size;
            if b < 2 {
                2
            } else if b > 64 {
                64
            } else {
                b
            }
        };
        let magic = ((1u64 << 32).div_ceil(size as u64)) as u32;
        out[c] = Class {
            size: size as u32,
            pages: pages as u32,
            objects: objects as u32,
            batch: batch as u32,
            magic,
        };
        c += 1;
    }
    out
}

/// The class table, index 0 unused.
pub static CLASSES: [Class; NUM_CLASSES] = build();

const INDEX_LEN: usize = MAX_SMALL / 16 + 1;

/// Bytes between the bins of consecutive classes in a thread cache. `malloc`'s size table and
/// each span hold `class * BIN_STRIDE`, the byte offset of the class's bin, so the fast paths
/// index the cache without a shift (the cache asserts its layout matches).
pub const BIN_STRIDE: usize = 32;

const _: () = assert!(NUM_CLASSES * BIN_STRIDE <= u16::MAX as usize);

const fn build_index() -> [u16; INDEX_LEN] {
    let classes = build();
    let mut out = [0u16; INDEX_LEN];
    let mut i = 0;
    let mut c = 1;
    while i < INDEX_LEN {
        let size = if i == 0 { 1 } else { i * 16 };
        while (classes[c].size as usize) < size {
            c += 1;
        }
        out[i] = (c * BIN_STRIDE) as u16;
        i += 1;
    }
    out
}

/// `INDEX[(size + 15) / 16]` is `BIN_STRIDE` times the class of `size`: one 4 KiB table, one
/// load, no branch.
static INDEX: [u16; INDEX_LEN] = build_index();

/// `BIN_STRIDE` times the class of a request of `size <= MAX_SMALL` bytes: the byte offset of its
/// bin in a thread cache.
#[inline(always)]
pub fn bin_offset(size: usize) -> usize {
    debug_assert!(size <= MAX_SMALL);
    // SAFETY: size <= MAX_SMALL, so the index is at most MAX_SMALL / 16 < INDEX_LEN.
    unsafe { *INDEX.get_unchecked((size + 15) >> 4) as usize }
}

/// `bin_offset` at compile time.
pub const fn bin_offset_const(size: usize) -> usize {
    build_index()[size.div_ceil(16)] as usize
}

/// The class of a request of `size <= MAX_SMALL` bytes (size 0 maps to the 16-byte class).
#[inline(always)]
pub fn class_of(size: usize) -> usize {
    bin_offset(size) / BIN_STRIDE
}

/// The class for `size` bytes at alignment `align` (a power of two, `MIN_ALIGN < align <=
/// PAGE_SIZE`): the smallest class that fits and whose size is a multiple of `align`, so that
/// every object of its page-aligned spans is aligned. `None` if no small class fits.
#[inline]
pub fn class_of_aligned(size: usize, align: usize) -> Option<usize> {
    debug_assert!(align.is_power_of_two() && align <= PAGE_SIZE);
    let want = size.max(align);
    if want > MAX_SMALL {
        return None;
    }
    let shift = align.max(MIN_ALIGN).trailing_zeros() as usize;
    let row = ALIGNED.get(shift.wrapping_sub(MIN_ALIGN.trailing_zeros() as usize))?;
    match row.get(class_of(want)) {
        Some(&c) if c != 0 => Some(c as usize),
        _ => None,
    }
}

/// Rows for alignments `MIN_ALIGN << i` up to `PAGE_SIZE`: entry `c` is the smallest class at or
/// after `c` whose size is a multiple of the alignment (0: none).
const ALIGN_ROWS: usize = (PAGE_SIZE.trailing_zeros() - MIN_ALIGN.trailing_zeros() + 1) as usize;
static ALIGNED: [[u8; NUM_CLASSES]; ALIGN_ROWS] = build_aligned();

const fn build_aligned() -> [[u8; NUM_CLASSES]; ALIGN_ROWS] {
    let k = build();
    let mut rows = [[0u8; NUM_CLASSES]; ALIGN_ROWS];
    let mut i = 0;
    while i < ALIGN_ROWS {
        let align = (MIN_ALIGN << i) as u32;
        let mut c = 1;
        while c < NUM_CLASSES {
            let mut d = c;
            while d < NUM_CLASSES && !k[d].size.is_multiple_of(align) {
                d += 1;
            }
            rows[i][c] = if d < NUM_CLASSES { d as u8 } else { 0 };
            c += 1;
        }
        i += 1;
    }
    rows
}

/// The record of class `c`. Class indices come from `class_of`/`class_of_aligned` or from a small
/// span's `class` (set from those), so `c < NUM_CLASSES`; a value out of range can only come from
/// corrupted metadata and aborts with one line (never a panic).
#[inline(always)]
pub fn class_info(c: usize) -> &'static Class {
    match CLASSES.get(c) {
        Some(k) => k,
        None => crate::fatal::fatal("segfit", "corrupted size class", c),
    }
}

/// Object size of class `c`.
#[inline(always)]
pub fn size_of(c: usize) -> usize {
    class_info(c).size as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_size_rounds_up_within_the_waste_bound() {
        for n in 0..=MAX_SMALL {
            let c = class_of(n);
            let s = size_of(c);
            assert!(s >= n.max(1), "size {n} got class {c} of {s}");
            assert!(
                c == 1 || size_of(c - 1) < n,
                "size {n}: a smaller class fits"
            );
            if n <= 128 {
                assert!(s - n.max(1) < 16, "size {n}: waste {}", s - n);
            } else {
                assert!((s - n) * 8 <= n, "size {n}: waste {} > 12.5%", s - n);
            }
        }
    }

    #[test]
    fn class_of_size_of_is_identity_and_sizes_are_aligned() {
        for c in 1..NUM_CLASSES {
            assert_eq!(class_of(size_of(c)), c);
            assert_eq!(size_of(c) % MIN_ALIGN, 0);
            assert!(c == 1 || size_of(c) > size_of(c - 1));
        }
        assert_eq!(size_of(NUM_SMALL), MAX_SMALL);
    }

    #[test]
    fn spans_hold_bounded_objects_with_small_tail_waste() {
        for c in 1..NUM_CLASSES {
            let k = CLASSES[c];
            let span = k.pages as usize * PAGE_SIZE;
            assert_eq!(k.objects as usize, span / k.size as usize);
            assert!(k.objects as usize <= MAX_OBJECTS);
            assert!(span % k.size as usize <= span / 8, "class {c} tail waste");
            assert!(k.batch >= 2);
        }
    }

    #[test]
    fn division_magic_is_exact_over_each_span() {
        for c in 1..NUM_CLASSES {
            let k = CLASSES[c];
            let span = k.pages as u64 * PAGE_SIZE as u64;
            for off in 0..span {
                let q = (off * k.magic as u64) >> 32;
                assert_eq!(q, off / k.size as u64, "class {c} offset {off}");
            }
        }
    }

    #[test]
    fn aligned_classes_are_multiples_of_the_alignment() {
        let mut align = 32;
        while align <= PAGE_SIZE {
            for size in [1, align - 1, align, align + 1, 3 * align, MAX_SMALL - 1] {
                let c = class_of_aligned(size, align)
                    .expect("every power of two up to 32 KiB is a class");
                assert!(size_of(c) >= size);
                assert_eq!(size_of(c) % align, 0);
            }
            align *= 2;
        }
    }

    #[test]
    fn aligned_class_table_matches_a_search_for_every_size_and_alignment() {
        for shift in 0..=13 {
            let align = 1usize << shift;
            for size in 0..=MAX_SMALL + 1 {
                let want = size.max(align);
                let expect = (want <= MAX_SMALL)
                    .then(|| {
                        (class_of(want)..NUM_CLASSES)
                            .find(|&c| size_of(c).is_multiple_of(align.max(MIN_ALIGN)))
                    })
                    .flatten();
                assert_eq!(
                    class_of_aligned(size, align),
                    expect,
                    "size {size} align {align}"
                );
            }
        }
    }
}
