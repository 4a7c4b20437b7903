//! What the storage layer must know about an image file before it puts an overlay on it: its
//! virtual size (an overlay is never made smaller than its image) and whether it points at a backing
//! file of its own (refused: a verified image must be self-contained, or its checksum proves nothing).
//!
//! Reads the first bytes of the file only; it must never write to an image.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

const QCOW2_MAGIC: [u8; 4] = [b'Q', b'F', b'I', 0xfb];

/// The facts an overlay needs about its image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageFacts {
    pub virtual_size: u64,
    pub has_backing_file: bool,
}

fn be_u64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
}

/// Reads `path` as `format` (`qcow2` or `raw`).
pub fn inspect(path: &Path, format: &str) -> io::Result<ImageFacts> {
    let mut file = File::open(path)?;
    match format {
        "raw" => Ok(ImageFacts { virtual_size: file.metadata()?.len(), has_backing_file: false }),
        "qcow2" => {
            // Header (big-endian): magic u32 @0, version u32 @4, backing_file_offset u64 @8,
            // backing_file_size u32 @16, cluster_bits u32 @20, size u64 @24.
            let mut header = [0u8; 32];
            file.read_exact(&mut header)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("reading the qcow2 header: {e}")))?;
            if header[..4] != QCOW2_MAGIC {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "not a qcow2 image (no QFI magic)"));
            }
            Ok(ImageFacts { virtual_size: be_u64(&header[24..32]), has_backing_file: be_u64(&header[8..16]) != 0 })
        }
        other => Err(io::Error::new(io::ErrorKind::InvalidInput, format!("unknown image format '{other}'"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_qcow2_and_raw_sizes() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let qcow = dir.path().join("a.qcow2");
        let mut header = vec![0u8; 104];
        header[..4].copy_from_slice(&QCOW2_MAGIC);
        header[7] = 3;
        header[24..32].copy_from_slice(&(5u64 << 20).to_be_bytes());
        std::fs::write(&qcow, &header)?;
        assert_eq!(inspect(&qcow, "qcow2")?, ImageFacts { virtual_size: 5 << 20, has_backing_file: false });
        header[8..16].copy_from_slice(&200u64.to_be_bytes());
        std::fs::write(&qcow, &header)?;
        assert!(inspect(&qcow, "qcow2")?.has_backing_file);

        let raw = dir.path().join("a.raw");
        std::fs::write(&raw, vec![1u8; 4096])?;
        assert_eq!(inspect(&raw, "raw")?.virtual_size, 4096);
        assert!(inspect(&raw, "qcow2").is_err());
        assert!(inspect(&raw, "vmdk").is_err());
        Ok(())
    }
}
