//! Prometheus metrics of one controller member: Raft progress, apply latency, API traffic, hosts.
//!
//! It exists so operators can alert on leadership churn, lagging members and slow or failing API
//! calls. It only counts; it must never change behaviour.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    pub raft_term: IntGauge,
    pub raft_leader_id: IntGauge,
    pub raft_is_leader: IntGauge,
    pub raft_last_log_index: IntGauge,
    pub raft_commit_index: IntGauge,
    pub raft_applied_index: IntGauge,
    pub raft_snapshot_index: IntGauge,
    pub raft_voters: IntGauge,
    pub apply_seconds: Histogram,
    pub applied_entries: IntCounter,
    pub api_requests: IntCounterVec,
    pub api_seconds: HistogramVec,
    /// Registered hosts by state (ready, maintenance, offline, fenced), set at each scrape.
    pub hosts: IntGaugeVec,
    /// Hosts this member (as leader) fenced, and the VMs it restarted elsewhere or left down.
    pub ha_hosts_fenced: IntCounter,
    pub ha_vms_restarted: IntCounter,
    pub ha_vms_left_down: IntCounter,
    /// VM moves this member (as leader) finished.
    pub moves_finished: IntCounter,
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).unwrap_or_else(|e| unreachable!("metric {name}: {e}"));
    register(registry, Box::new(g.clone()));
    g
}

fn register(registry: &Registry, c: Box<dyn prometheus::core::Collector>) {
    // Names are static and unique in this file; a failure is a programming error caught by tests.
    if let Err(e) = registry.register(c) {
        tracing::error!(error = %e, "metric registration failed");
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let apply_seconds = Histogram::with_opts(
            HistogramOpts::new("hci_raft_apply_duration_seconds", "Time to apply one batch of committed entries")
                .buckets(prometheus::exponential_buckets(0.00005, 2.0, 16).unwrap_or_default()),
        )
        .unwrap_or_else(|e| unreachable!("{e}"));
        register(&registry, Box::new(apply_seconds.clone()));
        let applied_entries =
            IntCounter::new("hci_raft_applied_entries_total", "Log entries applied to the state machine")
                .unwrap_or_else(|e| unreachable!("{e}"));
        register(&registry, Box::new(applied_entries.clone()));
        let api_requests = IntCounterVec::new(
            Opts::new("hci_api_requests_total", "API requests by route, method and status"),
            &["route", "method", "status"],
        )
        .unwrap_or_else(|e| unreachable!("{e}"));
        register(&registry, Box::new(api_requests.clone()));
        let api_seconds = HistogramVec::new(
            HistogramOpts::new("hci_api_request_duration_seconds", "API request latency by route and method")
                .buckets(prometheus::exponential_buckets(0.0001, 2.0, 18).unwrap_or_default()),
            &["route", "method"],
        )
        .unwrap_or_else(|e| unreachable!("{e}"));
        register(&registry, Box::new(api_seconds.clone()));
        let hosts = IntGaugeVec::new(Opts::new("hci_hosts", "Registered hosts by state"), &["state"])
            .unwrap_or_else(|e| unreachable!("{e}"));
        register(&registry, Box::new(hosts.clone()));
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).unwrap_or_else(|e| unreachable!("{e}"));
            register(&registry, Box::new(c.clone()));
            c
        };
        let ha_hosts_fenced = counter("hci_ha_hosts_fenced_total", "Hosts fenced by HA (as leader)");
        let ha_vms_restarted = counter("hci_ha_vms_restarted_total", "HA VMs restarted on another host (as leader)");
        let ha_vms_left_down = counter("hci_ha_vms_left_down_total", "VMs of fenced hosts not restarted (as leader)");
        let moves_finished = counter("hci_vm_moves_finished_total", "VM moves finished (as leader)");
        Self {
            raft_term: gauge(&registry, "hci_raft_term", "Current Raft term"),
            raft_leader_id: gauge(&registry, "hci_raft_leader_id", "Id of the current leader, 0 when unknown"),
            raft_is_leader: gauge(&registry, "hci_raft_is_leader", "1 when this member is the leader"),
            raft_last_log_index: gauge(&registry, "hci_raft_last_log_index", "Index of the last log entry"),
            raft_commit_index: gauge(&registry, "hci_raft_commit_index", "Index of the last committed entry"),
            raft_applied_index: gauge(&registry, "hci_raft_applied_index", "Index of the last applied entry"),
            raft_snapshot_index: gauge(&registry, "hci_raft_snapshot_index", "Last index in the current snapshot"),
            raft_voters: gauge(&registry, "hci_raft_voters", "Number of voting members"),
            apply_seconds,
            applied_entries,
            api_requests,
            api_seconds,
            hosts,
            ha_hosts_fenced,
            ha_vms_restarted,
            ha_vms_left_down,
            moves_finished,
            registry,
        }
    }

    /// Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        if let Err(e) = prometheus::TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::error!(error = %e, "encoding metrics");
        }
        String::from_utf8_lossy(&buf).into_owned()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
