//! The default 429 of one throttle, kept rendered between denials that say the same.
//!
//! A throttle's denials mostly repeat themselves: a client over a fixed window hears the
//! same `Retry-After` for a whole second, and so does every other client denied in that
//! window. Rendering the body and the `RateLimit` fields each time (an integer to text,
//! a Structured Field list, three header values checked byte by byte) was most of what a
//! denial cost. [`RenderedDenials`] keeps the parts of the last denial and builds the
//! next response from clones of them when it would say the same.

use std::sync::{Mutex, TryLockError};

use axum::body::{Body, Bytes};
use axum::response::Response;
use http::HeaderValue;
use traffik_core::{Decision, Rate};

use crate::headers::{HeaderPolicy, PolicyField, RateLimitHeaders, throttled_429, throttled_body};

/// The last default 429 one throttle rendered. Cloning gives an empty one: a throttle
/// rebuilt with another uid or rate must not answer with the old one's parts.
#[derive(Default)]
pub(crate) struct RenderedDenials {
    last: Mutex<Option<Rendered>>,
}

impl Clone for RenderedDenials {
    fn clone(&self) -> Self {
        Self::default()
    }
}

/// What a default 429 says, for one throttle (its uid and rate fixed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Said {
    retry_after: u64,
    remaining: u64,
    fields: bool,
}

/// The rendered parts of one default 429.
struct Rendered {
    said: Said,
    body: Bytes,
    retry_after: HeaderValue,
    policy: Option<HeaderValue>,
    ratelimit: Option<HeaderValue>,
}

impl Rendered {
    fn new(uid: &str, rate: &Rate, decision: &Decision, field: &PolicyField, said: Said) -> Self {
        let (policy, ratelimit) = if said.fields {
            let collected = RateLimitHeaders::from_decision(uid, rate, decision).with_policy(field);
            (collected.policy_value(), collected.ratelimit_value())
        } else {
            (None, None)
        };
        Self {
            said,
            body: Bytes::from(throttled_body(said.retry_after)),
            retry_after: HeaderValue::from(said.retry_after),
            policy,
            ratelimit,
        }
    }

    fn response(&self) -> Response {
        throttled_429(
            Body::from(self.body.clone()),
            self.retry_after.clone(),
            self.policy.clone(),
            self.ratelimit.clone(),
        )
    }
}

