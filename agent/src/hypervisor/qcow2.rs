//! The two things the snapshot code needs from the qcow2 format: reading an image's header (virtual
//! size, backing file) and writing a new, empty qcow2 overlay on top of a backing file.
//!
//! It exists because a disk-only snapshot here keeps the volume's file name as the active image (see
//! `layers.rs`): the new overlay has to be made by the agent before libvirt is told to switch to it
//! (`VIR_DOMAIN_SNAPSHOT_CREATE_REUSE_EXT`), and the agent never runs `qemu-img`. The overlay is the
//! layout `qemu-img create -f qcow2 -b BASE -F qcow2` writes (version 3, 64 KiB clusters, header,
//! refcount table, one refcount block, L1 table, nothing allocated), so QEMU, libvirt and
//! `qemu-img check` read it as they read their own. It must never write into an existing image.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

const MAGIC: [u8; 4] = [b'Q', b'F', b'I', 0xfb];
const CLUSTER_BITS: u32 = 16;
const CLUSTER: u64 = 1 << CLUSTER_BITS;
/// qcow2 version 3 header length without optional fields.
const HEADER_LEN: usize = 104;
/// Header extension: the backing file's format.
const EXT_BACKING_FORMAT: u32 = 0xe279_2aca;
/// QEMU refuses longer backing file names.
const MAX_BACKING_NAME: usize = 1023;

/// What a qcow2 header says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub virtual_size: u64,
    /// The backing file name exactly as stored (absolute, or relative to the image's directory).
    pub backing_file: Option<String>,
}

fn be_u32(b: &[u8]) -> u32 {
    b.iter().fold(0u32, |acc, x| (acc << 8) | u32::from(*x))
}

