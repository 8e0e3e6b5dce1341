//! `proctor serve`: a local web view of this machine's runs. It owns the
//! HTTP server (axum), its guards (a random token in every URL, a Host
//! check against DNS rebinding, a CSRF token and an Origin check on every
//! form) and the pages' live updates (server-sent events replayed from
//! each repository's events file).
//!
//! It binds to 127.0.0.1 only: a container, on any bridge or network
//! proctor makes, reaches the host through a bridge address, where
//! nothing listens. It must never start a run, an exam or a container, and
//! never sign anything but what a person posted through a page that
//! carried the token and the CSRF token; approvals go through the same
//! signing path as `proctor answer` (`cli::answer`), bound to the commit
//! the page showed.

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Form, Path as UrlPath, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use futures_util::stream::Stream;

use crate::state::key::random_id;

mod page;

/// How often a live page's repository is looked at again.
const POLL: Duration = Duration::from_millis(400);

/// The repositories a server shows.
#[derive(Debug, Clone)]
pub struct Fleet {
    /// Given on the command line (absolute repository roots).
    pub given: Vec<PathBuf>,
    /// The registry file `proctor run` adds to (`state::registry`).
    pub registry: PathBuf,
}

impl Fleet {
    /// The given repositories first, then the registered ones, each once.
    pub fn repos(&self) -> Vec<PathBuf> {
        let mut out = self.given.clone();
        for repo in crate::state::registry::load(&self.registry) {
            if !out.contains(&repo) {
                out.push(repo);
            }
        }
        out
    }

    fn find(&self, id: &str) -> Option<PathBuf> {
        self.repos().into_iter().find(|r| repo_id(r) == id)
    }
}

/// A repository's id in URLs: a hash of its path, so a URL never carries
/// the path and stays the same across restarts.
pub fn repo_id(root: &Path) -> String {
    let digest = crate::protect::fsafe::sha256(root.as_os_str().as_encoded_bytes());
    hex::encode(&digest[..6])
}

/// A person's decision posted from a page: (repository root, loop,
/// commit the page showed or answer text) to a line for the page, or why
/// nothing was recorded. The command line provides these, so the web view
/// signs through the same code as `proctor answer`.
pub type Decide = Box<dyn Fn(&Path, &str, &str) -> Result<String, String> + Send + Sync>;

/// How a page's forms are recorded.
pub struct Decisions {
    /// Approves a gated loop at the commit the page showed.
    pub approve: Decide,
    /// Answers a blocked loop.
    pub answer: Decide,
}

/// One server's secrets and what it shows.
pub struct Server {
    token: String,
    csrf: String,
    port: u16,
    fleet: Fleet,
    decisions: Decisions,
}

impl Server {
    /// A server for `fleet` that will listen on 127.0.0.1:`port`, with a
    /// fresh token and CSRF token.
    pub fn new(fleet: Fleet, port: u16, decisions: Decisions) -> Server {
        Server {
            token: random_id(24),
            csrf: random_id(24),
            port,
            fleet,
            decisions,
        }
    }

    /// The URL to open (it carries the token).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/{}/", self.port, self.token)
    }

    /// The request came through a URL with the token, to 127.0.0.1 or
    /// localhost on this port (a page of another site that rebinds its
    /// name to 127.0.0.1 sends its own name as Host).
    fn admit(&self, token: &str, headers: &HeaderMap) -> Result<(), Refusal> {
        let host_ok = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .is_some_and(|h| {
                h == format!("127.0.0.1:{}", self.port) || h == format!("localhost:{}", self.port)
            });
        if !host_ok {
            return Err(Refusal(StatusCode::FORBIDDEN, "wrong Host header"));
        }
        if !same(token, &self.token) {
            return Err(Refusal(StatusCode::NOT_FOUND, "not found"));
        }
        Ok(())
    }

    /// A form post: it carries the CSRF token of this server's pages, and
    /// a browser that names the page's origin names this one.
    fn admit_form(&self, token: &str, headers: &HeaderMap, csrf: &str) -> Result<(), Refusal> {
        self.admit(token, headers)?;
        let origin_ok = match headers.get(header::ORIGIN).map(|o| o.to_str()) {
            None => true,
            Some(Ok(origin)) => {
                origin == format!("http://127.0.0.1:{}", self.port)
                    || origin == format!("http://localhost:{}", self.port)
            }
            Some(Err(_)) => false,
        };
        let site_ok = headers
            .get("sec-fetch-site")
            .and_then(|s| s.to_str().ok())
            .is_none_or(|s| s == "same-origin" || s == "none");
        if !origin_ok || !site_ok || !same(csrf, &self.csrf) {
            return Err(Refusal(
                StatusCode::FORBIDDEN,
                "refused: the form did not come from this server's page (CSRF check)",
            ));
        }
        Ok(())
    }
}

