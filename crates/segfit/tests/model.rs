//! Model-based randomized test of the allocation API: long random sequences of alloc / free /
//! realloc with sizes from 1 B to 4 MiB (and a few huge blocks) and alignments from 1 B to 64 KiB,
//! against a shadow map of live blocks. Laws checked: every block meets its alignment; no two live
//! blocks overlap; a block's contents survive until it is freed and across realloc; usable size is
//! at least the request; zeroed allocations read zero.

use segfit::alloc::{calloc_aligned, free, malloc_aligned, realloc, usable_size};
use std::collections::BTreeMap;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

struct Block {
    ptr: *mut u8,
    size: usize,
    align: usize,
    id: u64,
}

fn pattern(id: u64, i: usize) -> u8 {
    (id.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) as u8 ^ (i as u8)
}

/// Offsets checked in a block: all of a small one, a sample of a big one.
fn probes(size: usize) -> impl Iterator<Item = usize> {
    let step = if size <= 4096 { 1 } else { 509 };
    (0..size).step_by(step).chain(size.saturating_sub(64)..size)
}

fn fill(b: &Block) {
    for i in probes(b.size) {
        // SAFETY: i < size and the block is live.
        unsafe { *b.ptr.add(i) = pattern(b.id, i) };
    }
}

/// Checks the bytes that were filled when the block had `filled` bytes and that it still has.
fn check(b: &Block, filled: usize) {
    for i in probes(filled).filter(|&i| i < b.size) {
        // SAFETY: i < size and the block is live.
        let v = unsafe { *b.ptr.add(i) };
        assert_eq!(
            v,
            pattern(b.id, i),
            "block {} (size {}) corrupted at {i}",
            b.id,
            b.size
        );
    }
}

fn random_size(rng: &mut Rng) -> usize {
    match rng.below(1000) {
        0..=699 => 1 + rng.below(256) as usize,
        700..=899 => 1 + rng.below(32 << 10) as usize,
        900..=989 => 1 + rng.below(512 << 10) as usize,
        990..=998 => 1 + rng.below(4 << 20) as usize,
        _ => (32 << 20) + rng.below(8 << 20) as usize,
    }
}

fn random_align(rng: &mut Rng) -> usize {
    if rng.below(4) == 0 {
        1 << rng.below(17)
    } else {
        1 << rng.below(5)
    }
}

fn overlaps(live: &BTreeMap<usize, (usize, u64)>, start: usize, end: usize) -> Option<u64> {
    if let Some((&s, &(e, id))) = live.range(..end).next_back() {
        if e > start && s < end {
            return Some(id);
        }
    }
    None
}

fn run(seed: u64, ops: usize) {
    let mut rng = Rng(seed);
    let mut blocks: Vec<Block> = Vec::new();
    let mut live: BTreeMap<usize, (usize, u64)> = BTreeMap::new();
    let mut next_id = 0;
    for _ in 0..ops {
        let op = rng.below(100);
        if op < 50 || blocks.is_empty() {
            let size = random_size(&mut rng);
            let align = random_align(&mut rng);
            let zeroed = rng.below(8) == 0;
            let ptr = if zeroed {
                calloc_aligned(size, align)
            } else {
                malloc_aligned(size, align)
            };
            assert!(!ptr.is_null(), "allocation of {size} at {align} failed");
            assert_eq!(ptr as usize % align, 0, "size {size} align {align}");
            assert!(usable_size(ptr) >= size);
            if zeroed {
                for i in probes(size) {
                    // SAFETY: i < size, block live.
                    assert_eq!(unsafe { *ptr.add(i) }, 0, "calloc({size}) not zero at {i}");
                }
            }
            let start = ptr as usize;
            if let Some(other) = overlaps(&live, start, start + size) {
                panic!("new block {start:#x}+{size} overlaps block {other}");
            }
            let b = Block {
                ptr,
                size,
                align,
                id: next_id,
            };
            next_id += 1;
            fill(&b);
            live.insert(start, (start + size, b.id));
            blocks.push(b);
        } else if op < 85 {
            let i = rng.below(blocks.len() as u64) as usize;
            let b = blocks.swap_remove(i);
            check(&b, b.size);
            live.remove(&(b.ptr as usize));
            // SAFETY: live block from segfit.
            unsafe { free(b.ptr) };
        } else {
            let i = rng.below(blocks.len() as u64) as usize;
            let new_size = random_size(&mut rng);
            let b = &mut blocks[i];
            check(b, b.size);
            live.remove(&(b.ptr as usize));
            // SAFETY: live block allocated with `b.align`.
            let q = unsafe { realloc(b.ptr, new_size, b.align) };
            assert!(!q.is_null());
            assert_eq!(
                q as usize % b.align,
                0,
                "realloc lost alignment {}",
                b.align
            );
            let old = b.size;
            b.ptr = q;
            b.size = new_size;
            check(b, old);
            fill(b);
            let start = q as usize;
            if let Some(other) = overlaps(&live, start, start + new_size) {
                panic!("realloc'd block overlaps block {other}");
            }
            live.insert(start, (start + new_size, b.id));
        }
    }
    for b in blocks.drain(..) {
        check(&b, b.size);
        // SAFETY: live block.
        unsafe { free(b.ptr) };
    }
}

#[test]
fn random_sequences_never_overlap_and_keep_contents() {
    for seed in 1..=4u64 {
        run(seed * 0x1234_5678_9abc_def1, 30_000);
    }
}

#[test]
fn random_sequences_on_many_threads() {
    let threads: Vec<_> = (0..4u64)
        .map(|t| std::thread::spawn(move || run(0xfeed_0000 + t, 15_000)))
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}
