//! The image store: verified local copies of bootable images, `dir/<name>-<sha256[..16]>.<format>`,
//! that volumes are created from (qcow2 overlays point at them, so they must never change).
//!
//! An image is copied or downloaded into a unique temporary file in the store, hashed on the way,
//! compared with its pinned SHA-256, fsynced and renamed into place; then a sidecar `<file>.sha256`
//! (`<sha256> <size>`) records the verification, and later calls trust a file whose sidecar and size
//! match instead of hashing it again. Callers of the same image are serialised within the process, so
//! concurrent `ensure` calls copy once. It must never hand out a file that was not verified, never
//! leave a partial file under a final name, and never delete files it did not name itself.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use hci_shared::agent::{ImageFormat, ImageRef};
use sha2::{Digest, Sha256};

use super::image_fetch;

/// Temporary files start with this; a new store removes leftovers of an earlier run.
const TMP_PREFIX: &str = ".hci-tmp-";

/// Makes temporary names unique within the process (the pid makes them unique across processes).
static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A unique temporary path in `dir` for a file that will be renamed to `final_path`.
fn tmp_path(dir: &Path, final_path: &Path) -> PathBuf {
    let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let base = final_path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    dir.join(format!("{TMP_PREFIX}{base}.{}.{n}", std::process::id()))
}

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("image {name}: {message}")]
    Invalid { name: String, message: String },
    #[error("image {name}: source {source_url}: {message}")]
    Fetch { name: String, source_url: String, message: String },
    #[error("image {name}: sha256 mismatch: expected {expected}, got {actual}; the copy was discarded")]
    Checksum { name: String, expected: String, actual: String },
    #[error("image store: {action} {}: {source}", path.display())]
    Io { action: &'static str, path: PathBuf, source: io::Error },
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> ImageError + 'a {
    move |source| ImageError::Io { action, path: path.to_path_buf(), source }
}

#[derive(Debug)]
pub struct ImageStore {
    dir: PathBuf,
    /// One lock per final path: concurrent `ensure` calls of one image copy it once.
    locks: Mutex<HashMap<PathBuf, Arc<Mutex<()>>>>,
    imports: AtomicU64,
}

impl ImageStore {
    /// Opens (creating) the store in `dir` and removes temporary files an earlier run left behind.
    pub fn new(dir: &Path) -> Result<Self, ImageError> {
        fs::create_dir_all(dir).map_err(io_err("creating", dir))?;
        for entry in fs::read_dir(dir).map_err(io_err("reading", dir))? {
            let entry = entry.map_err(io_err("reading", dir))?;
            if entry.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
                let path = entry.path();
                tracing::info!(path = %path.display(), "removing a leftover temporary image file");
                fs::remove_file(&path).map_err(io_err("removing", &path))?;
            }
        }
        Ok(ImageStore { dir: dir.to_path_buf(), locks: Mutex::default(), imports: AtomicU64::new(0) })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// How many copies or downloads this store has made (verified or not).
    pub fn imports(&self) -> u64 {
        self.imports.load(Ordering::Relaxed)
    }

