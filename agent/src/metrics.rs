//! Prometheus metrics of the agent: reconcile passes (duration, errors), libvirt call latency, and
//! per-VM resource usage.
//!
//! It only counts; it must never change what the agent does.

use prometheus::{Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntGauge, Opts, Registry};

#[derive(Debug, Clone)]
pub struct AgentMetrics {
    registry: Registry,
    pub reconcile_seconds: Histogram,
    pub reconcile_passes: IntCounter,
    pub reconcile_errors: IntCounter,
    pub desired_generation: IntGauge,
    pub converged_generation: IntGauge,
    pub libvirt_seconds: HistogramVec,
    pub vm_cpu_seconds: GaugeVec,
    pub vm_memory_bytes: GaugeVec,
    pub vm_disk_read_bytes: GaugeVec,
    pub vm_disk_write_bytes: GaugeVec,
    /// Zone networks and the firewall (`crate::network`).
    pub network: crate::network::NetworkCounters,
}

fn must<T>(r: Result<T, prometheus::Error>, name: &str) -> T {
    match r {
        Ok(v) => v,
        // Metric names and labels are static; a failure is a programming error caught by the tests.
        Err(e) => unreachable!("metric {name}: {e}"),
    }
}

impl AgentMetrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let buckets = prometheus::exponential_buckets(0.0005, 2.0, 18).unwrap_or_default();
        let reconcile_seconds = must(
            Histogram::with_opts(
                HistogramOpts::new("hci_agent_reconcile_duration_seconds", "Duration of one reconcile pass")
                    .buckets(buckets.clone()),
            ),
            "reconcile_seconds",
        );
        let libvirt_seconds = must(
            HistogramVec::new(
                HistogramOpts::new("hci_agent_libvirt_call_duration_seconds", "Latency of libvirt calls by method")
                    .buckets(buckets),
                &["call"],
            ),
            "libvirt_seconds",
        );
        let vm_gauge = |name: &str, help: &str| must(GaugeVec::new(Opts::new(name, help), &["vm"]), name);
        let metrics = Self {
            reconcile_passes: must(
                IntCounter::new("hci_agent_reconcile_passes_total", "Reconcile passes run"),
                "passes",
            ),
            reconcile_errors: must(
                IntCounter::new("hci_agent_reconcile_errors_total", "Resource errors seen by reconcile passes"),
                "errors",
            ),
            desired_generation: must(
                IntGauge::new("hci_agent_desired_generation", "Desired-state generation held"),
                "dg",
            ),
            converged_generation: must(
                IntGauge::new("hci_agent_converged_generation", "Last generation a pass fully converged to"),
                "cg",
            ),
            vm_cpu_seconds: vm_gauge("hci_vm_cpu_seconds", "CPU time used by the VM"),
            vm_memory_bytes: vm_gauge("hci_vm_memory_bytes", "Memory of the VM"),
            vm_disk_read_bytes: vm_gauge("hci_vm_disk_read_bytes", "Bytes read by the VM from its disks"),
            vm_disk_write_bytes: vm_gauge("hci_vm_disk_write_bytes", "Bytes written by the VM to its disks"),
            network: crate::network::NetworkCounters {
                firewall_drift_events: must(
                    IntCounter::new(
                        "hci_agent_firewall_drift_events_total",
                        "Times table inet hci was found changed by someone else and restored",
                    ),
                    "drift",
                ),
                firewall_full_applies: must(
                    IntCounter::new("hci_agent_firewall_full_applies_total", "Whole-table firewall transactions"),
                    "full",
                ),
                firewall_incremental_applies: must(
                    IntCounter::new(
                        "hci_agent_firewall_incremental_applies_total",
                        "Firewall transactions that only added or removed VM interfaces",
                    ),
                    "incremental",
                ),
                network_steps: must(
                    IntCounter::new(
                        "hci_agent_network_steps_total",
                        "Changes made to devices, routes and sysctls of the zone networks",
                    ),
                    "steps",
                ),
                dhcp_replies: must(
                    IntCounter::new("hci_agent_dhcp_replies_total", "DHCP replies sent to VMs (offers, acks, naks)"),
                    "dhcp",
                ),
            },
            reconcile_seconds,
            libvirt_seconds,
            registry,
        };
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(metrics.reconcile_seconds.clone()),
            Box::new(metrics.reconcile_passes.clone()),
            Box::new(metrics.reconcile_errors.clone()),
            Box::new(metrics.desired_generation.clone()),
            Box::new(metrics.converged_generation.clone()),
            Box::new(metrics.libvirt_seconds.clone()),
            Box::new(metrics.vm_cpu_seconds.clone()),
            Box::new(metrics.vm_memory_bytes.clone()),
            Box::new(metrics.vm_disk_read_bytes.clone()),
            Box::new(metrics.vm_disk_write_bytes.clone()),
            Box::new(metrics.network.firewall_drift_events.clone()),
            Box::new(metrics.network.firewall_full_applies.clone()),
            Box::new(metrics.network.firewall_incremental_applies.clone()),
            Box::new(metrics.network.network_steps.clone()),
            Box::new(metrics.network.dhcp_replies.clone()),
        ];
        for c in collectors {
            must(metrics.registry.register(c), "register");
        }
        metrics
    }

    /// Records a pass's per-VM stats (and forgets VMs no longer reported).
    pub fn record_report(&self, report: &hci_shared::agent::HostReport) {
        for g in [&self.vm_cpu_seconds, &self.vm_memory_bytes, &self.vm_disk_read_bytes, &self.vm_disk_write_bytes] {
            g.reset();
        }
        for vm in &report.vms {
            if let Some(s) = &vm.stats {
                self.vm_cpu_seconds.with_label_values(&[&vm.id]).set(s.cpu_time_ns as f64 / 1e9);
                self.vm_memory_bytes.with_label_values(&[&vm.id]).set(s.memory_kib as f64 * 1024.0);
                self.vm_disk_read_bytes.with_label_values(&[&vm.id]).set(s.disk_read_bytes as f64);
                self.vm_disk_write_bytes.with_label_values(&[&vm.id]).set(s.disk_write_bytes as f64);
            }
        }
        self.desired_generation.set(report.desired_generation as i64);
        if let Some(g) = report.converged_generation {
            self.converged_generation.set(g as i64);
        }
    }

    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        if let Err(e) = prometheus::TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::error!(error = %e, "encoding metrics");
        }
        String::from_utf8_lossy(&buf).into_owned()
    }
}

impl Default for AgentMetrics {
    fn default() -> Self {
        Self::new()
    }
}
