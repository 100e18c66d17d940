use axum::extract::ws::{Message, WebSocket};
use traffik::prelude::*;

#[throttled("3/10s")]
async fn no_socket(limit: &WsThrottle<NoSocket>, message: Message) {
    let _ = (limit, message);
}

#[throttled("3/10s")]
async fn by_value(socket: &mut WebSocket, limit: WsThrottle<ByValue>, message: Message) {
    let _ = (socket, limit, message);
}

#[throttled("3/10s")]
#[throttled("30/m")]
async fn one_param_two_limits(socket: &mut WebSocket, limit: &WsThrottle<Only>, message: Message) {
    let _ = (socket, limit, message);
}

fn main() {}
