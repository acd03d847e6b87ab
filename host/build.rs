//! Builds the WebAssembly plugins in `../plugins` (the reference plugins embedded in
//! the binary, and the test guests) with a nested `cargo build --target
//! wasm32-wasip2`, and tells the crate where the `.wasm` files are
//! (`CKPT_PLUGIN_WASM_DIR`). The components are never committed: they are built
//! from source here.

use std::path::{Path, PathBuf};
use std::process::Command;

const PLUGINS: [&str; 5] = [
    "add_metadata",
    "normalize_timestamps",
    "hostile",
    "future_api",
    "keep_prefix",
];

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let plugins = manifest_dir.join("../plugins");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets it"));
    for watched in [
        "../plugins/Cargo.toml",
        "../plugins/Cargo.lock",
        "../plugins/sdk",
        "../plugins/add-metadata",
        "../plugins/normalize-timestamps",
        "../plugins/test-guests",
        "../wit",
    ] {
        println!("cargo:rerun-if-changed={watched}");
    }
    // One target directory for all builds of the host, so guests are not rebuilt from
    // scratch for every profile.
    let target = manifest_dir.join("../target/wasm-plugins");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--locked",
            "--target",
            "wasm32-wasip2",
            "--workspace",
            "--manifest-path",
        ])
        .arg(plugins.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", &target)
        // Flags meant for the host build do not apply to the guests.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(_) => panic!(
            "building the WebAssembly plugins in {} failed (see the errors above; they need \
             the wasm32-wasip2 target: `rustup target add wasm32-wasip2`, which scripts/setup.sh runs)",
            plugins.display()
        ),
        Err(e) => panic!("cannot run cargo to build the WebAssembly plugins: {e}"),
    }
    for name in PLUGINS {
        let built = target
            .join("wasm32-wasip2/release")
            .join(format!("{name}.wasm"));
        copy(&built, &out.join(format!("{name}.wasm")));
    }
    println!("cargo:rustc-env=CKPT_PLUGIN_WASM_DIR={}", out.display());
}

fn copy(from: &Path, to: &Path) {
    std::fs::copy(from, to).unwrap_or_else(|e| panic!("copying {}: {e}", from.display()));
}
