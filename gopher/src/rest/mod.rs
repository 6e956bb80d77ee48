//! The REST API (legacy 2.x compatible, `rest_api_server`, :9999) and the
//! local control socket that `gopher-ctl` uses; both serve the same router
//! over any [`ProbeControl`] (docs/rest-api.md, docs/rest-api.yaml).
//!
//! Routes:
//! - `GET /`: every resource (a JSON array of `ProbeView`s).
//! - `GET /<name>`: one resource: `{name, kind, state, cmd, params, snoopers, restarts}`.
//! - `PUT /<name>` (and `POST`, which the 2.x server read): a `json=<JSON>`
//!   form body or plain JSON, keys `state`, `cmd`, `params`, `snoopers`
//!   (see [`request`]). 200 `{"result":"success","message":"New config takes effect"}`.
//! - `GET /status`: `AgentStatus`; `GET /metrics`: the Prometheus text.
//!
//! Errors are `{"result":"failed","message":...}`: 400 for a bad request
//! (naming the key and what was expected; a body over 1 MiB too, as the
//! legacy server answered an oversized one), 404 for an unknown resource or
//! path, 405 with `Allow` for other methods. Bad input never gets a 5xx.

pub mod persist;
pub mod request;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::json;

use crate::control::{ControlError, ProbeControl, RESERVED_NAMES};
use persist::Persist;
use request::MAX_BODY;

/// The default path of the control socket (root only, mode 0600). `gopher-ctl`
/// keeps a copy of this path (ctl/).
pub const DEFAULT_SOCKET: &str = "/run/gala-gopher/gopher-ctl.sock";

/// The message of a change that was applied (the legacy server's text).
pub const SUCCESS_MESSAGE: &str = "New config takes effect";

/// What the router serves: the probes, and where accepted changes are kept.
#[derive(Clone)]
pub struct Api {
    control: Arc<dyn ProbeControl>,
    persist: Option<Arc<Persist>>,
    /// One change at a time: applied and kept in the same order.
    changes: Arc<std::sync::Mutex<()>>,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api")
            .field(
                "persist",
                &self.persist.as_ref().map(|p| p.path().to_owned()),
            )
            .finish_non_exhaustive()
    }
}

impl Api {
    /// Serves `control`; accepted changes are not kept.
    pub fn new(control: Arc<dyn ProbeControl>) -> Self {
        Self {
            control,
            persist: None,
            changes: Arc::default(),
        }
    }

    /// Keeps accepted changes in `<state_dir>/probes.json` ([`persist`]).
    pub fn with_state_dir(self, state_dir: &Path) -> Self {
        self.with_persist(Arc::new(Persist::open(state_dir)))
    }

    /// Keeps accepted changes in `persist` (share one between the TCP
    /// server and the socket).
    pub fn with_persist(mut self, persist: Arc<Persist>) -> Self {
        self.persist = Some(persist);
        self
    }

    /// The router.
    pub fn router(&self) -> Router {
        Router::new().fallback(handle).with_state(self.clone())
    }
}

fn reply(status: StatusCode, message: &str) -> Response {
    let result = if status == StatusCode::OK {
        "success"
    } else {
        "failed"
    };
    json_response(status, &json!({"result": result, "message": message}))
}

