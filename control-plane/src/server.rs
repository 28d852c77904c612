//! The accept loop: what `axum::serve` does with axum's default features (HTTP/1.1 with
//! keep-alive, upgrades for WebSockets, graceful shutdown), with [`http::Dispatch`] called
//! directly.
//!
//! `axum::serve` wraps the service for hyper per request: it clones the whole service, boxes
//! its future and drives it through `oneshot`. A mock answer is a few microseconds of work,
//! and that wrapping was several percent of it (see BENCHMARKS.md). Here the service is
//! shared by reference and each request is one future of hyper's own type.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::server::conn::http1::Builder;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::http;

/// Serves `dispatch` on `listener` until `shutdown` completes; then stops accepting, asks every
/// connection to finish its requests in flight and close, and returns when they all have.
pub async fn serve(
    listener: TcpListener,
    dispatch: http::Dispatch,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let dispatch = Arc::new(dispatch);
    let builder = Builder::new();
    // Shutdown is told to every connection through `stop`, a child token of its own: a
    // shared `watch` receiver took one of a few locks that all connections share each time
    // a connection's task woke, that is on every request. Each connection holds a clone of
    // `open` until it has closed, so `open_tx.closed()` is "every connection has finished".
    let stop = CancellationToken::new();
    // A parent token dropped without `cancel` leaves its children running: if this future is
    // dropped (its task aborted), the connections must still be told to finish.
    let _stop_when_dropped = stop.clone().drop_guard();
    let (open_tx, open_rx) = tokio::sync::watch::channel(());
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    accept_failed(&e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Each connection holds its own reference to the shared `Dispatch`, and a request
        // clones the connection's: its count is written by the core serving the connection
        // alone, where the shared one's would move between cores on every request.
        let dispatch = Arc::new(dispatch.clone());
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let dispatch = dispatch.clone();
            async move { Ok::<_, Infallible>(dispatch.handle(request).await) }
        });
        let connection = builder.serve_connection(TokioIo::new(stream), service).with_upgrades();
        let (stop, open) = (stop.child_token(), open_rx.clone());
        tokio::spawn(async move {
            tokio::pin!(connection);
            let ended = tokio::select! {
                biased;
                ended = connection.as_mut() => ended,
                () = stop.cancelled() => {
                    // Requests in flight finish; an idle connection closes now.
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = ended {
                tracing::trace!(error = %e, "connection ended with an error");
            }
            drop(open);
        });
    }
    drop(listener);
    drop(open_rx);
    stop.cancel();
    open_tx.closed().await;
}

/// An accept that failed. A connection reset before it was accepted is the client's business;
/// anything else (out of file descriptors, above all) is logged and waited out for a second,
/// as `axum::serve` does, rather than spinning.
async fn accept_failed(e: &std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(e.kind(), ConnectionRefused | ConnectionAborted | ConnectionReset) {
        return;
    }
    tracing::error!(error = %e, "cannot accept a connection; retrying in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}
