//! Response headers for throttle decisions: `Retry-After`, the IETF `RateLimit-Policy` and
//! `RateLimit` fields, and the default `429 Too Many Requests` response.
//!
//! # The fields
//!
//! * `Retry-After` ([RFC 9110 §10.2.3]): whole seconds, rounded up, at least 1
//!   ([`Decision::retry_after_secs`]). Sent on denials only.
//! * `RateLimit-Policy` and `RateLimit`, as defined by
//!   [draft-ietf-httpapi-ratelimit-headers] (drafts 10 and 11). Both are Structured Field
//!   ([RFC 9651]) Lists; every throttle contributes one member, named after its uid:
//!
//!   ```text
//!   RateLimit-Policy: "api";q=100;w=60, "burst";q=5;w=1
//!   RateLimit: "api";r=42;t=37, "burst";r=0;t=1
//!   ```
//!
//!   * `q`: the rate's limit ([`Rate::limit`]).
//!   * `w`: the rate's period in whole seconds, rounded up, at least 1. The draft has no
//!     sub-second windows; rounding the window up only ever advertises *less* capacity than
//!     the throttle grants (`1000/500ms` is advertised as `q=1000;w=1`).
//!   * `r`: what the decision says may still be spent right now ([`Decision::remaining`]).
//!   * `t`: seconds, rounded up, within which no more than `r` may be spent. For an admitted
//!     request this is [`Decision::reset`]; for a denial it is the same value as
//!     `Retry-After`, because the draft asks that `Retry-After` not point earlier than the
//!     end of the effective window, and after the wait the client may indeed retry.
//!
//!   Integers above the Structured Field maximum (999,999,999,999,999) are clamped to it.
//!
//! The policy name is an sf-string (the only form draft 11 allows; draft 10 allowed a
//! string or a token). A uid may contain anything, so [`policy_name`] turns it into one.
//!
//! Rate-limit fields are never produced for [`Rate::UNLIMITED`] or for an exempt client
//! ([`Decision::unlimited`]).
//!
//! # Several throttles on one request
//!
//! Collect every decision in one [`RateLimitHeaders`] and render it once: the two fields
//! then each hold a single List with one member per throttle, and `Retry-After` is the
//! longest wait of the denials.
//!
//! ```
//! use std::time::Duration;
//! use http::HeaderMap;
//! use traffik_axum::core::{Decision, Rate};
//! use traffik_axum::headers::{HeaderPolicy, RateLimitHeaders};
//!
//! let per_minute: Rate = "100/m".parse()?;
//! let per_second: Rate = "5/s".parse()?;
//!
//! let mut collected = RateLimitHeaders::new();
//! collected.push("api", &per_minute, &Decision::allow(100, 42, Duration::from_secs(37)));
//! collected.push(
//!     "burst",
//!     &per_second,
//!     &Decision::deny(5, 0, Duration::from_millis(300), Duration::from_millis(300)),
//! );
//!
//! let mut headers = HeaderMap::new();
//! collected.apply(HeaderPolicy::OnThrottled, &mut headers);
//! assert_eq!(headers["retry-after"], "1");
//! assert_eq!(headers["ratelimit-policy"], r#""api";q=100;w=60, "burst";q=5;w=1"#);
//! assert_eq!(headers["ratelimit"], r#""api";r=42;t=37, "burst";r=0;t=1"#);
//! # Ok::<(), traffik_axum::core::Error>(())
//! ```
//!
//! [RFC 9110 §10.2.3]: https://www.rfc-editor.org/rfc/rfc9110#section-10.2.3
//! [RFC 9651]: https://www.rfc-editor.org/rfc/rfc9651
//! [draft-ietf-httpapi-ratelimit-headers]: https://datatracker.ietf.org/doc/draft-ietf-httpapi-ratelimit-headers/

use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use sfv::{Integer, KeyRef, ListSerializer};
use traffik_core::{Decision, Rate};

/// The `RateLimit-Policy` header name (lower-case, as HTTP/2 and `http` require).
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");

/// The `RateLimit` header name (lower-case, as HTTP/2 and `http` require).
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

const KEY_Q: &KeyRef = KeyRef::constant("q");
const KEY_W: &KeyRef = KeyRef::constant("w");
const KEY_R: &KeyRef = KeyRef::constant("r");
const KEY_T: &KeyRef = KeyRef::constant("t");

/// When to send the `RateLimit-Policy` and `RateLimit` fields.
///
/// `Retry-After` does not depend on this setting: a denial always carries it, since it is
/// what a client needs to back off (and it reveals nothing about capacity).
///
/// The default is [`HeaderPolicy::OnThrottled`]: clients that hit a limit learn every
/// policy that applies, while successful responses do not advertise capacity (see the
/// draft's security considerations on information disclosure).
///
/// ```
/// use traffik_axum::headers::HeaderPolicy;
///
/// assert_eq!(HeaderPolicy::default(), HeaderPolicy::OnThrottled);
/// assert!(!HeaderPolicy::Never.includes(true));
/// assert!(!HeaderPolicy::OnThrottled.includes(false));
/// assert!(HeaderPolicy::OnThrottled.includes(true));
/// assert!(HeaderPolicy::Always.includes(false));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum HeaderPolicy {
    /// Never send the rate-limit fields.
    Never,
    /// Send them only on throttled (`429`) responses.
    #[default]
    OnThrottled,
    /// Send them on every response a limited throttle checked.
    Always,
}

impl HeaderPolicy {
    /// Whether the rate-limit fields belong on a response that is (`throttled`) or is not
    /// a throttled one.
    pub const fn includes(self, throttled: bool) -> bool {
        match self {
            HeaderPolicy::Never => false,
            HeaderPolicy::OnThrottled => throttled,
            HeaderPolicy::Always => true,
        }
    }
}

