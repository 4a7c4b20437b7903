//! Turning what an operator typed (an id, or a name) into the id the API wants.
//!
//! Volumes, VMs, hosts and zone policies are addressed by server-assigned ids, which nobody
//! remembers; names are unique only within a tenant. So the CLI accepts either and resolves names
//! through the list endpoint, refusing (exit 1) when a name is ambiguous across tenants.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::client::Client;
use crate::error::CliError;

/// What is being resolved: its kind (for messages) and its collection path.
#[derive(Debug, Clone, Copy)]
pub struct Kind {
    pub noun: &'static str,
    pub collection: &'static str,
}

pub const VOLUME: Kind = Kind { noun: "volume", collection: "volumes" };
pub const VM: Kind = Kind { noun: "vm", collection: "vms" };
pub const HOST: Kind = Kind { noun: "host", collection: "hosts" };
pub const ZONE_POLICY: Kind = Kind { noun: "zone policy", collection: "zone-policies" };

/// The id of the `kind` whose id or name is `key` (within `tenant` when given).
pub fn resolve(client: &Client, kind: Kind, key: &str, tenant: Option<&str>) -> Result<String, CliError> {
    let reply = client.get(&["v1", kind.collection])?;
    let value = reply.value()?;
    let items = value
        .get("items")
        .and_then(Value::as_array)
        .ok_or_else(|| CliError::BadResponse { url: reply.url.clone(), why: "no \"items\" list".into() })?;
    pick(items, kind, key, tenant)
}

fn field<'v>(item: &'v Value, name: &str) -> Option<&'v str> {
    item.get(name).and_then(Value::as_str)
}

/// The resolution rule, on an already fetched list: an exact id wins, then a unique name.
pub fn pick(items: &[Value], kind: Kind, key: &str, tenant: Option<&str>) -> Result<String, CliError> {
    let in_tenant = |item: &&Value| match tenant {
        None => true,
        Some(t) => field(item, "tenant") == Some(t),
    };
    let candidates: Vec<&Value> = items.iter().filter(in_tenant).filter(|i| field(i, "id").is_some()).collect();
    if let Some(id) = candidates.iter().filter_map(|i| field(i, "id")).find(|id| *id == key) {
        return Ok(id.to_string());
    }
    let named: Vec<&Value> = candidates.into_iter().filter(|i| field(i, "name") == Some(key)).collect();
    let ids: Vec<&str> = named.iter().filter_map(|i| field(i, "id")).collect();
    match ids.as_slice() {
        [id] => Ok((*id).to_string()),
        [] => {
            let scope = tenant.map(|t| format!(" in tenant '{t}'")).unwrap_or_default();
            Err(CliError::refused("not_found", format!("{} '{key}' does not exist{scope}", kind.noun)))
        }
        _ => {
            let tenants: BTreeSet<&str> = named.iter().filter_map(|i| field(i, "tenant")).collect();
            let message = if tenants.len() > 1 {
                let list: Vec<&str> = tenants.into_iter().collect();
                format!("{} name '{key}' exists in tenants {}: give --tenant or the id", kind.noun, list.join(", "))
            } else {
                format!("{} name '{key}' matches ids {}: give the id", kind.noun, ids.join(", "))
            };
            Err(CliError::refused("ambiguous", message))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn items() -> Vec<Value> {
        vec![
            json!({"id": "v-1", "name": "data", "tenant": "finance"}),
            json!({"id": "v-2", "name": "data", "tenant": "health"}),
            json!({"id": "v-3", "name": "logs", "tenant": "health"}),
            json!({"name": "broken"}),
        ]
    }

    #[test]
    fn ids_and_unique_names_resolve() {
        assert_eq!(pick(&items(), VOLUME, "v-2", None).expect("id"), "v-2");
        assert_eq!(pick(&items(), VOLUME, "logs", None).expect("name"), "v-3");
        assert_eq!(pick(&items(), VOLUME, "data", Some("health")).expect("scoped"), "v-2");
    }

    #[test]
    fn ambiguous_and_missing_names_are_refused() {
        let err = pick(&items(), VOLUME, "data", None).expect_err("ambiguous");
        assert_eq!(err.exit_code(), 1);
        assert_eq!(
            err.to_string(),
            "ambiguous: volume name 'data' exists in tenants finance, health: give --tenant or the id"
        );
        let err = pick(&items(), VM, "nope", Some("health")).expect_err("missing");
        assert_eq!(err.to_string(), "not_found: vm 'nope' does not exist in tenant 'health'");
        assert!(pick(&items(), VOLUME, "logs", Some("finance")).is_err());
        assert!(pick(&items(), VOLUME, "broken", None).is_err());

        let twins = vec![json!({"id": "a", "name": "x"}), json!({"id": "b", "name": "x"})];
        let err = pick(&twins, HOST, "x", None).expect_err("twins");
        assert_eq!(err.to_string(), "ambiguous: host name 'x' matches ids a, b: give the id");
    }
}
