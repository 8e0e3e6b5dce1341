//! `proctor serve`: the web view in a real headless browser (Chromium from
//! the distribution, driven over the DevTools protocol on a pipe), and the
//! proof that no container on a loop's network reaches it.

use crate::common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{on_both_engines, require_engine, socket, stderr, Background, TestRepo};
use proctor::cage::EngineKind;
use serde_json::{json, Value};

const GATED: &str = "loop: ship\ntask: make fixed.txt\nagent: sh agent.sh\ndone_when: test -f fixed.txt\ngate: human\nbudget: 3 runs\n";
/// The agent prints markup, which the page must show as text.
const AGENT: &str = "echo '<b id=\"injected\">agent output</b>'\necho fixed > fixed.txt\n";

/// `proctor serve` started in the background, and the URL it printed.
struct Served {
    _child: Background,
    url: String,
    port: u16,
}

fn serve(repo: &TestRepo, args: &[&str]) -> Served {
    let mut all = vec!["serve"];
    all.extend_from_slice(args);
    let mut child = Background(
        repo.command(&all)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("`proctor serve` printed no URL: {line:?}"))
        .to_string();
    let port = url
        .trim_start_matches("http://127.0.0.1:")
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    Served {
        _child: child,
        url,
        port,
    }
}

/// A plain HTTP/1.1 GET on loopback: the status code.
fn status_of(port: u16, path: &str) -> u16 {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// Chromium driven over `--remote-debugging-pipe`: commands on fd 3,
/// replies and events on fd 4, each a JSON text ended by a NUL byte.
struct Browser {
    child: std::process::Child,
    commands: std::fs::File,
    replies: mpsc::Receiver<Value>,
    next: u64,
    session: String,
    _profile: tempfile::TempDir,
}

const CHROMIUM_HELP: &str = "the browser test needs Chromium from the distribution: `apt-get install chromium` (`.ci/run` installs it)";

fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: pipe2 succeeded, so both are open descriptors we now own.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

impl Browser {
    fn start() -> Browser {
        let binary = ["chromium", "chromium-browser"]
            .into_iter()
            .find(|b| {
                Command::new(b)
                    .arg("--version")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            })
            .unwrap_or_else(|| panic!("{CHROMIUM_HELP}"));
        let profile = tempfile::Builder::new()
            .prefix("proctor-chromium-")
            .tempdir()
            .unwrap();
        let (cmd_read, cmd_write) = pipe();
        let (reply_read, reply_write) = pipe();
        let (child_in, child_out) = (
            std::os::fd::AsRawFd::as_raw_fd(&cmd_read),
            std::os::fd::AsRawFd::as_raw_fd(&reply_write),
        );
        let mut command = Command::new(binary);
        command
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--remote-debugging-pipe",
                "about:blank",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: between fork and exec only async-signal-safe calls
        // (fcntl, dup2) run; dup2 onto 3 and 4 clears their close-on-exec.
        unsafe {
            command.pre_exec(move || {
                // Copies above 10 first: a pipe end may itself be 3 or 4,
                // and dup2 onto itself would keep close-on-exec.
                let a = libc::fcntl(child_in, libc::F_DUPFD_CLOEXEC, 10);
                let b = libc::fcntl(child_out, libc::F_DUPFD_CLOEXEC, 10);
                if a < 0 || b < 0 || libc::dup2(a, 3) < 0 || libc::dup2(b, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("{CHROMIUM_HELP} ({e})"));
        drop(cmd_read);
        drop(reply_write);
        let (tx, replies) = mpsc::channel();
        let mut reader = std::fs::File::from(reply_read);
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 65536];
            loop {
                let n = match reader.read(&mut chunk) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                buf.extend_from_slice(&chunk[..n]);
                while let Some(end) = buf.iter().position(|&b| b == 0) {
                    let message: Vec<u8> = buf.drain(..=end).collect();
                    if let Ok(value) = serde_json::from_slice(&message[..end]) {
                        if tx.send(value).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        let mut browser = Browser {
            child,
            commands: std::fs::File::from(cmd_write),
            replies,
            next: 0,
            session: String::new(),
            _profile: profile,
        };
        let target = browser.call("Target.createTarget", json!({"url": "about:blank"}));
        let target_id = target["targetId"].as_str().unwrap().to_string();
        let attached = browser.call(
            "Target.attachToTarget",
            json!({"targetId": target_id, "flatten": true}),
        );
        browser.session = attached["sessionId"].as_str().unwrap().to_string();
        browser
    }

    /// Sends a command (to the page once attached) and waits for its reply.
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = self.next;
        let mut message = json!({"id": id, "method": method, "params": params});
        if !self.session.is_empty() {
            message["sessionId"] = json!(self.session);
        }
        let mut bytes = serde_json::to_vec(&message).unwrap();
        bytes.push(0);
        self.commands.write_all(&bytes).unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let reply = self
                .replies
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("Chromium did not answer `{method}` within 60 s"));
            if reply["id"].as_u64() == Some(id) {
                assert!(reply.get("error").is_none(), "`{method}`: {reply}");
                return reply["result"].clone();
            }
        }
    }

    fn open(&mut self, url: &str) {
        self.call("Page.navigate", json!({"url": url}));
    }

    /// Evaluates a JavaScript expression in the page, by value.
    fn eval(&mut self, expression: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true}),
        );
        r["result"]["value"].clone()
    }

    /// Waits (bounded, up to 90 s) until `expression` is true in the page.
    fn wait_for(&mut self, what: &str, expression: &str) {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if self.eval(expression) == json!(true) {
                return;
            }
            if Instant::now() > deadline {
                let text = self.eval("document.body ? document.body.innerText : ''");
                panic!(
                    "the page never showed {what}; it shows:\n{}",
                    text.as_str().unwrap_or("")
                );
            }
            std::thread::sleep(Duration::from_millis(150));
        }
    }

    fn text(&mut self) -> String {
        self.eval("document.body ? document.body.innerText : ''")
            .as_str()
            .unwrap_or("")
            .to_string()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The whole human path in a real browser: the fleet page lists the
/// repository, its run page shows a run's events as they happen, the
/// gate is approved with the page's button (signed on the server) and the
/// next run seals it, which the open page shows live.
#[test]
fn a_browser_follows_a_run_live_and_approves_its_gate() {
    require_engine();
    let repo = TestRepo::new()
        .engine(&socket(EngineKind::Docker))
        .file("agent.sh", AGENT)
        .manifest(GATED)
        .commit("gated");
    let root = repo.path();
    let served = serve(&repo, &[root.to_str().unwrap()]);
    // No token, no page; a wrong token is no page either.
    assert_eq!(status_of(served.port, "/"), 404);
    assert_eq!(status_of(served.port, "/0123456789abcdef/"), 404);

    let mut browser = Browser::start();
    browser.open(&served.url);
    browser.wait_for(
        "the repository on the fleet page",
        &format!(
            "!!document.querySelector('#fleet a') && document.body.innerText.includes({})",
            json!(root.display().to_string())
        ),
    );
    let href = browser.eval("document.querySelector('#fleet a').href");
    browser.open(href.as_str().unwrap());
    browser.wait_for(
        "the live stream open",
        "document.body.dataset.live === 'yes'",
    );
    assert!(
        browser.text().contains("no run recorded yet"),
        "{}",
        browser.text()
    );

    // The run starts after the page is open: its events arrive live.
    let mut run = repo.spawn_quiet(&["run", "--plain"]);
    browser.wait_for(
        "the agent's events",
        "[...document.querySelectorAll('#events li')].some(li => li.textContent.includes('ship: run 1: agent exited 0'))",
    );
    let code = run.0.wait().unwrap().code();
    assert_eq!(code, Some(4), "a passing gated loop exits 4");
    browser.wait_for(
        "the approve button",
        "!!document.querySelector('form.approve button') && document.querySelector('[data-outcome]').dataset.outcome === 'gated'",
    );
    // The agent's markup is text on the page, never markup.
    browser.wait_for(
        "the agent's log tail",
        "document.querySelector('pre.log-agent') && document.querySelector('pre.log-agent').textContent.includes('<b id=\"injected\">')",
    );
    assert_eq!(
        browser.eval("document.getElementById('injected') === null"),
        json!(true)
    );

    browser.eval("document.querySelector('form.approve button').click()");
    browser.wait_for(
        "the approval recorded",
        "!!document.getElementById('note') && document.getElementById('note').textContent.includes('approved loop `ship`')",
    );
    browser.wait_for(
        "the live stream open again",
        "document.body.dataset.live === 'yes'",
    );

    let out = repo.proctor(&["run", "--plain"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    browser.wait_for(
        "the run closed",
        "document.querySelector('[data-outcome]').dataset.outcome === 'closed'",
    );
    assert!(repo.log("proctor/ship").iter().any(|l| l.contains("ship")));
    // `run` put the repository in the registry the fleet page reads.
    let registry = repo.home.path().join(".config/proctor/registry/repos");
    let listed = std::fs::read_to_string(&registry).unwrap_or_default();
    assert!(
        listed.lines().any(|l| l == root.to_str().unwrap()),
        "{listed}"
    );
    repo.assert_no_containers();
}

/// The web view listens on the host's loopback only: from a container on
/// the loop's network, the host's address on that network (its default
/// gateway) and the server's port cannot be connected to (refused here), while a listener
/// the test opens on all addresses is reached the same way (so the route
/// is there, and only the web view is out of reach).
fn no_container_reaches_the_web_view(engine: EngineKind) {
    require_engine();
    let open = std::net::TcpListener::bind(("0.0.0.0", 0)).unwrap();
    let open_port = open.local_addr().unwrap().port();
    // The container's connection is accepted (and dropped) here.
    std::thread::spawn(move || {
        for stream in open.incoming() {
            drop(stream);
        }
    });
    let probe = r#"import socket, struct, sys
gw = None
for line in open('/proc/net/route').read().splitlines()[1:]:
    f = line.split()
    if f[1] == '00000000':
        gw = socket.inet_ntoa(struct.pack('<L', int(f[2], 16)))
def reach(port):
    s = socket.socket()
    s.settimeout(10)
    try:
        s.connect((gw, port))
        return 'connected'
    except Exception as e:
        return type(e).__name__
    finally:
        s.close()
open('reach.txt', 'w').write('%s serve=%s open=%s\n' % (gw, reach(int(sys.argv[1])), reach(int(sys.argv[2]))))
"#;
    let repo = TestRepo::new()
        .engine(&socket(engine))
        .file("probe.py", probe)
        .commit("probe");
    let served = serve(&repo, &[]);
    assert_eq!(
        status_of(served.port, "/"),
        404,
        "the server answers on loopback"
    );
    let agent = format!("python3 probe.py {} {open_port}", served.port);
    let out = repo.proctor(&[
        "once",
        "--until",
        "test -f reach.txt",
        "--agent",
        &agent,
        "--",
        "probe",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let reach = repo
        .read_at("proctor/once", "reach.txt")
        .unwrap_or_default();
    assert!(
        reach.contains(" open=connected"),
        "the host's address on the loop's network is reachable: {reach}"
    );
    assert!(
        reach.contains(" serve=") && !reach.contains(" serve=connected"),
        "the web view is not: {reach}"
    );
    repo.assert_no_containers();
}

on_both_engines!(no_container_reaches_the_web_view);
