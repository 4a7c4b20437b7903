//! `ImageStore`: file:// and http:// imports verified against their SHA-256, refusals (wrong digest,
//! https, bad names), trusted second calls that copy nothing, recovery of a missing sidecar, and
//! concurrent `ensure` calls of one image. The HTTP source is a tiny server on 127.0.0.1:0.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use hci_agent::volumes::images::{ImageError, ImageStore};
use hci_shared::agent::{ImageFormat, ImageRef};
use sha2::{Digest, Sha256};

fn content(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn image(name: &str, source: String, bytes: &[u8]) -> ImageRef {
    ImageRef { name: name.into(), source, format: ImageFormat::Qcow2, sha256: sha(bytes) }
}

fn file_source(dir: &Path, bytes: &[u8]) -> String {
    let path = dir.join("source.img");
    fs::write(&path, bytes).expect("write source");
    format!("file://{}", path.display())
}

/// The names in the store directory, sorted.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Serves `body` at `/image` (404 elsewhere) until the test ends; counts requests for `/image`.
fn http_server(body: Vec<u8>) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/image", listener.local_addr().expect("addr"));
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().expect("clone stream"));
            let mut request_line = String::new();
            let _ = reader.read_line(&mut request_line);
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
            }
            let response = if request_line.starts_with("GET /image ") {
                counter.fetch_add(1, Ordering::SeqCst);
                let mut r = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len())
                    .into_bytes();
                r.extend_from_slice(&body);
                r
            } else {
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec()
            };
            let _ = stream.write_all(&response);
        }
    });
    (url, hits)
}

#[test]
fn file_import_is_verified_and_a_second_ensure_copies_nothing() -> Result<(), ImageError> {
    let tmp = tempfile::tempdir().expect("tmp");
    let bytes = content(3 * 1024 * 1024 + 17, 1);
    let mut img = image("debian-12", file_source(tmp.path(), &bytes), &bytes);
    let store_dir = tmp.path().join("images");
    let store = ImageStore::new(&store_dir)?;

    let path = store.ensure(&img)?;
    assert_eq!(path, store_dir.join(format!("debian-12-{}.qcow2", &img.sha256[..16])));
    assert_eq!(fs::read(&path).expect("read"), bytes);
    let sidecar = PathBuf::from(format!("{}.sha256", path.display()));
    assert_eq!(fs::read_to_string(&sidecar).expect("sidecar"), format!("{} {}\n", img.sha256, bytes.len()));
    assert_eq!(store.imports(), 1);

    let mtime = fs::metadata(&path).and_then(|m| m.modified()).expect("mtime");
    img.sha256 = img.sha256.to_uppercase();
    assert_eq!(store.ensure(&img)?, path, "same file, digest case does not matter");
    assert_eq!(store.imports(), 1, "no second copy");
    assert_eq!(fs::metadata(&path).and_then(|m| m.modified()).expect("mtime"), mtime);

    // A restarted agent trusts the sidecar; without it, the file is hashed again, not copied again.
    let restarted = ImageStore::new(&store_dir)?;
    assert_eq!(restarted.ensure(&img)?, path);
    fs::remove_file(&sidecar).expect("remove sidecar");
    assert_eq!(restarted.ensure(&img)?, path);
    assert!(sidecar.exists());
    assert_eq!(restarted.imports(), 0);

    // A file that no longer matches (here: truncated) is imported again.
    fs::write(&path, b"short").expect("damage");
    assert_eq!(restarted.ensure(&img)?, path);
    assert_eq!(fs::read(&path).expect("read"), bytes);
    assert_eq!(restarted.imports(), 1);
    let names = [&path, &sidecar].map(|p| p.file_name().expect("file name").to_string_lossy().into_owned());
    assert_eq!(entries(&store_dir), names);
    Ok(())
}

