//! Builds the WebAssembly plugins in `../plugins` (the reference plugins embedded in
//! the binary, and the test guests) with a nested `cargo build --target
//! wasm32-wasip2`, and tells the crate where the `.wasm` files are
//! (`CKPT_PLUGIN_WASM_DIR`). Test guests written in WebAssembly text
//! (`plugins/test-guests/*/*.wat`, shapes no language toolchain emits) are assembled
//! and given the plugin world here. The components are never committed: they are
//! built from source here.

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
    for name in WAT_GUESTS {
        let source = plugins.join(format!("test-guests/{name}/{name}.wat"));
        let component = wat_component(&source, &manifest_dir.join("../wit/v0.1.0"));
        std::fs::write(out.join(format!("{name}.wasm")), component)
            .unwrap_or_else(|e| panic!("writing {name}.wasm: {e}"));
    }
    println!("cargo:rustc-env=CKPT_PLUGIN_WASM_DIR={}", out.display());
}

/// Test guests in WebAssembly text: core modules that export the transformer world's
/// functions under their canonical-ABI names.
const WAT_GUESTS: [&str; 1] = ["hoard"];

/// Assembles a core module, embeds the `transformer-plugin` world of `wit` and wraps
/// it as a component, as `wasm-tools component new` would.
fn wat_component(source: &Path, wit: &Path) -> Vec<u8> {
    let fail =
        |what: &str, e: &dyn std::fmt::Display| -> ! { panic!("{what} {}: {e}", source.display()) };
    let mut module = wat::parse_file(source).unwrap_or_else(|e| fail("assembling", &e));
    let mut resolve = wit_parser::Resolve::default();
    let (package, _) = resolve
        .push_dir(wit)
        .unwrap_or_else(|e| fail("reading the WIT for", &e));
    let world = resolve
        .select_world(&[package], Some("transformer-plugin"))
        .unwrap_or_else(|e| fail("finding the world for", &e));
    wit_component::embed_component_metadata(
        &mut module,
        &resolve,
        world,
        wit_component::StringEncoding::UTF8,
    )
    .unwrap_or_else(|e| fail("embedding the world in", &e));
    wit_component::ComponentEncoder::default()
        .validate(true)
        .module(&module)
        .and_then(|mut encoder| encoder.encode())
        .unwrap_or_else(|e| fail("making a component of", &e))
}

fn copy(from: &Path, to: &Path) {
    std::fs::copy(from, to).unwrap_or_else(|e| panic!("copying {}: {e}", from.display()));
}
