//! WebSocket mocks at `/ws/{apiSlug}{path}` in the native runtime, answered as the edge
//! answers them (`edge/src/routes.rs`, `edge/src/ws.rs`): the engine's messages on connect,
//! on intervals and in reply to matching text messages; `404 api_not_found` or
//! `404 websocket_not_found` when there is nothing to connect to, and `426 upgrade_required`
//! for a request that does not ask for the upgrade.
//!
//! A connection is one task that owns the socket: it reads the client's messages and writes
//! what the connection's other tasks (the greeting, one per interval, one per reply) queue
//! for it. Those tasks live in `JoinSet`s owned by the connection's task, so they are all
//! aborted when the connection ends, however it ends.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, Uri, header};
use axum::response::Response;
use axum::routing::any;
use edgemock_shared::{MockResponse, WsSend};
use serde_json::json;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::AppState;
use super::mocks::{engine_headers, engine_method, error, finish, limit, load, request_id, seed};
use crate::db::now_ms;

/// Longest message a mock reads: the edge's `MAX_MESSAGE_BYTES`. The edge ignores a longer
/// one (workerd buffers up to 32 MiB); here it ends the connection with close code 1009
/// (message too big) as soon as its frame header says so, so no connection buffers more.
const MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// Messages a connection's tasks may queue ahead of the socket. When a client stops reading,
/// they wait for room instead of piling messages up in memory.
const OUTBOX_MESSAGES: usize = 64;

/// Replies a connection may have in flight (sleeping through `delay_ms` or waiting for the
/// outbox) before it stops reading the client's messages until one is sent.
const MAX_PENDING_REPLIES: usize = 64;

/// How long a connection waits for the client to finish the closing handshake it started.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/ws/{api}", any(connect_root))
        .route("/ws/{api}/", any(connect_root))
        .route("/ws/{api}/{*path}", any(connect_path))
}

/// The upgrade, or why the request cannot be upgraded; the reason only matters once the
/// request asked for an upgrade (otherwise it gets the edge's 426).
type Upgrade = Result<WebSocketUpgrade, WebSocketUpgradeRejection>;

async fn connect_root(
    State(state): State<AppState>,
    Path(api): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    upgrade: Upgrade,
) -> Response {
    connect(&state, &api, "/".to_owned(), method, &uri, headers, upgrade).await
}

