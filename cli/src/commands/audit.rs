//! `hcictl audit`: who changed what, and whether it was accepted.

use clap::{value_parser, Args};
use hci_shared::resources::AuditRecord;
use reqwest::Method;

use crate::client::{Call, Client};
use crate::error::CliError;
use crate::output::{all, Output};

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only records after this sequence number
    #[arg(long, value_name = "SEQ")]
    pub after: Option<u64>,
    /// At most this many records
    #[arg(long, value_name = "N", value_parser = value_parser!(u32).range(1..))]
    pub limit: Option<u32>,
}

pub fn run(args: AuditArgs, client: &Client, out: &mut Output) -> Result<(), CliError> {
    let mut call = Call::new(Method::GET, &["v1", "audit"]);
    if let Some(after) = args.after {
        call = call.query("after", after);
    }
    if let Some(limit) = args.limit {
        call = call.query("limit", limit);
    }
    out.list::<AuditRecord>(&client.send(call)?, &all)
}
