//! Embeds the BPF object built by `cargo xtask build-ebpf`, if it exists.
//! Without it the agent still builds (so `cargo check`, clippy and unit tests
//! need no nightly) and says at run time how to build the object.

use std::path::PathBuf;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(shadow_bpf_object)");
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let object = manifest.join("../target/ebpf/bpfel-unknown-none/release/shadow-ebpf");
    println!("cargo::rerun-if-changed={}", object.display());
    if object.exists() {
        println!("cargo::rustc-cfg=shadow_bpf_object");
        println!("cargo::rustc-env=SHADOW_BPF_OBJECT={}", object.display());
    }
}
