//! `hci-agent`: the node agent that runs on every host.
//!
//! It owns everything on one host that a VM needs (libvirt domains, volumes, images, firmware) and
//! converges the host toward the desired state it is handed, persisting that state so that a restart
//! of the agent or the controller is always safe. It must never make placement decisions, never talk
//! to another host's libvirt itself (a live migration is libvirtd to libvirtd; agents only exchange
//! the target's offer), and never touch a domain or volume it does not own.

pub mod api;
pub mod config;
pub mod controller;
pub mod export;
pub mod firewall;
pub mod hypervisor;
pub mod inventory;
pub mod metrics;
pub mod netns;
pub mod network;
pub mod peers;
pub mod reconciler;
pub mod service;
pub mod store;
pub mod volumes;
