//! Model-based random tests, generated for every allocator by `gen_test!`
//! from the one driver in `common`.

mod common;

use common::*;
use proptest::prelude::*;
use segfit_region::{BestFit, Bump, FirstFit, NextFit, SegregatedFit};

fn op_strategy() -> impl Strategy<Value = Op> {
    let size = prop_oneof![7 => 0usize..=512, 1 => 0usize..=4096];
    let align = prop_oneof![9 => 0u32..=4, 1 => 0u32..=12];
    prop_oneof![
        5 => (size.clone(), align).prop_map(|(size, align_log)| Op::Alloc { size, align_log }),
        3 => any::<usize>().prop_map(|index| Op::Free { index }),
        2 => (any::<usize>(), size).prop_map(|(index, size)| Op::Realloc { index, size }),
    ]
}

macro_rules! gen_test {
    ($name:ident, $t:ty, $reset:expr) => {
        mod $name {
            use super::*;

            proptest! {
                #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
                /// Random sequences: blocks never overlap, keep their contents
                /// and alignment, and freeing everything restores one block.
                #[test]
                fn never_overlap_and_contents_survive(ops in proptest::collection::vec(op_strategy(), 1..400)) {
                    let mut d = Driver::<$t>::new(64 * 1024).check_every(1);
                    for op in &ops {
                        d.step(op);
                    }
                    d.free_all_and_check($reset);
                }
            }

            /// Long seeded runs over a small heap, so out-of-memory is hit often.
            #[test]
            fn seeded_long_runs_never_overlap_and_free_to_one_block() {
                for seed in 0..8 {
                    let d = seeded_run::<$t>(seed, 20_000, 256 * 1024, $reset);
                    // Bump never reuses memory, so it runs out early by design.
                    assert!(d.next_id > 5_000 || !<$t as Subject>::REUSES, "the workload must mostly succeed");
                }
            }

            /// A tight heap: most allocations fail, none panics, the model holds.
            #[test]
            fn out_of_memory_returns_none_and_keeps_the_heap_sound() {
                let d = seeded_run::<$t>(99, 20_000, 16 * 1024, $reset);
                assert!(d.failures > 0, "a 16 KiB heap must run out");
            }

            #[test]
            fn freeing_everything_leaves_one_block() {
                let mut d = Driver::<$t>::new(32 * 1024);
                for i in 0..100 {
                    d.step(&Op::Alloc { size: 8 + i * 3, align_log: (i % 5) as u32 });
                }
                d.free_all_and_check($reset);
            }
        }
    };
}

gen_test!(first_fit, FirstFit, |_: &mut FirstFit| {});
gen_test!(next_fit, NextFit, |_: &mut NextFit| {});
gen_test!(best_fit, BestFit, |_: &mut BestFit| {});
gen_test!(segregated_fit, SegregatedFit, |_: &mut SegregatedFit| {});
gen_test!(bump, Bump, |b: &mut Bump| b.reset());

/// Stats agree with themselves for every type after a workload.
#[test]
fn stats_account_for_every_claimed_byte() {
    fn go<A: Subject>() {
        let mut d = seeded_run::<A>(7, 2_000, 64 * 1024, |_| {});
        let s = d.alloc.stats();
        assert!(s.search_steps > 0);
        assert!(s.in_use + s.free <= s.claimed);
        assert!(s.largest_free <= s.free);
        let _ = &mut d;
    }
    go::<FirstFit>();
    go::<NextFit>();
    go::<BestFit>();
    go::<SegregatedFit>();
}
