//! Region allocator benchmark: our five allocators against talc, rlsf,
//! linked_list_allocator, buddy_system_allocator and bumpalo on the same
//! seeded workloads.
//!
//! Run with `cargo bench -p segfit-region --bench region`. Prints a table and
//! writes `crates/segfit-region/results/region.csv`.
//!
//! Workloads (all seeded, pre-generated so the RNG is not timed):
//! * `churn`: 1M ops, 50/50 alloc/free of random live blocks, ~2000 live,
//!   sizes 8..=512 B (1 in 8 up to 4 KiB), align 8 (1 in 8 align 16).
//! * `burst`: rounds of 1000 allocations then freeing all in random order.
//! * `efficiency`: a 1 MiB region; allocate random sizes, freeing a random
//!   live block 1 time in 3, until the first allocation fails. Reports the
//!   live requested bytes over the region size at that moment (mean of 5 seeds).
//!
//! Method: every contender runs the same pre-generated op sequences on a
//! fresh, pre-zeroed 16 MiB region (bump allocators: twice the workload's
//! total); one untimed warm-up round, then `SEGFIT_BENCH_REPS` (default 7)
//! rounds that each run every contender once, interleaved so machine noise
//! hits all alike; the table reports the **median** Mops/s.
//!
//! Caveats: single thread, no lock (each allocator is called directly);
//! bump allocators do not reuse freed memory, so their efficiency counts
//! freed bytes as lost.

use std::alloc::Layout;
use std::hint::black_box;
use std::io::Write;
use std::ptr::NonNull;
use std::time::Instant;

use segfit_region::RegionAlloc;

/// One allocator under benchmark, owning its region.
trait Contender {
    const NAME: &'static str;
    /// A fresh allocator over `mem..mem + len`.
    ///
    /// # Safety
    /// The memory must be valid and outlive the contender.
    unsafe fn make(mem: *mut u8, len: usize) -> Self;
    fn alloc(&mut self, layout: Layout) -> Option<NonNull<u8>>;
    /// # Safety
    /// `ptr` is live with `layout`.
    unsafe fn free(&mut self, ptr: NonNull<u8>, layout: Layout);
}

macro_rules! ours {
    ($t:ident, $name:expr) => {
        impl Contender for segfit_region::$t {
            const NAME: &'static str = $name;
            unsafe fn make(mem: *mut u8, len: usize) -> Self {
                let mut a = segfit_region::$t::new();
                // SAFETY: the caller's contract.
                unsafe { a.claim(mem, len) }.unwrap();
                a
            }
            #[inline]
            fn alloc(&mut self, layout: Layout) -> Option<NonNull<u8>> {
                self.allocate(layout)
            }
            #[inline]
            unsafe fn free(&mut self, ptr: NonNull<u8>, layout: Layout) {
                // SAFETY: the caller's contract.
                unsafe { self.deallocate(ptr, layout) }
            }
        }
    };
}
ours!(SegregatedFit, "segfit SegregatedFit");
ours!(FirstFit, "segfit FirstFit");
ours!(NextFit, "segfit NextFit");
ours!(BestFit, "segfit BestFit");
ours!(Bump, "segfit Bump");

struct Talc(talc::base::Talc<talc::source::Manual, talc::DefaultBinning>);
impl Contender for Talc {
    const NAME: &'static str = "talc 5";
    unsafe fn make(mem: *mut u8, len: usize) -> Self {
        let mut t = talc::base::Talc::new(talc::source::Manual);
        // SAFETY: the caller's contract.
        unsafe { t.claim(mem, len) }.unwrap();
        Talc(t)
    }
    #[inline]
    fn alloc(&mut self, layout: Layout) -> Option<NonNull<u8>> {
        // SAFETY: layouts in these workloads have non-zero size.
        unsafe { self.0.allocate(layout) }
    }
    #[inline]
    unsafe fn free(&mut self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: the caller's contract.
        unsafe { self.0.deallocate(ptr.as_ptr(), layout) }
    }
}