/// One throttle's member of the two lists.
#[derive(Debug, Clone)]
struct Entry {
    name: sfv::String,
    allowed: bool,
    quota: Integer,
    window: Integer,
    remaining: Integer,
    effective: Integer,
}

impl Entry {
    /// Whether `self` tells the client less than `other` may be done right now.
    fn more_restrictive_than(&self, other: &Entry) -> bool {
        (!self.allowed, other.remaining, self.effective)
            > (!other.allowed, self.remaining, other.effective)
    }
}

/// Collects the decisions of every throttle that checked a request and renders the
/// response headers once: one `RateLimit-Policy` List and one `RateLimit` List holding a
/// member per throttle, and `Retry-After` with the longest wait among the denials.
///
/// Pushing the same policy name twice keeps the more restrictive entry (a denial over an
/// admission, then the lower remaining quota), so a List never names a policy twice.
/// Unlimited rates and exempt decisions add no member.
///
/// ```
/// use std::time::Duration;
/// use traffik_axum::core::{Decision, Rate};
/// use traffik_axum::headers::RateLimitHeaders;
///
/// let rate: Rate = "5/10s".parse()?;
/// let mut collected = RateLimitHeaders::new();
/// collected.push("basic_limit", &rate, &Decision::allow(5, 4, Duration::from_millis(9_500)));
/// collected.push("exempt", &Rate::UNLIMITED, &Decision::unlimited());
///
/// assert_eq!(collected.len(), 1);
/// assert!(!collected.is_throttled());
/// let policy = collected.policy_value().expect("one member");
/// assert_eq!(policy, r#""basic_limit";q=5;w=10"#);
/// assert_eq!(collected.ratelimit_value().expect("one member"), r#""basic_limit";r=4;t=10"#);
/// # Ok::<(), traffik_axum::core::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct RateLimitHeaders {
    entries: Vec<Entry>,
    retry_after: Option<u64>,
    /// `RateLimit-Policy` rendered in advance for the one entry (see [`PolicyField`]).
    policy: Option<HeaderValue>,
}

/// A throttle's `RateLimit-Policy` field, rendered once when the throttle is built: it
/// depends only on the uid and the rate, and every denial sends it.
#[derive(Debug, Clone, Default)]
pub(crate) struct PolicyField(Option<HeaderValue>);

impl PolicyField {
    /// The field for a throttle named `uid` limited to `rate`.
    pub(crate) fn new(uid: &str, rate: &Rate) -> Self {
        let full = Decision::allow(rate.limit(), rate.limit(), rate.period());
        Self(RateLimitHeaders::from_decision(uid, rate, &full).policy_value())
    }
}

impl RateLimitHeaders {
    /// An empty collection: rendering it adds no header.
    pub fn new() -> Self {
        Self::default()
    }

    /// A collection holding one throttle's decision.
    ///
    /// ```
    /// use std::time::Duration;
    /// use traffik_axum::core::{Decision, Rate};
    /// use traffik_axum::headers::RateLimitHeaders;
    ///
    /// let denied = Decision::deny(1, 0, Duration::from_millis(1001), Duration::from_secs(2));
    /// let collected = RateLimitHeaders::from_decision("login", &"1/2s".parse::<Rate>()?, &denied);
    /// assert_eq!(collected.retry_after_secs(), Some(2));
    /// # Ok::<(), traffik_axum::core::Error>(())
    /// ```
    pub fn from_decision(uid: &str, rate: &Rate, decision: &Decision) -> Self {
        let mut collected = Self::new();
        collected.push(uid, rate, decision);
        collected
    }

    /// Takes `field`, rendered in advance for the throttle of the one entry, as this
    /// collection's `RateLimit-Policy`. Pushing another decision drops it.
    pub(crate) fn with_policy(mut self, field: &PolicyField) -> Self {
        if self.entries.len() == 1 {
            self.policy.clone_from(&field.0);
        }
        self
    }

    /// Adds one throttle's decision; `uid` names the policy (see [`policy_name`]).
    ///
    /// A denial raises `Retry-After` to its wait if that is longer. Unless the rate is
    /// unlimited or the decision exempt, the throttle becomes a member of both Lists.
    ///
    /// ```
    /// use std::time::Duration;
    /// use traffik_axum::core::{Decision, Rate};
    /// use traffik_axum::headers::RateLimitHeaders;
    ///
    /// let rate: Rate = "10/m".parse()?;
    /// let mut collected = RateLimitHeaders::new();
    /// collected
    ///     .push("a", &rate, &Decision::deny(10, 0, Duration::from_secs(3), Duration::from_secs(3)))
    ///     .push("b", &rate, &Decision::deny(10, 0, Duration::from_secs(8), Duration::from_secs(8)));
    /// assert_eq!(collected.retry_after_secs(), Some(8));
    /// assert_eq!(collected.len(), 2);
    /// # Ok::<(), traffik_axum::core::Error>(())
    /// ```
    pub fn push(&mut self, uid: &str, rate: &Rate, decision: &Decision) -> &mut Self {
        self.policy = None;
        if !decision.allowed {
            let secs = decision.retry_after_secs();
            self.retry_after = Some(self.retry_after.map_or(secs, |old| old.max(secs)));
        }
        if rate.is_unlimited() || is_exempt(decision) {
            return self;
        }
        let Ok(name) = sfv::String::from_string(policy_name(uid)) else {
            // `policy_name` only emits printable ASCII, which is always a valid sf-string.
            return self;
        };
        let effective = if decision.allowed {
            decision.reset_secs()
        } else {
            decision.retry_after_secs()
        };
        let entry = Entry {
            name,
            allowed: decision.allowed,
            quota: clamp(rate.limit()),
            window: clamp(ceil_secs(rate.period()).max(1)),
            remaining: clamp(decision.remaining),
            effective: clamp(effective),
        };
        match self.entries.iter_mut().find(|e| e.name == entry.name) {
            Some(existing) => {
                if entry.more_restrictive_than(existing) {
                    *existing = entry;
                }
            }
            None => self.entries.push(entry),
        }
        self
    }

