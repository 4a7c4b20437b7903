//! The files of disk-only external snapshots, arranged so that a volume's file (`hci-<id>.qcow2` of
//! the dir-qcow2 pool, or any qcow2 disk file) always stays the **active image** under its own name.
//!
//! Snapshot `s` of disk file `F`: `F` is hard-linked as `F.snap-s` (the content at snapshot time,
//! from then on never written), and a new, empty qcow2 overlay over `F.snap-s` takes the name `F`
//! (written as `F.snap-s.tmp`, synced, renamed over `F`). A running QEMU keeps writing to the old
//! inode (now `F.snap-s`) until libvirt switches it to the new `F` (`REUSE_EXT` snapshot), so `F`
//! reads the current data at every moment, even if the agent dies in between. Later snapshots stack:
//! `F → F.snap-t → F.snap-s → (the volume's image)`. Reverting to `s` renames `F.snap-s` over `F`
//! and deletes every `F.snap-*` file the new chain no longer uses (the later snapshots and the
//! writes since). So the domain definition (`render(spec)`), the pool's listing and capacity, clones
//! and resizes all keep working on `F`; the `F.snap-*` files are part of the volume and must be
//! deleted with it ([`layer_files`]).
//!
//! It exists to keep these file steps resumable and checkable apart from libvirt. It must never
//! touch a file that is not `F` or named `F.snap-<name>[.tmp]`, and never delete a file that `F`'s
//! backing chain still uses.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::qcow2;

const INFIX: &str = ".snap-";
const TEMP_SUFFIX: &str = ".tmp";
/// Deeper chains are not followed (QEMU's own limit is far lower in practice).
const MAX_CHAIN: usize = 64;

/// A snapshot name: 1 to 64 of `A-Z a-z 0-9 _ -` (it becomes part of file names).
pub fn check_snapshot_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!("snapshot name '{name}' must be 1 to 64 of A-Z a-z 0-9 _ -"))
    }
}

/// `F.snap-<snapshot>`: what `file` held when snapshot `snapshot` was taken.
pub fn layer_path(file: &Path, snapshot: &str) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(format!("{INFIX}{snapshot}"));
    PathBuf::from(name)
}

fn temp_path(file: &Path, snapshot: &str) -> PathBuf {
    let mut name = layer_path(file, snapshot).into_os_string();
    name.push(TEMP_SUFFIX);
    PathBuf::from(name)
}

fn other(message: String) -> io::Error {
    io::Error::other(message)
}

fn same_file(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    a.dev() == b.dev() && a.ino() == b.ino()
}

fn exists(path: &Path) -> io::Result<Option<std::fs::Metadata>> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) => Ok(Some(meta)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn sync_dir_of(file: &Path) -> io::Result<()> {
    let dir = file.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::File::open(dir)?.sync_all()
}

/// The backing file of `file` as a path (relative names resolved against `file`'s directory);
/// `None` for a file without one or that is not qcow2.
fn backing_of(file: &Path) -> io::Result<Option<PathBuf>> {
    let Some(header) = qcow2::read_header(file)? else { return Ok(None) };
    Ok(header.backing_file.map(|name| match file.parent() {
        Some(dir) if Path::new(&name).is_relative() => dir.join(name),
        _ => PathBuf::from(name),
    }))
}

/// The files below `file` in its backing chain, nearest first; stops at a missing file.
pub fn backing_chain(file: &Path) -> io::Result<Vec<PathBuf>> {
    let mut chain: Vec<PathBuf> = Vec::new();
    let mut current = file.to_path_buf();
    while let Some(next) = backing_of(&current)? {
        if chain.len() >= MAX_CHAIN || next == file || chain.contains(&next) {
            return Err(other(format!("{}: backing chain deeper than {MAX_CHAIN} or looping", file.display())));
        }
        chain.push(next.clone());
        if exists(&next)?.is_none() {
            break;
        }
        current = next;
    }
    Ok(chain)
}

/// Every snapshot file of `file` in its directory (`F.snap-<name>`, and `F.snap-<name>.tmp` left by
/// an interrupted snapshot), sorted: what has to be deleted together with the volume file `F`.
pub fn layer_files(file: &Path) -> io::Result<Vec<PathBuf>> {
    let (Some(dir), Some(base)) = (file.parent(), file.file_name().and_then(|n| n.to_str())) else {
        return Ok(Vec::new());
    };
    let prefix = format!("{base}{INFIX}");
    let entries = match std::fs::read_dir(if dir.as_os_str().is_empty() { Path::new(".") } else { dir }) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry?;
        let Some(name) = entry.file_name().to_str().map(str::to_string) else { continue };
        let Some(rest) = name.strip_prefix(&prefix) else { continue };
        if check_snapshot_name(rest.strip_suffix(TEMP_SUFFIX).unwrap_or(rest)).is_ok() {
            out.push(dir.join(name));
        }
    }
    out.sort();
    Ok(out)
}

