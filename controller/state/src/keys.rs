//! The persistent key layout of the replicated model: one key per record, grouped by prefix.
//!
//! It exists so that `apply` (which writes keys) and `Model::load` (which reads them back) share a
//! single definition of where each record lives. It must never change the meaning of an existing
//! key: stores written by an earlier release have to load unchanged.

/// The site name, written once by `Bootstrap`.
pub const SITE_KEY: &[u8] = b"meta/site";
/// `token/<lowercase hex SHA-256 of the bearer token>` → `TokenRecord`.
pub const TOKEN_PREFIX: &[u8] = b"token/";
/// `tenant/<name>` → `Tenant`.
pub const TENANT_PREFIX: &[u8] = b"tenant/";
/// `zone/<name>` → `Zone`.
pub const ZONE_PREFIX: &[u8] = b"zone/";
/// `policy/<id>` → `ZonePolicy`.
pub const POLICY_PREFIX: &[u8] = b"policy/";
/// `volume/<id>` → `Volume`.
pub const VOLUME_PREFIX: &[u8] = b"volume/";
/// `vm/<id>` → `Vm`.
pub const VM_PREFIX: &[u8] = b"vm/";
/// `host/<id>` → `Host`.
pub const HOST_PREFIX: &[u8] = b"host/";
/// `jointoken/<lowercase hex SHA-256 of the join token>` → `JoinTokenRecord`.
pub const JOIN_TOKEN_PREFIX: &[u8] = b"jointoken/";
/// `hostcred/<lowercase hex SHA-256 of a host's credential>` → `HostCredential`.
pub const HOST_CREDENTIAL_PREFIX: &[u8] = b"hostcred/";
/// `retired/<host id>` → `RetiredOnHost`: shared-pool volumes deleted there, for its agent to remove.
pub const RETIRED_PREFIX: &[u8] = b"retired/";
/// `audit/<index, 20-digit zero-padded decimal>` → `AuditRecord`. Not held in memory.
pub const AUDIT_PREFIX: &[u8] = b"audit/";

/// The key of the audit record of Raft log entry `index`. Zero-padded to the 20 digits of
/// `u64::MAX`, so byte order equals index order and a range scan reads the log in sequence.
pub fn audit_key(index: u64) -> Vec<u8> {
    format!("audit/{index:020}").into_bytes()
}

/// `prefix` followed by `id`.
pub(crate) fn record_key(prefix: &[u8], id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(prefix.len() + id.len());
    key.extend_from_slice(prefix);
    key.extend_from_slice(id.as_bytes());
    key
}

/// Which table a persisted key belongs to, with the record's own key (name or id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyKind<'a> {
    Site,
    Token(&'a str),
    Tenant(&'a str),
    Zone(&'a str),
    Policy(&'a str),
    Volume(&'a str),
    Vm(&'a str),
    Host(&'a str),
    JoinToken(&'a str),
    HostCredential(&'a str),
    Retired(&'a str),
    Audit,
}

/// Builds the `KeyKind` of one table from a record's own key.
type KindOf<'k> = fn(&'k str) -> KeyKind<'k>;

/// Classifies a persisted key; `None` when it is not part of this layout (or not UTF-8).
pub(crate) fn classify<'k>(key: &'k [u8]) -> Option<KeyKind<'k>> {
    if key == SITE_KEY {
        return Some(KeyKind::Site);
    }
    if key.starts_with(AUDIT_PREFIX) {
        return Some(KeyKind::Audit);
    }
    let tables: [(&[u8], KindOf<'k>); 10] = [
        (TOKEN_PREFIX, KeyKind::Token),
        (TENANT_PREFIX, KeyKind::Tenant),
        (ZONE_PREFIX, KeyKind::Zone),
        (POLICY_PREFIX, KeyKind::Policy),
        (VOLUME_PREFIX, KeyKind::Volume),
        (VM_PREFIX, KeyKind::Vm),
        (HOST_PREFIX, KeyKind::Host),
        (JOIN_TOKEN_PREFIX, KeyKind::JoinToken),
        (HOST_CREDENTIAL_PREFIX, KeyKind::HostCredential),
        (RETIRED_PREFIX, KeyKind::Retired),
    ];
    for (prefix, kind) in tables {
        if let Some(rest) = key.strip_prefix(prefix) {
            let id = std::str::from_utf8(rest).ok()?;
            return if id.is_empty() { None } else { Some(kind(id)) };
        }
    }
    None
}

/// A key rendered for an error message.
pub(crate) fn display(key: &[u8]) -> String {
    String::from_utf8_lossy(key).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_keys_sort_by_index() {
        let indexes = [0u64, 1, 9, 10, 99, 100, 12_345, u64::MAX];
        let keys: Vec<Vec<u8>> = indexes.iter().map(|&i| audit_key(i)).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        assert_eq!(audit_key(42), b"audit/00000000000000000042".to_vec());
        assert!(keys.iter().all(|k| k.starts_with(AUDIT_PREFIX)));
    }

    #[test]
    fn classify_round_trips_record_keys() {
        assert_eq!(classify(b"meta/site"), Some(KeyKind::Site));
        assert_eq!(classify(&record_key(TENANT_PREFIX, "finance")), Some(KeyKind::Tenant("finance")));
        assert_eq!(classify(&record_key(VM_PREFIX, "a/b")), Some(KeyKind::Vm("a/b")));
        assert_eq!(classify(&audit_key(7)), Some(KeyKind::Audit));
        assert_eq!(classify(b"hostcred/ab"), Some(KeyKind::HostCredential("ab")));
        assert_eq!(classify(b"host/ab"), Some(KeyKind::Host("ab")));
        assert_eq!(classify(b"jointoken/ab"), Some(KeyKind::JoinToken("ab")));
        assert_eq!(classify(b"vm/"), None);
        assert_eq!(classify(b"other/x"), None);
        assert_eq!(classify(b"vm/\xff"), None);
    }
}