#[test]
fn a_wrong_digest_is_refused_and_leaves_nothing() -> Result<(), ImageError> {
    let tmp = tempfile::tempdir().expect("tmp");
    let bytes = content(100_000, 2);
    let mut img = image("bad", file_source(tmp.path(), &bytes), &bytes);
    img.sha256 = sha(b"something else");
    let store_dir = tmp.path().join("images");
    let store = ImageStore::new(&store_dir)?;
    match store.ensure(&img) {
        Err(ImageError::Checksum { expected, actual, .. }) => {
            assert_eq!(expected, img.sha256);
            assert_eq!(actual, sha(&bytes));
        }
        other => panic!("expected a checksum error, got {other:?}"),
    }
    let message = store.ensure(&img).expect_err("again").to_string();
    assert!(message.contains(&img.sha256) && message.contains(&sha(&bytes)), "{message}");
    assert!(entries(&store_dir).is_empty(), "{:?}", entries(&store_dir));
    Ok(())
}

#[test]
fn http_imports_work_and_https_and_odd_refs_are_refused() -> Result<(), ImageError> {
    let tmp = tempfile::tempdir().expect("tmp");
    let bytes = content(2 * 1024 * 1024 + 5, 3);
    let (url, hits) = http_server(bytes.clone());
    let store = ImageStore::new(tmp.path())?;
    let img = image("cirros", url.clone(), &bytes);
    let path = store.ensure(&img)?;
    assert_eq!(fs::read(&path).expect("read"), bytes);
    assert_eq!(store.ensure(&img)?, path);
    assert_eq!(hits.load(Ordering::SeqCst), 1, "downloaded once");

    let missing = image("missing", url.replace("/image", "/nope"), &bytes);
    let err = store.ensure(&missing).expect_err("404");
    assert!(err.to_string().contains("404"), "{err}");

    let https = image("secure", "https://example.invalid/x.qcow2".into(), &bytes);
    let err = store.ensure(&https).expect_err("https");
    assert!(err.to_string().contains("https is not supported"), "{err}");

    for (name, source, digest) in [
        ("../escape", url.clone(), sha(&bytes)),
        ("ok", url.clone(), "abc".to_string()),
        ("ok", "ftp://h/x".to_string(), sha(&bytes)),
        ("ok", "file://relative/x".to_string(), sha(&bytes)),
    ] {
        let odd = ImageRef { name: name.into(), source, format: ImageFormat::Raw, sha256: digest };
        assert!(store.ensure(&odd).is_err(), "{odd:?}");
    }
    let mut left = entries(tmp.path());
    left.retain(|n| !n.starts_with("cirros-"));
    assert!(left.is_empty(), "{left:?}");
    Ok(())
}

#[test]
fn concurrent_ensures_yield_one_good_file() -> Result<(), ImageError> {
    let tmp = tempfile::tempdir().expect("tmp");
    let bytes = content(4 * 1024 * 1024, 4);
    let (url, hits) = http_server(bytes.clone());
    let img = image("shared", url, &bytes);

    // One store, four threads: one download.
    let store = Arc::new(ImageStore::new(&tmp.path().join("one"))?);
    let paths = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4).map(|_| s.spawn(|| store.ensure(&img))).collect();
        handles.into_iter().map(|h| h.join().expect("thread")).collect::<Result<Vec<_>, _>>()
    })?;
    assert!(paths.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(fs::read(&paths[0]).expect("read"), bytes);
    assert_eq!(store.imports(), 1);
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    assert_eq!(entries(&tmp.path().join("one")).len(), 2, "the image and its sidecar");

    // Four stores on one directory (as four processes would be): still one good file, no leftovers.
    let dir = tmp.path().join("many");
    let stores = (0..4).map(|_| ImageStore::new(&dir)).collect::<Result<Vec<_>, _>>()?;
    let paths = std::thread::scope(|s| {
        let handles: Vec<_> = stores.iter().map(|st| s.spawn(|| st.ensure(&img))).collect();
        handles.into_iter().map(|h| h.join().expect("thread")).collect::<Result<Vec<_>, _>>()
    })?;
    assert!(paths.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(fs::read(&paths[0]).expect("read"), bytes);
    assert_eq!(entries(&dir).len(), 2, "{:?}", entries(&dir));
    Ok(())
}
