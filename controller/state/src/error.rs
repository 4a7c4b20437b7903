//! Why persisted state could not be turned back into a model.
//!
//! It exists so the store can tell an operator exactly which key is damaged instead of starting
//! with a silently wrong model. It must never be used for refusals of commands: those are
//! `ApiError` values inside a `CommandResponse`, decided identically on every member.

use hci_shared::codec::CodecError;

/// A persisted key/value pair (or the set of them) that does not form a valid model.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("key '{key}': value does not decode: {source}")]
    Decode {
        key: String,
        #[source]
        source: CodecError,
    },
    #[error("key '{key}' is not part of the state machine's key layout")]
    UnknownKey { key: String },
    #[error("key '{key}' holds a record whose own key is '{found}'")]
    KeyMismatch { key: String, found: String },
    #[error("{kind} '{id}' belongs to tenant '{tenant}', which does not exist")]
    MissingTenant { kind: &'static str, id: String, tenant: String },
    #[error("zone '{zone}': cidr '{cidr}' does not parse: {why}")]
    BadCidr { zone: String, cidr: String, why: String },
    #[error("vm '{vm}' nics[{nic}]: '{ip}' is not an IPv4 address")]
    BadIp { vm: String, nic: usize, ip: String },
    #[error("address {ip} in zone '{zone}' is assigned to both vm '{first}' and vm '{second}'")]
    DuplicateIp { zone: String, ip: String, first: String, second: String },
    #[error("mac {mac} is assigned to both vm '{first}' and vm '{second}'")]
    DuplicateMac { mac: String, first: String, second: String },
    #[error("{what} '{name}' is used by both {first} and {second}")]
    DuplicateName { what: &'static str, name: String, first: String, second: String },
}
