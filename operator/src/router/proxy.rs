//! The proxy: accepts clients, picks a running web dyno at random, forwards
//! the request with Heroku's headers and streams both bodies through; every
//! request ends in one router line, an H code when it failed.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Version};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use super::line::{describe, new_request_id, valid_request_id, RouterLine};
use super::{Backend, Backends, DynoHealth, LineSender};

/// How long a client may take to send its request's headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long connecting to one dyno may take before the next is tried.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What every request needs.
#[derive(Debug)]
pub(super) struct Ctx {
    pub(super) backends: Backends,
    /// Time to the first byte of the response before H12.
    pub(super) timeout: Duration,
    /// `X-Forwarded-Port`: the port clients reach the router on.
    pub(super) port: u16,
    pub(super) lines: LineSender,
}

/// Accepts clients until the listener fails, at most `max_connections` at once
/// (more wait in the kernel's backlog).
pub(super) async fn serve(
    listener: tokio::net::TcpListener,
    ctx: Arc<Ctx>,
    max_connections: usize,
) {
    let permits = Arc::new(Semaphore::new(max_connections));
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                // Out of descriptors, most likely: let some connections end.
                tracing::warn!("router: accept failed: {err}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let service = service_fn(move |request| {
                let ctx = ctx.clone();
                async move { Ok::<_, Infallible>(handle(request, &ctx, peer).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Headers that belong to one hop, not to the request.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    for name in HOP_BY_HOP {
        headers.remove(*name);
    }
}

fn set(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(HeaderName::from_static(name), value);
    }
}

fn ms(elapsed: Duration) -> u64 {
    u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
}

async fn handle(request: Request<Incoming>, ctx: &Ctx, peer: SocketAddr) -> Response<Tracked> {
    let (mut parts, body) = request.into_parts();
    let text = |name: header::HeaderName, headers: &HeaderMap| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let request_id = text(HeaderName::from_static("x-request-id"), &parts.headers)
        .filter(|id| valid_request_id(id))
        .unwrap_or_else(new_request_id);
    let fwd = match text(HeaderName::from_static("x-forwarded-for"), &parts.headers) {
        Some(previous) if !previous.trim().is_empty() => format!("{previous}, {}", peer.ip()),
        _ => peer.ip().to_string(),
    };
    let path = parts
        .uri
        .path_and_query()
        .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned());
    let mut line = RouterLine {
        method: parts.method.to_string(),
        host: text(header::HOST, &parts.headers)
            .or_else(|| parts.uri.authority().map(|a| a.to_string()))
            .unwrap_or_default(),
        path: path.clone(),
        request_id: request_id.clone(),
        fwd: fwd.clone(),
        protocol: "http",
        ..RouterLine::default()
    };

    let backends = ctx.backends.snapshot();
    let mut running: Vec<&Backend> = backends
        .iter()
        .filter(|b| b.health == DynoHealth::Up)
        .collect();
    if running.is_empty() {
        let code = if backends.iter().any(|b| b.health == DynoHealth::Crashed) {
            "H10"
        } else {
            "H14"
        };
        return error_page(ctx, line, code, StatusCode::SERVICE_UNAVAILABLE);
    }
    fastrand::shuffle(&mut running);
    let mut connected = None;
    for backend in running {
        let started = Instant::now();
        if let Ok(Ok(stream)) =
            tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&backend.addr)).await
        {
            connected = Some((backend, stream, started.elapsed()));
            break;
        }
    }
    // Every running dyno refused: as Heroku's router sees a dyno that is not
    // listening, the app crashed.
    let Some((backend, stream, connect)) = connected else {
        return error_page(ctx, line, "H10", StatusCode::SERVICE_UNAVAILABLE);
    };
    let _ = stream.set_nodelay(true);
    line.dyno = Some(backend.dyno.clone());
    line.connect_ms = Some(ms(connect));

    strip_hop_by_hop(&mut parts.headers);
    let headers = &mut parts.headers;
    set(headers, "x-request-id", &request_id);
    set(headers, "x-forwarded-for", &fwd);
    set(headers, "x-forwarded-proto", "http");
    set(headers, "x-forwarded-port", &ctx.port.to_string());
    let start_ms = jiff::Timestamp::now().as_millisecond();
    set(headers, "x-request-start", &start_ms.to_string());
    set(headers, "via", "1.1 vegur");
    // One connection per request: the dyno may close it once it answered.
    set(headers, "connection", "close");
    parts.uri = path.parse().unwrap_or_default();
    parts.version = Version::HTTP_11;

    let service_started = Instant::now();
    let exchange = async move {
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        sender.send_request(Request::from_parts(parts, body)).await
    };
    let response = match tokio::time::timeout(ctx.timeout, exchange).await {
        Ok(Ok(response)) => response,
        Ok(Err(err)) => {
            line.service_ms = Some(ms(service_started.elapsed()));
            let (code, status) = if err.is_incomplete_message() {
                ("H13", StatusCode::SERVICE_UNAVAILABLE)
            } else if err.is_user() || err.is_body_write_aborted() {
                // Our side of the exchange failed: the client's request body broke off.
                ("H27", client_closed())
            } else {
                ("H18", StatusCode::SERVICE_UNAVAILABLE)
            };
            return error_page(ctx, line, code, status);
        }
        Err(_) => {
            line.service_ms = Some(ms(service_started.elapsed()));
            return error_page(ctx, line, "H12", StatusCode::SERVICE_UNAVAILABLE);
        }
    };
    let (mut parts, body) = response.into_parts();
    // Heroku's router answers HTTP/1.1 whatever the dyno spoke (Python's
    // http.server answers HTTP/1.0).
    parts.version = Version::HTTP_11;
    strip_hop_by_hop(&mut parts.headers);
    set(&mut parts.headers, "via", "1.1 vegur");
    line.status = parts.status.as_u16();
    let pending = Pending {
        line,
        service_started,
        bytes: 0,
        lines: ctx.lines.clone(),
    };
    Response::from_parts(parts, Tracked::upstream(body, pending))
}

