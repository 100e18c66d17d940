//! A decorated handler keeps its extractors, state, docs, attributes and visibility;
//! stacked limits; a declared throttle by name; `debug_handler` below `#[throttled]`.
#![deny(warnings)]
#![deny(missing_docs)]

use axum::Router;
use axum::extract::{FromRef, Path, State};
use axum::routing::{get, post};
use traffik::prelude::*;
use traffik::throttled as facade_throttled;

/// The app's state.
#[derive(Clone)]
pub struct AppState {
    traffik: Traffik,
    greeting: &'static str,
}

impl FromRef<AppState> for Traffik {
    fn from_ref(state: &AppState) -> Self {
        state.traffik.clone()
    }
}

/// Public handlers, documented: the attribute keeps docs and visibility.
pub mod api {
    use super::*;

    throttle!(
        /// A declared throttle.
        pub ApiLimit = HttpThrottle::new("api", "10/m")
    );

    /// Greets a user: path, state and a JSON body, after the limit.
    #[throttled("5/m")]
    #[allow(clippy::unused_async)]
    pub async fn greet(
        Path(name): Path<String>,
        State(state): State<AppState>,
        body: String,
    ) -> String {
        format!("{} {name} {body}", state.greeting)
    }

    /// Two limits: a burst and a sustained one.
    #[throttled("5/s")]
    #[throttled("100/h", uid = "sustained")]
    pub async fn stacked() -> &'static str {
        "ok"
    }

    /// A declared throttle, by path, stacked with a literal rate.
    #[throttled(crate::api::ApiLimit)]
    #[traffik::throttled("1/s")]
    pub(crate) async fn named() -> &'static str {
        "ok"
    }
}

/// Checked by axum's `debug_handler`, which sees the hidden argument.
#[throttled("5/m")]
#[axum::debug_handler(state = AppState)]
async fn debugged(State(state): State<AppState>) -> &'static str {
    state.greeting
}

/// Checked by `debug_handler` with the state given explicitly.
#[facade_throttled("5/m")]
#[axum::debug_handler(state = Traffik)]
async fn debugged_without_state() -> &'static str {
    "ok"
}

/// Two handlers with the same name in two modules do not clash.
mod other {
    use traffik::prelude::*;

    #[throttled("5/m")]
    pub async fn stacked() {}
}

fn main() {
    let _app: Router = Router::new()
        .route("/greet/{name}", post(api::greet))
        .route("/stacked", get(api::stacked))
        .route("/other", get(other::stacked))
        .route("/named", get(api::named))
        .route("/debugged", get(debugged))
        .with_state(AppState {
            traffik: Traffik::new(InMemoryBackend::new("app")),
            greeting: "hello",
        });
    let _plain: Router = Router::new()
        .route("/debugged", get(debugged_without_state))
        .with_state(Traffik::new(InMemoryBackend::new("app")));
}
