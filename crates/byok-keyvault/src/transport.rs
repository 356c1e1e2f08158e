//! The one HTTP client byok builds, for the vault and the token endpoint alike: no redirects, timeouts, a proxy
//! byok chose itself (so that an error can name it), and answers capped in size. Key Vault never redirects and
//! answers in KiB; anything else is a wrong URL, a captive portal or something in the middle.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use azure_core::error::{Error as SdkError, ErrorKind};
use azure_core::http::headers::{HeaderName, HeaderValue, Headers};
use azure_core::http::{AsyncRawResponse, Body, HttpClient, Method, Request, Transport};

use crate::Error;

/// No vault or token answer byok reads is near this size; a larger one is refused, not buffered.
pub const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// How long byok waits on the network. Each limit that runs out is named in the error, and the request is retried
/// like any other transient failure (an import is looked up before it is sent again).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// To open the TCP connection and finish the TLS handshake.
    pub connect: Duration,
    /// Of silence while waiting for the answer's next bytes.
    pub read: Duration,
    /// For a whole request and its answer, however the bytes trickle in.
    pub request: Duration,
}

impl Default for Timeouts {
    /// 10 s to connect, 30 s of silence, 120 s for a request.
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(10),
            read: Duration::from_secs(30),
            request: Duration::from_secs(120),
        }
    }
}

/// The proxy a URL goes through, and the variable that named it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ProxyChoice {
    pub(crate) variable: &'static str,
    pub(crate) url: String,
}

/// Proxy settings as the conventional variables give them (`HTTPS_PROXY`, `ALL_PROXY`, `NO_PROXY`, either case).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ProxyEnv {
    proxy: Option<ProxyChoice>,
    no_proxy: Vec<String>,
}

impl ProxyEnv {
    pub(crate) fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Self {
        let get = |k: &str| var(k).filter(|v| !v.trim().is_empty());
        const NAMES: [&str; 4] = ["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"];
        let proxy = NAMES.into_iter().find_map(|variable| {
            get(variable).map(|url| ProxyChoice {
                variable,
                url: url.trim().to_owned(),
            })
        });
        let no_proxy = get("NO_PROXY")
            .or_else(|| get("no_proxy"))
            .map(|v| {
                v.split(',')
                    .map(|s| s.trim().trim_start_matches('.').to_ascii_lowercase())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        Self { proxy, no_proxy }
    }

    /// The proxy for an https URL; none for plain http (the managed identity endpoint is link-local), for loopback
    /// hosts and for hosts `NO_PROXY` lists (a name matches itself and its subdomains; `*` matches all).
    pub(crate) fn for_url(&self, url: &url::Url) -> Option<&ProxyChoice> {
        let proxy = self.proxy.as_ref()?;
        if url.scheme() != "https" {
            return None;
        }
        let host = crate::host::normalise(url.host_str()?);
        if crate::host::is_loopback(&host) {
            return None;
        }
        let excluded = self.no_proxy.iter().any(|n| {
            n == "*" || host == *n || host.ends_with(&format!(".{n}")) || n.split(':').next() == Some(host.as_str())
        });
        (!excluded).then_some(proxy)
    }
}

/// Builds the transport the SDK clients and credentials share.
pub(crate) fn build(extra_ca_pem: Option<&[u8]>, timeouts: Timeouts, proxies: ProxyEnv) -> Result<Transport, Error> {
    let proxies = Arc::new(proxies);
    let mut http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(timeouts.connect)
        .read_timeout(timeouts.read)
        .timeout(timeouts.request);
    if let Some(p) = proxies.proxy.as_ref() {
        reqwest::Url::parse(&p.url)
            .map_err(|e| Error::Credential(format!("the proxy `{}` in {} is not a URL ({e})", p.url, p.variable)))?;
        let decide = proxies.clone();
        http = http.proxy(reqwest::Proxy::custom(move |url| {
            decide.for_url(url).map(|p| p.url.clone())
        }));
    } else {
        http = http.no_proxy();
    }
    if let Some(pem) = extra_ca_pem {
        let certs = reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|e| Error::CaFile(format!("it is not PEM certificates ({e})")))?;
        if certs.is_empty() {
            return Err(Error::CaFile("it holds no PEM certificate".into()));
        }
        http = http.tls_certs_merge(certs);
    }
    let http = http
        .build()
        .map_err(|e| Error::Credential(format!("cannot build the HTTP client: {e}")))?;
    Ok(Transport::new(Arc::new(Guarded {
        http,
        timeouts,
        proxies,
    })))
}

/// reqwest behind byok's rules: errors that say which limit or which proxy, answers read whole but capped.
struct Guarded {
    http: reqwest::Client,
    timeouts: Timeouts,
    proxies: Arc<ProxyEnv>,
}

impl fmt::Debug for Guarded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Guarded")
            .field("timeouts", &self.timeouts)
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl HttpClient for Guarded {
    async fn execute_request(&self, request: &Request) -> azure_core::Result<AsyncRawResponse> {
        let url = request.url().clone();
        let mut req = self.http.request(method(request.method()), url.clone());
        for (name, value) in request.headers().iter() {
            req = req.header(name.as_str(), value.as_str());
        }
        req = match request.body() {
            Body::Bytes(bytes) => req.body(bytes.clone()),
            Body::SeekableStream(_) => {
                return Err(SdkError::with_message(
                    ErrorKind::Other,
                    "byok sends no streamed bodies",
                ));
            }
        };
        let mut rsp = req.send().await.map_err(|e| self.network_error(&url, e))?;
        let status = rsp.status().as_u16();
        if let Some(len) = rsp.content_length()
            && len > MAX_ANSWER_BYTES as u64
        {
            return Err(too_large(&url, len));
        }
        let headers = headers(rsp.headers());
        let mut body = Vec::new();
        while let Some(chunk) = rsp.chunk().await.map_err(|e| self.network_error(&url, e))? {
            if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(too_large(&url, (body.len() + chunk.len()) as u64));
            }
            body.extend_from_slice(&chunk);
        }
        if (300..400).contains(&status) {
            let to = headers
                .get_optional_str(&HeaderName::from_static("location"))
                .unwrap_or("nowhere");
            return Err(Refusal::error(
                crate::Cause::Redirect,
                format!(
                    "{} answered HTTP {status}, a redirect to {to}; Key Vault and Entra never redirect, so byok does not \
                     follow (check the URL, or what sits between byok and the vault)",
                    origin(&url)
                ),
            ));
        }
        Ok(AsyncRawResponse::from_bytes(status.into(), headers, body))
    }
}

