//! Running the `p2psip` binary as a user would: commands and node
//! processes.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// The `p2psip` binary under test.
pub fn p2psip() -> Command {
    Command::new(assert_cmd::cargo::cargo_bin("p2psip"))
}

/// Runs a command that must succeed; returns its stdout.
pub fn run_ok(args: &[&str]) -> String {
    let out = p2psip().args(args).output().expect("p2psip runs");
    assert!(
        out.status.success(),
        "p2psip {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// Runs a command that must fail with a one-line reason; returns stderr.
pub fn run_err(args: &[&str]) -> String {
    let out = p2psip().args(args).output().expect("p2psip runs");
    assert!(!out.status.success(), "p2psip {args:?} should have failed");
    let err = String::from_utf8(out.stderr).expect("utf-8");
    assert!(err.starts_with("p2psip: error: "), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one-line reason: {err}");
    err
}

/// Parses one JSON value.
pub fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

/// Where a node's log goes: nowhere, unless `P2PSIP_TEST_LOGS` is set
/// (then to the test's stderr; `RUST_LOG` picks the level).
fn test_logs() -> Stdio {
    match std::env::var_os("P2PSIP_TEST_LOGS") {
        Some(_) => Stdio::inherit(),
        None => Stdio::null(),
    }
}

/// A `p2psip node run` process; killed on drop.
pub struct NodeProcess {
    pub child: Child,
    pub addr: String,
    pub id: String,
    /// Where it serves SIP, when started with `--sip-listen`.
    pub sip: Option<String>,
    /// The rest of its standard output (kept open: the node may print).
    stdout: BufReader<std::process::ChildStdout>,
}

impl NodeProcess {
    /// Starts `p2psip node run ARGS` and reads the address it prints.
    /// Its log is dropped, unless `P2PSIP_TEST_LOGS` is set (then it goes
    /// to the test's stderr; `RUST_LOG` picks the level).
    pub fn start(args: &[&str]) -> Self {
        Self::start_with_log(args, test_logs())
    }

    /// [`NodeProcess::start`] with its log (stderr) going to `logs`.
    pub fn start_with_log(args: &[&str], logs: Stdio) -> Self {
        Self::spawn(p2psip(), args, logs)
    }

    /// Starts `p2psip node run ARGS` through `ip netns exec NETNS`, in a
    /// network namespace the test created.
    pub fn start_in_netns(netns: &str, args: &[&str]) -> Self {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", netns])
            .arg(assert_cmd::cargo::cargo_bin("p2psip"));
        Self::spawn(command, args, test_logs())
    }

    /// `command node run ARGS`, its address read from its first line.
    fn spawn(mut command: Command, args: &[&str], logs: Stdio) -> Self {
        let mut child = command
            .args(["node", "run"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(logs)
            .spawn()
            .expect("node starts");
        let mut line = String::new();
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        stdout
            .read_line(&mut line)
            .expect("node prints its address");
        // "p2psip node <id> listening on <addr>"
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(words.len(), 6, "unexpected first line: {line:?}");
        // "p2psip node <id> serving SIP on <addr>"
        let sip = args.contains(&"--sip-listen").then(|| {
            let mut line = String::new();
            stdout
                .read_line(&mut line)
                .expect("node prints its SIP address");
            let words: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(words.len(), 7, "unexpected second line: {line:?}");
            words[6].to_string()
        });
        Self {
            id: words[2].to_string(),
            addr: words[5].to_string(),
            sip,
            child,
            stdout,
        }
    }

    /// The next line the node prints after its address lines: its
    /// readiness line (docs/operations.md). Blocks until it comes.
    pub fn next_line(&mut self) -> String {
        let mut line = String::new();
        self.stdout
            .read_line(&mut line)
            .expect("node prints another line");
        line.trim_end().to_owned()
    }

    /// Sends SIGTERM and waits (at most 5 s) for the process to exit.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill runs");
        assert!(sent.success());
        for _ in 0..500 {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("node did not stop within 5 s of SIGTERM");
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
