//! Firmware profiles: declarative files mapping a profile name (`x86_64-bios`, `x86_64-uefi`, ...) to
//! the domain XML `<os>`/loader/nvram/TPM settings it needs, plus their loader and validator.
//!
//! It exists so that the agent never hard-codes firmware paths. It must never depend on anything but
//! `shared`. The profiles and loader arrive with issue #3; this crate is a placeholder member so the
//! workspace layout is fixed from the start.
