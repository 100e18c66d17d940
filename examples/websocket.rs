//! WebSocket throttling: the twin of the seed README's Quick Start 4, "WebSocket
//! Throttling".
//!
//! `GET /ws` upgrades to a WebSocket that answers every JSON message with
//! `{"status":"success","data":<the message>}`, at most three messages per ten seconds
//! per client. A message over the limit is answered with
//! `{"type":"rate_limit","error":"Too many messages","retry_after":N}` and the
//! connection stays open, as in the seed.
//!
//! Two limits apply, each where it belongs:
//!
//! - [`WsUpgrades`], an HTTP throttle on the upgrade request: a client opening
//!   connections too fast gets `429 Too Many Requests` (with `Retry-After`) before any
//!   handshake happens;
//! - [`WsMessages`], the per-message limit. The client is identified once, when it
//!   upgrades, and every message is counted under the scope `ws:/ws`, so all the
//!   connections of one client share the same message quota.
//!
//! ```sh
//! cargo run --example websocket
//! # then, with any WebSocket client (websocat, wscat...):
//! websocat ws://127.0.0.1:3000/ws
//! {"hello": "world"}
//! ```

use axum::Router;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use axum::routing::get;
use serde_json::{Value, json};
use traffik::prelude::*;

throttle!(
    /// The seed's `WebSocketThrottle(uid="ws_messages", rate="3/10s")`: per message.
    pub WsMessages = HttpThrottle::new("ws_messages", "3/10s")
);

throttle!(
    /// Upgrade requests: at most five new connections per minute per client.
    pub WsUpgrades = HttpThrottle::new("ws_upgrades", "5/m")
);

/// The app: `GET /ws`, on `traffik`'s backend.
pub fn app(traffik: Traffik) -> Router {
    Router::new()
        .route("/ws", get(ws_handler))
        .with_state(traffik)
}

/// The upgrade: `Throttled<WsUpgrades>` runs first, so an upgrade over its limit is
/// answered 429 without a handshake; `WsThrottle` captures the client's identity for the
/// per-message limit.
async fn ws_handler(
    _upgrades: Throttled<WsUpgrades>,
    ws: WebSocketUpgrade,
    messages: WsThrottle<WsMessages>,
) -> Response {
    ws.on_upgrade(move |socket| session(socket, messages))
}

/// One conversation: every message is checked against the limit before it is processed.
///
/// Generic over the throttle, so that the same loop serves any `WsThrottle<T>` (the
/// tests reuse it with throttles that close the connection instead of notifying).
pub async fn session<T>(mut socket: WebSocket, limit: WsThrottle<T>) {
    while let Some(message) = socket.recv().await {
        let data = match message {
            Ok(Message::Text(text)) => serde_json::from_str::<Value>(text.as_str()),
            Ok(Message::Binary(bytes)) => serde_json::from_slice::<Value>(&bytes),
            // Pings are answered by axum; pongs need nothing.
            Ok(Message::Ping(_) | Message::Pong(_)) => continue,
            Ok(Message::Close(_)) => break,
            Err(error) => {
                tracing::debug!(%error, "websocket receive failed");
                break;
            }
        };

        match limit.check(&mut socket).await {
            Ok(WsVerdict::Allowed) => {}
            // The client was told (or, if so configured, the connection is closing):
            // skip this message and keep reading.
            Ok(WsVerdict::Throttled {
                retry_after,
                closed,
            }) => {
                tracing::debug!(identity = ?limit.identity(), retry_after, closed, "message throttled");
                continue;
            }
            Err(error) => {
                tracing::debug!(%error, "websocket send failed");
                break;
            }
        }

        let reply = match data {
            Ok(data) => json!({ "status": "success", "data": data }),
            Err(error) => json!({
                "status": "error",
                "detail": format!("expected a JSON message: {error}"),
            }),
        };
        if socket
            .send(Message::Text(reply.to_string().into()))
            .await
            .is_err()
        {
            break;
        }
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