async fn connect_path(
    State(state): State<AppState>,
    Path((api, path)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    upgrade: Upgrade,
) -> Response {
    // The raw path below the API prefix, still percent-encoded (as the engine expects).
    let prefix = format!("/ws/{api}");
    let raw = uri.path().strip_prefix(&prefix).map_or_else(|| format!("/{path}"), str::to_owned);
    connect(&state, &api, raw, method, &uri, headers, upgrade).await
}

async fn connect(
    state: &AppState,
    api: &str,
    path: String,
    method: Method,
    uri: &Uri,
    headers: HeaderMap,
    upgrade: Upgrade,
) -> Response {
    let request_id = request_id(&headers);
    match accept(state, api, path, method, uri, headers, upgrade).await {
        Ok(mut switching) => {
            // Not needed by the handshake, but every native answer carries it.
            if let Ok(value) = HeaderValue::from_str(&request_id) {
                switching.headers_mut().insert("x-request-id", value);
            }
            switching
        }
        Err(refusal) => finish(refusal, request_id, None).map(Body::new),
    }
}

/// The `101 Switching Protocols` that starts the connection, or the error the edge gives, in
/// the edge's order: unknown API, unknown path, no upgrade asked for.
async fn accept(
    state: &AppState,
    api: &str,
    path: String,
    method: Method,
    uri: &Uri,
    headers: HeaderMap,
    upgrade: Upgrade,
) -> Result<Response, MockResponse> {
    // The router's first layer put it there (the same id `connect` answers with).
    let engine = load(state, api, std::time::Instant::now(), &request_id(&headers)).await?;
    // A handshake counts against the workspace's limit, as at the edge.
    limit(state, &engine, crate::db::now_ms()).await?;
    let Some(ws) = engine.websocket(&path) else {
        return Err(error(
            404,
            "websocket_not_found",
            &format!("API '{api}' has no WebSocket mock at {path}"),
            json!({ "api": api, "path": path }),
        ));
    };
    let asked = headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if !asked {
        let mut refusal = error(
            426,
            "upgrade_required",
            "this is a WebSocket mock: connect with Upgrade: websocket",
            json!({ "api": api, "path": path }),
        );
        refusal.headers.push(("upgrade".into(), "websocket".into()));
        return Err(refusal);
    }
    // Asked for, but not a handshake axum can complete (not GET, no key, another version).
    let upgrade = upgrade.map_err(|rejection| {
        error(
            rejection.status().as_u16(),
            "invalid_handshake",
            &format!("not a WebSocket handshake: {}", rejection.body_text()),
            json!({ "api": api, "path": path }),
        )
    })?;
    let handshake = edgemock_shared::Request {
        method: engine_method(&method),
        path: path.into(),
        query: uri.query().unwrap_or_default().into(),
        headers: engine_headers(&headers),
        body: Vec::new(),
    }
    .into_owned();
    Ok(upgrade
        .max_message_size(MAX_MESSAGE_BYTES)
        .max_frame_size(MAX_MESSAGE_BYTES)
        .on_upgrade(move |socket| run(socket, engine, ws, handshake)))
}

/// Queues `messages` in order, each after its delay; `false` once the connection is gone.
async fn send_all(outbox: &mpsc::Sender<String>, messages: Vec<WsSend>) -> bool {
    for message in messages {
        if message.delay_ms > 0 {
            tokio::time::sleep(Duration::from_millis(u64::from(message.delay_ms))).await;
        }
        if outbox.send(message.text).await.is_err() {
            return false;
        }
    }
    true
}

/// Serves one connection to WebSocket mock `ws` of `engine` until either side closes it.
async fn run(
    mut socket: WebSocket,
    engine: crate::runtime::EngineRef,
    ws: usize,
    handshake: edgemock_shared::Request<'static>,
) {
    let (outbox, mut queued) = mpsc::channel::<String>(OUTBOX_MESSAGES);
    // Dropping the set aborts its tasks: nothing outlives the connection.
    let mut tasks = JoinSet::new();

    let greeting = engine.ws_on_connect(ws, &handshake, now_ms(), seed());
    {
        let outbox = outbox.clone();
        tasks.spawn(async move {
            send_all(&outbox, greeting).await;
        });
    }

    // Intervals: one task each, until closed or `max_count` sends. Sleeping between sends
    // (rather than ticking) is what the edge does: a message's own delay postpones the next.
    for interval in engine.ws_intervals(ws) {
        let (outbox, engine, handshake) = (outbox.clone(), engine.clone(), handshake.clone());
        tasks.spawn(async move {
            let mut sent = 0u32;
            while interval.max_count.is_none_or(|max| sent < max) {
                tokio::time::sleep(Duration::from_millis(u64::from(interval.every_ms))).await;
                let Some(message) =
                    engine.ws_interval_message(ws, interval.index, &handshake, now_ms(), seed())
                else {
                    return;
                };
                if !send_all(&outbox, vec![message]).await {
                    return;
                }
                sent += 1;
            }
        });
    }

    // Replies still being sent. At the cap the client's next message waits (TCP holds the
    // rest back) until one finishes, so a client cannot pile up delayed replies in memory.
    let mut replying = JoinSet::new();
    let mut client_closed = false;
    loop {
        tokio::select! {
            incoming = socket.recv(), if replying.len() < MAX_PENDING_REPLIES => match incoming {
                Some(Ok(Message::Text(text))) => {
                    let replies = engine.ws_reply(ws, &handshake, text.as_str(), now_ms(), seed());
                    if !replies.is_empty() {
                        let outbox = outbox.clone();
                        replying.spawn(async move {
                            send_all(&outbox, replies).await;
                        });
                    }
                }
                Some(Ok(Message::Close(_))) => {
                    client_closed = true;
                    break;
                }
                // Binary messages are not read (as at the edge); tungstenite answers pings.
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    if too_big(&e) {
                        let _ = socket.send(Message::Close(Some(message_too_big()))).await;
                    }
                    break;
                }
                None => break,
            },
            Some(text) = queued.recv() => {
                if socket.send(Message::Text(text.into())).await.is_err() {
                    break;
                }
            }
            // Reaps finished replies, so the set holds only live ones.
            Some(_) = replying.join_next(), if !replying.is_empty() => {}
        }
    }
    replying.abort_all();
    tasks.abort_all();
    if client_closed {
        // tungstenite queued its answer to the client's Close when it read it; the next read
        // writes it and then ends the stream.
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
            while let Some(Ok(_)) = socket.recv().await {}
        })
        .await;
    }
}

/// Whether reading failed because a message or frame exceeded [`MAX_MESSAGE_BYTES`].
fn too_big(e: &axum::Error) -> bool {
    use std::error::Error as _;
    // tungstenite is axum's, named as a dependency only for this: the native conformance
    // test fails if a version drift ever makes the downcast miss.
    matches!(
        e.source().and_then(|s| s.downcast_ref::<tungstenite::Error>()),
        Some(tungstenite::Error::Capacity(_))
    )
}

fn message_too_big() -> CloseFrame {
    CloseFrame { code: close_code::SIZE, reason: "message too big".into() }
}
