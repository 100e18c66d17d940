//! WebSocket throttling: a limit per message, for the client identified at upgrade.

use std::fmt;
use std::marker::PhantomData;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use axum::extract::{FromRef, FromRequestParts, MatchedPath};
use http::request::Parts;
use traffik_core::{Decision, Identity, SharedBackend};

use crate::extract::ThrottleSource;
use crate::http_throttle::HttpThrottle;
use crate::rejection::ThrottleRejection;
use crate::state::Traffik;

/// What a [`WsThrottle`] does with a message over the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum WsOnThrottled {
    /// Send `{"type":"rate_limit","error":"Too many messages","retry_after":N}` and keep
    /// the connection (the seed's behaviour).
    #[default]
    Notify,
    /// Close the connection with code 1008 (policy violation).
    ClosePolicyViolation,
    /// Close the connection with code 1013 (try again later).
    CloseTryAgainLater,
}

/// Whether a message may be processed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WsVerdict {
    /// Process the message.
    Allowed,
    /// Skip it: the client was told, or the connection is closing (see
    /// [`WsOnThrottled`]).
    Throttled {
        /// Whole seconds until a message would be admitted (rounded up).
        retry_after: u64,
        /// Whether a close frame was sent: stop reading once the client acknowledges it.
        closed: bool,
    },
}

/// Per-message throttling of one WebSocket connection, for the client identified when
/// it upgraded. Extract it next to `WebSocketUpgrade` and move it into the socket task.
///
/// `T` names a throttle declared with [`throttle!`](crate::throttle!); its identifier,
/// backend and strategy apply, with the scope `ws:/route`. To refuse an upgrade request
/// over an HTTP limit before the handshake, add a [`Throttled`](crate::Throttled) of
/// another throttle to the upgrade handler (or a `ThrottleLayer`).
///
/// ```
/// use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
/// use axum::response::Response;
/// use traffik_axum::{HttpThrottle, WsOnThrottled, WsThrottle, WsVerdict, throttle};
///
/// throttle!(Messages = HttpThrottle::new("ws_messages", "3/10s"));
///
/// async fn upgrade(ws: WebSocketUpgrade, limit: WsThrottle<Messages>) -> Response {
///     ws.on_upgrade(move |socket| echo(socket, limit))
/// }
///
/// async fn echo(mut socket: WebSocket, limit: WsThrottle<Messages>) {
///     while let Some(Ok(message)) = socket.recv().await {
///         if let Message::Text(text) = message {
///             match limit.check(&mut socket).await {
///                 Ok(WsVerdict::Allowed) => {
///                     if socket.send(Message::Text(text)).await.is_err() {
///                         break;
///                     }
///                 }
///                 Ok(WsVerdict::Throttled { .. }) => continue,
///                 Err(_) => break,
///             }
///         }
///     }
/// }
/// ```
pub struct WsThrottle<T> {
    throttle: HttpThrottle,
    identity: Identity,
    scope: String,
    backend: SharedBackend,
    on_throttled: WsOnThrottled,
    _source: PhantomData<fn() -> T>,
}

impl<T> WsThrottle<T> {
    /// Closes the connection instead of notifying, or notifies (the default).
    #[must_use]
    pub fn on_throttled(mut self, action: WsOnThrottled) -> Self {
        self.on_throttled = action;
        self
    }

    /// Decides one message, consuming its cost.
    pub async fn hit(&self) -> traffik_core::Result<Decision> {
        let cost = self.throttle.throttle().default_cost();
        self.throttle
            .throttle()
            .hit_with_cost(&self.identity, &self.scope, cost, self.backend.as_ref())
            .await
    }

    /// Decides one message and, when it is over the limit, tells the client (or closes
    /// the connection, per [`WsOnThrottled`]).
    ///
    /// A backend failure is answered by the throttle's failure policy
    /// ([`HttpThrottle::on_error`]): a fail-closed policy throttles the message; an
    /// error the policy returns is logged and the message allowed, so that a limiter
    /// outage never stops a conversation. A [shadow](HttpThrottle::shadow) throttle
    /// allows every message (counting those over the limit).
    pub async fn check(&self, socket: &mut WebSocket) -> Result<WsVerdict, axum::Error> {
        let decision = match self.hit().await {
            Ok(decision) => decision,
            Err(error) => {
                tracing::error!(%error, uid = self.throttle.uid(), "websocket rate limiter failed; message allowed");
                return Ok(WsVerdict::Allowed);
            }
        };
        if decision.allowed {
            return Ok(WsVerdict::Allowed);
        }
        let retry_after = decision.retry_after_secs();
        let closed = self.on_throttled != WsOnThrottled::Notify;
        match self.on_throttled {
            WsOnThrottled::Notify => {
                let body = serde_json::json!({
                    "type": "rate_limit",
                    "error": "Too many messages",
                    "retry_after": retry_after,
                });
                socket.send(Message::Text(body.to_string().into())).await?;
            }
            WsOnThrottled::ClosePolicyViolation | WsOnThrottled::CloseTryAgainLater => {
                let code = if self.on_throttled == WsOnThrottled::ClosePolicyViolation {
                    1008
                } else {
                    1013
                };
                let frame = CloseFrame {
                    code,
                    reason: "Too many messages".into(),
                };
                socket.send(Message::Close(Some(frame))).await?;
            }
        }
        Ok(WsVerdict::Throttled {
            retry_after,
            closed,
        })
    }

    /// The client identity captured at upgrade.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }
}

impl<T> fmt::Debug for WsThrottle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WsThrottle")
            .field("uid", &self.throttle.uid())
            .field("identity", &self.identity)
            .field("scope", &self.scope)
            .field("on_throttled", &self.on_throttled)
            .finish()
    }
}

impl<S, T> FromRequestParts<S> for WsThrottle<T>
where
    S: Send + Sync,
    T: ThrottleSource<S>,
    Traffik: FromRef<S>,
{
    type Rejection = ThrottleRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let traffik = Traffik::from_ref(state);
        let throttle = T::http_throttle(state).into_owned();
        let identity = crate::enforce::identify(&throttle, parts, &traffik).await?;
        let route = parts
            .extensions
            .get::<MatchedPath>()
            .map_or_else(|| parts.uri.path().to_owned(), |m| m.as_str().to_owned());
        let backend = crate::enforce::select_backend(&throttle, parts, &traffik).clone();
        Ok(Self {
            on_throttled: throttle.inner().ws_on_throttled,
            throttle,
            identity,
            scope: format!("ws:{route}"),
            backend,
            _source: PhantomData,
        })
    }
}
