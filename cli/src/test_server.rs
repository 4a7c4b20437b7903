//! A tiny canned HTTP/1.1 server for tests: no controller needed to check failover and exit codes.
//!
//! It listens on an ephemeral loopback port, records every request it receives and answers each one
//! with the next canned response (closing the connection after it). Shared by the unit tests and the
//! binary's integration tests (`tests/cli.rs` includes this file by path).

#![allow(dead_code, clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;

/// One canned answer.
#[derive(Debug, Clone)]
pub enum Canned {
    /// Status, extra headers, JSON body.
    Json { status: u16, headers: Vec<(String, String)>, body: String },
    /// Status with no body (204).
    Empty(u16),
    /// Read the request, then close the connection without answering.
    Hangup,
}

impl Canned {
    pub fn json(status: u16, body: &str) -> Self {
        Canned::Json { status, headers: Vec::new(), body: body.to_string() }
    }

    pub fn error(status: u16, code: &str, message: &str) -> Self {
        let body = serde_json::json!({"error": {"code": code, "message": message}}).to_string();
        Canned::Json { status, headers: Vec::new(), body }
    }

    pub fn with_etag(self, etag: &str) -> Self {
        match self {
            Canned::Json { status, mut headers, body } => {
                headers.push(("ETag".to_string(), etag.to_string()));
                Canned::Json { status, headers, body }
            }
            other => other,
        }
    }
}

/// What the server saw.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The request line, e.g. `GET /v1/tenants HTTP/1.1`.
    pub line: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone())
    }
}

pub struct TestServer {
    port: u16,
    seen: Arc<Mutex<Vec<Recorded>>>,
}

impl TestServer {
    /// Starts answering with `answers` in order; once they run out every request gets a 500.
    pub fn start(answers: Vec<Canned>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        thread::spawn(move || {
            let mut answers = answers.into_iter();
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let answer = answers.next().unwrap_or_else(|| Canned::error(500, "internal", "no canned answer left"));
                serve(stream, &answer, &log);
            }
        });
        TestServer { port, seen }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.seen.lock().expect("lock").clone()
    }
}

/// A loopback URL on which nothing listens (connections are refused).
pub fn refused_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

fn serve(stream: TcpStream, answer: &Canned, log: &Mutex<Vec<Recorded>>) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.trim_end().split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let length = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    let _ = reader.read_exact(&mut body);
    log.lock().expect("lock").push(Recorded {
        line: line.trim_end().to_string(),
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    let mut stream = stream;
    let text = match answer {
        Canned::Hangup => return,
        Canned::Empty(status) => {
            format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        }
        Canned::Json { status, headers, body } => {
            let extra: String = headers.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
            format!(
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
        }
    };
    let _ = stream.write_all(text.as_bytes());
    let _ = stream.flush();
}