/// Snapshot step 1 for one disk file: after it, `file` is an empty overlay over
/// `F.snap-<snapshot>`, which holds (or is, for a running QEMU) what `file` held. Resumes an
/// interrupted earlier call; refuses when `F.snap-<snapshot>` is something else.
pub fn push_layer(file: &Path, snapshot: &str) -> io::Result<()> {
    let layer = layer_path(file, snapshot);
    let current = std::fs::metadata(file)?;
    match exists(&layer)? {
        None => {
            if qcow2::read_header(file)?.is_none() {
                return Err(other(format!("{} is not a qcow2 image", file.display())));
            }
            std::fs::hard_link(file, &layer)?
        }
        Some(meta) if same_file(&meta, &current) => {}
        Some(_) if backing_of(file)?.as_deref() == Some(layer.as_path()) => return Ok(()),
        Some(_) => {
            return Err(other(format!(
                "{} exists and is not the snapshot file of {}; refusing to replace it",
                layer.display(),
                file.display()
            )))
        }
    }
    let Some(header) = qcow2::read_header(&layer)? else {
        return Err(other(format!("{} is not a qcow2 image", file.display())));
    };
    let backing = layer.to_str().ok_or_else(|| other(format!("{} is not UTF-8", layer.display())))?;
    let temp = temp_path(file, snapshot);
    remove_if_present(&temp)?;
    qcow2::create_overlay(&temp, header.virtual_size, backing, "qcow2")?;
    std::fs::set_permissions(&temp, current.permissions())?;
    if let Err(e) = std::os::unix::fs::chown(&temp, Some(current.uid()), Some(current.gid())) {
        tracing::debug!(file = %temp.display(), error = %e, "could not give the overlay its image's owner");
    }
    std::fs::rename(&temp, file)?;
    sync_dir_of(file)
}

/// Undoes [`push_layer`] (only while no QEMU has switched to the new overlay, i.e. the domain is
/// stopped): `F.snap-<snapshot>` becomes `file` again. Nothing to undo is Ok.
pub fn pop_layer(file: &Path, snapshot: &str) -> io::Result<()> {
    let layer = layer_path(file, snapshot);
    remove_if_present(&temp_path(file, snapshot))?;
    let Some(meta) = exists(&layer)? else { return Ok(()) };
    if same_file(&meta, &std::fs::metadata(file)?) {
        std::fs::remove_file(&layer)?;
    } else if backing_of(file)?.as_deref() == Some(layer.as_path()) {
        std::fs::rename(&layer, file)?;
    } else {
        return Err(other(format!("{} is not the overlay over {}; left alone", file.display(), layer.display())));
    }
    sync_dir_of(file)
}

