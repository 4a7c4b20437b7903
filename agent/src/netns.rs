//! Entering a network namespace from one thread. It exists because two parts of the agent make
//! kernel handles that belong to the namespace of the thread that made them (the DHCP server's
//! sockets, the firewall's libnftables session), and tests and benchmarks point both into `ip netns`
//! namespaces. Only the calling thread moves; the rest of the process stays where it is.

use std::path::{Path, PathBuf};

/// `/run/netns/<name>`, where `ip netns` keeps namespace `name`.
pub fn path_of(name: &str) -> PathBuf {
    Path::new("/run/netns").join(name)
}

/// Moves the calling thread into the network namespace at `path`.
pub fn enter(path: &Path) -> std::io::Result<()> {
    let namespace = std::fs::File::open(path)?;
    nix::sched::setns(namespace, nix::sched::CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)
}
