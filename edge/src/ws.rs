//! WebSocket mocks at `/ws/{apiSlug}{path}` (RFC 6455, as the runtime speaks it): the
//! engine's messages on connect, on intervals, and in reply to matching messages. Every
//! task of a connection stops when the connection closes.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use edgemock_shared::{Engine, Request as EngineRequest, WsSend};
use futures_util::StreamExt;
use worker::wasm_bindgen_futures::spawn_local;
use worker::{Delay, Response, Result, WebSocket, WebSocketPair, WebsocketEvent};

/// Longest text message a mock reads; longer ones are ignored (the engine would not parse
/// them anyway).
const MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// Sends `messages` in order, each after its delay, unless the connection closed meanwhile.
async fn send_all(socket: &WebSocket, closed: &Cell<bool>, messages: Vec<WsSend>) {
    for message in messages {
        if message.delay_ms > 0 {
            Delay::from(Duration::from_millis(u64::from(message.delay_ms))).await;
        }
        if closed.get() || socket.send_with_str(&message.text).is_err() {
            return;
        }
    }
}

fn now_ms() -> i64 {
    worker::Date::now().as_millis() as i64
}

/// Accepts the upgrade for WebSocket mock `ws` of `engine` and runs the connection in the
/// background.
pub fn accept(
    engine: Rc<Engine>,
    ws: usize,
    handshake: EngineRequest<'static>,
    seed: impl Fn() -> u64 + 'static,
) -> Result<Response> {
    let pair = WebSocketPair::new()?;
    let server = pair.server;
    server.accept()?;
    let closed = Rc::new(Cell::new(false));
    let seed = Rc::new(seed);

    // On connect.
    let greeting = engine.ws_on_connect(ws, &handshake, now_ms(), seed());
    {
        let (socket, closed) = (server.clone(), closed.clone());
        spawn_local(async move { send_all(&socket, &closed, greeting).await });
    }

    // Intervals: one task each, until closed or `max_count` sends.
    for interval in engine.ws_intervals(ws) {
        let (socket, closed, engine, handshake, seed) =
            (server.clone(), closed.clone(), engine.clone(), handshake.clone(), seed.clone());
        spawn_local(async move {
            let mut sent = 0u32;
            loop {
                Delay::from(Duration::from_millis(u64::from(interval.every_ms))).await;
                if closed.get() || interval.max_count.is_some_and(|max| sent >= max) {
                    return;
                }
                let Some(message) =
                    engine.ws_interval_message(ws, interval.index, &handshake, now_ms(), seed())
                else {
                    return;
                };
                send_all(&socket, &closed, vec![message]).await;
                sent += 1;
            }
        });
    }

    // Replies, and the end of everything on close.
    spawn_local(async move {
        let Ok(mut events) = server.events() else {
            closed.set(true);
            return;
        };
        while let Some(event) = events.next().await {
            match event {
                Ok(WebsocketEvent::Message(message)) => {
                    let Some(text) = message.text().filter(|t| t.len() <= MAX_MESSAGE_BYTES) else {
                        continue;
                    };
                    let replies = engine.ws_reply(ws, &handshake, &text, now_ms(), seed());
                    if !replies.is_empty() {
                        let (socket, closed) = (server.clone(), closed.clone());
                        spawn_local(async move { send_all(&socket, &closed, replies).await });
                    }
                }
                Ok(WebsocketEvent::Close(_)) | Err(_) => break,
            }
        }
        closed.set(true);
    });

    Response::from_websocket(pair.client)
}
