//! Prints segfit's size-class table with its waste, in the manner of Go's mksizeclasses:
//! bytes per object, bytes per span, objects per span, tail waste (the span bytes no object uses),
//! the worst internal waste (a request one byte above the previous class), and the batch moved
//! between thread caches and central lists.
//!
//! `cargo run -p segfit --example sizeclasses`

use segfit::config::PAGE_SIZE;
use segfit::size_class::{CLASSES, NUM_CLASSES};

fn main() {
    println!("// class  bytes/obj  bytes/span  objects  tail waste  max waste  batch");
    let mut worst: f64 = 0.0;
    for c in 1..NUM_CLASSES {
        let k = CLASSES[c];
        let span = k.pages as usize * PAGE_SIZE;
        let tail = span - k.objects as usize * k.size as usize;
        let prev = if c == 1 {
            0
        } else {
            CLASSES[c - 1].size as usize
        };
        // The smallest request that lands here wastes the most, plus its share of the tail.
        let smallest = prev + 1;
        let waste = ((k.size as usize - smallest) * k.objects as usize + tail) as f64 / span as f64;
        if prev >= 128 {
            worst = worst.max((k.size as usize - smallest) as f64 / smallest as f64);
        }
        println!(
            "// {c:5} {:10} {:11} {:8} {:11} {:9.2}% {:6}",
            k.size,
            span,
            k.objects,
            tail,
            waste * 100.0,
            k.batch
        );
    }
    println!(
        "// worst rounding above 128 B: {:.2}% of the request (bound: 12.5%)",
        worst * 100.0
    );
}
