//! Finds the workspace binaries under test.
//!
//! Integration tests of one package do not get the binaries of other packages built for them, so the
//! harness looks next to its own test executable (target/debug/deps/x → target/debug), or in
//! `HCI_BIN_DIR`, and says how to build them when they are missing instead of failing obscurely.

use std::path::PathBuf;

/// The directory holding `hci-controller` and `hcictl`.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("HCI_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("current_exe");
    // target/debug/deps/<test>-<hash> → target/debug
    exe.parent()
        .and_then(|deps| deps.parent())
        .map(PathBuf::from)
        .expect("test executable has no grandparent directory")
}

/// Path of a workspace binary; panics with a build hint when it is missing.
pub fn bin(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    if !path.is_file() {
        panic!(
            "{} not found: run `cargo build --workspace --bins` first (or set HCI_BIN_DIR to the directory holding it)",
            path.display()
        );
    }
    path
}

pub fn controller() -> PathBuf {
    bin("hci-controller")
}

pub fn hcictl() -> PathBuf {
    bin("hcictl")
}