struct Rlsf(rlsf::Tlsf<'static, u32, u32, 24, 32>);
impl Contender for Rlsf {
    const NAME: &'static str = "rlsf 0.2";
    unsafe fn make(mem: *mut u8, len: usize) -> Self {
        let mut t = rlsf::Tlsf::new();
        let block = NonNull::slice_from_raw_parts(NonNull::new(mem).unwrap(), len);
        // SAFETY: the caller's contract.
        unsafe { t.insert_free_block_ptr(block) }.unwrap();
        Rlsf(t)
    }
    #[inline]
    fn alloc(&mut self, layout: Layout) -> Option<NonNull<u8>> {
        self.0.allocate(layout)
    }
    #[inline]
    unsafe fn free(&mut self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: the caller's contract.
        unsafe { self.0.deallocate(ptr, layout.align()) }
    }
}

struct Lla(linked_list_allocator::Heap);
impl Contender for Lla {
    const NAME: &'static str = "linked_list_allocator 0.10";
    unsafe fn make(mem: *mut u8, len: usize) -> Self {
        let mut h = linked_list_allocator::Heap::empty();
        // SAFETY: the caller's contract.
        unsafe { h.init(mem, len) };
        Lla(h)
    }
    #[inline]
    fn alloc(&mut self, layout: Layout) -> Option<NonNull<u8>> {
        self.0.allocate_first_fit(layout).ok()
    }
    #[inline]
    unsafe fn free(&mut self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: the caller's contract.
        unsafe { self.0.deallocate(ptr, layout) }
    }
}

struct Buddy(buddy_system_allocator::Heap<32>);
impl Contender for Buddy {
    const NAME: &'static str = "buddy_system_allocator 0.13";
    unsafe fn make(mem: *mut u8, len: usize) -> Self {
        let mut h = buddy_system_allocator::Heap::<32>::new();
        // SAFETY: the caller's contract.
        unsafe { h.init(mem as usize, len) };
        Buddy(h)
    }
    #[inline]
    fn alloc(&mut self, layout: Layout) -> Option<NonNull<u8>> {
        self.0.alloc(layout).ok()
    }
    #[inline]
    unsafe fn free(&mut self, ptr: NonNull<u8>, layout: Layout) {
        self.0.dealloc(ptr, layout)
    }
}

/// bumpalo gets its chunks from the global allocator; the region only sets
/// its allocation limit.
struct Bumpalo(bumpalo::Bump);
impl Contender for Bumpalo {
    const NAME: &'static str = "bumpalo 3";
    unsafe fn make(_mem: *mut u8, len: usize) -> Self {
        let b = bumpalo::Bump::with_capacity(len / 2);
        b.set_allocation_limit(Some(len));
        Bumpalo(b)
    }
    #[inline]
    fn alloc(&mut self, layout: Layout) -> Option<NonNull<u8>> {
        self.0.try_alloc_layout(layout).ok()
    }
    #[inline]
    unsafe fn free(&mut self, _ptr: NonNull<u8>, _layout: Layout) {}
}

/// xorshift64*.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn layout(&mut self) -> Layout {
        let size = if self.below(8) == 0 {
            8 + self.below(4089)
        } else {
            8 + self.below(505)
        } as usize;
        let align = if self.below(8) == 0 { 16 } else { 8 };
        Layout::from_size_align(size, align).unwrap()
    }
}

#[derive(Clone, Copy)]
enum Op {
    Alloc(u32, Layout),
    Free(u32),
}

/// Pre-generated op sequence over slots; returns (ops, peak bytes allocated in total).
fn churn_ops(seed: u64, n: usize, live_target: usize) -> (Vec<Op>, usize) {
    let mut rng = Rng(seed | 1);
    let mut live: Vec<u32> = Vec::new();
    let mut free_slots: Vec<u32> = Vec::new();
    let mut next = 0u32;
    let mut ops = Vec::with_capacity(n);
    let mut total = 0;
    for _ in 0..n {
        let want_alloc = live.is_empty()
            || (live.len() < live_target * 2
                && rng.below(live_target as u64 * 2) >= live.len() as u64);
        if want_alloc {
            let slot = free_slots.pop().unwrap_or_else(|| {
                next += 1;
                next - 1
            });
            let l = rng.layout();
            total += l.size() + 16;
            ops.push(Op::Alloc(slot, l));
            live.push(slot);
        } else {
            let i = rng.below(live.len() as u64) as usize;
            let slot = live.swap_remove(i);
            ops.push(Op::Free(slot));
            free_slots.push(slot);
        }
    }
    (ops, total)
}

