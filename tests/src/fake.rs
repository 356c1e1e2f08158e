//! A fake vault: a small HTTPS (or plain HTTP) server on loopback that answers what a test tells it to — a hostile
//! challenge, a redirect, silence, a trickle, a huge or non-JSON answer — and keeps every request it saw.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// A request as the fake vault received it.
#[derive(Clone, Debug)]
pub struct Seen {
    /// `GET`, `PUT`, …
    pub method: String,
    /// The path with the query.
    pub path: String,
    /// Header names lowercased.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Seen {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// What the fake vault answers.
#[derive(Clone, Debug)]
pub enum Reply {
    /// An HTTP answer.
    Http {
        /// Status code.
        status: u16,
        /// Headers besides Content-Length.
        headers: Vec<(String, String)>,
        /// Body.
        body: Vec<u8>,
    },
    /// Nothing, ever (the connection stays open).
    Hang,
    /// A valid start of an answer, then one byte every `every`.
    Trickle {
        /// Time between bytes.
        every: Duration,
    },
}

impl Reply {
    /// A JSON answer.
    pub fn json(status: u16, value: &serde_json::Value) -> Self {
        Self::Http {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: value.to_string().into_bytes(),
        }
    }

    /// Key Vault's 401 challenge naming `authority` (the token endpoint's base) and `resource`.
    pub fn challenge(authority: &str, resource: &str) -> Self {
        Self::Http {
            status: 401,
            headers: vec![(
                "www-authenticate".into(),
                format!("Bearer authorization=\"{authority}/tenant\", resource=\"{resource}\""),
            )],
            body: br#"{"error":{"code":"Unauthorized","message":"no token"}}"#.to_vec(),
        }
    }

    /// An Entra token answer.
    pub fn token() -> Self {
        Self::json(
            200,
            &serde_json::json!({"token_type": "Bearer", "expires_in": 3600, "access_token": "fake-access-token"}),
        )
    }

    /// A redirect to `location`.
    pub fn redirect(status: u16, location: &str) -> Self {
        Self::Http {
            status,
            headers: vec![("location".into(), location.into())],
            body: Vec::new(),
        }
    }
}

type Handler = dyn Fn(&Seen) -> Reply + Send + Sync;

/// The running fake vault. Stops when dropped.
pub struct FakeVault {
    /// `https://127.0.0.1:PORT` (or `http://` for a plain one).
    pub url: String,
    /// The port.
    pub port: u16,
    /// The CA that signed its certificate (PEM), for `--ca-file`.
    pub ca_file: PathBuf,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl std::fmt::Debug for FakeVault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeVault")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl FakeVault {
    /// An HTTPS fake vault whose certificate names 127.0.0.1, localhost and `names`.
    pub fn https(names: &[&str], handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Self {
        Self::start(Some(names), Arc::new(handler))
    }

    /// A plain-HTTP server (to catch what a client would re-send in clear).
    pub fn plain(handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Self {
        Self::start(None, Arc::new(handler))
    }

    fn start(tls_names: Option<&[&str]>, handler: Arc<Handler>) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca_file = dir.path().join("ca.pem");
        let acceptor = tls_names.map(|names| tls_acceptor(names, &ca_file));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("address").port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
        let seen_by_server = seen.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                loop {
                    let (tcp, _) = tokio::select! {
                        _ = &mut stop_rx => return,
                        accepted = listener.accept() => match accepted { Ok(a) => a, Err(_) => continue },
                    };
                    let (acceptor, handler, seen) = (acceptor.clone(), handler.clone(), seen_by_server.clone());
                    tokio::spawn(async move {
                        match acceptor {
                            Some(a) => {
                                if let Ok(tls) = a.accept(tcp).await {
                                    serve(tls, &*handler, &seen).await;
                                }
                            }
                            None => serve(tcp, &*handler, &seen).await,
                        }
                    });
                }
            });
        });
        let scheme = if tls_names.is_some() { "https" } else { "http" };
        Self {
            url: format!("{scheme}://127.0.0.1:{port}"),
            port,
            ca_file,
            seen,
            stop: Some(stop_tx),
            thread: Some(thread),
            _dir: dir,
        }
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("seen lock").clone()
    }
}

impl Drop for FakeVault {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn tls_acceptor(names: &[&str], ca_file: &std::path::Path) -> tokio_rustls::TlsAcceptor {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SanType};
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    let ca_cert = ca.self_signed(&ca_key).expect("CA certificate");
    std::fs::write(ca_file, ca_cert.pem()).expect("write CA");
    let issuer = Issuer::from_params(&ca, &ca_key);
    let mut all = vec!["localhost".to_owned()];
    all.extend(names.iter().map(|n| (*n).to_owned()));
    let mut params = CertificateParams::new(all).expect("server params");
    params
        .subject_alt_names
        .push(SanType::IpAddress("127.0.0.1".parse().expect("IP")));
    let key = KeyPair::generate().expect("server key");
    let cert = params.signed_by(&key, &issuer).expect("server certificate");
    let der_key = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).expect("key DER");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], der_key)
        .expect("server config");
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

/// Serves requests on one connection until it closes.
async fn serve<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, handler: &Handler, seen: &Mutex<Vec<Seen>>) {
    let mut buf = Vec::new();
    loop {
        let Some(request) = read_request(&mut stream, &mut buf).await else {
            return;
        };
        let reply = handler(&request);
        seen.lock().expect("seen lock").push(request);
        match reply {
            Reply::Http { status, headers, body } => {
                let mut head = format!("HTTP/1.1 {status} Fake\r\ncontent-length: {}\r\n", body.len());
                for (k, v) in headers {
                    head.push_str(&format!("{k}: {v}\r\n"));
                }
                head.push_str("\r\n");
                if stream.write_all(head.as_bytes()).await.is_err() || stream.write_all(&body).await.is_err() {
                    return;
                }
                let _ = stream.flush().await;
            }
            Reply::Hang => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                return;
            }
            Reply::Trickle { every } => {
                let head = "HTTP/1.1 200 Fake\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n\r\n";
                if stream.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                loop {
                    if stream.write_all(b" ").await.is_err() || stream.flush().await.is_err() {
                        return;
                    }
                    tokio::time::sleep(every).await;
                }
            }
        }
    }
}

async fn read_request<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut Vec<u8>) -> Option<Seen> {
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let (method, path) = (first.next()?.to_owned(), first.next()?.to_owned());
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    buf.drain(..end + 4);
    while buf.len() < len {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body: Vec<u8> = buf.drain(..len).collect();
    Some(Seen {
        method,
        path,
        headers,
        body,
    })
}
