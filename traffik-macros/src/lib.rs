//! Procedural macros for Traffik: the `#[throttled]` attribute.
//!
//! Use it through the facade, `traffik::throttled` (also in `traffik::prelude`): the code
//! it generates names `::traffik::...`, so depend on `traffik`, not on this crate alone.

mod args;
mod expand;
mod rate;

use proc_macro::TokenStream;

/// Throttles an axum handler, or a WebSocket message handler, with a rate checked at
/// compile time: the axum twin of the seed's `@throttled(HTTPThrottle(...))` decorator.
///
/// # On an HTTP handler
///
/// ```
/// use axum::{Router, routing::get};
/// use traffik::prelude::*;
///
/// /// At most 5 requests a minute per client.
/// #[throttled("5/m")]
/// pub async fn limited() -> &'static str {
///     "Limited access"
/// }
///
/// let app: Router = Router::new()
///     .route("/api/limited", get(limited))
///     .with_state(Traffik::new(InMemoryBackend::new("api")));
/// ```
///
/// The handler is throttled exactly as a `Throttled<T>` argument would throttle it (it
/// *is* one): the client is identified, the limit decided on the app's backend (the
/// `Traffik` in the state), and a request over the limit is answered `429 Too Many
/// Requests` with `Retry-After` and `RateLimit` headers before any extractor of the
/// handler runs. The handler keeps its extractors, state, attributes, doc comments and
/// visibility. It is a free `async fn`; put `#[throttled]` *above* `#[axum::debug_handler]`
/// (attributes expand from the top), and give `debug_handler` the state when no
/// `State<_>` argument names it: `#[debug_handler(state = Traffik)]`.
///
/// ## What it expands to
///
/// ```text
/// #[throttled("5/m")]
/// pub async fn limited(Path(id): Path<u32>) -> String { .. }
/// ```
///
/// becomes
///
/// ```text
/// ::traffik::axum::throttle!(
///     #[doc(hidden)] #[allow(non_camel_case_types)]
///     pub __traffik_limited_0 = ::traffik::axum::HttpThrottle::new(
///         ::core::concat!(::core::module_path!(), "::limited"),
///         ::traffik::axum::core::rate!("5/m"),
///     )
/// );
/// pub async fn limited(
///     _: ::traffik::axum::Throttled<__traffik_limited_0>,
///     Path(id): Path<u32>,
/// ) -> String { .. }
/// ```
///
/// that is: a hidden unit type, its throttle built once on first use, and one extractor
/// argument placed first. Nothing else runs per request.
///
/// # Options
///
/// `#[throttled("5/m", uid = "...", strategy = <expr>, identifier = <expr>, cost = <expr>,
/// backend = <expr>)]`, each at most once, in any order:
///
/// - `uid = "login"`: the throttle's name, which separates its counters from every other
///   throttle's. Default: the module path and the function name (`my_app::api::limited`),
///   so two handlers never share a count by accident; the n-th stacked limit appends
///   `#n`.
/// - `strategy = TokenBucket::with_burst(10)`: any `Strategy` (default: fixed window).
/// - `identifier = by_user`: a `fn(&Parts) -> Identity` (or closure) that identifies the
///   client (default: the client IP); `Identity::Exempt` lets a request through.
/// - `cost = 5`: what a request costs. An integer expression (literal, constant,
///   arithmetic) is a fixed cost; a closure or the path of a snake_case function,
///   `Fn(&Parts) -> u64`, computes it per request.
/// - `backend = InMemoryBackend::new("login")`: the throttle's own backend instead of the
///   app's (any `Backend`, such as an `Arc` of one), built on first use.
///
/// ```
/// use axum::http::request::Parts;
/// use traffik::prelude::*;
///
/// fn by_user(parts: &Parts) -> Identity {
///     match parts.headers.get("x-user-id").and_then(|v| v.to_str().ok()) {
///         Some(user) => Identity::client(format!("user:{user}")),
///         None => Identity::client("anonymous"),
///     }
/// }
///
/// #[throttled("100/m", uid = "search", strategy = TokenBucket::with_burst(20), identifier = by_user, cost = 2)]
/// async fn search() -> &'static str {
///     "results"
/// }
/// ```
///
/// A throttle declared with `throttle!` is named instead of a rate (its options are set
/// where it is declared):
///
/// ```
/// use traffik::prelude::*;
///
/// throttle!(ApiLimit = HttpThrottle::new("api", "10/m"));
///
/// #[throttled(ApiLimit)]
/// async fn data() -> &'static str {
///     "data"
/// }
/// ```
///
/// Stacked attributes are several limits, decided from the top down; the first denial
/// answers (a burst limit and a sustained one):
///
/// ```
/// use traffik::prelude::*;
///
/// #[throttled("5/s")]
/// #[throttled("100/h")]
/// async fn upload() -> &'static str {
///     "stored"
/// }
/// ```
///
/// # Checked at compile time
///
/// The rate is parsed while the macro expands, with the grammar of `Rate::parse`; a bad
/// rate, an unknown option, or the attribute on a function that is not `async` is a
/// compile error pointing at the offending tokens, saying what is wrong and what would be
/// right:
///
/// ```compile_fail
/// # use traffik::prelude::*;
/// #[throttled("5/mins")] // invalid rate "5/mins": unknown unit "mins"; did you mean "5/min"? ...
/// async fn limited() {}
/// ```
///
/// # On a WebSocket message handler
///
/// An `async fn` with a parameter typed `&WsThrottle<Name>` is a message handler: it
/// handles *one* message, and the attribute checks the limit before its body runs.
/// The accepted signature is
///
/// ```text
/// #[throttled("3/10s", ..options)]
/// [pub] async fn name(.., socket: &mut WebSocket, .., limit: &WsThrottle<Name>, ..) [-> R]
/// ```
///
/// - exactly one `&mut WebSocket` parameter (axum's `WebSocket`), used to tell the client;
/// - one `&WsThrottle<Name>` parameter per `#[throttled]`, in the same order. With a rate
///   in the attribute, `Name` is a plain identifier and the attribute *declares* that
///   throttle type (with the function's visibility); with `#[throttled(Name)]`, `Name` is
///   the declared throttle;
/// - any other parameters (the message, app state...), in any order;
/// - `R` is `()` or any `Default` type: a throttled message returns `R::default()` (so an
///   `Option<T>` handler returns `None`) without running the body.
///
/// The upgrade handler extracts `WsThrottle<Name>`, which identifies the client once, at
/// upgrade, and the socket task passes it to every call. A message over the limit is
/// answered `{"type":"rate_limit","error":"Too many messages","retry_after":N}`, or the
/// connection is closed if so configured (`WsThrottle::on_throttled` at upgrade, or
/// `HttpThrottle::ws_on_throttled` on a declared throttle). A failure to send that answer
/// also skips the body; the next `recv` reports the broken connection. The `cost` option
/// is a fixed cost here (a message has no request parts).
///
/// ```
/// use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
/// use axum::response::Response;
/// use traffik::prelude::*;
///
/// async fn upgrade(ws: WebSocketUpgrade, limit: WsThrottle<ChatLimit>) -> Response {
///     ws.on_upgrade(move |mut socket| async move {
///         while let Some(Ok(message)) = socket.recv().await {
///             on_message(&mut socket, &limit, message).await;
///         }
///     })
/// }
///
/// /// Echoes a message; at most 3 messages per 10 seconds per client.
/// #[throttled("3/10s")]
/// async fn on_message(socket: &mut WebSocket, limit: &WsThrottle<ChatLimit>, message: Message) {
///     let _ = socket.send(message).await;
/// }
/// ```
#[proc_macro_attribute]
pub fn throttled(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand::throttled(attr.into(), item.into()).into()
}
