//! The names and tags the LVM-thin backend puts on logical volumes: `hci-<host>-<volume id>`, its
//! snapshots `hci-<host>-<volume id>+<snapshot>` and rollback LVs `hci-<host>-<volume id>++new|old`,
//! the ownership tag `hci-host=<host>`, the intent tag `hci-creating`, the order tag `hci-seq=<n>` of
//! a snapshot, and LVM's own limits on them.
//!
//! `+` is valid in LVM names but never in a volume id or snapshot name, so a snapshot's LV is never
//! taken for a volume's, nor a rollback LV for a snapshot's.
//!
//! The name prefix alone cannot tell host `a`'s volume `b-c` from host `a-b`'s volume `c` (both are
//! `hci-a-b-c`); the ownership tag can, so an LV counts as ours only with both. It must never accept
//! a name LVM would reject or mangle, nor one whose device-mapper name would not fit.

use super::super::names::{check_name, check_snapshot_name, check_volume_id, PREFIX};
use super::super::VolumeError;

/// Tag on every LV this backend creates: which host's agent made it.
pub fn host_tag(host_id: &str) -> String {
    format!("{PREFIX}host={host_id}")
}

/// Tag on an LV from `lvcreate` until its content is complete and durable.
pub const CREATING_TAG: &str = "hci-creating";

/// Tag prefix on a snapshot LV: `hci-seq=<n>`, its place among its volume's snapshots.
pub const SEQ_TAG: &str = "hci-seq=";

/// LVM accepts names of at most 127 bytes (NAME_LEN 128 with the NUL).
const LVM_NAME_MAX: usize = 127;
/// Device-mapper names (`VG-LV`, each `-` doubled) are at most 127 bytes too (DM_NAME_LEN 128).
const DM_NAME_MAX: usize = 127;

/// The LV name of volume `id` on host `host_id`.
pub fn lv_name(host_id: &str, id: &str) -> String {
    format!("{PREFIX}{host_id}-{id}")
}

/// The LV name of snapshot `snapshot` of volume `id` on host `host_id`.
pub fn snapshot_lv(host_id: &str, id: &str, snapshot: &str) -> String {
    format!("{}+{snapshot}", lv_name(host_id, id))
}

/// The LVs a rollback of volume `id` goes through: the snapshot's copy that becomes the volume, and
/// the volume it replaces.
pub fn rollback_lvs(host_id: &str, id: &str) -> [String; 2] {
    let volume = lv_name(host_id, id);
    [format!("{volume}++new"), format!("{volume}++old")]
}

/// The snapshot name in LV `lv_name` when it is a snapshot of volume `id` of this host.
pub fn snapshot_name<'a>(host_id: &str, id: &str, lv_name: &'a str) -> Option<&'a str> {
    let snapshot = lv_name.strip_prefix(&self::lv_name(host_id, id))?.strip_prefix('+')?;
    check_name(snapshot).ok().map(|()| snapshot)
}

/// Whether LV `lv_name` belongs to volume `id` of this host without being the volume: one of its
/// snapshots or rollback LVs, deleted with the volume.
pub fn is_dependent(host_id: &str, id: &str, lv_name: &str) -> bool {
    lv_name.strip_prefix(&self::lv_name(host_id, id)).is_some_and(|rest| rest.starts_with('+'))
}

/// The volume id in an LV name of this host; `None` for names this host did not give.
pub fn volume_id<'a>(host_id: &str, lv_name: &'a str) -> Option<&'a str> {
    let id = lv_name.strip_prefix(PREFIX)?.strip_prefix(host_id)?.strip_prefix('-')?;
    check_volume_id(id).ok().map(|()| id)
}

/// Checks a VG or LV name given by configuration: LVM's `[A-Za-z0-9+_.-]`, not starting with `-`,
/// not `.` or `..`, at most 127 bytes.
pub fn check_lvm_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > LVM_NAME_MAX {
        return Err(format!("must be 1 to {LVM_NAME_MAX} characters long"));
    }
    if name.starts_with('-') || name == "." || name == ".." {
        return Err("must not start with '-' nor be '.' or '..'".into());
    }
    match name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '_' | '.' | '-'))) {
        Some(c) => Err(format!("contains {c:?}; LVM names allow only letters, digits, '+', '_', '.' and '-'")),
        None => Ok(()),
    }
}

/// The device-mapper name LVM gives `vg/lv`.
fn dm_name(vg: &str, lv: &str) -> String {
    format!("{}-{}", vg.replace('-', "--"), lv.replace('-', "--"))
}