fn json_response(status: StatusCode, v: &impl serde::Serialize) -> Response {
    match serde_json::to_string(v) {
        Ok(body) => (status, [(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

fn not_allowed(allow: &'static str, method: &Method) -> Response {
    let mut r = reply(
        StatusCode::METHOD_NOT_ALLOWED,
        &format!("Method not allowed: {method} (allowed: {allow})"),
    );
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    r
}

fn not_found(what: &str) -> Response {
    reply(StatusCode::NOT_FOUND, what)
}

async fn handle(
    State(api): State<Api>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let path = uri.path();
    if path == "/" {
        return if method == Method::GET {
            json_response(StatusCode::OK, &api.control.list())
        } else {
            not_allowed("GET", &method)
        };
    }
    // CONNECT (authority form) and `OPTIONS *` have no path starting with '/'.
    let name = path.strip_prefix('/').unwrap_or_default();
    if name.is_empty() || name.contains('/') {
        return not_found(&format!("Url not found: {path}"));
    }
    if RESERVED_NAMES.contains(&name) {
        if method != Method::GET {
            return not_allowed("GET", &method);
        }
        return match name {
            "status" => json_response(StatusCode::OK, &api.control.status()),
            _ => (
                StatusCode::OK,
                [(
                    header::CONTENT_TYPE,
                    crate::export::prometheus::CONTENT_TYPE,
                )],
                api.control.metrics(),
            )
                .into_response(),
        };
    }
    match method {
        Method::GET => match api.control.get(name) {
            Some(view) => json_response(StatusCode::OK, &view),
            None => not_found(&format!("Url not found: no probe named `{name}`")),
        },
        Method::PUT | Method::POST => put(api, name.to_owned(), &headers, body).await,
        _ => not_allowed("GET, PUT, POST", &method),
    }
}

async fn put(api: Api, name: String, headers: &HeaderMap, body: Body) -> Response {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(len) = declared.filter(|l| *l > MAX_BODY as u64) {
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        return reply(
            StatusCode::BAD_REQUEST,
            &request::too_large(len).to_string(),
        );
    }
    let bytes = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return reply(
                StatusCode::BAD_REQUEST,
                &request::too_large(MAX_BODY + 1).to_string(),
            )
        }
    };
    if api.control.get(&name).is_none() {
        return not_found(&format!("Url not found: no probe named `{name}`"));
    }
    let checked = match request::extract_json(&bytes).and_then(|j| request::check(&j)) {
        Ok(c) => c,
        Err(e) => return reply(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    // Applying may start or stop a probe: off the async thread.
    let result = tokio::task::spawn_blocking(move || {
        let _one_at_a_time = api.changes.lock().unwrap_or_else(|p| p.into_inner());
        let r = api.control.apply(&name, &checked.change);
        if r.is_ok() {
            if let Some(p) = &api.persist {
                if let Err(e) = p.record(&name, &checked.persist) {
                    tracing::error!(probe = %name, "the change is applied but will not survive a restart: {e}");
                }
            }
            tracing::info!(probe = %name, "REST change applied");
        }
        r
    })
    .await;
    match result {
        Ok(Ok(())) => reply(StatusCode::OK, SUCCESS_MESSAGE),
        Ok(Err(ControlError::UnknownProbe(n))) => {
            not_found(&format!("Url not found: no probe named `{n}`"))
        }
        Ok(Err(e)) => reply(StatusCode::BAD_REQUEST, &e.to_string()),
        Err(e) => {
            tracing::error!(error = %e, "REST change: the apply task failed");
            reply(
                StatusCode::BAD_REQUEST,
                "the change could not be applied (see the agent's log)",
            )
        }
    }
}

/// Serves the API on `listener` (TLS when `tls` is given) until `stop`
/// resolves; requests in flight are finished first. Must run inside a tokio
/// runtime.
pub async fn serve(
    listener: std::net::TcpListener,
    api: Api,
    tls: Option<Arc<rustls::ServerConfig>>,
    stop: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    let router = api.router();
    match tls {
        Some(config) => {
            tracing::info!(%addr, "serving the REST API over TLS 1.3");
            crate::tls::serve_router(listener, router, config, stop).await
        }
        None => {
            tracing::info!(%addr, "serving the REST API");
            listener.set_nonblocking(true)?;
            let listener = tokio::net::TcpListener::from_std(listener)?;
            axum::serve(listener, router)
                .with_graceful_shutdown(stop)
                .await
        }
    }
}

/// A Unix socket bound for [`serve_unix`]: created fresh with mode 0600
/// (root only), removed when dropped.
#[derive(Debug)]
pub struct UnixSocket {
    path: PathBuf,
    listener: Option<std::os::unix::net::UnixListener>,
}

impl UnixSocket {
    /// Binds `path`: its directory is created (0755) when missing, a stale
    /// socket there is replaced, anything else there is an error. The socket
    /// is bound under a temporary name, set to 0600, then renamed into
    /// place, so it is never reachable with looser permissions.
    pub fn bind(path: &Path) -> std::io::Result<Self> {
        use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
        let dir = path.parent().unwrap_or(Path::new("/"));
        if !dir.as_os_str().is_empty() && !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(dir)?;
        }
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_socket() => std::fs::remove_file(path)?,
            Ok(_) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    format!("{} exists and is not a socket", path.display()),
                ))
            }
            Err(_) => {}
        }
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "gopher-ctl.sock".into());
        let tmp = dir.join(format!(".{file_name}.{}", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        let listener = std::os::unix::net::UnixListener::bind(&tmp)?;
        let placed = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
            .and_then(|()| std::fs::rename(&tmp, path));
        if let Err(e) = placed {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        listener.set_nonblocking(true)?;
        Ok(Self {
            path: path.to_owned(),
            listener: Some(listener),
        })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for UnixSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Serves the API on a bound [`UnixSocket`] until `stop` resolves; the
/// socket file is removed when this returns. Must run inside a tokio runtime.
pub async fn serve_unix(
    mut socket: UnixSocket,
    api: Api,
    stop: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let Some(std_listener) = socket.listener.take() else {
        return Ok(());
    };
    let listener = tokio::net::UnixListener::from_std(std_listener)?;
    tracing::info!(path = %socket.path.display(), "serving the control socket");
    let r = axum::serve(listener, api.router())
        .with_graceful_shutdown(stop)
        .await;
    drop(socket);
    r
}

/// The environment variable that moves the control socket (tests run
/// several agents at once); [`DEFAULT_SOCKET`] otherwise.
pub const SOCKET_ENV: &str = "GALA_GOPHER_CTL_SOCKET";

/// The control socket's path: `$GALA_GOPHER_CTL_SOCKET`, or [`DEFAULT_SOCKET`].
pub fn socket_path() -> PathBuf {
    std::env::var_os(SOCKET_ENV)
        .filter(|p| !p.is_empty())
        .map_or_else(|| PathBuf::from(DEFAULT_SOCKET), PathBuf::from)
}

/// The control servers of a running agent: the REST API (when
/// `global.rest_api_on`) and the control socket, sharing one state file.
#[derive(Debug)]
pub struct Servers {
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<(String, tokio::task::JoinHandle<std::io::Result<()>>)>,
}

/// Why [`start`] refused.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The REST address could not be bound.
    #[error("rest_api_server: cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The TLS files of `[rest_api_server]` cannot be used.
    #[error("rest_api_server.{0}")]
    Tls(#[from] crate::tls::TlsError),
}

/// Starts the REST API (when `cfg.global.rest_api_on`, on
/// `rest_api_server.bind_addr:port`, TLS when `ssl_auth`) and the control
/// socket at [`socket_path`] (always; when it cannot be made, e.g. without
/// root, that is logged and the agent goes on without it). Changes are kept
/// in `global.state_dir` ([`persist`]). Must run inside a tokio runtime;
/// stop with [`Servers::stop`].
pub fn start(
    cfg: &crate::config::Config,
    control: Arc<dyn ProbeControl>,
) -> Result<Servers, StartError> {
    start_at(cfg, control, &socket_path())
}

/// [`start`] with the control socket at `socket`.
pub fn start_at(
    cfg: &crate::config::Config,
    control: Arc<dyn ProbeControl>,
    socket: &Path,
) -> Result<Servers, StartError> {
    let persist = Arc::new(Persist::open(&cfg.global.state_dir));
    let api = Api::new(control).with_persist(persist);
    let (stop, rx) = tokio::sync::watch::channel(false);
    let stopped = move |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let mut tasks = Vec::new();
    if cfg.global.rest_api_on {
        let r = &cfg.rest_api_server;
        let tls = if r.ssl_auth {
            Some(crate::tls::load(crate::tls::TlsFiles {
                private_key: r.private_key.as_deref(),
                cert_file: r.cert_file.as_deref(),
                ca_file: r.ca_file.as_deref(),
            })?)
        } else {
            None
        };
        let addr = std::net::SocketAddr::new(r.bind_addr, r.port);
        let listener = std::net::TcpListener::bind(addr)
            .map_err(|source| StartError::Bind { addr, source })?;
        tasks.push((
            format!("REST API on {addr}"),
            tokio::spawn(serve(listener, api.clone(), tls, stopped(rx.clone()))),
        ));
    }
    let path = socket.to_owned();
    match UnixSocket::bind(&path) {
        Ok(socket) => tasks.push((
            format!("control socket {}", path.display()),
            tokio::spawn(serve_unix(socket, api, stopped(rx))),
        )),
        Err(e) => tracing::warn!(
            path = %path.display(),
            error = %e,
            "cannot create the control socket (gopher-ctl needs --url then); the agent runs without it"
        ),
    }
    Ok(Servers { stop, tasks })
}

impl Servers {
    /// Stops accepting, finishes the requests in flight (for at most 5 s),
    /// and removes the socket.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for (what, mut task) in self.tasks {
            match tokio::time::timeout(std::time::Duration::from_secs(5), &mut task).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => tracing::warn!("{what}: {e}"),
                Ok(Err(e)) => tracing::warn!("{what}: the task failed: {e}"),
                Err(_) => {
                    task.abort();
                    tracing::warn!("{what}: requests still open after 5 s: closed");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
