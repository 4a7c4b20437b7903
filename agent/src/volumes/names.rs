//! Names the storage layer puts on disk: volume ids, snapshot names, image names, and the `hci-`
//! prefix that marks a file or volume as ours.
//!
//! Every id that ends up in a file name is checked here first, so that no request can reach outside
//! its directory (`../x`, `/etc/x`) or collide with a name hci does not own. It must never accept a
//! name that is not a plain, single path component.

use super::VolumeError;

/// The prefix of every volume (and pool) hci creates; anything without it is never touched.
pub const PREFIX: &str = "hci-";

/// The longest id accepted (file names stay well under the 255-byte limit).
const MAX_LEN: usize = 128;

/// Checks that `name` is a plain name: 1..=128 of `[A-Za-z0-9._-]`, not starting with `.` or `-`.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_LEN {
        return Err(format!("must be 1 to {MAX_LEN} characters long"));
    }
    if name.starts_with('.') || name.starts_with('-') {
        return Err("must not start with '.' or '-'".into());
    }
    match name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))) {
        Some(c) => Err(format!("contains {c:?}; only letters, digits, '.', '_' and '-' are allowed")),
        None => Ok(()),
    }
}

/// Checks a volume id before it becomes part of a file or volume name.
pub fn check_volume_id(id: &str) -> Result<(), VolumeError> {
    check_name(id).map_err(|message| VolumeError::Volume {
        volume: id.to_string(),
        action: "checking the volume id",
        message,
    })
}

/// Checks volume `id` and its snapshot name `snapshot` (the same rule as ids; neither can hold the
/// `@`, `+` or `/` that backends put between them). The error names the field.
pub fn check_snapshot_name(id: &str, snapshot: &str) -> Result<(), VolumeError> {
    check_volume_id(id)?;
    check_name(snapshot).map_err(|message| VolumeError::Snapshot {
        volume: id.to_string(),
        snapshot: snapshot.to_string(),
        action: "checking the snapshot name",
        message: format!("snapshot name {snapshot:?} {message}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_pass_and_paths_do_not() {
        for ok in ["a", "vm-1.disk0", "A_b-c.9"] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "../x", "a/b", "-x", ".hidden", "a b", "é", &"x".repeat(129)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn snapshot_names_are_checked_and_the_error_names_the_field() {
        assert!(check_snapshot_name("v1", "before-upgrade.2").is_ok());
        for bad in ["", "a@b", "a+b", "../x", "a:b", "-x"] {
            let err = check_snapshot_name("v1", bad).expect_err(bad).to_string();
            assert!(err.contains("snapshot name") && err.contains("volume v1"), "{err}");
        }
        assert!(check_snapshot_name("../v", "s").expect_err("bad id").to_string().contains("volume id"));
    }
}
