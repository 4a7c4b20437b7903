//! `hcictl tenant`: departments and their quotas.

use clap::Subcommand;
use hci_shared::api::{TenantCreate, TenantUpdate};
use hci_shared::resources::{Quota, Tenant};
use reqwest::Method;

use crate::client::{Call, Client};
use crate::commands::etag_arg;
use crate::error::CliError;
use crate::output::{all, Output};

#[derive(Debug, Subcommand)]
pub enum TenantCmd {
    /// Create a tenant with its quota
    Create {
        /// The tenant's name (lowercase letters, digits and '-')
        name: String,
        /// Quota: vCPUs
        #[arg(long)]
        vcpus: u32,
        /// Quota: memory in MiB
        #[arg(long)]
        memory_mib: u64,
        /// Quota: disk in GiB
        #[arg(long)]
        disk_gib: u64,
        /// Free text, e.g. the department's full name
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List tenants with usage against quota
    List,
    /// Show one tenant
    Show {
        /// The tenant's name
        name: String,
    },
    /// Change the description and/or quota; quota fields not given keep their current value
    Update {
        /// The tenant's name
        name: String,
        /// New description
        #[arg(long)]
        description: Option<String>,
        /// New quota: vCPUs
        #[arg(long)]
        vcpus: Option<u32>,
        /// New quota: memory in MiB
        #[arg(long)]
        memory_mib: Option<u64>,
        /// New quota: disk in GiB
        #[arg(long)]
        disk_gib: Option<u64>,
        /// Only update if the tenant's ETag is still this (default for a partial quota: the ETag
        /// read to fill in the missing fields)
        #[arg(long, value_name = "ETAG")]
        if_match: Option<String>,
    },
    /// Delete a tenant (it must own nothing)
    Delete {
        /// The tenant's name
        name: String,
        /// Only delete if the tenant's ETag is still this
        #[arg(long, value_name = "ETAG")]
        if_match: Option<String>,
    },
}

pub fn run(cmd: TenantCmd, client: &Client, out: &mut Output) -> Result<(), CliError> {
    match cmd {
        TenantCmd::Create { name, vcpus, memory_mib, disk_gib, description } => {
            let body = TenantCreate { name, description, quota: Quota { vcpus, memory_mib, disk_gib } };
            out.one::<Tenant>(&client.post(&["v1", "tenants"], &body)?, false)
        }
        TenantCmd::List => out.list::<Tenant>(&client.get(&["v1", "tenants"])?, &all),
        TenantCmd::Show { name } => out.one::<Tenant>(&client.get(&["v1", "tenants", &name])?, true),
        TenantCmd::Update { name, description, vcpus, memory_mib, disk_gib, if_match } => {
            let mut if_match = etag_arg(if_match);
            let quota = match (vcpus, memory_mib, disk_gib) {
                (None, None, None) => None,
                (Some(vcpus), Some(memory_mib), Some(disk_gib)) => Some(Quota { vcpus, memory_mib, disk_gib }),
                _ => {
                    // The API replaces the whole quota: fill the missing fields from what is there
                    // now, and make the update conditional on it still being there.
                    let reply = client.get(&["v1", "tenants", &name])?;
                    let current: Tenant = reply.decode()?;
                    if_match = if_match.or(reply.etag.clone());
                    Some(Quota {
                        vcpus: vcpus.unwrap_or(current.quota.vcpus),
                        memory_mib: memory_mib.unwrap_or(current.quota.memory_mib),
                        disk_gib: disk_gib.unwrap_or(current.quota.disk_gib),
                    })
                }
            };
            if description.is_none() && quota.is_none() {
                return Err(CliError::Usage(
                    "nothing to update: give --description, --vcpus, --memory-mib or --disk-gib".into(),
                ));
            }
            let call = Call::new(Method::PUT, &["v1", "tenants", &name])
                .json(&TenantUpdate { description, quota })?
                .if_match(if_match);
            out.one::<Tenant>(&client.send(call)?, false)
        }
        TenantCmd::Delete { name, if_match } => {
            client.delete(&["v1", "tenants", &name], etag_arg(if_match))?;
            out.done(&format!("deleted tenant {name}"))
        }
    }
}
