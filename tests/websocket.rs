//! End to end: WebSocket throttling (examples/websocket.rs) over real sockets, with a
//! tokio-tungstenite client.
//!
//! The app's backend runs on a [`ManualClock`] set to the start of a window, so every
//! wait is exact and no test depends on how fast it runs.

mod common;

#[path = "../examples/websocket.rs"]
#[allow(dead_code)]
mod websocket;

use std::time::Duration;

use axum::Router;
use axum::extract::ws::WebSocketUpgrade;
use axum::response::Response;
use axum::routing::get;
use common::TestServer;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};
use traffik::prelude::*;

/// How long any network step may take before the test fails instead of hanging.
const STEP: Duration = Duration::from_secs(10);

/// 2023-11-14T22:14:00Z: the start of a minute (and of a ten-second window).
const T0: u64 = 1_700_000_040 * 1_000_000;

type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A context on an in-memory backend that reads `clock`.
fn traffik_at(clock: &ManualClock) -> Traffik {
    Traffik::new(
        InMemoryBackend::builder("ws-tests")
            .clock(clock.clone())
            .build(),
    )
}

async fn connect(url: &str) -> Result<Client, tungstenite::Error> {
    let (client, _response) = timeout(STEP, connect_async(url))
        .await
        .expect("the handshake timed out")?;
    Ok(client)
}

async fn send(client: &mut Client, value: &Value) {
    timeout(STEP, client.send(Message::text(value.to_string())))
        .await
        .expect("send timed out")
        .expect("send");
}

/// The next message that is not a ping or pong.
async fn next(client: &mut Client) -> Option<Result<Message, tungstenite::Error>> {
    loop {
        let message = timeout(STEP, client.next())
            .await
            .expect("no message within the time limit");
        match message {
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => return other,
        }
    }
}

/// The next message, which must be JSON text.
async fn recv_json(client: &mut Client) -> Value {
    match next(client).await {
        Some(Ok(Message::Text(text))) => serde_json::from_str(text.as_str()).expect("JSON"),
        other => panic!("expected a JSON text message, got {other:?}"),
    }
}

/// Sends `value` and returns the reply.
async fn exchange(client: &mut Client, value: Value) -> Value {
    send(client, &value).await;
    recv_json(client).await
}

fn success(data: Value) -> Value {
    json!({ "status": "success", "data": data })
}

fn rate_limited(retry_after: u64) -> Value {
    json!({ "type": "rate_limit", "error": "Too many messages", "retry_after": retry_after })
}

#[tokio::test]
async fn three_messages_pass_the_fourth_is_told_and_the_connection_stays_open() {
    let clock = ManualClock::new(T0);
    let server = TestServer::start(websocket::app(traffik_at(&clock))).await;
    let mut client = connect(&server.ws_url("/ws")).await.expect("connect");

    for n in 1..=3 {
        let reply = exchange(&mut client, json!({ "n": n })).await;
        assert_eq!(reply, success(json!({ "n": n })), "message {n}");
    }
    // "3/10s", fixed window, at the window's start: ten seconds to wait.
    assert_eq!(
        exchange(&mut client, json!({ "n": 4 })).await,
        rate_limited(10)
    );

    // The connection is still open, and still limited: three seconds later, seven to go.
    clock.advance(Duration::from_secs(3));
    assert_eq!(
        exchange(&mut client, json!({ "n": 5 })).await,
        rate_limited(7)
    );

    // Once the window has passed, messages flow again on the same connection.
    clock.advance(Duration::from_secs(7));
    assert_eq!(
        exchange(&mut client, json!({ "n": 6 })).await,
        success(json!({ "n": 6 }))
    );

    // A message that is not JSON is answered, not fatal.
    send(&mut client, &json!("still here")).await;
    assert_eq!(recv_json(&mut client).await, success(json!("still here")));
    timeout(STEP, client.send(Message::text("not json")))
        .await
        .expect("send timed out")
        .expect("send");
    let reply = recv_json(&mut client).await;
    assert_eq!(reply["status"], "error", "{reply}");
}

throttle!(
    ClosingLimit =
        HttpThrottle::new("ws_closing", "1/m").ws_on_throttled(WsOnThrottled::ClosePolicyViolation)
);

throttle!(PlainLimit = HttpThrottle::new("ws_plain", "1/m"));