/// Checks that LV `name` fits LVM and device-mapper in `vg`.
fn fits(vg: &str, name: &str) -> Result<(), String> {
    let too_long = |what: String, len: usize, max: usize| {
        Err(format!("{what} would be {len} bytes, more than LVM's {max}; use a shorter id or name"))
    };
    if name.len() > LVM_NAME_MAX {
        return too_long(format!("the LV name {name}"), name.len(), LVM_NAME_MAX);
    }
    let dm = dm_name(vg, name);
    if dm.len() > DM_NAME_MAX {
        return too_long(format!("the device-mapper name {dm}"), dm.len(), DM_NAME_MAX);
    }
    Ok(())
}

/// Checks that volume `id` of host `host_id` makes an LV name that fits LVM and device-mapper in `vg`.
pub fn check_fits(vg: &str, host_id: &str, id: &str) -> Result<String, VolumeError> {
    check_volume_id(id)?;
    let name = lv_name(host_id, id);
    fits(vg, &name).map_err(|message| VolumeError::Volume {
        volume: id.to_string(),
        action: "checking the volume id",
        message,
    })?;
    Ok(name)
}

/// Checks the names and that every LV a snapshot of volume `id` may need (the snapshot's, the
/// rollback LVs) fits; returns the snapshot's LV name.
pub fn check_snapshot_fits(vg: &str, host_id: &str, id: &str, snapshot: &str) -> Result<String, VolumeError> {
    check_snapshot_name(id, snapshot)?;
    let name = snapshot_lv(host_id, id, snapshot);
    for lv in std::iter::once(&name).chain(&rollback_lvs(host_id, id)) {
        fits(vg, lv).map_err(|message| VolumeError::Snapshot {
            volume: id.to_string(),
            snapshot: snapshot.to_string(),
            action: "checking the snapshot name",
            message,
        })?;
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_this_host_only() {
        assert_eq!(lv_name("h1", "v-1.a"), "hci-h1-v-1.a");
        assert_eq!(volume_id("h1", "hci-h1-v-1.a"), Some("v-1.a"));
        for foreign in ["hci-h2-v", "h1-v", "hci-h1-", "hci-h1v", "hci-h1--x", "pool", "hci-h1-.x"] {
            assert_eq!(volume_id("h1", foreign), None, "{foreign}");
        }
        // The prefix alone is ambiguous; the host tag settles it (see the module header).
        assert_eq!(volume_id("a", "hci-a-b-c"), Some("b-c"));
        assert_eq!(host_tag("a-b"), "hci-host=a-b");
    }

    #[test]
    fn lvm_names_and_limits() {
        for ok in ["vg0", "data+x", "a_b.c-d", "pool"] {
            assert!(check_lvm_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-vg", ".", "..", "a/b", "a b", "é", &"x".repeat(128)] {
            assert!(check_lvm_name(bad).is_err(), "{bad}");
        }
        assert_eq!(dm_name("hci-t", "hci-h-v1"), "hci--t-hci--h--v1");
        assert_eq!(check_fits("vg", "h", "v1").expect("fits"), "hci-h-v1");
        assert!(check_fits("vg", "h", "../x").is_err());
        assert!(check_fits("vg", "h", &"x".repeat(123)).is_err(), "LV name over 127");
        assert!(check_fits("vg", "h", &"x".repeat(100)).is_ok());
        // Fits LVM, but the doubled dashes make the device-mapper name too long.
        let err = check_fits("vg", "h", &"x-".repeat(60)).expect_err("dm name too long");
        assert!(err.to_string().contains("device-mapper"), "{err}");
    }

    #[test]
    fn snapshot_and_rollback_lvs_of_a_volume() {
        assert_eq!(snapshot_lv("h", "v", "s1"), "hci-h-v+s1");
        assert_eq!(rollback_lvs("h", "v"), ["hci-h-v++new", "hci-h-v++old"]);
        assert_eq!(snapshot_name("h", "v", "hci-h-v+s1"), Some("s1"));
        for other in ["hci-h-v", "hci-h-v++new", "hci-h-v+", "hci-h-vv+s1", "hci-h-w+s1"] {
            assert_eq!(snapshot_name("h", "v", other), None, "{other}");
        }
        assert!(is_dependent("h", "v", "hci-h-v+s1") && is_dependent("h", "v", "hci-h-v++old"));
        assert!(!is_dependent("h", "v", "hci-h-v") && !is_dependent("h", "v", "hci-h-v2+s1"));
        // Neither a snapshot nor a rollback LV is a volume.
        assert_eq!(volume_id("h", "hci-h-v+s1"), None);
        assert_eq!(volume_id("h", "hci-h-v++new"), None);
        assert_eq!(check_snapshot_fits("vg", "h", "v", "s1").expect("fits"), "hci-h-v+s1");
        let err = check_snapshot_fits("vg", "h", "v", "a/b").expect_err("bad name").to_string();
        assert!(err.contains("snapshot name"), "{err}");
        let err = check_snapshot_fits("vg", "h", &"x".repeat(100), &"s".repeat(30)).expect_err("too long").to_string();
        assert!(err.contains("snapshot") && err.contains("LV name"), "{err}");
    }
}