/// Reverts `file` to snapshot `snapshot` (the domain must be stopped): `F.snap-<snapshot>` becomes
/// `file`, then every snapshot file of `file` that its new backing chain does not use is deleted.
/// Resumes an interrupted earlier call. Returns the deleted files.
pub fn revert_layer(file: &Path, snapshot: &str) -> io::Result<Vec<PathBuf>> {
    let layer = layer_path(file, snapshot);
    match exists(&layer)? {
        Some(meta) => {
            if exists(file)?.is_some_and(|current| same_file(&meta, &current)) {
                // The snapshot never got past its first step: `file` still is that content.
                std::fs::remove_file(&layer)?;
            } else {
                std::fs::rename(&layer, file)?;
            }
        }
        None if backing_chain(file)?.contains(&layer) => {
            return Err(other(format!("{} is missing but {} still builds on it", layer.display(), file.display())))
        }
        // Renamed by an earlier, interrupted revert.
        None => {}
    }
    let chain = backing_chain(file)?;
    let mut deleted = Vec::new();
    for unused in layer_files(file)?.into_iter().filter(|f| !chain.contains(f)) {
        remove_if_present(&unused)?;
        deleted.push(unused);
    }
    sync_dir_of(file)?;
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn qcow2_file(path: &Path) -> io::Result<()> {
        // A standalone image is an overlay without a backing file, for these purposes: write one,
        // then clear its backing name.
        let mut bytes = qcow2::overlay_bytes(1 << 20, "/none", "qcow2")?;
        bytes[8..20].fill(0);
        std::fs::write(path, bytes)
    }

    fn ino(path: &Path) -> u64 {
        std::fs::metadata(path).map(|m| m.ino()).unwrap_or(0)
    }

    #[test]
    fn names_and_name_rules() {
        assert_eq!(layer_path(Path::new("/p/hci-v.qcow2"), "s1"), Path::new("/p/hci-v.qcow2.snap-s1"));
        for bad in ["", "a/b", "a.b", "..", &"x".repeat(65), "a b"] {
            assert!(check_snapshot_name(bad).is_err(), "{bad}");
        }
        assert!(check_snapshot_name("before-upgrade_2").is_ok());
    }

    #[test]
    fn push_stacks_layers_and_revert_drops_later_ones() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("hci-v.qcow2");
        qcow2_file(&file)?;
        std::fs::write(dir.path().join("hci-v.qcow2.other"), b"not ours")?;
        let original = ino(&file);

        push_layer(&file, "s1")?;
        push_layer(&file, "s1")?; // resumable: already done
        assert_eq!(ino(&layer_path(&file, "s1")), original);
        assert_ne!(ino(&file), original);
        push_layer(&file, "s2")?;
        let s2 = ino(&layer_path(&file, "s2"));
        assert_eq!(backing_chain(&file)?, [layer_path(&file, "s2"), layer_path(&file, "s1")]);
        assert_eq!(layer_files(&file)?, [layer_path(&file, "s1"), layer_path(&file, "s2")]);
        assert_eq!(qcow2::read_header(&file)?.map(|h| h.virtual_size), Some(1 << 20));

        // Back to s2: the writes since are gone, s1 stays.
        assert!(revert_layer(&file, "s2")?.is_empty());
        assert_eq!(ino(&file), s2);
        assert_eq!(layer_files(&file)?, [layer_path(&file, "s1")]);
        assert!(revert_layer(&file, "s2")?.is_empty(), "a repeated revert is a no-op");

        // s3, then back to s1: s3's file goes too.
        push_layer(&file, "s3")?;
        assert_eq!(revert_layer(&file, "s1")?, [layer_path(&file, "s3")]);
        assert_eq!(ino(&file), original);
        assert!(layer_files(&file)?.is_empty());
        assert!(dir.path().join("hci-v.qcow2.other").exists(), "foreign names are left alone");
        Ok(())
    }

    #[test]
    fn pop_undoes_a_push_and_a_half_done_one() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("d.qcow2");
        qcow2_file(&file)?;
        let original = ino(&file);
        push_layer(&file, "a")?;
        pop_layer(&file, "a")?;
        assert_eq!(ino(&file), original);
        assert!(layer_files(&file)?.is_empty());
        // Interrupted after the link and a temp file.
        std::fs::hard_link(&file, layer_path(&file, "b"))?;
        std::fs::write(temp_path(&file, "b"), b"partial")?;
        assert_eq!(layer_files(&file)?.len(), 2);
        pop_layer(&file, "b")?;
        assert_eq!(ino(&file), original);
        assert!(layer_files(&file)?.is_empty());
        pop_layer(&file, "b")?;
        Ok(())
    }

    #[test]
    fn refuses_a_foreign_layer_name_and_a_broken_chain() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("d.qcow2");
        qcow2_file(&file)?;
        std::fs::write(layer_path(&file, "x"), b"someone else's")?;
        assert!(push_layer(&file, "x").is_err());
        std::fs::remove_file(layer_path(&file, "x"))?;
        push_layer(&file, "y")?;
        std::fs::remove_file(layer_path(&file, "y"))?;
        assert!(revert_layer(&file, "y").is_err(), "the overlay still needs the missing layer");
        let raw = dir.path().join("r.raw");
        std::fs::write(&raw, vec![0u8; 4096])?;
        assert!(push_layer(&raw, "z").is_err());
        assert!(layer_files(&raw)?.is_empty(), "nothing left behind");
        Ok(())
    }
}
