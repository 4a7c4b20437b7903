//! The verbs: one module per resource, each holding its clap subcommands and the requests they make.
//!
//! This file wires the parsed command line to a client and an output, and holds the small pieces
//! several verbs share (an id-or-name argument, ETag normalisation).

pub mod audit;
pub mod cluster;
pub mod dr;
pub mod host;
pub mod tenant;
pub mod vm;
pub mod volume;
pub mod zone;
pub mod zone_policy;

use std::io::Write;
use std::time::Duration;

use clap::Args;

use crate::args::{Cli, Command, Global};
use crate::client::{Client, ClientConfig};
use crate::config::{parse_urls, resolve_token};
use crate::error::CliError;
use crate::output::Output;

/// Runs one parsed command line, writing results to `w`.
pub fn run(cli: Cli, w: &mut dyn Write) -> Result<(), CliError> {
    let client = connect(&cli.global)?;
    let mut out = Output::new(cli.global.output, w);
    let out = &mut out;
    match cli.command {
        Command::Cluster(cmd) => cluster::run(cmd, &client, out),
        Command::Tenant(cmd) => tenant::run(cmd, &client, out),
        Command::Zone(cmd) => zone::run(cmd, &client, out),
        Command::ZonePolicy(cmd) => zone_policy::run(cmd, &client, out),
        Command::Volume(cmd) => volume::run(cmd, &client, out),
        Command::Vm(cmd) => vm::run(cmd, &client, out),
        Command::Host(cmd) => host::run(cmd, &client, out),
        Command::Audit(args) => audit::run(args, &client, out),
        Command::Dr(cmd) => dr::run(cmd, &client, out),
    }
}

fn connect(global: &Global) -> Result<Client, CliError> {
    let urls = parse_urls(global.url.as_deref().unwrap_or(""))?;
    let token = resolve_token(global.token.clone(), global.token_file.as_deref(), std::env::var("HCI_TOKEN").ok())?;
    Client::new(ClientConfig { urls, token, stale: global.stale, timeout: Duration::from_secs(global.timeout) })
}

/// A volume or VM named by id or by name.
#[derive(Debug, Clone, Args)]
pub struct Target {
    /// The id, or the name (unique within a tenant)
    #[arg(value_name = "ID|NAME")]
    pub id: String,
    /// Look the name up in this tenant only (needed when the name exists in several)
    #[arg(long)]
    pub tenant: Option<String>,
}

/// An `If-Match` value as HTTP wants it: `7` becomes `"7"`; quoted and weak tags pass unchanged.
pub fn etag_arg(value: Option<String>) -> Option<String> {
    value.map(|v| {
        let v = v.trim().to_string();
        if v.starts_with('"') || v.starts_with("W/") || v == "*" {
            v
        } else {
            format!("\"{v}\"")
        }
    })
}

/// How to name a resolved resource in a message: `web (vm-123)`, or just the id when given one.
pub fn label(key: &str, id: &str) -> String {
    if key == id {
        id.to_string()
    } else {
        format!("{key} ({id})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_are_quoted() {
        assert_eq!(etag_arg(Some("7".into())).as_deref(), Some("\"7\""));
        assert_eq!(etag_arg(Some("\"7\"".into())).as_deref(), Some("\"7\""));
        assert_eq!(etag_arg(Some("W/\"7\"".into())).as_deref(), Some("W/\"7\""));
        assert_eq!(etag_arg(None), None);
    }
}
