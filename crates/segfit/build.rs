//! Tells the crates that depend on the core whether it was built with `std` (`DEP_SEGFIT_STD`):
//! the C library must define a panic handler exactly when nothing else does.

fn main() {
    let std = std::env::var_os("CARGO_FEATURE_STD").is_some();
    println!("cargo:std={}", u8::from(std));
}
