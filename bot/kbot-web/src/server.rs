//! The dashboard's HTTP server and its limits, so slow or idle clients cannot pin it: a
//! connection must send a request head within `header_read` (hyper's header read timeout,
//! which also ends an idle keep-alive connection), a response that cannot be written for
//! `write_stall` ends its connection, at most `max_connections` are open (more are answered
//! 503 and closed), at most `max_in_flight` requests are being answered at once (the others
//! wait), and a request not answered within `request` gets 408. Every response carries
//! `X-Content-Type-Options: nosniff` and a Content-Security-Policy that allows no script.

use axum::http::{header, HeaderValue};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::ServiceBuilder;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;

/// The pages use no JavaScript, no frames and only their own inline style sheet.
pub const CSP: &str =
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// The server's limits (see the module).
#[derive(Debug, Clone)]
pub struct Limits {
    pub header_read: Duration,
    pub request: Duration,
    pub write_stall: Duration,
    pub max_connections: usize,
    pub max_in_flight: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            header_read: Duration::from_secs(10),
            request: Duration::from_secs(30),
            write_stall: Duration::from_secs(60),
            max_connections: 256,
            max_in_flight: 16,
        }
    }
}

const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n\
x-content-type-options: nosniff\r\ncontent-security-policy: default-src 'none'\r\ncontent-length: 21\r\nconnection: close\r\n\r\ntoo many connections\n";

/// Serves `app` on `listener` with `limits` until the process ends.
pub async fn serve(listener: TcpListener, app: Router, limits: Limits) {
    let svc = ServiceBuilder::new()
        .layer(SetResponseHeaderLayer::overriding(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")))
        .layer(SetResponseHeaderLayer::overriding(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP)))
        .layer(SetResponseHeaderLayer::overriding(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")))
        .layer(TimeoutLayer::with_status_code(axum::http::StatusCode::REQUEST_TIMEOUT, limits.request))
        .layer(GlobalConcurrencyLimitLayer::new(limits.max_in_flight))
        .service(app);
    let conns = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            // Out of file descriptors and the like: let connections end, then accept again.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let Ok(permit) = conns.clone().try_acquire_owned() else {
            // Answer, then read what the client sent (for a second at most) before closing:
            // closing with its request unread would reset the connection, answer unread.
            tokio::spawn(async move {
                let mut s = stream;
                let _ = tokio::time::timeout(Duration::from_secs(1), async {
                    s.write_all(BUSY).await?;
                    s.shutdown().await?;
                    let mut b = [0u8; 1024];
                    while s.read(&mut b).await? > 0 {}
                    io::Result::Ok(())
                })
                .await;
            });
            continue;
        };
        let svc = TowerToHyperService::new(svc.clone());
        let limits = limits.clone();
        tokio::spawn(async move {
            let io = TokioIo::new(Stall::new(stream, limits.write_stall));
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read)
                .max_buf_size(64 * 1024)
                .serve_connection(io, svc);
            let _ = conn.await;
            drop(permit);
        });
    }
}

/// A connection whose writes fail once one has waited `limit` for the client to read.
struct Stall {
    inner: TcpStream,
    limit: Duration,
    waiting: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Stall {
    fn new(inner: TcpStream, limit: Duration) -> Stall {
        Stall { inner, limit, waiting: None }
    }

    fn check<T>(&mut self, cx: &mut Context<'_>, p: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if p.is_ready() {
            self.waiting = None;
            return p;
        }
        let limit = self.limit;
        let sleep = self.waiting.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "client stopped reading"))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncRead for Stall {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Stall {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let p = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.check(cx, p)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let p = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.check(cx, p)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let p = Pin::new(&mut self.inner).poll_flush(cx);
        self.check(cx, p)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