fn burst_ops(seed: u64, rounds: usize, per: usize) -> (Vec<Op>, usize) {
    let mut rng = Rng(seed | 1);
    let mut ops = Vec::new();
    let mut total = 0;
    for _ in 0..rounds {
        let mut slots: Vec<u32> = (0..per as u32).collect();
        for &s in &slots {
            let l = rng.layout();
            total += l.size() + 16;
            ops.push(Op::Alloc(s, l));
        }
        for i in (1..slots.len()).rev() {
            slots.swap(i, rng.below(i as u64 + 1) as usize);
        }
        ops.extend(slots.into_iter().map(Op::Free));
    }
    (ops, total)
}

/// Runs `ops`, returning elapsed seconds (and failures).
fn run<C: Contender>(ops: &[Op], region: usize) -> (f64, usize) {
    let mut mem = vec![0u64; region / 8];
    // Fault every page in before timing (calloc may hand out untouched
    // pages), so no contender pays for first touches.
    black_box(&mut mem[..]).fill(0);
    // SAFETY: `mem` outlives `c`.
    let mut c = unsafe { C::make(mem.as_mut_ptr().cast(), region) };
    let slots = ops
        .iter()
        .map(|o| match o {
            Op::Alloc(s, _) | Op::Free(s) => *s,
        })
        .max()
        .unwrap_or(0) as usize
        + 1;
    let mut table: Vec<Option<(NonNull<u8>, Layout)>> = vec![None; slots];
    let mut failures = 0;
    let t = Instant::now();
    for op in ops {
        match *op {
            Op::Alloc(s, l) => {
                let p = c.alloc(black_box(l));
                match p {
                    Some(p) => table[s as usize] = Some((p, l)),
                    None => failures += 1,
                }
            }
            Op::Free(s) => {
                if let Some((p, l)) = table[s as usize].take() {
                    // SAFETY: `p` is live with `l`.
                    unsafe { c.free(black_box(p), l) };
                }
            }
        }
    }
    let dt = t.elapsed().as_secs_f64();
    black_box(&mut c);
    drop(c);
    drop(mem);
    (dt, failures)
}

/// Fill a region until the first allocation fails, freeing a random live
/// block one time in three. Returns live requested bytes / region.
fn efficiency<C: Contender>(seed: u64, region: usize) -> f64 {
    let mut mem = vec![0u64; region / 8];
    // SAFETY: `mem` outlives `c`.
    let mut c = unsafe { C::make(mem.as_mut_ptr().cast(), region) };
    let mut rng = Rng(seed | 1);
    let mut live: Vec<(NonNull<u8>, Layout)> = Vec::new();
    let mut bytes = 0usize;
    loop {
        if !live.is_empty() && rng.below(3) == 0 {
            let (p, l) = live.swap_remove(rng.below(live.len() as u64) as usize);
            bytes -= l.size();
            // SAFETY: `p` is live with `l`.
            unsafe { c.free(p, l) };
            continue;
        }
        let l = rng.layout();
        match c.alloc(l) {
            Some(p) => {
                bytes += l.size();
                live.push((p, l));
            }
            None => break,
        }
    }
    for (p, l) in live {
        // SAFETY: live with `l`.
        unsafe { c.free(p, l) };
    }
    drop(c);
    drop(mem);
    bytes as f64 / region as f64
}

struct Row {
    name: &'static str,
    churn: f64,
    burst: f64,
    eff: f64,
    fails: usize,
}

