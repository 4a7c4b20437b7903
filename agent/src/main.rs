//! `hci-agent` entry point (being written).

fn main() {}
