//! Copies an image's bytes from its source (`file:///path`, `http://`) into an open file, hashing
//! them on the way, for the image store.
//!
//! It only reads the source and writes the file it is handed; verification, naming and renaming are
//! the store's. It must never follow a source to https (no TLS in this build) or to any other scheme.

use std::fs::File;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use sha2::{Digest, Sha256};

/// Where an image comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    File(PathBuf),
    Http(String),
}

/// Parses an image source; `Err` says why it is not supported.
pub fn parse(source: &str) -> Result<Source, String> {
    if let Some(path) = source.strip_prefix("file://") {
        if !path.starts_with('/') {
            return Err("a file:// source must name an absolute path (file:///path)".into());
        }
        return Ok(Source::File(PathBuf::from(path)));
    }
    if source.starts_with("http://") {
        return Ok(Source::Http(source.to_string()));
    }
    if source.starts_with("https://") {
        return Err("https is not supported yet: this agent is built without TLS; serve the image over \
                    http:// (its sha256 is verified) or copy it to the host and use file://"
            .into());
    }
    Err("unsupported scheme; use file:///path or http://".into())
}

/// Streams `source` into `out`; returns the bytes written and their SHA-256 (lowercase hex).
pub fn fetch(source: &Source, out: &mut File) -> Result<(u64, String), String> {
    let mut hasher = Sha256::new();
    let mut written = 0u64;
    let mut sink = |chunk: &[u8]| -> Result<(), String> {
        hasher.update(chunk);
        written += chunk.len() as u64;
        out.write_all(chunk).map_err(|e| format!("writing the local copy: {e}"))
    };
    match source {
        Source::File(path) => copy_file(path, &mut sink)?,
        Source::Http(url) => download(url, &mut sink)?,
    }
    Ok((written, hex::encode(hasher.finalize())))
}

fn copy_file(path: &std::path::Path, sink: &mut dyn FnMut(&[u8]) -> Result<(), String>) -> Result<(), String> {
    let mut file = File::open(path).map_err(|e| format!("opening {}: {e}", path.display()))?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(|e| format!("reading {}: {e}", path.display()))?;
        if n == 0 {
            return Ok(());
        }
        sink(&buf[..n])?;
    }
}

/// Downloads on a thread of its own with a private single-threaded runtime, so that callers can be
/// plain threads or blocking tasks of the agent's runtime alike.
fn download(url: &str, sink: &mut (dyn FnMut(&[u8]) -> Result<(), String> + Send)) -> Result<(), String> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| format!("starting the download runtime: {e}"))?;
                runtime.block_on(download_async(url, sink))
            })
            .join()
            .map_err(|_| "the download thread panicked".to_string())?
    })
}

async fn download_async(url: &str, sink: &mut (dyn FnMut(&[u8]) -> Result<(), String> + Send)) -> Result<(), String> {
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(15))
        .read_timeout(Duration::from_secs(60))
        .redirect(reqwest::redirect::Policy::limited(5))
        .build()
        .map_err(|e| format!("building the HTTP client: {e}"))?;
    let mut response = client.get(url).send().await.map_err(|e| format!("GET {url}: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("GET {url}: HTTP {}", response.status()));
    }
    while let Some(chunk) = response.chunk().await.map_err(|e| format!("GET {url}: reading the body: {e}"))? {
        sink(&chunk)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_supported_sources_only() {
        assert_eq!(parse("file:///srv/a.qcow2"), Ok(Source::File("/srv/a.qcow2".into())));
        assert_eq!(parse("http://h/a"), Ok(Source::Http("http://h/a".into())));
        assert!(parse("https://h/a").is_err_and(|e| e.contains("https is not supported")));
        assert!(parse("file://relative/a").is_err());
        assert!(parse("ftp://h/a").is_err());
    }
}