    /// How many throttles are members of the rate-limit Lists.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no throttle is a member of the rate-limit Lists (there may still be a
    /// `Retry-After`).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether any pushed decision was a denial.
    pub fn is_throttled(&self) -> bool {
        self.retry_after.is_some()
    }

    /// The `Retry-After` value in seconds: the longest wait among the denials, or `None`
    /// if every decision was an admission.
    pub fn retry_after_secs(&self) -> Option<u64> {
        self.retry_after
    }

    /// The `RateLimit-Policy` field value, or `None` with no member.
    ///
    /// ```
    /// use std::time::Duration;
    /// use traffik_axum::core::{Decision, Rate};
    /// use traffik_axum::headers::RateLimitHeaders;
    ///
    /// let rate: Rate = "1000/d".parse()?;
    /// let collected =
    ///     RateLimitHeaders::from_decision("daily", &rate, &Decision::allow(1000, 999, Duration::ZERO));
    /// assert_eq!(collected.policy_value().expect("one member"), r#""daily";q=1000;w=86400"#);
    /// assert!(RateLimitHeaders::new().policy_value().is_none());
    /// # Ok::<(), traffik_axum::core::Error>(())
    /// ```
    pub fn policy_value(&self) -> Option<HeaderValue> {
        if let Some(rendered) = &self.policy {
            return Some(rendered.clone());
        }
        let mut list = ListSerializer::new();
        for entry in &self.entries {
            _ = list
                .bare_item(&entry.name)
                .parameter(KEY_Q, entry.quota)
                .parameter(KEY_W, entry.window);
        }
        list.finish()
            .and_then(|value| HeaderValue::try_from(value).ok())
    }

    /// The `RateLimit` field value, or `None` with no member.
    ///
    /// ```
    /// use std::time::Duration;
    /// use traffik_axum::core::{Decision, Rate};
    /// use traffik_axum::headers::RateLimitHeaders;
    ///
    /// let rate: Rate = "100/m".parse()?;
    /// let decision = Decision::allow(100, 50, Duration::from_millis(29_001));
    /// let collected = RateLimitHeaders::from_decision("default", &rate, &decision);
    /// assert_eq!(collected.ratelimit_value().expect("one member"), r#""default";r=50;t=30"#);
    /// # Ok::<(), traffik_axum::core::Error>(())
    /// ```
    pub fn ratelimit_value(&self) -> Option<HeaderValue> {
        let mut list = ListSerializer::new();
        for entry in &self.entries {
            _ = list
                .bare_item(&entry.name)
                .parameter(KEY_R, entry.remaining)
                .parameter(KEY_T, entry.effective);
        }
        list.finish()
            .and_then(|value| HeaderValue::try_from(value).ok())
    }

    /// Adds the headers to `headers`, for a response that is throttled exactly when a
    /// pushed decision was a denial.
    ///
    /// * `Retry-After` is set on a denial; an existing `Retry-After` holding a longer wait
    ///   is kept.
    /// * `RateLimit-Policy` and `RateLimit` are *appended* when `policy` includes them.
    ///   Field lines of a List combine into one List, so headers that an outer layer
    ///   appends for its own throttles stay valid; render each collection only once.
    ///
    /// ```
    /// use std::time::Duration;
    /// use http::HeaderMap;
    /// use traffik_axum::core::{Decision, Rate};
    /// use traffik_axum::headers::{HeaderPolicy, RateLimitHeaders};
    ///
    /// let rate: Rate = "5/10s".parse()?;
    /// let allowed = RateLimitHeaders::from_decision("api", &rate, &Decision::allow(5, 4, Duration::from_secs(10)));
    ///
    /// let mut headers = HeaderMap::new();
    /// allowed.apply(HeaderPolicy::OnThrottled, &mut headers);
    /// assert!(headers.is_empty());
    ///
    /// allowed.apply(HeaderPolicy::Always, &mut headers);
    /// assert_eq!(headers["ratelimit"], r#""api";r=4;t=10"#);
    /// assert!(headers.get("retry-after").is_none());
    /// # Ok::<(), traffik_axum::core::Error>(())
    /// ```
    pub fn apply(&self, policy: HeaderPolicy, headers: &mut HeaderMap) {
        self.apply_retry_after(headers);
        if policy.includes(self.is_throttled()) {
            self.append_fields(headers);
        }
    }

    /// The default `429 Too Many Requests` response: a JSON body
    /// `{"detail":"Too many requests. Retry in N seconds."}` (see [`throttled_body`]),
    /// `content-type: application/json`, `Retry-After: N`, and the rate-limit fields
    /// unless `policy` is [`HeaderPolicy::Never`].
    ///
    /// `N` is [`RateLimitHeaders::retry_after_secs`], or 1 if nothing was denied.
    ///
    /// ```
    /// use std::time::Duration;
    /// use http::StatusCode;
    /// use traffik_axum::core::{Decision, Rate};
    /// use traffik_axum::headers::{HeaderPolicy, RateLimitHeaders};
    ///
    /// let rate: Rate = "5/10s".parse()?;
    /// let denied = Decision::deny(5, 0, Duration::from_secs(4), Duration::from_secs(4));
    /// let response =
    ///     RateLimitHeaders::from_decision("api", &rate, &denied).throttled_response(HeaderPolicy::Never);
    /// assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    /// assert_eq!(response.headers()["retry-after"], "4");
    /// assert!(response.headers().get("ratelimit").is_none());
    /// # Ok::<(), traffik_axum::core::Error>(())
    /// ```
    pub fn throttled_response(&self, policy: HeaderPolicy) -> Response {
        let secs = self.retry_after.unwrap_or(1);
        let (policy_value, ratelimit_value) = if policy.includes(true) {
            (self.policy_value(), self.ratelimit_value())
        } else {
            (None, None)
        };
        throttled_429(
            Body::from(throttled_body(secs)),
            HeaderValue::from(secs),
            policy_value,
            ratelimit_value,
        )
    }

