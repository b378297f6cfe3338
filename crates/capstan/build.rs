//! Link settings for the `capstan` binary, both about its resident memory:
//! - a position-dependent executable, as Go links k3s: a PIE carries ~2 MB of relocations that the
//!   loader reads and applies at every start, and the pages they patch become private copies;
//! - the functions a server runs at start-up and while idle placed first and together, then those
//!   its request paths add (`link-order.txt`, made by `scripts/link-order/trace.sh`): the kernel
//!   maps code in 64 KiB windows around each first touch, so scattered start-up code makes nearly
//!   all of `.text` resident. A stale list costs nothing but memory: unknown names are skipped.
//!
//! `CAPSTAN_LINK_MAP=<path>` also writes the linker's map (the trace script reads it).
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=link-order.txt");
    println!("cargo:rerun-if-env-changed=CAPSTAN_LINK_MAP");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux") {
        return;
    }
    println!("cargo:rustc-link-arg-bins=-no-pie");
    let order = Path::new(env!("CARGO_MANIFEST_DIR")).join("link-order.txt");
    if order.exists() {
        println!(
            "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={},--no-warn-symbol-ordering",
            order.display()
        );
    }
    if let Ok(map) = std::env::var("CAPSTAN_LINK_MAP") {
        println!("cargo:rustc-link-arg-bins=-Wl,-Map={map},--no-demangle");
    }
}