impl Guarded {
    /// A reqwest failure as the SDK kinds byok's retry policy sorts, with the limit or proxy named.
    fn network_error(&self, url: &url::Url, e: reqwest::Error) -> SdkError {
        let at = origin(url);
        let via = self
            .proxies
            .for_url(url)
            .map(|p| format!(" through the proxy {} (from {})", p.url, p.variable));
        if e.is_timeout() {
            let t = self.timeouts;
            let message = if e.is_connect() {
                format!(
                    "cannot connect to {at}{} within {} s (--connect-timeout)",
                    via.unwrap_or_default(),
                    t.connect.as_secs_f64()
                )
            } else {
                format!(
                    "{at} did not answer in time{}: {} s of silence (--read-timeout) or {} s in all (--request-timeout)",
                    via.unwrap_or_default(),
                    t.read.as_secs_f64(),
                    t.request.as_secs_f64()
                )
            };
            let kind = if e.is_connect() {
                ErrorKind::Connection
            } else {
                ErrorKind::Io
            };
            return SdkError::with_error(kind, e, message);
        }
        if e.is_connect() {
            let message = match via {
                Some(via) => format!("cannot reach {at}{via}: the proxy itself cannot be reached or refused"),
                None => format!("cannot reach {at}"),
            };
            return SdkError::with_error(ErrorKind::Connection, e, message);
        }
        SdkError::with_error(ErrorKind::Io, e, format!("the exchange with {at} broke off"))
    }
}

fn too_large(url: &url::Url, len: u64) -> SdkError {
    Refusal::error(
        crate::Cause::AnswerTooLarge,
        format!(
            "the answer from {} is larger than {MAX_ANSWER_BYTES} bytes ({len} or more); Key Vault answers are a few \
             KiB, so byok does not read it",
            origin(url)
        ),
    )
}

/// byok's own refusal of what the network offered, with its [`crate::Cause`]; final, never retried.
#[derive(Debug)]
pub(crate) struct Refusal {
    pub(crate) cause: crate::Cause,
    message: String,
}

impl Refusal {
    pub(crate) fn error(cause: crate::Cause, message: String) -> SdkError {
        let refusal = Self {
            cause,
            message: message.clone(),
        };
        SdkError::with_error(ErrorKind::Other, refusal, message)
    }

    /// The refusal in an error's chain, if byok made one.
    pub(crate) fn find(e: &SdkError) -> Option<&Self> {
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            if let Some(r) = s.downcast_ref::<Self>() {
                return Some(r);
            }
            source = s.source();
        }
        None
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Refusal {}

fn origin(url: &url::Url) -> String {
    url.origin().ascii_serialization()
}

fn method(m: Method) -> reqwest::Method {
    match m {
        Method::Delete => reqwest::Method::DELETE,
        Method::Get => reqwest::Method::GET,
        Method::Head => reqwest::Method::HEAD,
        Method::Patch => reqwest::Method::PATCH,
        Method::Post => reqwest::Method::POST,
        Method::Put => reqwest::Method::PUT,
        _ => reqwest::Method::OPTIONS,
    }
}

fn headers(map: &reqwest::header::HeaderMap) -> Headers {
    let mut out = Headers::new();
    for (k, v) in map {
        if let Ok(value) = v.to_str() {
            out.insert(
                HeaderName::from(k.as_str().to_owned()),
                HeaderValue::from(value.to_owned()),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &'static [(&'static str, &'static str)]) -> ProxyEnv {
        ProxyEnv::from_lookup(|k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| (*v).to_owned()))
    }

    fn url(s: &str) -> url::Url {
        url::Url::parse(s).expect("a URL")
    }

    #[test]
    fn proxies_are_chosen_as_the_variables_say() {
        let e = env(&[
            ("https_proxy", "http://proxy:3128"),
            ("NO_PROXY", "internal.example, .corp"),
        ]);
        let chosen = e
            .for_url(&url("https://contoso.vault.azure.net/keys"))
            .expect("proxied");
        assert_eq!(
            (chosen.variable, chosen.url.as_str()),
            ("https_proxy", "http://proxy:3128")
        );
        assert_eq!(e.for_url(&url("https://a.internal.example/")), None);
        assert_eq!(e.for_url(&url("https://internal.example/")), None);
        assert_eq!(e.for_url(&url("https://vault.corp/")), None);
        assert_eq!(e.for_url(&url("https://127.0.0.1:8443/")), None, "loopback goes direct");
        assert_eq!(
            e.for_url(&url("http://169.254.169.254/metadata")),
            None,
            "plain http goes direct"
        );
        assert_eq!(
            env(&[("ALL_PROXY", "http://p:1"), ("NO_PROXY", "*")]).for_url(&url("https://x.y/")),
            None
        );
        assert_eq!(env(&[]).for_url(&url("https://x.y/")), None);
    }
}