    fn apply_retry_after(&self, headers: &mut HeaderMap) {
        let Some(secs) = self.retry_after else {
            return;
        };
        let existing = headers
            .get(RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().parse::<u64>().ok());
        if existing.is_none_or(|existing| existing < secs) {
            headers.insert(RETRY_AFTER, HeaderValue::from(secs));
        }
    }

    fn append_fields(&self, headers: &mut HeaderMap) {
        if let Some(value) = self.policy_value() {
            headers.append(RATELIMIT_POLICY, value);
        }
        if let Some(value) = self.ratelimit_value() {
            headers.append(RATELIMIT, value);
        }
    }
}

/// Adds every header one throttle's decision warrants to `headers`, whatever the
/// [`HeaderPolicy`]: `Retry-After` on a denial, and the `RateLimit-Policy` and
/// `RateLimit` fields unless the rate is unlimited or the client exempt. Shorthand for
/// [`RateLimitHeaders::from_decision`] then [`RateLimitHeaders::apply`] with
/// [`HeaderPolicy::Always`]; check [`HeaderPolicy::includes`] first, or call
/// [`RateLimitHeaders::apply`], to honour a policy.
///
/// The fields are appended, and Lists split over several field lines form one List, so
/// calling this for several throttles still yields valid fields. Pushing them all into one
/// [`RateLimitHeaders`] instead gives one line per field and lets
/// [`HeaderPolicy::OnThrottled`] see whether *any* of them denied.
///
/// ```
/// use std::time::Duration;
/// use http::HeaderMap;
/// use traffik_axum::core::{Decision, Rate};
/// use traffik_axum::headers::append_headers;
///
/// let rate: Rate = "5/10s".parse()?;
/// let denied = Decision::deny(5, 0, Duration::from_millis(1001), Duration::from_millis(1001));
/// let mut headers = HeaderMap::new();
/// append_headers(&mut headers, "basic_limit", &rate, &denied);
/// assert_eq!(headers["retry-after"], "2");
/// assert_eq!(headers["ratelimit-policy"], r#""basic_limit";q=5;w=10"#);
/// assert_eq!(headers["ratelimit"], r#""basic_limit";r=0;t=2"#);
/// # Ok::<(), traffik_axum::core::Error>(())
/// ```
pub fn append_headers(headers: &mut HeaderMap, uid: &str, rate: &Rate, decision: &Decision) {
    RateLimitHeaders::from_decision(uid, rate, decision).apply(HeaderPolicy::Always, headers);
}

/// The default `429` response for one throttle's decision, with every header; shorthand
/// for [`default_throttled_response`] with [`HeaderPolicy::Always`].
///
/// ```
/// use std::time::Duration;
/// use http::StatusCode;
/// use traffik_axum::core::{Decision, Rate};
/// use traffik_axum::headers::throttled_response;
///
/// let rate: Rate = "5/10s".parse()?;
/// let denied = Decision::deny(5, 0, Duration::from_millis(300), Duration::from_millis(300));
/// let response = throttled_response("basic_limit", &rate, &denied);
/// assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
/// assert_eq!(response.headers()["content-type"], "application/json");
/// assert_eq!(response.headers()["retry-after"], "1");
/// assert_eq!(response.headers()["ratelimit"], r#""basic_limit";r=0;t=1"#);
/// # Ok::<(), traffik_axum::core::Error>(())
/// ```
pub fn throttled_response(uid: &str, rate: &Rate, decision: &Decision) -> Response {
    default_throttled_response(uid, rate, decision, HeaderPolicy::Always)
}

/// The default `429` response for one throttle's decision: status 429, the JSON body of
/// [`throttled_body`], `content-type: application/json`, `Retry-After`, and the
/// rate-limit fields unless `policy` is [`HeaderPolicy::Never`] (the response is a
/// throttled one, so [`HeaderPolicy::OnThrottled`] includes them). See
/// [`RateLimitHeaders::throttled_response`].
///
/// ```
/// use std::time::Duration;
/// use traffik_axum::core::{Decision, Rate};
/// use traffik_axum::headers::{default_throttled_response, HeaderPolicy};
///
/// let rate: Rate = "5/10s".parse()?;
/// let denied = Decision::deny(5, 0, Duration::from_secs(4), Duration::from_secs(4));
/// let response = default_throttled_response("api", &rate, &denied, HeaderPolicy::OnThrottled);
/// assert_eq!(response.headers()["retry-after"], "4");
/// assert_eq!(response.headers()["ratelimit-policy"], r#""api";q=5;w=10"#);
///
/// let response = default_throttled_response("api", &rate, &denied, HeaderPolicy::Never);
/// assert_eq!(response.headers()["retry-after"], "4");
/// assert!(response.headers().get("ratelimit-policy").is_none());
/// # Ok::<(), traffik_axum::core::Error>(())
/// ```
pub fn default_throttled_response(
    uid: &str,
    rate: &Rate,
    decision: &Decision,
    policy: HeaderPolicy,
) -> Response {
    RateLimitHeaders::from_decision(uid, rate, decision).throttled_response(policy)
}