/// Why a request was turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal(StatusCode, &'static str);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        refuse(self.0, self.1)
    }
}

/// Compares secrets in time independent of where they differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn refuse(status: StatusCode, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{message}\n"),
    )
        .into_response()
}

/// Headers every page carries: no framing (a framed approve button could
/// be clicked by a page on top), a referrer only to this server (the URL holds the token; `no-referrer`
/// would make a browser send `Origin: null` with the forms),
/// no caching, scripts only from this server.
fn html(body: String) -> Response {
    let mut response = (StatusCode::OK, body).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    response
}

/// The app, routes and guards.
pub fn router(server: Arc<Server>) -> Router {
    Router::new()
        .route("/{token}/", get(fleet_page))
        .route("/{token}/app.js", get(app_js))
        .route("/{token}/repo/{id}", get(repo_page))
        .route("/{token}/repo/{id}/events", get(repo_events))
        .route("/{token}/repo/{id}/approve", post(decide::<ApproveForm>))
        .route("/{token}/repo/{id}/answer", post(decide::<AnswerForm>))
        .fallback(|| async { refuse(StatusCode::NOT_FOUND, "not found") })
        .with_state(server)
}

/// Serves until the listener fails or `stop` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    server: Arc<Server>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    tokio::select! {
        r = axum::serve(listener, router(server)) => r,
        () = stop => Ok(()),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Response> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| refuse(StatusCode::INTERNAL_SERVER_ERROR, "internal error"))
}

async fn fleet_page(
    State(s): State<Arc<Server>>,
    UrlPath(token): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = s.admit(&token, &headers) {
        return r.into_response();
    }
    let repos = s.fleet.repos();
    match blocking(move || page::fleet(&repos)).await {
        Ok(body) => html(body),
        Err(r) => r,
    }
}

async fn app_js(
    State(s): State<Arc<Server>>,
    UrlPath(token): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = s.admit(&token, &headers) {
        return r.into_response();
    }
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        page::APP_JS,
    )
        .into_response()
}

#[derive(Debug, serde::Deserialize)]
struct PageQuery {
    note: Option<String>,
}

async fn repo_page(
    State(s): State<Arc<Server>>,
    UrlPath((token, id)): UrlPath<(String, String)>,
    Query(query): Query<PageQuery>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = s.admit(&token, &headers) {
        return r.into_response();
    }
    let Some(root) = s.fleet.find(&id) else {
        return refuse(StatusCode::NOT_FOUND, "no such repository");
    };
    let csrf = s.csrf.clone();
    match blocking(move || page::repo(&root, &csrf, query.note.as_deref())).await {
        Ok(body) => html(body),
        Err(r) => r,
    }
}

/// What a live stream has sent so far.
struct Follow {
    root: PathBuf,
    csrf: String,
    offset: u64,
    sent: HashMap<&'static str, String>,
    queue: std::collections::VecDeque<SseEvent>,
    first: bool,
}

/// The last events file bytes a page starts from.
const BACKLOG: u64 = 64 * 1024;

impl Follow {
    /// New event lines and changed sections since the last look.
    fn look(&mut self) {
        let (lines, offset) =
            page::new_lines(&self.root, self.offset, self.first.then_some(BACKLOG));
        self.offset = offset;
        self.first = false;
        for line in lines {
            self.queue
                .push_back(SseEvent::default().event("line").data(line));
        }
        for (id, html) in page::sections(&self.root, &self.csrf) {
            if self.sent.get(id) != Some(&html) {
                let data = serde_json::json!({ "id": id, "html": html }).to_string();
                self.queue
                    .push_back(SseEvent::default().event("section").data(data));
                self.sent.insert(id, html);
            }
        }
    }
}

