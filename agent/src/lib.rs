//! `hci-agent`: the node agent that runs on every host.
//!
//! It exists to own everything on one host that a VM needs (libvirt domains, volumes, nftables zones)
//! and to converge that host toward the desired state the controller hands it, so that either side can
//! restart at any moment. It must never make placement decisions or talk to another host's libvirt.
//!
//! Nothing is implemented here yet: the crate is a workspace member so that its dependency rules
//! (`shared` and `firmware-profiles` only, never `controller`) hold from the first commit. The agent
//! arrives with issue #3.