    /// The checked, lowercase digest and the final path of `image`.
    pub fn path_for(&self, image: &ImageRef) -> Result<(String, PathBuf), ImageError> {
        let invalid = |message: String| ImageError::Invalid { name: image.name.clone(), message };
        super::names::check_name(&image.name).map_err(|m| invalid(format!("name {m}")))?;
        let sha = image.sha256.to_ascii_lowercase();
        if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(invalid(format!("sha256 '{}' is not 64 hex digits", image.sha256)));
        }
        let ext = match image.format {
            ImageFormat::Qcow2 => "qcow2",
            ImageFormat::Raw => "raw",
        };
        let path = self.dir.join(format!("{}-{}.{ext}", image.name, &sha[..16]));
        Ok((sha, path))
    }

    /// The path of a verified local copy of `image`, importing it first when there is none.
    pub fn ensure(&self, image: &ImageRef) -> Result<PathBuf, ImageError> {
        let (sha, path) = self.path_for(image)?;
        let source = image_fetch::parse(&image.source).map_err(|message| ImageError::Fetch {
            name: image.name.clone(),
            source_url: image.source.clone(),
            message,
        })?;
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(PoisonError::into_inner);
            locks.entry(path.clone()).or_default().clone()
        };
        let _held = lock.lock().unwrap_or_else(PoisonError::into_inner);

        let sidecar = sidecar_of(&path);
        if trusted(&path, &sidecar, &sha) {
            return Ok(path);
        }
        if path.exists() {
            // Renamed into place but the sidecar was not written (crash), or the file changed.
            if hash_file(&path)? == sha {
                write_sidecar(&sidecar, &sha, fs::metadata(&path).map_err(io_err("reading", &path))?.len())?;
                return Ok(path);
            }
            tracing::warn!(path = %path.display(), "image file does not match its sha256; importing it again");
            fs::remove_file(&path).map_err(io_err("removing", &path))?;
        }
        self.import(image, &source, &sha, &path)?;
        Ok(path)
    }

    fn import(&self, image: &ImageRef, source: &image_fetch::Source, sha: &str, path: &Path) -> Result<(), ImageError> {
        let tmp = tmp_path(&self.dir, path);
        self.imports.fetch_add(1, Ordering::Relaxed);
        let result = (|| {
            let mut file = File::create(&tmp).map_err(io_err("creating", &tmp))?;
            let (size, actual) = image_fetch::fetch(source, &mut file).map_err(|message| ImageError::Fetch {
                name: image.name.clone(),
                source_url: image.source.clone(),
                message,
            })?;
            if actual != sha {
                return Err(ImageError::Checksum { name: image.name.clone(), expected: sha.to_string(), actual });
            }
            file.sync_all().map_err(io_err("syncing", &tmp))?;
            drop(file);
            fs::rename(&tmp, path).map_err(io_err("renaming into place", path))?;
            write_sidecar(&sidecar_of(path), sha, size)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        } else {
            tracing::info!(image = %image.name, path = %path.display(), "image imported and verified");
        }
        result
    }
}

fn sidecar_of(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".sha256");
    PathBuf::from(name)
}

/// The sidecar names `sha` and the file still has the size it was verified with.
fn trusted(path: &Path, sidecar: &Path, sha: &str) -> bool {
    let (Ok(text), Ok(meta)) = (fs::read_to_string(sidecar), fs::metadata(path)) else { return false };
    let mut fields = text.split_whitespace();
    fields.next() == Some(sha) && fields.next().and_then(|s| s.parse::<u64>().ok()) == Some(meta.len())
}

fn hash_file(path: &Path) -> Result<String, ImageError> {
    let mut file = File::open(path).map_err(io_err("opening", path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(io_err("reading", path))?;
        if n == 0 {
            return Ok(hex::encode(hasher.finalize()));
        }
        hasher.update(&buf[..n]);
    }
}

/// Writes the sidecar through a temporary file and a rename, then syncs the directory.
fn write_sidecar(sidecar: &Path, sha: &str, size: u64) -> Result<(), ImageError> {
    let dir = sidecar.parent().unwrap_or(Path::new("."));
    let tmp = tmp_path(dir, sidecar);
    let result = (|| {
        let mut file = File::create(&tmp).map_err(io_err("creating", &tmp))?;
        file.write_all(format!("{sha} {size}\n").as_bytes()).map_err(io_err("writing", &tmp))?;
        file.sync_all().map_err(io_err("syncing", &tmp))?;
        fs::rename(&tmp, sidecar).map_err(io_err("renaming into place", sidecar))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err("syncing", dir))
}

impl crate::reconciler::ImageSource for ImageStore {
    fn ensure(&self, image: &ImageRef) -> Result<PathBuf, String> {
        ImageStore::ensure(self, image).map_err(|e| e.to_string())
    }
}
