//! Free loopback ports for members, without hard-coding any.
//!
//! A port is found by binding 127.0.0.1:0 and releasing it. Tests in one binary run in parallel, so
//! the harness also remembers every port it handed out and never hands one out twice; the kernel
//! rotates ephemeral ports, so another process taking one in the short gap is unlikely (and shows as a
//! member that exits at start with "address in use" in its log).

use std::collections::HashSet;
use std::net::TcpListener;
use std::sync::Mutex;

static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A loopback port nothing listens on right now, never returned before by this process.
pub fn free_port() -> u16 {
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    let given = given.get_or_insert_with(HashSet::new);
    for _ in 0..100 {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local_addr").port();
        drop(listener);
        if given.insert(port) {
            return port;
        }
    }
    panic!("no fresh free loopback port after 100 tries");
}
