//! `#[throttled]` on a WebSocket message handler: the seed README's Quick Start 4,
//! "WebSocket Throttling", with the limit written on the function that handles one
//! message.
//!
//! `GET /ws` upgrades to a WebSocket that answers every JSON message with
//! `{"status":"success","data":<the message>}`, at most three messages per ten seconds
//! per client. A message over the limit is answered with
//! `{"type":"rate_limit","error":"Too many messages","retry_after":N}`, its handler does
//! not run, and the connection stays open.
//!
//! The attribute on [`on_message`] declares the throttle type `WsMessages` (named in the
//! handler's `&WsThrottle<WsMessages>` parameter). The upgrade handler extracts a
//! `WsThrottle<WsMessages>`, which identifies the client once, at upgrade; every
//! message of every connection of that client counts against one quota.
//!
//! ```sh
//! cargo run --example macro_websocket
//! websocat ws://127.0.0.1:3000/ws
//! {"hello": "world"}
//! ```

use axum::Router;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use axum::routing::get;
use serde_json::{Value, json};
use traffik::prelude::*;

/// The app: `GET /ws`, on `traffik`'s backend.
pub fn app(traffik: Traffik) -> Router {
    Router::new()
        .route("/ws", get(ws_handler))
        .with_state(traffik)
}

/// The upgrade: captures the client's identity for the per-message limit.
async fn ws_handler(ws: WebSocketUpgrade, limit: WsThrottle<WsMessages>) -> Response {
    ws.on_upgrade(move |socket| session(socket, limit))
}

/// One conversation: reads messages and hands each text or binary one to [`on_message`].
async fn session(mut socket: WebSocket, limit: WsThrottle<WsMessages>) {
    while let Some(message) = socket.recv().await {
        let data = match message {
            Ok(Message::Text(text)) => serde_json::from_str::<Value>(text.as_str()),
            Ok(Message::Binary(bytes)) => serde_json::from_slice::<Value>(&bytes),
            Ok(Message::Ping(_) | Message::Pong(_)) => continue,
            Ok(Message::Close(_)) | Err(_) => break,
        };
        on_message(&mut socket, &limit, data).await;
    }
}

/// Answers one message: the seed's `ws_throttle(websocket)` then `send_json`.
///
/// `#[throttled]` checks the limit first: a message over it gets the `rate_limit` answer
/// and this body does not run. If the connection broke, the session's next `recv` ends
/// the loop.
#[throttled("3/10s", uid = "ws_messages")]
pub async fn on_message(
    socket: &mut WebSocket,
    limit: &WsThrottle<WsMessages>,
    data: Result<Value, serde_json::Error>,
) {
    let reply = match data {
        Ok(data) => json!({ "status": "success", "data": data }),
        Err(error) => json!({
            "status": "error",
            "detail": format!("expected a JSON message: {error}"),
        }),
    };
    if let Err(error) = socket.send(Message::Text(reply.to_string().into())).await {
        tracing::debug!(%error, identity = ?limit.identity(), "websocket send failed");
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().init();

    let traffik = Traffik::new(InMemoryBackend::new("websocket"));
    let app = app(traffik.clone());

    let addr = std::env::var("TRAFFIK_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "listening; connect to ws://{addr}/ws");

    traffik.serve(listener, app).await?;
    Ok(())
}
