//! Behaviour tests of `hci-placement` through its public interface: the rules one by one with small
//! hand-made clusters (`rules`, `moves`), and property tests over random clusters and request
//! streams (`properties`).

mod moves;
mod properties;
mod rules;
mod support;