async fn repo_events(
    State(s): State<Arc<Server>>,
    UrlPath((token, id)): UrlPath<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = s.admit(&token, &headers) {
        return r.into_response();
    }
    let Some(root) = s.fleet.find(&id) else {
        return refuse(StatusCode::NOT_FOUND, "no such repository");
    };
    let follow = Follow {
        root,
        csrf: s.csrf.clone(),
        offset: 0,
        sent: HashMap::new(),
        queue: Default::default(),
        first: true,
    };
    Sse::new(live(follow))
        .keep_alive(KeepAlive::default())
        .into_response()
}

fn live(follow: Follow) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    futures_util::stream::unfold(Some(follow), |state| async move {
        let mut follow = state?;
        loop {
            if let Some(event) = follow.queue.pop_front() {
                return Some((Ok(event), Some(follow)));
            }
            if !follow.first {
                tokio::time::sleep(POLL).await;
            }
            follow = match tokio::task::spawn_blocking(move || {
                follow.look();
                follow
            })
            .await
            {
                Ok(f) => f,
                Err(_) => return None,
            };
        }
    })
}

#[derive(Debug, serde::Deserialize)]
struct ApproveForm {
    #[serde(rename = "loop")]
    loop_id: String,
    commit: String,
    csrf: String,
}

#[derive(Debug, serde::Deserialize)]
struct AnswerForm {
    #[serde(rename = "loop")]
    loop_id: String,
    text: String,
    csrf: String,
}

/// A form that records a person's decision: which of the server's
/// [`Decisions`] it goes through, and how a refused one is answered.
/// Approving and answering differ only in these; the guards, the lookup
/// and the way back are one path ([`decide`]).
trait DecisionForm: serde::de::DeserializeOwned + Send + 'static {
    const DECISION: fn(&Decisions) -> &Decide;
    /// The status of a decision the command line's path refused.
    const REFUSED: StatusCode;
    /// (loop, the commit the page showed or the answer's text, CSRF token).
    fn into_parts(self) -> [String; 3];
}

impl DecisionForm for ApproveForm {
    const DECISION: fn(&Decisions) -> &Decide = |d| &d.approve;
    const REFUSED: StatusCode = StatusCode::CONFLICT;
    fn into_parts(self) -> [String; 3] {
        [self.loop_id, self.commit, self.csrf]
    }
}

impl DecisionForm for AnswerForm {
    const DECISION: fn(&Decisions) -> &Decide = |d| &d.answer;
    const REFUSED: StatusCode = StatusCode::BAD_REQUEST;
    fn into_parts(self) -> [String; 3] {
        [self.loop_id, self.text, self.csrf]
    }
}

fn back_to(token: &str, id: &str, note: &str) -> Response {
    let location = format!("/{token}/repo/{id}?note={}", page::url_encode(note));
    (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response()
}

/// `approve` and `answer`: admitted (token, Host, Origin, CSRF), the
/// repository found, the decision recorded off the async threads, then
/// back to the run's page with the note.
async fn decide<F: DecisionForm>(
    State(s): State<Arc<Server>>,
    UrlPath((token, id)): UrlPath<(String, String)>,
    headers: HeaderMap,
    Form(form): Form<F>,
) -> Response {
    let [loop_id, value, csrf] = form.into_parts();
    if let Err(r) = s.admit_form(&token, &headers, &csrf) {
        return r.into_response();
    }
    let Some(root) = s.fleet.find(&id) else {
        return refuse(StatusCode::NOT_FOUND, "no such repository");
    };
    let server = Arc::clone(&s);
    let result = blocking(move || (F::DECISION(&server.decisions))(&root, &loop_id, &value)).await;
    match result {
        Ok(Ok(note)) => back_to(&token, &id, &note),
        Ok(Err(message)) => refuse(F::REFUSED, &message),
        Err(r) => r,
    }
}

#[cfg(test)]
mod tests;
