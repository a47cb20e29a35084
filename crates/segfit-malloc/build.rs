//! `cfg(segfit_core_std)` when the core was built with `std` (possibly by cargo's feature
//! unification in a workspace build): std then provides the panic handler, and this crate must
//! not define one (see `src/lib.rs`).

fn main() {
    println!("cargo::rustc-check-cfg=cfg(segfit_core_std)");
    if std::env::var("DEP_SEGFIT_STD").as_deref() == Ok("1") {
        println!("cargo::rustc-cfg=segfit_core_std");
    }
}
