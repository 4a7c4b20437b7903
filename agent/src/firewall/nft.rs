//! The real [`Firewall`]: the `nftables` crate's JSON objects handed to nftables, through a
//! long-lived libnftables session ([`super::libnft`]) or, where that library cannot be loaded, one
//! `nft -j` process per call.
//!
//! Either way every apply is one netlink batch that the kernel commits as a whole or not at all;
//! killing the agent (or an nft it started) mid-way leaves the table as it was or as it was meant
//! to be. It exists apart from the generator so that tests and the benchmark can point it into a
//! network namespace.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;

use nftables::schema::Nftables;

use super::libnft::NftSession;
use super::ruleset::TABLE;
use super::{Firewall, FirewallError};

/// How commands reach nftables.
#[derive(Debug, Clone)]
enum Transport {
    /// One libnftables context, its netlink socket open as long as the firewall lives.
    Session(Arc<NftSession>),
    /// A process per call: the program and the arguments before nft's own (e.g. `ip netns exec NS nft`).
    Process { program: String, prefix: Vec<String> },
}

#[derive(Debug, Clone)]
pub struct NftFirewall {
    transport: Transport,
}

impl NftFirewall {
    /// This network namespace's nftables: a libnftables session, or `nft` processes when the
    /// library cannot be loaded (logged).
    pub fn host() -> Self {
        Self::session_or_process(None)
    }

    /// The nftables of network namespace `netns` (`ip netns`), the same way as [`NftFirewall::host`].
    pub fn in_netns(netns: &str) -> Self {
        Self::session_or_process(Some(netns))
    }

    /// Always one `nft` process per call (in `netns` through `ip netns exec`): what the agent did
    /// before the session, kept as the fallback and for the benchmark's comparison.
    pub fn process(netns: Option<&str>) -> Self {
        let transport = match netns {
            None => Transport::Process { program: "nft".into(), prefix: Vec::new() },
            Some(ns) => Transport::Process {
                program: "ip".into(),
                prefix: vec!["netns".into(), "exec".into(), ns.into(), "nft".into()],
            },
        };
        NftFirewall { transport }
    }

    fn session_or_process(netns: Option<&str>) -> Self {
        match NftSession::open(netns) {
            Ok(session) => NftFirewall { transport: Transport::Session(Arc::new(session)) },
            Err(e) => {
                tracing::warn!(error = %e, "no libnftables session; running one nft process per firewall change");
                Self::process(netns)
            }
        }
    }

    /// `libnftables session` or `nft processes`: for logs and the benchmark's report.
    pub fn transport(&self) -> &'static str {
        match self.transport {
            Transport::Session(_) => "libnftables session",
            Transport::Process { .. } => "nft processes",
        }
    }

    /// Runs `args` (nft's arguments, JSON output) with `input` on stdin: nft's stdout, or its stderr.
    fn run_process(program: &str, prefix: &[String], args: &[&str], input: &[u8]) -> Result<Vec<u8>, String> {
        let mut child = Command::new(program)
            .args(prefix)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("running {program}: {e}"))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(input).map_err(|e| format!("writing to nft: {e}"))?;
        }
        let output = child.wait_with_output().map_err(|e| format!("waiting for nft: {e}"))?;
        if !output.status.success() {
            return Err(format!("{}: {}", output.status, String::from_utf8_lossy(&output.stderr).trim()));
        }
        Ok(output.stdout)
    }

    /// One batch, one transaction.
    fn apply(&self, what: &'static str, batch: &Nftables<'static>) -> Result<(), FirewallError> {
        let fail = |message: String| FirewallError::Apply { what, message };
        let payload = serde_json::to_string(batch).map_err(|e| fail(format!("serializing: {e}")))?;
        match &self.transport {
            Transport::Session(session) => session.run(payload).map(drop).map_err(fail),
            Transport::Process { program, prefix } => {
                Self::run_process(program, prefix, &["-j", "-f", "-"], payload.as_bytes()).map(drop).map_err(fail)
            }
        }
    }
}

impl Firewall for NftFirewall {
    fn apply_full(&self, table: &Nftables<'static>) -> Result<(), FirewallError> {
        self.apply("the full table", table)
    }

    fn apply_changes(&self, changes: &Nftables<'static>) -> Result<(), FirewallError> {
        self.apply("interface changes", changes)
    }

    fn list(&self) -> Result<Option<serde_json::Value>, FirewallError> {
        let listed = match &self.transport {
            Transport::Session(session) => session.run(format!("list table inet {TABLE}")).map(String::into_bytes),
            Transport::Process { program, prefix } => {
                Self::run_process(program, prefix, &["-j", "list", "table", "inet", TABLE], b"")
            }
        };
        match listed {
            Ok(json) => serde_json::from_slice(&json)
                .map(Some)
                .map_err(|e| FirewallError::List(format!("parsing nft's JSON: {e}"))),
            Err(message) if message.contains("No such file or directory") => Ok(None),
            Err(message) => Err(FirewallError::List(message)),
        }
    }
}