/// The default 429 from its rendered parts: a JSON `body`, `Retry-After`, and the
/// `RateLimit-Policy` and `RateLimit` fields when they are sent. Both the response rendered
/// per denial and the one kept rendered between denials are assembled here.
pub(crate) fn throttled_429(
    body: Body,
    retry_after: HeaderValue,
    policy: Option<HeaderValue>,
    ratelimit: Option<HeaderValue>,
) -> Response {
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(RETRY_AFTER, retry_after);
    if let Some(value) = policy {
        headers.append(RATELIMIT_POLICY, value);
    }
    if let Some(value) = ratelimit {
        headers.append(RATELIMIT, value);
    }
    response
}

/// The default `429` body: `{"detail":"Too many requests. Retry in N seconds."}`.
///
/// ```
/// use traffik_axum::headers::throttled_body;
///
/// assert_eq!(throttled_body(3), r#"{"detail":"Too many requests. Retry in 3 seconds."}"#);
/// ```
pub fn throttled_body(retry_after_secs: u64) -> String {
    // A fixed JSON text around one integer: nothing to escape, so it is written directly
    // (a third of the cost of a default 429 went to building it as a JSON value).
    const HEAD: &str = r#"{"detail":"Too many requests. Retry in "#;
    const TAIL: &str = r#" seconds."}"#;
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(retry_after_secs);
    let mut body = String::with_capacity(HEAD.len() + digits.len() + TAIL.len());
    body.push_str(HEAD);
    body.push_str(digits);
    body.push_str(TAIL);
    body
}

/// The policy name for a throttle uid, as the content of an sf-string.
///
/// An sf-string holds printable ASCII (space to `~`); the serializer escapes `"` and `\`.
/// Every other character, and `%` itself, is percent-encoded as its UTF-8 bytes, so
/// different uids always give different names and ASCII uids read as themselves.
///
/// ```
/// use traffik_axum::headers::policy_name;
///
/// assert_eq!(policy_name("api:v1 \"read\""), "api:v1 \"read\"");
/// assert_eq!(policy_name("café 100%"), "caf%C3%A9 100%25");
/// assert_eq!(policy_name("tab\there"), "tab%09here");
/// ```
pub fn policy_name(uid: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut name = String::with_capacity(uid.len());
    for c in uid.chars() {
        if c != '%' && (' '..='~').contains(&c) {
            name.push(c);
        } else {
            let mut utf8 = [0; 4];
            for byte in c.encode_utf8(&mut utf8).bytes() {
                name.push('%');
                name.push(char::from(HEX[usize::from(byte >> 4)]));
                name.push(char::from(HEX[usize::from(byte & 0x0f)]));
            }
        }
    }
    name
}

/// Whether `decision` is that of an exempt client (or of an unlimited rate).
fn is_exempt(decision: &Decision) -> bool {
    decision.allowed && decision.limit == u64::MAX
}

/// `value` as a Structured Field Integer, clamped to its maximum.
fn clamp(value: u64) -> Integer {
    Integer::try_from(value).unwrap_or(Integer::MAX)
}