impl RenderedDenials {
    /// The default 429 for `decision`, a denial by the throttle `uid` at `rate` whose
    /// `RateLimit-Policy` is `field`: built from the last one's parts when it says the
    /// same, rendered (and kept) otherwise. Byte for byte the response
    /// [`RateLimitHeaders::throttled_response`] gives.
    pub(crate) fn response(
        &self,
        uid: &str,
        rate: &Rate,
        decision: &Decision,
        field: &PolicyField,
        policy: HeaderPolicy,
    ) -> Response {
        let said = Said {
            retry_after: decision.retry_after_secs(),
            remaining: decision.remaining,
            fields: policy.includes(true),
        };
        let mut last = match self.last.try_lock() {
            Ok(last) => last,
            // Another request is using the parts right now: render this one apart rather
            // than wait for it.
            Err(TryLockError::WouldBlock) => {
                return Rendered::new(uid, rate, decision, field, said).response();
            }
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
        };
        if let Some(rendered) = last.as_ref().filter(|rendered| rendered.said == said) {
            return rendered.response();
        }
        let rendered = Rendered::new(uid, rate, decision, field, said);
        let response = rendered.response();
        *last = Some(rendered);
        response
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http::HeaderMap;

    use super::*;

    fn denied(remaining: u64, wait_ms: u64) -> Decision {
        Decision::deny(
            5,
            remaining,
            Duration::from_millis(wait_ms),
            Duration::from_millis(wait_ms),
        )
    }

    /// A throttle `uid` of "5/10s": its rate, its policy field and an empty store of kept
    /// denials.
    fn kept_for(uid: &str) -> (Rate, PolicyField, RenderedDenials) {
        let rate: Rate = "5/10s".parse().unwrap_or_else(|e| panic!("{e}"));
        let field = PolicyField::new(uid, &rate);
        (rate, field, RenderedDenials::default())
    }

    async fn parts(response: Response) -> (http::StatusCode, HeaderMap, Bytes) {
        let (parts, body) = response.into_parts();
        let body = axum::body::to_bytes(body, usize::MAX)
            .await
            .unwrap_or_else(|e| panic!("body: {e}"));
        (parts.status, parts.headers, body)
    }

    /// Every denial, kept parts or not, answers exactly what rendering it afresh answers.
    #[tokio::test]
    async fn denial_responses_are_those_rendered_afresh() {
        let (rate, field, kept) = kept_for("api key");
        let decisions = [
            (denied(0, 1_500), HeaderPolicy::OnThrottled),
            (denied(0, 1_200), HeaderPolicy::OnThrottled),
            (denied(0, 2_500), HeaderPolicy::OnThrottled),
            (denied(2, 2_500), HeaderPolicy::Always),
            (denied(2, 2_500), HeaderPolicy::Never),
            (denied(2, 2_500), HeaderPolicy::Always),
            (denied(0, 9_000), HeaderPolicy::Never),
        ];
        for (decision, policy) in decisions {
            let afresh = RateLimitHeaders::from_decision("api key", &rate, &decision)
                .throttled_response(policy);
            let got = kept.response("api key", &rate, &decision, &field, policy);
            assert_eq!(
                parts(got).await,
                parts(afresh).await,
                "{decision:?} {policy:?}"
            );
        }
    }

    /// A denial that says what the last one said reuses its parts; one that says
    /// anything else does not.
    #[tokio::test]
    async fn denial_parts_are_reused_only_for_the_same_answer() {
        let (rate, field, kept) = kept_for("api");
        let ratelimit = |response: &Response| {
            let value = &response.headers()["ratelimit"];
            (value.as_bytes().as_ptr(), value.clone())
        };
        let policy = HeaderPolicy::OnThrottled;
        let first = kept.response("api", &rate, &denied(0, 1_500), &field, policy);
        let same = kept.response("api", &rate, &denied(0, 1_100), &field, policy);
        let later = kept.response("api", &rate, &denied(0, 2_100), &field, policy);
        assert_eq!(
            ratelimit(&first).0,
            ratelimit(&same).0,
            "same answer, same parts"
        );
        assert_ne!(ratelimit(&same).0, ratelimit(&later).0);
        assert_eq!(ratelimit(&later).1, r#""api";r=0;t=3"#);
        assert_eq!(later.headers()["retry-after"], "3");
        let (_, _, body) = parts(later).await;
        assert_eq!(
            body,
            r#"{"detail":"Too many requests. Retry in 3 seconds."}"#.as_bytes()
        );
    }

    /// The kept 429 leaves `Content-Length` to axum: an app that replaces its body and
    /// keeps its headers (the error-handling example) must not send the old length.
    #[test]
    fn a_kept_denial_states_no_length() {
        let (rate, field, kept) = kept_for("api");
        for _ in 0..2 {
            let response = kept.response(
                "api",
                &rate,
                &denied(0, 1_500),
                &field,
                HeaderPolicy::OnThrottled,
            );
            assert!(
                !response
                    .headers()
                    .contains_key(http::header::CONTENT_LENGTH)
            );
        }
    }

    /// A clone (a throttle rebuilt by a builder method) starts with nothing kept.
    #[test]
    fn denial_parts_are_not_cloned() {
        let (rate, field, kept) = kept_for("api");
        let _ = kept.response(
            "api",
            &rate,
            &denied(0, 1_500),
            &field,
            HeaderPolicy::Always,
        );
        assert!(
            kept.clone()
                .last
                .lock()
                .map(|l| l.is_none())
                .unwrap_or(false)
        );
    }
}
