//! Builds the injector shim (`injector/`, its own cargo workspace) and puts
//! the resulting `.so` in OUT_DIR, where `src/shim.rs` embeds it. The shim
//! is built in release mode whatever the profile of this build: it runs in
//! somebody else's process and must be small and fast.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let injector = manifest.join("../../injector");
    let abi = manifest.join("../rprof-abi");
    for p in [
        injector.join("src"),
        injector.join("Cargo.toml"),
        injector.join("Cargo.lock"),
        abi.join("src"),
        abi.join("Cargo.toml"),
    ] {
        println!("cargo:rerun-if-changed={}", p.display());
    }
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    let target_dir = out.join("injector-target");
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--release", "--manifest-path"])
        .arg(injector.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir);
    // Settings meant for the outer build must not leak into the shim's.
    for var in [
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_PRIMARY_PACKAGE",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd
        .status()
        .expect("cannot run cargo to build the injector shim");
    assert!(status.success(), "building the injector shim failed");
    let built = target_dir.join("release/librprof_injector.so");
    std::fs::copy(&built, out.join("librprof_injector.so")).expect("cannot copy the built shim");
}