/// Whole seconds, rounded up.
fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sfv::{BareItem, List, ListEntry, Parser};

    fn rate(text: &str) -> Rate {
        Rate::parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
    }

    fn denied_ms(ms: u64) -> Decision {
        Decision::deny(5, 0, Duration::from_millis(ms), Duration::from_millis(ms))
    }

    fn allowed(remaining: u64, reset_ms: u64) -> Decision {
        Decision::allow(5, remaining, Duration::from_millis(reset_ms))
    }

    /// Every field line of `name`, parsed as one List as RFC 9651 §4.2 prescribes.
    fn parse_list(headers: &HeaderMap, name: &HeaderName) -> List {
        let lines: Vec<&str> = headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().expect("visible ASCII"))
            .collect();
        assert!(!lines.is_empty(), "no {name} header in {headers:?}");
        Parser::new(&lines.join(", "))
            .parse::<List>()
            .unwrap_or_else(|e| panic!("{name}: {lines:?} is not an sf-list: {e}"))
    }

    /// `(name, [(param, integer)])` for each member.
    fn members(list: &List) -> Vec<(String, Vec<(String, i64)>)> {
        list.iter()
            .map(|entry| {
                let ListEntry::Item(item) = entry else {
                    panic!("inner list in {list:?}")
                };
                let BareItem::String(name) = &item.bare_item else {
                    panic!("policy name is not an sf-string: {item:?}")
                };
                let params = item
                    .params
                    .iter()
                    .map(|(key, value)| {
                        let value = value
                            .as_integer()
                            .unwrap_or_else(|| panic!("{key} is not an integer"));
                        (key.as_str().to_owned(), i64::from(value))
                    })
                    .collect();
                (name.as_str().to_owned(), params)
            })
            .collect()
    }

    fn params(pairs: &[(&str, i64)]) -> Vec<(String, i64)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
    }

    fn headers_for(policy: HeaderPolicy, uid: &str, rate: &Rate, d: &Decision) -> HeaderMap {
        let mut headers = HeaderMap::new();
        RateLimitHeaders::from_decision(uid, rate, d).apply(policy, &mut headers);
        headers
    }

    #[test]
    fn headers_policy_rendered_in_advance_is_the_one_rendered_per_denial() {
        let rate = rate("5/10s");
        let field = PolicyField::new("api key", &rate);
        let plain = RateLimitHeaders::from_decision("api key", &rate, &denied_ms(1500));
        let cached = plain.clone().with_policy(&field);
        assert_eq!(cached.policy_value(), plain.policy_value());
        assert_eq!(
            cached
                .throttled_response(HeaderPolicy::OnThrottled)
                .headers(),
            plain
                .throttled_response(HeaderPolicy::OnThrottled)
                .headers()
        );
        // A second member drops the value rendered for one.
        let mut two = cached;
        two.push("other", &rate, &denied_ms(10));
        let mut plain_two = plain;
        plain_two.push("other", &rate, &denied_ms(10));
        assert_eq!(two.len(), 2);
        assert_eq!(two.policy_value(), plain_two.policy_value());
    }

    #[test]
    fn headers_retry_after_is_exact_whole_seconds_rounded_up() {
        let r = rate("5/10s");
        for (ms, expected) in [
            (300, "1"),
            (1000, "1"),
            (1001, "2"),
            (0, "1"),
            (59_999, "60"),
        ] {
            for policy in [
                HeaderPolicy::Never,
                HeaderPolicy::OnThrottled,
                HeaderPolicy::Always,
            ] {
                let headers = headers_for(policy, "api", &r, &denied_ms(ms));
                assert_eq!(headers[RETRY_AFTER], expected, "{ms} ms with {policy:?}");
                assert_eq!(headers.get_all(RETRY_AFTER).iter().count(), 1);
            }
        }
    }

    #[test]
    fn headers_no_retry_after_when_allowed() {
        let headers = headers_for(HeaderPolicy::Always, "api", &rate("5/s"), &allowed(3, 500));
        assert!(headers.get(RETRY_AFTER).is_none());
        assert!(headers.get(RATELIMIT).is_some());
    }

    #[test]
    fn headers_reparse_to_the_right_names_and_parameters() {
        let headers = headers_for(
            HeaderPolicy::Always,
            "basic_limit",
            &rate("5/10s"),
            &allowed(3, 7_200),
        );
        assert_eq!(
            members(&parse_list(&headers, &RATELIMIT_POLICY)),
            vec![("basic_limit".to_owned(), params(&[("q", 5), ("w", 10)]))]
        );
        assert_eq!(
            members(&parse_list(&headers, &RATELIMIT)),
            vec![("basic_limit".to_owned(), params(&[("r", 3), ("t", 8)]))]
        );
        assert_eq!(headers.get_all(RATELIMIT_POLICY).iter().count(), 1);
        assert_eq!(headers.get_all(RATELIMIT).iter().count(), 1);
    }

    #[test]
    fn headers_denial_t_matches_retry_after() {
        // A token bucket may deny with a short wait and a long full reset.
        let d = Decision::deny(10, 0, Duration::from_millis(1_500), Duration::from_secs(60));
        let headers = headers_for(HeaderPolicy::OnThrottled, "tb", &rate("10/m"), &d);
        assert_eq!(headers[RETRY_AFTER], "2");
        assert_eq!(
            members(&parse_list(&headers, &RATELIMIT)),
            vec![("tb".to_owned(), params(&[("r", 0), ("t", 2)]))]
        );
    }

    #[test]
    fn headers_window_rounds_up_to_whole_seconds() {
        for (text, w) in [
            ("1000/500ms", 1),
            ("7/1500ms", 2),
            ("1/s", 1),
            ("3/90m", 5_400),
            ("9/2d", 172_800),
        ] {
            let collected = RateLimitHeaders::from_decision("p", &rate(text), &allowed(1, 0));
            let value = collected.policy_value().expect("one member");
            let list: List = Parser::new(value.as_bytes()).parse().expect("sf-list");
            assert_eq!(
                members(&list),
                vec![(
                    "p".to_owned(),
                    params(&[("q", rate(text).limit() as i64), ("w", w)])
                )],
                "{text}"
            );
        }
    }

    #[test]
    fn headers_huge_values_are_clamped_to_sf_integer_range() {
        let r = rate(&format!("{}/s", u64::MAX - 1));
        let d = Decision::allow(u64::MAX - 1, u64::MAX - 1, Duration::from_secs(u64::MAX));
        let headers = headers_for(HeaderPolicy::Always, "big", &r, &d);
        let max = i64::from(Integer::MAX);
        assert_eq!(
            members(&parse_list(&headers, &RATELIMIT_POLICY)),
            vec![("big".to_owned(), params(&[("q", max), ("w", 1)]))]
        );
        assert_eq!(
            members(&parse_list(&headers, &RATELIMIT)),
            vec![("big".to_owned(), params(&[("r", max), ("t", max)]))]
        );
    }

    #[test]
    fn headers_any_uid_yields_valid_structured_fields() {
        let uids = [
            "with spaces",
            r#"say "hi""#,
            r"back\slash",
            r#"\"mixed\" , ; = ( )"#,
            "ünïcödé ☃ 🚦",
            "tab\tnew\nline\r\0nul\x7fdel",
            "",
            "100%",
            "%25",
        ];
        let r = rate("5/10s");
        let mut names = Vec::new();
        for uid in uids {
            let headers = headers_for(HeaderPolicy::Always, uid, &r, &allowed(1, 1_000));
            let policy = members(&parse_list(&headers, &RATELIMIT_POLICY));
            let ratelimit = members(&parse_list(&headers, &RATELIMIT));
            assert_eq!(policy.len(), 1, "{uid:?}");
            assert_eq!(policy[0].1, params(&[("q", 5), ("w", 10)]), "{uid:?}");
            assert_eq!(ratelimit[0].1, params(&[("r", 1), ("t", 1)]), "{uid:?}");
            assert_eq!(policy[0].0, ratelimit[0].0, "{uid:?}");
            assert_eq!(policy[0].0, policy_name(uid), "{uid:?}");
            names.push(policy[0].0.clone());
        }
        // Printable ASCII other than `%` survives unchanged, quotes and backslashes included.
        for (uid, name) in uids.iter().zip(&names).take(4) {
            assert_eq!(uid, name);
        }
        assert_eq!(
            names[4],
            "%C3%BCn%C3%AFc%C3%B6d%C3%A9 %E2%98%83 %F0%9F%9A%A6"
        );
        // Distinct uids give distinct names.
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "{names:?}");
    }

    #[test]
    fn headers_two_policies_combine_into_one_two_member_list() {
        let mut collected = RateLimitHeaders::new();
        collected
            .push("per_second", &rate("5/s"), &denied_ms(300))
            .push("per_day", &rate("1000/d"), &allowed(990, 3_600_000));
        assert_eq!(collected.len(), 2);
        assert!(collected.is_throttled());
        let mut headers = HeaderMap::new();
        collected.apply(HeaderPolicy::OnThrottled, &mut headers);

        assert_eq!(headers.get_all(RATELIMIT_POLICY).iter().count(), 1);
        assert_eq!(headers.get_all(RATELIMIT).iter().count(), 1);
        assert_eq!(
            members(&parse_list(&headers, &RATELIMIT_POLICY)),
            vec![
                ("per_second".to_owned(), params(&[("q", 5), ("w", 1)])),
                ("per_day".to_owned(), params(&[("q", 1000), ("w", 86_400)])),
            ]
        );
        assert_eq!(
            members(&parse_list(&headers, &RATELIMIT)),
            vec![
                ("per_second".to_owned(), params(&[("r", 0), ("t", 1)])),
                ("per_day".to_owned(), params(&[("r", 990), ("t", 3_600)])),
            ]
        );
        assert_eq!(headers[RETRY_AFTER], "1");
    }

    #[test]
    fn headers_separate_appends_still_form_one_valid_list() {
        let mut headers = HeaderMap::new();
        append_headers(&mut headers, "a", &rate("5/s"), &denied_ms(2_500));
        append_headers(&mut headers, "b", &rate("9/m"), &allowed(4, 1_200));
        append_headers(&mut headers, "c", &rate("9/m"), &denied_ms(1_200));
        let names: Vec<String> = members(&parse_list(&headers, &RATELIMIT))
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(headers.get_all(RATELIMIT_POLICY).iter().count(), 3);
        // The longer wait wins and Retry-After stays a single value.
        assert_eq!(headers.get_all(RETRY_AFTER).iter().count(), 1);
        assert_eq!(headers[RETRY_AFTER], "3");
    }

    #[test]
    fn headers_retry_after_is_longest_wait() {
        let mut collected = RateLimitHeaders::new();
        collected
            .push("a", &rate("5/s"), &denied_ms(1_001))
            .push("b", &rate("5/s"), &denied_ms(4_200))
            .push("c", &rate("5/s"), &allowed(2, 900));
        assert_eq!(collected.retry_after_secs(), Some(5));
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("9"));
        collected.apply(HeaderPolicy::Never, &mut headers);
        assert_eq!(headers[RETRY_AFTER], "9", "a longer existing wait is kept");
        headers.insert(RETRY_AFTER, HeaderValue::from_static("2"));
        collected.apply(HeaderPolicy::Never, &mut headers);
        assert_eq!(headers[RETRY_AFTER], "5");
    }

    #[test]
    fn headers_same_policy_twice_keeps_the_more_restrictive() {
        let r = rate("5/s");
        let mut collected = RateLimitHeaders::new();
        collected
            .push("api", &r, &allowed(4, 1_000))
            .push("api", &r, &allowed(2, 1_000))
            .push("api", &r, &allowed(3, 1_000));
        assert_eq!(collected.len(), 1);
        assert_eq!(
            collected.ratelimit_value().expect("member"),
            r#""api";r=2;t=1"#
        );
        collected.push("api", &r, &denied_ms(700));
        assert_eq!(collected.len(), 1);
        assert_eq!(
            collected.ratelimit_value().expect("member"),
            r#""api";r=0;t=1"#
        );
        collected.push("api", &r, &allowed(0, 1_000));
        assert_eq!(
            collected.ratelimit_value().expect("member"),
            r#""api";r=0;t=1"#
        );
    }

    #[test]
    fn headers_never_sends_no_ratelimit_fields() {
        let r = rate("5/10s");
        let ok = headers_for(HeaderPolicy::Never, "api", &r, &allowed(4, 10_000));
        assert!(ok.is_empty(), "{ok:?}");
        let denied = headers_for(HeaderPolicy::Never, "api", &r, &denied_ms(2_000));
        assert!(denied.get(RATELIMIT).is_none());
        assert!(denied.get(RATELIMIT_POLICY).is_none());
        assert_eq!(denied[RETRY_AFTER], "2");
        assert_eq!(denied.len(), 1);
    }

    #[test]
    fn headers_on_throttled_sends_fields_only_on_denials() {
        let r = rate("5/10s");
        let ok = headers_for(HeaderPolicy::OnThrottled, "api", &r, &allowed(4, 10_000));
        assert!(ok.is_empty(), "{ok:?}");
        let denied = headers_for(HeaderPolicy::OnThrottled, "api", &r, &denied_ms(2_000));
        assert_eq!(denied[RATELIMIT_POLICY], r#""api";q=5;w=10"#);
        assert_eq!(denied[RATELIMIT], r#""api";r=0;t=2"#);
        assert_eq!(denied[RETRY_AFTER], "2");

        // One denial makes the whole collection throttled.
        let mut collected = RateLimitHeaders::new();
        collected
            .push("ok", &r, &allowed(4, 10_000))
            .push("no", &r, &denied_ms(2_000));
        let mut headers = HeaderMap::new();
        collected.apply(HeaderPolicy::OnThrottled, &mut headers);
        assert_eq!(members(&parse_list(&headers, &RATELIMIT)).len(), 2);
    }

    #[test]
    fn headers_always_sends_fields_on_every_response() {
        let r = rate("5/10s");
        let ok = headers_for(HeaderPolicy::Always, "api", &r, &allowed(4, 9_999));
        assert_eq!(ok[RATELIMIT_POLICY], r#""api";q=5;w=10"#);
        assert_eq!(ok[RATELIMIT], r#""api";r=4;t=10"#);
        assert!(ok.get(RETRY_AFTER).is_none());
        let denied = headers_for(HeaderPolicy::Always, "api", &r, &denied_ms(2_000));
        assert_eq!(denied[RATELIMIT], r#""api";r=0;t=2"#);
        assert_eq!(denied[RETRY_AFTER], "2");
    }

    #[test]
    fn headers_unlimited_and_exempt_add_no_ratelimit_fields() {
        let unlimited = headers_for(
            HeaderPolicy::Always,
            "free",
            &Rate::UNLIMITED,
            &Decision::unlimited(),
        );
        assert!(unlimited.is_empty(), "{unlimited:?}");
        let exempt = headers_for(
            HeaderPolicy::Always,
            "api",
            &rate("5/s"),
            &Decision::unlimited(),
        );
        assert!(exempt.is_empty(), "{exempt:?}");

        let mut collected = RateLimitHeaders::new();
        collected
            .push("free", &Rate::UNLIMITED, &Decision::unlimited())
            .push("api", &rate("5/s"), &Decision::unlimited());
        assert!(collected.is_empty());
        assert!(collected.policy_value().is_none());
        assert!(collected.ratelimit_value().is_none());
        let response = collected.throttled_response(HeaderPolicy::Always);
        assert!(response.headers().get(RATELIMIT).is_none());
        assert!(response.headers().get(RATELIMIT_POLICY).is_none());
    }

    #[test]
    fn headers_default_policy_is_on_throttled() {
        assert_eq!(HeaderPolicy::default(), HeaderPolicy::OnThrottled);
    }

    #[test]
    fn headers_json_body_is_exact() {
        assert_eq!(
            throttled_body(1),
            r#"{"detail":"Too many requests. Retry in 1 seconds."}"#
        );
        assert_eq!(
            throttled_body(42),
            r#"{"detail":"Too many requests. Retry in 42 seconds."}"#
        );
    }

    async fn body_of(response: Response) -> String {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .expect("body");
        String::from_utf8(bytes.to_vec()).expect("utf-8")
    }

    #[tokio::test]
    async fn headers_default_429_response() {
        let response = throttled_response("basic_limit", &rate("5/10s"), &denied_ms(1_001));
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        let headers = response.headers().clone();
        assert_eq!(headers[CONTENT_TYPE], "application/json");
        assert_eq!(headers.get_all(CONTENT_TYPE).iter().count(), 1);
        assert_eq!(headers[RETRY_AFTER], "2");
        assert_eq!(headers[RATELIMIT_POLICY], r#""basic_limit";q=5;w=10"#);
        assert_eq!(headers[RATELIMIT], r#""basic_limit";r=0;t=2"#);
        let body = body_of(response).await;
        assert_eq!(
            body,
            r#"{"detail":"Too many requests. Retry in 2 seconds."}"#
        );
        let parsed: serde_json::Value = serde_json::from_str(&body).expect("json");
        assert_eq!(
            parsed,
            serde_json::json!({"detail": "Too many requests. Retry in 2 seconds."})
        );
    }

    #[test]
    fn headers_append_headers_ignores_policy_and_skips_unlimited() {
        let mut headers = HeaderMap::new();
        append_headers(&mut headers, "api", &rate("5/10s"), &allowed(4, 10_000));
        assert_eq!(headers[RATELIMIT_POLICY], r#""api";q=5;w=10"#);
        assert_eq!(headers[RATELIMIT], r#""api";r=4;t=10"#);
        assert!(headers.get(RETRY_AFTER).is_none());
        let mut headers = HeaderMap::new();
        append_headers(&mut headers, "x", &Rate::UNLIMITED, &Decision::unlimited());
        assert!(headers.is_empty());
    }

    #[tokio::test]
    async fn headers_default_throttled_response_honours_policy() {
        let r = rate("5/10s");
        for (policy, fields) in [
            (HeaderPolicy::Never, false),
            (HeaderPolicy::OnThrottled, true),
            (HeaderPolicy::Always, true),
        ] {
            let response = default_throttled_response("api", &r, &denied_ms(300), policy);
            assert_eq!(
                response.status(),
                StatusCode::TOO_MANY_REQUESTS,
                "{policy:?}"
            );
            let headers = response.headers().clone();
            assert_eq!(headers[CONTENT_TYPE], "application/json", "{policy:?}");
            assert_eq!(headers[RETRY_AFTER], "1", "{policy:?}");
            assert_eq!(headers.get(RATELIMIT).is_some(), fields, "{policy:?}");
            assert_eq!(
                headers.get(RATELIMIT_POLICY).is_some(),
                fields,
                "{policy:?}"
            );
            assert_eq!(
                body_of(response).await,
                r#"{"detail":"Too many requests. Retry in 1 seconds."}"#
            );
        }
    }

    #[tokio::test]
    async fn headers_combined_429_response() {
        let mut collected = RateLimitHeaders::new();
        collected
            .push("per_second", &rate("5/s"), &denied_ms(300))
            .push("per_minute", &rate("100/m"), &denied_ms(12_500));
        let response = collected.throttled_response(HeaderPolicy::OnThrottled);
        assert_eq!(response.headers()[RETRY_AFTER], "13");
        assert_eq!(
            members(&parse_list(response.headers(), &RATELIMIT)).len(),
            2
        );
        assert_eq!(
            body_of(response).await,
            r#"{"detail":"Too many requests. Retry in 13 seconds."}"#
        );
        // Nothing denied: still a sane Retry-After of 1.
        let response = RateLimitHeaders::new().throttled_response(HeaderPolicy::Always);
        assert_eq!(response.headers()[RETRY_AFTER], "1");
        assert!(response.headers().get(RATELIMIT).is_none());
    }
}
