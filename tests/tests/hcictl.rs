//! `hcictl` against a real cluster: exit statuses 0/1/2/3 as the contract defines them, `-o json`
//! output that parses, and failover across the URLs in `HCI_URL` when the first one is dead.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hci_tests::{bins, ports::free_port, Cluster};
use serde_json::Value;

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    took: Duration,
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?} after {:?}\n--- stdout:\n{}\n--- stderr:\n{}",
            self.code, self.took, self.stdout, self.stderr
        )
    }
}

/// Runs hcictl with `HCI_URL`/`HCI_TOKEN`, killing it if it takes over 60 s.
fn hcictl(url: &str, token: &str, args: &[&str]) -> Run {
    let dir = tempfile::tempdir().expect("tempdir");
    let out_path = dir.path().join("stdout");
    let err_path = dir.path().join("stderr");
    let mut cmd = Command::new(bins::hcictl());
    cmd.args(args)
        .env("HCI_URL", url)
        .env("HCI_TOKEN", token)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).expect("stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("stderr file"));
    let t0 = Instant::now();
    let mut child = cmd.spawn().expect("spawn hcictl");
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait hcictl") {
            break s;
        }
        if t0.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("hcictl {args:?} did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Run {
        code: status.code(),
        stdout: std::fs::read_to_string(&out_path).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err_path).unwrap_or_default(),
        took: t0.elapsed(),
    }
}

#[track_caller]
fn expect_code(run: &Run, code: i32, what: &str) {
    assert_eq!(run.code, Some(code), "{what}: expected exit {code}, got {run}");
}

fn json_of(run: &Run, what: &str) -> Value {
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{what}: -o json output does not parse ({e}): {run}"))
}

#[test]
fn hcictl_exit_codes_json_and_url_failover() {
    let c = Cluster::start(3);
    let dead = format!("http://127.0.0.1:{}", free_port());
    let urls = format!("{dead},{}", c.urls());
    let token = c.token().to_string();

    let r = hcictl(
        &urls,
        &token,
        &["tenant", "create", "cli-one", "--vcpus", "4", "--memory-mib", "4096", "--disk-gib", "100"],
    );
    expect_code(&r, 0, "tenant create with a dead URL first");
    c.api().get(1, "/v1/tenants/cli-one").expect(200, "the tenant hcictl created");

    let r = hcictl(&urls, &token, &["-o", "json", "tenant", "show", "cli-one"]);
    expect_code(&r, 0, "-o json tenant show");
    let v = json_of(&r, "tenant show");
    assert_eq!(v["name"], "cli-one", "tenant show JSON: {v}");
    assert_eq!(v["quota"]["vcpus"], 4, "tenant show JSON: {v}");

    let r = hcictl(&urls, &token, &["-o", "json", "tenant", "list"]);
    expect_code(&r, 0, "-o json tenant list");
    let v = json_of(&r, "tenant list");
    let items = v
        .get("items")
        .unwrap_or(&v)
        .as_array()
        .unwrap_or_else(|| panic!("tenant list JSON is neither a list nor {{items}}: {v}"));
    assert!(items.iter().any(|t| t["name"] == "cli-one"), "tenant list JSON lacks cli-one: {v}");

    let r = hcictl(&urls, &token, &["-o", "json", "cluster", "status"]);
    expect_code(&r, 0, "-o json cluster status");
    let v = json_of(&r, "cluster status");
    assert_eq!(v["members"].as_array().map(Vec::len), Some(3), "cluster status JSON: {v}");

    let r = hcictl(&urls, &token, &["cluster", "status"]);
    expect_code(&r, 0, "cluster status (table)");
    assert!(!r.stdout.trim().is_empty(), "cluster status printed nothing: {r}");

    // Refusals: exit 1.
    let r = hcictl(
        &urls,
        &token,
        &["tenant", "create", "cli-one", "--vcpus", "4", "--memory-mib", "4096", "--disk-gib", "100"],
    );
    expect_code(&r, 1, "duplicate tenant create (409)");
    assert!(!r.stderr.trim().is_empty(), "a refusal says why on stderr: {r}");
    let r = hcictl(&urls, &token, &["tenant", "show", "nope"]);
    expect_code(&r, 1, "tenant show of an unknown tenant (404)");
    let r = hcictl(
        &urls,
        &token,
        &["tenant", "create", "Bad_Name", "--vcpus", "4", "--memory-mib", "4096", "--disk-gib", "100"],
    );
    assert!(
        matches!(r.code, Some(1) | Some(2)),
        "tenant create Bad_Name: expected 1 (server 400) or 2 (client-side check), got {r}"
    );
    let r = hcictl(&urls, "wrong-token", &["tenant", "list"]);
    expect_code(&r, 1, "wrong token (401)");

    // Usage errors: exit 2.
    let r = hcictl(&urls, &token, &["tenant", "frobnicate"]);
    expect_code(&r, 2, "unknown verb");
    let r = hcictl(
        &urls,
        &token,
        &["tenant", "create", "cli-x", "--vcpus", "many", "--memory-mib", "1", "--disk-gib", "1"],
    );
    expect_code(&r, 2, "non-numeric --vcpus");
    let r = hcictl(&urls, &token, &[]);
    expect_code(&r, 2, "no arguments");
    let r = hcictl(&urls, &token, &["-o", "yaml-ish", "tenant", "list"]);
    expect_code(&r, 2, "unknown -o format");

    // Nothing reachable: exit 3, in bounded time.
    let dead2 = format!("http://127.0.0.1:{}", free_port());
    let r = hcictl(&format!("{dead},{dead2}"), &token, &["tenant", "list"]);
    expect_code(&r, 3, "all URLs dead");
    assert!(r.took < Duration::from_secs(20), "exit 3 took {:?}", r.took);

    // A member killed: the list in member order still works once a leader is there.
    c.kill9(1);
    c.wait_for_leader(Duration::from_secs(10));
    let r = hcictl(
        &c.urls(),
        &token,
        &["tenant", "create", "cli-two", "--vcpus", "1", "--memory-mib", "512", "--disk-gib", "1"],
    );
    expect_code(&r, 0, "tenant create with member 1 killed");
    let r = hcictl(&c.urls(), &token, &["tenant", "delete", "cli-two"]);
    expect_code(&r, 0, "tenant delete");
    let r = hcictl(&c.urls(), &token, &["tenant", "show", "cli-two"]);
    expect_code(&r, 1, "tenant show after delete");
}
