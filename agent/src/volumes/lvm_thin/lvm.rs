//! The LVM command-line tools as this backend uses them: one `lvm` binary with a subcommand, JSON
//! reports in bytes, a fixed C locale, and direct device-node management when udev is not running
//! (containers, minimal hosts), where LVM would otherwise wait for udev to make `/dev/VG/LV`.
//!
//! It only reads reports and runs the commands it is handed; which LVs may be changed is decided by
//! the caller (`lvm_thin.rs`).

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::volumes::command::{self, Failure, Output};

/// LVM commands normally take well under a second; a hung one (a lock held elsewhere) is killed.
const LVM_TIMEOUT: Duration = Duration::from_secs(300);

/// The report fields every [`LvRow`] carries.
const LV_FIELDS: &str = "lv_name,lv_attr,segtype,pool_lv,lv_size,lv_tags,data_percent,metadata_percent,vg_extent_size";

/// One LV of a `lvs` report; values as LVM prints them (sizes in bytes, percentages like `12.34`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct LvRow {
    pub lv_name: String,
    /// `Vwi-aotz--`: [0] type (`V` thin volume, `t` thin pool), [4] state (`a` active), [5] `o` when
    /// open, [7] `z` for a pool that zeroes new blocks, [9] `k` for activation skip.
    pub lv_attr: String,
    pub segtype: String,
    pub pool_lv: String,
    pub lv_size: String,
    pub lv_tags: String,
    pub data_percent: String,
    pub metadata_percent: String,
    pub vg_extent_size: String,
}

#[derive(Deserialize)]
struct Report {
    report: Vec<Section>,
}

#[derive(Deserialize)]
struct Section {
    #[serde(default)]
    lv: Vec<LvRow>,
}

impl LvRow {
    fn attr(&self, index: usize) -> Option<char> {
        self.lv_attr.chars().nth(index)
    }

    pub fn active(&self) -> bool {
        self.attr(4) == Some('a')
    }

    /// Held open by some process (a running VM's QEMU, a mount).
    pub fn open(&self) -> bool {
        self.attr(5) == Some('o')
    }

    /// For a thin pool: new blocks are zeroed before a volume sees them.
    pub fn zeroes_new_blocks(&self) -> bool {
        self.attr(7) == Some('z')
    }

    pub fn has_tag(&self, tag: &str) -> bool {
        self.lv_tags.split(',').any(|t| t == tag)
    }

    pub fn size(&self) -> Result<u64, String> {
        self.lv_size.parse().map_err(|_| format!("LVM reported size {:?} for {}", self.lv_size, self.lv_name))
    }

    pub fn extent_size(&self) -> Result<u64, String> {
        match self.vg_extent_size.parse() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!("LVM reported extent size {:?}", self.vg_extent_size)),
        }
    }

    /// Percentages are empty for an inactive LV.
    fn percent(text: &str) -> Option<f64> {
        text.trim().parse().ok().filter(|p: &f64| p.is_finite() && *p >= 0.0)
    }

    pub fn data_percent(&self) -> Option<f64> {
        Self::percent(&self.data_percent)
    }

    pub fn metadata_percent(&self) -> Option<f64> {
        Self::percent(&self.metadata_percent)
    }

    /// Bytes of `size` that `data_percent` says are used (0 when not known).
    pub fn used_bytes(&self, size: u64) -> u64 {
        self.data_percent().map_or(0, |p| ((size as f64) * p.min(100.0) / 100.0).round() as u64)
    }
}

/// Parses `lvs --reportformat json` output.
pub fn parse_lvs(json: &str) -> Result<Vec<LvRow>, String> {
    let report: Report = serde_json::from_str(json).map_err(|e| format!("unreadable lvs report: {e}"))?;
    Ok(report.report.into_iter().flat_map(|s| s.lv).collect())
}

/// The LVM tools.
#[derive(Debug, Clone)]
pub struct Lvm {
    program: String,
}

impl Lvm {
    /// Finds `lvm` in the sbin directories (a service's PATH may lack them), else on PATH.
    pub fn new() -> Lvm {
        let program = ["/usr/sbin/lvm", "/sbin/lvm"].into_iter().find(|p| Path::new(p).exists()).unwrap_or("lvm");
        Lvm { program: program.to_string() }
    }

    /// Runs `lvm <args>`.
    pub fn run(&self, args: &[String]) -> Result<Output, Failure> {
        let mut env = vec![("LC_ALL", "C"), ("LVM_SUPPRESS_FD_WARNINGS", "1")];
        if !Path::new("/run/udev/control").exists() {
            // No udev to make /dev/VG/LV: libdevmapper and LVM make the nodes themselves.
            env.push(("DM_DISABLE_UDEV", "1"));
        }
        let out = command::run(&self.program, args, &env, LVM_TIMEOUT)?;
        let said = out.stderr.trim();
        if !said.is_empty() {
            // Warnings of a command that succeeded (over-provisioning, autoextend off, ...).
            tracing::debug!(command = %args.join(" "), stderr = %said, "lvm");
        }
        Ok(out)
    }

    /// Whether volume group `vg` exists.
    pub fn vg_exists(&self, vg: &str) -> Result<bool, Failure> {
        let args = ["vgs", "--reportformat", "json", "-o", "vg_name", vg].map(String::from);
        match self.run(&args) {
            Ok(_) => Ok(true),
            Err(e) if e.message.contains(&format!("Volume group \"{vg}\" not found")) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Every visible LV of `vg`.
    pub fn lvs(&self, vg: &str) -> Result<Vec<LvRow>, Failure> {
        let args =
            ["lvs", "--reportformat", "json", "--units", "b", "--nosuffix", "-o", LV_FIELDS, vg].map(String::from);
        let out = self.run(&args)?;
        parse_lvs(&out.stdout).map_err(|message| Failure { command: format!("lvm lvs {vg}"), message, code: None })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_an_lvs_report() {
        let json = r#"{ "report": [ { "lv": [
            {"lv_name":"hci-h-v1", "lv_attr":"Vwi-a-tz--", "segtype":"thin", "pool_lv":"pool", "lv_size":"67108864",
             "lv_tags":"hci-creating,hci-host=h", "data_percent":"25.00", "metadata_percent":"", "vg_extent_size":"4194304"},
            {"lv_name":"pool", "lv_attr":"twi-aotz--", "segtype":"thin-pool", "pool_lv":"", "lv_size":"1610612736",
             "lv_tags":"", "data_percent":"", "metadata_percent":"11.04", "vg_extent_size":"4194304"},
            {"lv_name":"snap", "lv_attr":"Vwi---tz-k", "segtype":"thin", "pool_lv":"pool", "lv_size":"x"}
        ] } ] }"#;
        let rows = parse_lvs(json).expect("parses");
        assert_eq!(rows.len(), 3);
        let v = &rows[0];
        assert!(v.active() && v.has_tag("hci-creating") && v.has_tag("hci-host=h") && !v.has_tag("hci-host"));
        assert!(!v.open() && rows[1].open());
        assert_eq!((v.size(), v.extent_size()), (Ok(64 << 20), Ok(4 << 20)));
        assert_eq!(v.used_bytes(64 << 20), 16 << 20);
        let pool = &rows[1];
        assert!(pool.zeroes_new_blocks() && pool.data_percent().is_none());
        assert_eq!(pool.metadata_percent(), Some(11.04));
        assert_eq!(pool.used_bytes(100), 0);
        let snap = &rows[2];
        assert!(!snap.active() && snap.size().is_err() && snap.extent_size().is_err());
        assert!(parse_lvs("{}").is_err());
    }
}
