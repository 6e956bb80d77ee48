//! TLS for the agent's HTTP servers (the REST API on :9999 and the
//! Prometheus endpoint on :8888): rustls with the ring provider, TLS 1.3
//! only, and mutual TLS when a CA file is given (a client without a
//! certificate signed by that CA is refused during the handshake).
//!
//! The config keys are the legacy ones of `[web_server]` and
//! `[rest_api_server]`: `ssl_auth`, `private_key`, `cert_file` (PEM), and
//! `ca_file` (PEM, optional: client certificates). [`load`] reads and checks
//! them; `Config::validate` calls it, so a bad file is a config error naming
//! the key and the file.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// How long a client may take to finish its handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshakes that may be in progress at once (more wait for the accept loop).
const MAX_HANDSHAKES: usize = 64;

/// The TLS files of one server section, as the config gives them.
#[derive(Debug, Clone, Copy)]
pub struct TlsFiles<'a> {
    /// `private_key`.
    pub private_key: Option<&'a Path>,
    /// `cert_file`.
    pub cert_file: Option<&'a Path>,
    /// `ca_file` (mutual TLS when set).
    pub ca_file: Option<&'a Path>,
}

/// A TLS setting that cannot be used: `key` is the config key (`private_key`,
/// `cert_file`, `ca_file`), `message` says what was wrong and names the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{key}`: {message}")]
pub struct TlsError {
    /// The key within the section.
    pub key: &'static str,
    /// What was expected.
    pub message: String,
}

fn err(key: &'static str, message: String) -> TlsError {
    TlsError { key, message }
}

fn read(key: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| err(key, format!("cannot read `{}`: {e}", path.display())))
}

fn certs(key: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(key, path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            err(
                key,
                format!("`{}` is not a PEM certificate file: {e}", path.display()),
            )
        })?;
    if certs.is_empty() {
        return Err(err(
            key,
            format!(
                "`{}` holds no certificate (expected PEM `-----BEGIN CERTIFICATE-----` blocks)",
                path.display()
            ),
        ));
    }
    Ok(certs)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read("private_key", path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| {
        err(
            "private_key",
            format!(
                "`{}` is not a PEM private key (PKCS#8, PKCS#1 or SEC1): {e}",
                path.display()
            ),
        )
    })
}

/// The crypto provider: ring.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads and checks the TLS files and builds the server config: TLS 1.3
/// only, HTTP/1.1 by ALPN, and client certificates verified against
/// `ca_file` when it is set (required then).
pub fn load(files: TlsFiles<'_>) -> Result<Arc<ServerConfig>, TlsError> {
    let key_path = files.private_key.ok_or_else(|| {
        err(
            "private_key",
            "expected the path of a PEM private key (ssl_auth is on), got none".into(),
        )
    })?;
    let cert_path = files.cert_file.ok_or_else(|| {
        err(
            "cert_file",
            "expected the path of a PEM certificate (ssl_auth is on), got none".into(),
        )
    })?;
    let key = private_key(key_path)?;
    let chain = certs("cert_file", cert_path)?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| err("ssl_auth", format!("TLS 1.3 is not available: {e}")))?;
    let builder = match files.ca_file {
        Some(ca_path) => {
            let mut roots = RootCertStore::empty();
            for c in certs("ca_file", ca_path)? {
                roots.add(c).map_err(|e| {
                    err(
                        "ca_file",
                        format!(
                            "`{}` holds a certificate that is not a usable CA: {e}",
                            ca_path.display()
                        ),
                    )
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .map_err(|e| {
                    err(
                        "ca_file",
                        format!(
                            "`{}` cannot verify client certificates: {e}",
                            ca_path.display()
                        ),
                    )
                })?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(chain, key).map_err(|e| {
        err(
            "cert_file",
            format!(
                "`{}` and the private key `{}` cannot be used together: {e}",
                cert_path.display(),
                key_path.display()
            ),
        )
    })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A TCP listener whose connections are TLS streams. Handshakes run in
/// their own tasks (a slow client holds up no one) for at most
/// [`HANDSHAKE_TIMEOUT`]; a failed one is logged at debug level and dropped.
#[derive(Debug)]
pub struct TlsListener {
    rx: tokio::sync::mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    accept_task: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    /// Starts accepting on `listener` with `config`. Must run inside a tokio
    /// runtime.
    pub fn new(listener: TcpListener, config: Arc<ServerConfig>) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        let acceptor = TlsAcceptor::from(config);
        let (tx, rx) = tokio::sync::mpsc::channel(MAX_HANDSHAKES);
        let slots = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
        let accept_task = tokio::spawn(async move {
            loop {
                let Ok(permit) = Arc::clone(&slots).acquire_owned().await else {
                    return;
                };
                let (tcp, peer) = match listener.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::debug!(error = %e, "TLS listener: accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let acceptor = acceptor.clone();
                let done = tx.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => {
                            let _ = done.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake refused");
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                        }
                    }
                });
                if tx.is_closed() {
                    return;
                }
            }
        });
        Ok(Self {
            rx,
            local,
            accept_task,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accept_task.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(c) => c,
            // The accept task ended (it only does when the listener is
            // dropped): nothing more will come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// Serves `router` over TLS on `listener` until `stop` resolves (the
/// requests in flight are finished first). Must run inside a tokio runtime.
pub async fn serve_router(
    listener: std::net::TcpListener,
    router: axum::Router,
    config: Arc<ServerConfig>,
    stop: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let listener = TcpListener::from_std(listener)?;
    let tls = TlsListener::new(listener, config)?;
    axum::serve(tls, router).with_graceful_shutdown(stop).await
}

/// The paths of a section's TLS keys, for messages.
pub fn describe(files: TlsFiles<'_>) -> String {
    let show = |p: Option<&Path>| p.map_or_else(|| "-".to_owned(), |p| p.display().to_string());
    format!(
        "key {}, certificate {}, client CA {}",
        show(files.private_key),
        show(files.cert_file),
        show(files.ca_file)
    )
}

/// Owned copy of [`TlsFiles`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsPaths {
    /// `private_key`.
    pub private_key: Option<PathBuf>,
    /// `cert_file`.
    pub cert_file: Option<PathBuf>,
    /// `ca_file`.
    pub ca_file: Option<PathBuf>,
}

impl TlsPaths {
    /// Borrowed view.
    pub fn files(&self) -> TlsFiles<'_> {
        TlsFiles {
            private_key: self.private_key.as_deref(),
            cert_file: self.cert_file.as_deref(),
            ca_file: self.ca_file.as_deref(),
        }
    }
}