/// `/policy` closes with 1008 (configured on the throttle), `/again` with 1013
/// (configured on the connection's `WsThrottle`).
fn closing_app(traffik: Traffik) -> Router {
    async fn policy(ws: WebSocketUpgrade, limit: WsThrottle<ClosingLimit>) -> Response {
        ws.on_upgrade(move |socket| websocket::session(socket, limit))
    }
    async fn again(ws: WebSocketUpgrade, limit: WsThrottle<PlainLimit>) -> Response {
        let limit = limit.on_throttled(WsOnThrottled::CloseTryAgainLater);
        ws.on_upgrade(move |socket| websocket::session(socket, limit))
    }
    Router::new()
        .route("/policy", get(policy))
        .route("/again", get(again))
        .with_state(traffik)
}

/// Sends two messages on a `1/m` connection: the first is answered, the second closes
/// the connection; returns the close code.
async fn close_code_after_limit(url: &str) -> u16 {
    let mut client = connect(url).await.expect("connect");
    assert_eq!(exchange(&mut client, json!(1)).await, success(json!(1)));
    send(&mut client, &json!(2)).await;
    let code = match next(&mut client).await {
        Some(Ok(Message::Close(Some(frame)))) => {
            assert_eq!(frame.reason.as_str(), "Too many messages");
            u16::from(frame.code)
        }
        other => panic!("expected a close frame, got {other:?}"),
    };
    // The connection then ends: no reply to the throttled message ever comes.
    match next(&mut client).await {
        None
        | Some(Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed)) => {}
        other => panic!("expected the end of the connection, got {other:?}"),
    }
    code
}

#[tokio::test]
async fn a_throttle_can_close_the_connection_with_1008_or_1013() {
    let clock = ManualClock::new(T0);
    let server = TestServer::start(closing_app(traffik_at(&clock))).await;

    assert_eq!(
        close_code_after_limit(&server.ws_url("/policy")).await,
        1008
    );
    assert_eq!(close_code_after_limit(&server.ws_url("/again")).await, 1013);
}

#[tokio::test]
async fn an_upgrade_over_its_http_limit_gets_429_before_the_handshake() {
    let clock = ManualClock::new(T0);
    let server = TestServer::start(websocket::app(traffik_at(&clock))).await;
    let url = server.ws_url("/ws");

    // "5/m" upgrades: five connections open (and work) ...
    let mut open = Vec::new();
    for n in 0..5 {
        let mut client = connect(&url).await.expect("an upgrade within the limit");
        if n == 0 {
            assert_eq!(
                exchange(&mut client, json!("hi")).await,
                success(json!("hi"))
            );
        }
        open.push(client);
    }

    // ... the sixth is refused with an HTTP answer, not a WebSocket.
    match connect(&url).await {
        Err(tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 429);
            assert_eq!(response.headers()["retry-after"], "60");
        }
        Ok(_) => panic!("the sixth upgrade in a minute was accepted"),
        Err(other) => panic!("expected HTTP 429, got {other}"),
    }

    // Refusing upgrades does not touch the connections already open.
    assert_eq!(
        exchange(&mut open[1], json!("still open")).await,
        success(json!("still open"))
    );
}

#[tokio::test]
async fn connections_of_one_client_share_its_message_quota() {
    let clock = ManualClock::new(T0);
    let traffik = traffik_at(&clock);
    let server = TestServer::start(websocket::app(traffik.clone())).await;
    let url = server.ws_url("/ws");

    let mut first = connect(&url).await.expect("connect");
    let mut second = connect(&url).await.expect("connect");

    assert_eq!(
        exchange(&mut first, json!("a1")).await,
        success(json!("a1"))
    );
    assert_eq!(
        exchange(&mut second, json!("b1")).await,
        success(json!("b1"))
    );
    assert_eq!(
        exchange(&mut first, json!("a2")).await,
        success(json!("a2"))
    );
    // Three messages from this client in all: both connections are now over the limit.
    assert_eq!(exchange(&mut second, json!("b2")).await, rate_limited(10));
    assert_eq!(exchange(&mut first, json!("a3")).await, rate_limited(10));

    // The quota lives under the client identified at upgrade and the scope `ws:/ws`,
    // apart from the upgrade requests' own `http:GET:/ws`.
    let messages = websocket::WsMessages::get().throttle();
    let client = Identity::client("127.0.0.1");
    let backend = traffik.backend().as_ref();
    let in_ws_scope = messages
        .stat(&client, "ws:/ws", backend)
        .await
        .expect("stat");
    assert!(!in_ws_scope.allowed, "{in_ws_scope:?}");
    let upgrades = websocket::WsUpgrades::get().throttle();
    let upgrade_quota = upgrades
        .stat(&client, "http:GET:/ws", backend)
        .await
        .expect("stat");
    assert_eq!(upgrade_quota.remaining, 3, "two upgrades of five");
}