/// 499, nginx's and Heroku's status for a client that went away.
fn client_closed() -> StatusCode {
    StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST)
}

/// Logs the error line and answers with Heroku's kind of error page.
fn error_page(
    ctx: &Ctx,
    mut line: RouterLine,
    code: &'static str,
    status: StatusCode,
) -> Response<Tracked> {
    line.code = Some(code);
    line.status = status.as_u16();
    ctx.lines.send(line);
    let page = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Application Error</title></head>\n\
         <body><h1>Application error</h1><p>{code}: {}. See the router line in the formation's output.</p></body></html>\n",
        describe(code)
    );
    let mut response = Response::new(Tracked {
        source: Source::Page(Some(Bytes::from(page))),
        pending: None,
    });
    *response.status_mut() = status;
    let headers = response.headers_mut();
    set(headers, "content-type", "text/html; charset=utf-8");
    set(headers, "cache-control", "no-cache, no-store");
    set(headers, "via", "1.1 vegur");
    response
}

/// A response's line, written when its body ends.
#[derive(Debug)]
struct Pending {
    line: RouterLine,
    service_started: Instant,
    /// Body bytes passed to the client so far.
    bytes: u64,
    lines: LineSender,
}

impl Pending {
    fn finish(mut self, code: Option<&'static str>) {
        self.line.service_ms = Some(ms(self.service_started.elapsed()));
        self.line.bytes = Some(self.bytes);
        if let Some(code) = code {
            self.line.code = Some(code);
            self.line.status = if code == "H27" { 499 } else { 503 };
        }
        self.lines.send(self.line);
    }
}

#[derive(Debug)]
enum Source {
    /// The dyno's body, streamed.
    Upstream(Incoming),
    /// The router's own error page.
    Page(Option<Bytes>),
}

/// The body the client receives; counts the dyno's bytes and writes the
/// router line when it ends, breaks (H18) or the client leaves (H27).
#[derive(Debug)]
pub(super) struct Tracked {
    source: Source,
    pending: Option<Pending>,
}

impl Tracked {
    fn upstream(body: Incoming, pending: Pending) -> Self {
        Tracked {
            source: Source::Upstream(body),
            pending: Some(pending),
        }
    }
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        match &mut this.source {
            Source::Page(page) => Poll::Ready(page.take().map(|b| Ok(Frame::data(b)))),
            Source::Upstream(body) => match Pin::new(body).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    if let (Some(data), Some(pending)) = (frame.data_ref(), &mut this.pending) {
                        pending.bytes += data.len() as u64;
                    }
                    Poll::Ready(Some(Ok(frame)))
                }
                Poll::Ready(Some(Err(err))) => {
                    if let Some(pending) = this.pending.take() {
                        pending.finish(Some("H18"));
                    }
                    Poll::Ready(Some(Err(err)))
                }
                Poll::Ready(None) => {
                    if let Some(pending) = this.pending.take() {
                        pending.finish(None);
                    }
                    Poll::Ready(None)
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.source {
            Source::Page(page) => page.is_none(),
            Source::Upstream(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.source {
            Source::Page(Some(page)) => SizeHint::with_exact(page.len() as u64),
            Source::Page(None) => SizeHint::with_exact(0),
            Source::Upstream(body) => body.size_hint(),
        }
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if let Some(pending) = self.pending.take() {
            // An empty body may never be polled; any other body dropped
            // before its end means the client went away.
            let ended = self.is_end_stream();
            pending.finish((!ended).then_some("H27"));
        }
    }
}
