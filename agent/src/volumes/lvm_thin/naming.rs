//! The names and tags the LVM-thin backend puts on logical volumes: `hci-<host>-<volume id>`, the
//! ownership tag `hci-host=<host>`, the intent tag `hci-creating`, and LVM's own limits on them.
//!
//! The name prefix alone cannot tell host `a`'s volume `b-c` from host `a-b`'s volume `c` (both are
//! `hci-a-b-c`); the ownership tag can, so an LV counts as ours only with both. It must never accept
//! a name LVM would reject or mangle, nor one whose device-mapper name would not fit.

use super::super::names::{check_volume_id, PREFIX};
use super::super::VolumeError;

/// Tag on every LV this backend creates: which host's agent made it.
pub fn host_tag(host_id: &str) -> String {
    format!("{PREFIX}host={host_id}")
}

/// Tag on an LV from `lvcreate` until its content is complete and durable.
pub const CREATING_TAG: &str = "hci-creating";

/// LVM accepts names of at most 127 bytes (NAME_LEN 128 with the NUL).
const LVM_NAME_MAX: usize = 127;
/// Device-mapper names (`VG-LV`, each `-` doubled) are at most 127 bytes too (DM_NAME_LEN 128).
const DM_NAME_MAX: usize = 127;

/// The LV name of volume `id` on host `host_id`.
pub fn lv_name(host_id: &str, id: &str) -> String {
    format!("{PREFIX}{host_id}-{id}")
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

/// Checks that volume `id` of host `host_id` makes an LV name that fits LVM and device-mapper in `vg`.
pub fn check_fits(vg: &str, host_id: &str, id: &str) -> Result<String, VolumeError> {
    check_volume_id(id)?;
    let name = lv_name(host_id, id);
    let too_long = |what: &str, len: usize, max: usize| VolumeError::Volume {
        volume: id.to_string(),
        action: "checking the volume id",
        message: format!("{what} would be {len} bytes, more than LVM's {max}; use a shorter id"),
    };
    if name.len() > LVM_NAME_MAX {
        return Err(too_long(&format!("the LV name {name}"), name.len(), LVM_NAME_MAX));
    }
    let dm = dm_name(vg, &name);
    if dm.len() > DM_NAME_MAX {
        return Err(too_long(&format!("the device-mapper name {dm}"), dm.len(), DM_NAME_MAX));
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
}
