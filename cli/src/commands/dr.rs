//! `hcictl dr`: disaster-recovery failover, drill cleanup and reports.
//!
//! The controller serves these endpoints in a later issue; the CLI already speaks the contract's
//! shape so it works as soon as they exist (until then the controller answers 404, exit 1).

use clap::{Subcommand, ValueEnum};
use serde::Serialize;

use crate::client::Client;
use crate::error::CliError;
use crate::output::Output;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DrMode {
    /// A drill: recover copies into an isolated bubble; production keeps running
    Test,
    /// A planned move: stop, final sync, start at the other site
    Planned,
    /// The primary site is lost: start from the latest recovery point
    Disaster,
}

#[derive(Debug, Subcommand)]
pub enum DrCmd {
    /// Fail a protection group over to this site (or run a drill)
    Failover {
        /// The protection group
        #[arg(long)]
        group: String,
        /// What kind of failover
        #[arg(long, value_enum)]
        mode: DrMode,
        /// Recover from this recovery point (default: the latest)
        #[arg(long, value_name = "ID")]
        recovery_point: Option<String>,
    },
    /// End a test failover and remove what it created
    Cleanup {
        /// The protection group whose test failover ends
        #[arg(long)]
        group: String,
    },
    /// Show a drill's or failover's report: per-VM recovery point, RPO, RTO, checks, outcome
    Report {
        /// The id `dr failover` answered with
        id: String,
    },
}

#[derive(Serialize)]
struct Failover<'a> {
    group: &'a str,
    mode: DrMode,
    #[serde(skip_serializing_if = "Option::is_none")]
    recovery_point: Option<&'a str>,
}

#[derive(Serialize)]
struct Cleanup<'a> {
    group: &'a str,
}

pub fn run(cmd: DrCmd, client: &Client, out: &mut Output) -> Result<(), CliError> {
    let reply = match &cmd {
        DrCmd::Failover { group, mode, recovery_point } => {
            let body = Failover { group, mode: *mode, recovery_point: recovery_point.as_deref() };
            client.post(&["v1", "dr", "failover"], &body)?
        }
        DrCmd::Cleanup { group } => client.post(&["v1", "dr", "cleanup"], &Cleanup { group })?,
        DrCmd::Report { id } => client.get(&["v1", "dr", "reports", id])?,
    };
    out.generic(&reply)
}
