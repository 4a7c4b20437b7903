//! Deadline-bounded polling, the only way the tests wait for anything.
//!
//! Fixed sleeps make tests slow on fast machines and flaky on slow ones; polling a condition until a
//! deadline does neither, and on timeout the panic says what was awaited and what was last seen.

use std::time::{Duration, Instant};

/// Calls `f` every `interval` until it returns `Ok`, or panics after `timeout` with the last error.
pub fn poll_every<T>(what: &str, timeout: Duration, interval: Duration, mut f: impl FnMut() -> Result<T, String>) -> T {
    let start = Instant::now();
    let mut last;
    loop {
        match f() {
            Ok(v) => return v,
            Err(e) => last = e,
        }
        if start.elapsed() >= timeout {
            panic!("timed out after {:?} waiting for {what}; last observation: {last}", timeout);
        }
        std::thread::sleep(interval);
    }
}

/// [`poll_every`] with a 50 ms interval.
pub fn poll<T>(what: &str, timeout: Duration, f: impl FnMut() -> Result<T, String>) -> T {
    poll_every(what, timeout, Duration::from_millis(50), f)
}

/// Like [`poll`] but returns `Err(last observation)` instead of panicking.
pub fn try_poll<T>(timeout: Duration, mut f: impl FnMut() -> Result<T, String>) -> Result<T, String> {
    let start = Instant::now();
    loop {
        match f() {
            Ok(v) => return Ok(v),
            Err(e) if start.elapsed() >= timeout => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}
