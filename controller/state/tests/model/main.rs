//! Behaviour tests of `hci-state` through its public interface: one module per resource's rules,
//! plus persistence and property tests. Every step run through `Harness` also checks the audit
//! record, that a refusal changed nothing, and that `Model::load` of the writes equals the model.

mod cluster;
mod ha;
mod hosts;
mod moves;
mod networks;
mod persistence;
mod placement;
mod policies;
mod properties;
mod support;
mod tenants;
mod vms;
mod volumes;
mod zones;
