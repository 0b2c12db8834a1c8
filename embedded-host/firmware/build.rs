//! Puts the board's memory map where cortex-m-rt's link.x looks for `memory.x`. Only
//! the mps2 build takes ours; embassy-stm32 (`memory-x` feature) provides the STM32's.

use std::env;
use std::fs;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=memory");
    if env::var_os("CARGO_FEATURE_MPS2").is_some() {
        let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
        fs::copy("memory/mps2-an386.x", out.join("memory.x"))
            .expect("memory/mps2-an386.x is part of the crate");
        println!("cargo:rustc-link-search={}", out.display());
    }
}
