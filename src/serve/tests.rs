//! The guards, on a real listener with fake decisions: no token no page,
//! a foreign Host or Origin or a missing CSRF token is refused, and a
//! refused decision (a stale page) is a 409 that records nothing.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::*;

struct Running {
    port: u16,
    token: String,
    csrf: String,
    approvals: Arc<AtomicUsize>,
    repo_id: String,
    _dir: tempfile::TempDir,
}

async fn start() -> Running {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("repo");
    std::fs::create_dir_all(root.join(".git")).unwrap();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let approvals = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&approvals);
    let decisions = Decisions {
        approve: Box::new(move |_, _, commit| {
            if commit == "current" {
                counted.fetch_add(1, Ordering::SeqCst);
                Ok("approved".into())
            } else {
                Err("the page showed another commit: nothing was signed".into())
            }
        }),
        answer: Box::new(|_, _, _| Ok("answered".into())),
    };
    let fleet = Fleet {
        given: vec![root.clone()],
        registry: dir.path().join("none"),
    };
    let server = Arc::new(Server::new(fleet, port, decisions));
    let (token, csrf) = (server.token.clone(), server.csrf.clone());
    tokio::spawn(serve(listener, server, std::future::pending()));
    Running {
        port,
        token,
        csrf,
        approvals,
        repo_id: repo_id(&root),
        _dir: dir,
    }
}

/// One raw HTTP/1.1 request; the status code.
async fn status(port: u16, request: String) -> u16 {
    tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0)
    })
    .await
    .unwrap()
}

fn get(path: &str, host: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
}

fn post(path: &str, host: &str, origin: Option<&str>, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\n{}Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        origin.map(|o| format!("Origin: {o}\r\n")).unwrap_or_default(),
        body.len()
    )
}

#[tokio::test]
async fn every_guard_holds() {
    let r = start().await;
    let host = format!("127.0.0.1:{}", r.port);
    let origin = format!("http://{host}");
    let t = &r.token;
    assert_eq!(status(r.port, get("/", &host)).await, 404);
    assert_eq!(status(r.port, get("/nottoken/", &host)).await, 404);
    assert_eq!(status(r.port, get(&format!("/{t}/"), &host)).await, 200);
    assert_eq!(
        status(r.port, get(&format!("/{t}/repo/{}", r.repo_id), &host)).await,
        200
    );
    assert_eq!(
        status(r.port, get(&format!("/{t}/repo/ffffffffffff"), &host)).await,
        404
    );
    // A name rebound to 127.0.0.1 arrives with its own Host.
    let rebound = format!("evil.example:{}", r.port);
    assert_eq!(status(r.port, get(&format!("/{t}/"), &rebound)).await, 403);

    let approve = format!("/{t}/repo/{}/approve", r.repo_id);
    let good = format!("loop=ship&commit=current&csrf={}", r.csrf);
    let cases = [
        (
            post(
                &approve,
                &host,
                Some(&origin),
                "loop=ship&commit=current&csrf=wrong",
            ),
            403,
        ),
        (
            post(&approve, &host, Some("http://evil.example"), &good),
            403,
        ),
        (post(&approve, &host, Some("null"), &good), 403),
        (post(&approve, &rebound, Some(&origin), &good), 403),
        (
            post(
                &approve,
                &host,
                Some(&origin),
                &format!("loop=ship&commit=older&csrf={}", r.csrf),
            ),
            409,
        ),
    ];
    for (request, code) in cases {
        assert_eq!(status(r.port, request.clone()).await, code, "{request}");
    }
    assert_eq!(r.approvals.load(Ordering::SeqCst), 0, "nothing was signed");
    assert_eq!(
        status(r.port, post(&approve, &host, Some(&origin), &good)).await,
        303
    );
    assert_eq!(r.approvals.load(Ordering::SeqCst), 1);
}
