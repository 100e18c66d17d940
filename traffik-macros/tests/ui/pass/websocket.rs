//! WebSocket message handlers: a declared-by-the-attribute throttle, a named one,
//! stacked limits, `_` bindings and a `Default` return type.
#![deny(warnings)]

use axum::Router;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use axum::routing::get;
use traffik::prelude::*;

throttle!(Declared = HttpThrottle::new("declared", "10/m"));

/// Declares `ChatLimit`.
#[throttled("3/10s", uid = "chat", strategy = TokenBucket::with_burst(5), cost = 1)]
pub async fn on_message(socket: &mut WebSocket, limit: &WsThrottle<ChatLimit>, message: Message) {
    let _ = limit.identity();
    let _ = socket.send(message).await;
}

/// A declared throttle by name; the socket bound to `_`-like names is fine too.
#[throttled(Declared)]
async fn on_named(_: &WsThrottle<Declared>, text: String, socket: &mut WebSocket) -> Option<usize> {
    socket.send(Message::Text(text.clone().into())).await.ok()?;
    Some(text.len())
}

/// Two limits, two throttles, in order.
#[throttled("2/s")]
#[throttled("30/m", backend = InMemoryBackend::new("ws"))]
async fn on_stacked(
    socket: &mut WebSocket,
    _: &WsThrottle<Burst>,
    _: &WsThrottle<Sustained>,
    message: Message,
) -> bool {
    socket.send(message).await.is_ok()
}

async fn upgrade(
    ws: WebSocketUpgrade,
    chat: WsThrottle<ChatLimit>,
    declared: WsThrottle<Declared>,
    burst: WsThrottle<Burst>,
    sustained: WsThrottle<Sustained>,
) -> Response {
    ws.on_upgrade(move |mut socket| async move {
        while let Some(Ok(message)) = socket.recv().await {
            on_message(&mut socket, &chat, message.clone()).await;
            let _: Option<usize> = on_named(&declared, "hi".into(), &mut socket).await;
            if !on_stacked(&mut socket, &burst, &sustained, message).await {
                break;
            }
        }
    })
}

fn main() {
    let _app: Router = Router::new()
        .route("/ws", get(upgrade))
        .with_state(Traffik::new(InMemoryBackend::new("app")));
}