/// One contender, type-erased so the timed runs can be interleaved.
struct Entry {
    name: &'static str,
    bump_like: bool,
    run: fn(&[Op], usize) -> (f64, usize),
    eff: fn(u64, usize) -> f64,
}

fn entry<C: Contender>(bump_like: bool) -> Entry {
    Entry {
        name: C::NAME,
        bump_like,
        run: run::<C>,
        eff: efficiency::<C>,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Repetitions per contender and workload (`SEGFIT_BENCH_REPS`, default 7).
fn reps() -> usize {
    std::env::var("SEGFIT_BENCH_REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(7)
        .max(1)
}

fn main() {
    let churn = churn_ops(42, 1_000_000, 2000);
    let burst = burst_ops(7, 500, 1000);
    let all = [
        entry::<segfit_region::SegregatedFit>(false),
        entry::<Talc>(false),
        entry::<Rlsf>(false),
        entry::<segfit_region::FirstFit>(false),
        entry::<segfit_region::NextFit>(false),
        entry::<segfit_region::BestFit>(false),
        entry::<Lla>(false),
        entry::<Buddy>(false),
        entry::<segfit_region::Bump>(true),
        entry::<Bumpalo>(true),
    ];
    // `SEGFIT_BENCH_ONLY=talc,rlsf` runs only the allocators whose name
    // contains one of the comma-separated parts.
    let only = std::env::var("SEGFIT_BENCH_ONLY").ok();
    let entries: Vec<&Entry> = all
        .iter()
        .filter(|e| {
            only.as_deref()
                .is_none_or(|o| o.split(',').any(|part| e.name.contains(part)))
        })
        .collect();
    // Regions: 16 MiB for every reusing allocator; bump allocators get twice
    // the total bytes the workload ever allocates (they never reuse).
    let region = |e: &Entry, total: usize| {
        if e.bump_like {
            (total * 2).next_power_of_two()
        } else {
            16 << 20
        }
    };
    let reps = reps();
    let mut times = vec![(Vec::new(), Vec::new()); entries.len()];
    let mut fails = vec![0; entries.len()];
    // Warm-up (untimed), then `reps` rounds; each round runs every contender
    // once per workload, so machine noise spreads over all of them alike.
    for round in 0..=reps {
        for (i, e) in entries.iter().enumerate() {
            let (c, f1) = (e.run)(&churn.0, region(e, churn.1));
            let (b, f2) = (e.run)(&burst.0, region(e, burst.1));
            if round > 0 {
                times[i].0.push(churn.0.len() as f64 / c / 1e6);
                times[i].1.push(burst.0.len() as f64 / b / 1e6);
                fails[i] = f1 + f2;
            }
        }
        eprintln!("  round {round}/{reps} done");
    }
    let rows: Vec<Row> = entries
        .iter()
        .enumerate()
        .map(|(i, e)| Row {
            name: e.name,
            churn: median(times[i].0.clone()),
            burst: median(times[i].1.clone()),
            eff: (0..5).map(|s| (e.eff)(1000 + s, 1 << 20)).sum::<f64>() / 5.0,
            fails: fails[i],
        })
        .collect();
    println!();
    println!("| allocator | churn Mops/s | burst Mops/s | efficiency (1 MiB, fill to failure) |");
    println!("|---|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {:.1} | {:.1} | {:.1}% |{}",
            r.name,
            r.churn,
            r.burst,
            r.eff * 100.0,
            if r.fails > 0 {
                format!(" ({} failed allocs)", r.fails)
            } else {
                String::new()
            }
        );
    }
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/results");
    std::fs::create_dir_all(dir).unwrap();
    let mut f = std::fs::File::create(format!("{dir}/region.csv")).unwrap();
    writeln!(
        f,
        "allocator,churn_mops,burst_mops,efficiency,failed_allocs"
    )
    .unwrap();
    for r in &rows {
        writeln!(
            f,
            "{},{:.3},{:.3},{:.4},{}",
            r.name, r.churn, r.burst, r.eff, r.fails
        )
        .unwrap();
    }
    println!("\nwrote {dir}/region.csv");
}