fn be_u64(b: &[u8]) -> u64 {
    b.iter().fold(0u64, |acc, x| (acc << 8) | u64::from(*x))
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// Reads the header of `path`; `Ok(None)` when the file is not qcow2 (raw, or anything else).
pub fn read_header(path: &Path) -> io::Result<Option<Header>> {
    let mut file = File::open(path)?;
    let mut header = [0u8; 32];
    match file.read_exact(&mut header) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    if header[..4] != MAGIC {
        return Ok(None);
    }
    let version = be_u32(&header[4..8]);
    if !(2..=3).contains(&version) {
        return Err(invalid(format!("{}: qcow2 version {version} is not supported", path.display())));
    }
    let offset = be_u64(&header[8..16]);
    let size = be_u32(&header[16..20]) as usize;
    let backing_file = if offset == 0 || size == 0 {
        None
    } else {
        if size > MAX_BACKING_NAME {
            return Err(invalid(format!("{}: backing file name of {size} bytes", path.display())));
        }
        let mut name = vec![0u8; size];
        file.seek(SeekFrom::Start(offset))?;
        file.read_exact(&mut name)?;
        let name = String::from_utf8(name)
            .map_err(|_| invalid(format!("{}: the backing file name is not UTF-8", path.display())))?;
        Some(name)
    };
    Ok(Some(Header { virtual_size: be_u64(&header[24..32]), backing_file }))
}

/// The bytes of an empty qcow2 v3 image of `virtual_size` bytes whose backing file is `backing`
/// (format `backing_format`).
pub fn overlay_bytes(virtual_size: u64, backing: &str, backing_format: &str) -> io::Result<Vec<u8>> {
    if backing.is_empty() || backing.len() > MAX_BACKING_NAME {
        return Err(invalid(format!("backing file name of {} bytes (1 to {MAX_BACKING_NAME})", backing.len())));
    }
    if backing_format.is_empty() || backing_format.len() > 16 {
        return Err(invalid(format!("backing format '{backing_format}'")));
    }
    // One L2 table (8192 entries of 8 bytes) maps 8192 clusters: 512 MiB.
    let per_l1_entry = CLUSTER * (CLUSTER / 8);
    let l1_entries = virtual_size.div_ceil(per_l1_entry);
    let l1_size =
        u32::try_from(l1_entries).map_err(|_| invalid(format!("virtual size {virtual_size} is too large")))?;
    let l1_clusters = (l1_entries * 8).div_ceil(CLUSTER).max(1);
    // Header, refcount table, refcount block, then the L1 table; one refcount block (32768 16-bit
    // entries) covers all of them.
    let clusters = 3 + l1_clusters;
    if clusters > CLUSTER / 2 {
        return Err(invalid(format!("virtual size {virtual_size} is too large")));
    }
    let len = usize::try_from(clusters * CLUSTER).map_err(|_| invalid("image too large".into()))?;
    let mut out = vec![0u8; len];

    let format_padded = backing_format.len().div_ceil(8) * 8;
    let backing_offset = HEADER_LEN + 8 + format_padded + 8;
    let put32 = |out: &mut Vec<u8>, at: usize, v: u32| out[at..at + 4].copy_from_slice(&v.to_be_bytes());
    let put64 = |out: &mut Vec<u8>, at: usize, v: u64| out[at..at + 8].copy_from_slice(&v.to_be_bytes());
    out[..4].copy_from_slice(&MAGIC);
    put32(&mut out, 4, 3);
    put64(&mut out, 8, backing_offset as u64);
    put32(&mut out, 16, backing.len() as u32);
    put32(&mut out, 20, CLUSTER_BITS);
    put64(&mut out, 24, virtual_size);
    // 32: no encryption.
    put32(&mut out, 36, l1_size);
    put64(&mut out, 40, 3 * CLUSTER);
    put64(&mut out, 48, CLUSTER);
    put32(&mut out, 56, 1);
    // 60..96: no snapshots, no incompatible/compatible/autoclear features.
    put32(&mut out, 96, 4);
    put32(&mut out, 100, HEADER_LEN as u32);
    put32(&mut out, HEADER_LEN, EXT_BACKING_FORMAT);
    put32(&mut out, HEADER_LEN + 4, backing_format.len() as u32);
    out[HEADER_LEN + 8..HEADER_LEN + 8 + backing_format.len()].copy_from_slice(backing_format.as_bytes());
    // Then the end-of-extensions marker (zeros) and the backing file name.
    out[backing_offset..backing_offset + backing.len()].copy_from_slice(backing.as_bytes());

    // Refcount table: its first block is cluster 2; that block counts every cluster once.
    put64(&mut out, CLUSTER as usize, 2 * CLUSTER);
    for cluster in 0..clusters as usize {
        out[2 * CLUSTER as usize + 2 * cluster + 1] = 1;
    }
    Ok(out)
}

/// Writes a new overlay at `path` (which must not exist) and syncs it.
pub fn create_overlay(path: &Path, virtual_size: u64, backing: &str, backing_format: &str) -> io::Result<()> {
    let bytes = overlay_bytes(virtual_size, backing, backing_format)?;
    let mut file = File::options().write(true).create_new(true).open(path)?;
    file.write_all(&bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_an_overlay_it_reads_back() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("top.qcow2");
        create_overlay(&path, 3 << 30, "/pool/hci-v.qcow2.snap-a", "qcow2")?;
        let header = read_header(&path)?;
        assert_eq!(
            header,
            Some(Header { virtual_size: 3 << 30, backing_file: Some("/pool/hci-v.qcow2.snap-a".into()) })
        );
        // 3 GiB: 6 L1 entries, one L1 cluster; four clusters in all, each counted once.
        let bytes = std::fs::read(&path)?;
        assert_eq!(bytes.len(), 4 << 16);
        assert_eq!(be_u32(&bytes[36..40]), 6);
        let refcounts: Vec<u16> =
            bytes[2 << 16..(2 << 16) + 10].chunks(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect();
        assert_eq!(refcounts, [1, 1, 1, 1, 0]);
        assert_eq!(&bytes[104..112], &[0xe2, 0x79, 0x2a, 0xca, 0, 0, 0, 5]);
        assert!(create_overlay(&path, 1, "/x", "qcow2").is_err(), "never overwrites");
        Ok(())
    }

    #[test]
    fn raw_and_short_files_are_not_qcow2() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let raw = dir.path().join("a.raw");
        std::fs::write(&raw, vec![0u8; 4096])?;
        assert_eq!(read_header(&raw)?, None);
        std::fs::write(&raw, b"QFI")?;
        assert_eq!(read_header(&raw)?, None);
        Ok(())
    }

    #[test]
    fn refuses_names_qemu_would_refuse() {
        assert!(overlay_bytes(1 << 20, "", "qcow2").is_err());
        assert!(overlay_bytes(1 << 20, &"x".repeat(1024), "qcow2").is_err());
        assert!(overlay_bytes(1 << 20, "/b", "").is_err());
        assert!(overlay_bytes(u64::MAX, "/b", "qcow2").is_err());
    }
}
