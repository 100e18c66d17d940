//! Storage keys: `{uid:identity}:scope`, hash-tagged and escaped.
//!
//! The braces are a Redis Cluster hash tag: every key of one client under one throttle
//! lands in the same slot. Components are percent-escaped so that no uid or identity can
//! forge another's key: `:`, `{`, `}`, `%`, whitespace, control characters and non-ASCII
//! bytes never appear raw in the uid or identity part. The scope keeps `:` and braces
//! (`http:GET:/users/{id}`) since it comes after the tag.

use std::fmt;

use arrayvec::ArrayString;

/// Which bytes of a key component are percent-escaped: a table per set, indexed by byte.
type Escape = [bool; 256];

/// Bytes no store accepts raw: control characters, space, `%` (the escape itself) and
/// every non-ASCII byte.
const fn scope_set() -> Escape {
    let mut set = [false; 256];
    let mut byte = 0;
    while byte < 256 {
        set[byte] = byte < 0x20
            || byte == 0x7F
            || byte >= 0x80
            || byte == b' ' as usize
            || byte == b'%' as usize;
        byte += 1;
    }
    set
}

/// The scope's set plus the key's structure: `:`, `{` and `}`.
const fn component_set() -> Escape {
    let mut set = scope_set();
    set[b':' as usize] = true;
    set[b'{' as usize] = true;
    set[b'}' as usize] = true;
    set
}

/// Escaped in the uid and identity.
const COMPONENT: Escape = component_set();
/// Escaped in the scope.
const SCOPE: Escape = scope_set();

/// Appends `text` to `key`, percent-escaping the bytes `escape` names. Text with nothing
/// to escape (IP addresses, ids, routes: nearly always) is copied at once.
fn push_escaped(key: &mut KeyText, text: &str, escape: &Escape) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    if !text.bytes().any(|byte| escape[usize::from(byte)]) {
        key.push_str(text);
        return;
    }
    for byte in text.bytes() {
        if escape[usize::from(byte)] {
            key.push_ascii(b'%');
            key.push_ascii(HEX[usize::from(byte >> 4)]);
            key.push_ascii(HEX[usize::from(byte & 0xF)]);
        } else {
            key.push_ascii(byte);
        }
    }
}

/// Text built on the stack up to [`KeyText::INLINE`] bytes (on the heap past that): a
/// storage key, or a part of one, built per request without allocating.
///
/// It implements [`fmt::Write`], so anything `Display` can be written into it.
///
/// ```
/// use std::fmt::Write;
/// use traffik_core::key::KeyText;
///
/// let mut text = KeyText::new();
/// text.push_str("http:GET:");
/// write!(text, "/items/{}", 7)?;
/// assert_eq!(text.as_str(), "http:GET:/items/7");
/// # Ok::<(), std::fmt::Error>(())
/// ```
#[derive(Clone)]
pub struct KeyText {
    text: Text,
}

/// Bytes a [`KeyText`] holds on the stack.
const INLINE: usize = 128;

#[derive(Clone)]
enum Text {
    Inline(ArrayString<INLINE>),
    /// Past [`INLINE`] bytes.
    Heap(String),
}

impl Default for KeyText {
    fn default() -> Self {
        Self {
            text: Text::Inline(ArrayString::new()),
        }
    }
}

impl KeyText {
    /// Bytes held without allocating.
    pub const INLINE: usize = INLINE;

    /// Empty text.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends `text`.
    pub fn push_str(&mut self, text: &str) {
        match &mut self.text {
            Text::Inline(inline) => {
                if inline.try_push_str(text).is_err() {
                    let mut heap = String::with_capacity(2 * (inline.len() + text.len()));
                    heap.push_str(inline);
                    heap.push_str(text);
                    self.text = Text::Heap(heap);
                }
            }
            Text::Heap(heap) => heap.push_str(text),
        }
    }

    /// Appends one ASCII byte (a byte above 0x7F is written as U+FFFD, so the text stays
    /// UTF-8).
    pub fn push_ascii(&mut self, byte: u8) {
        let ch = if byte.is_ascii() {
            char::from(byte)
        } else {
            char::REPLACEMENT_CHARACTER
        };
        if let Text::Inline(inline) = &mut self.text {
            if inline.try_push(ch).is_ok() {
                return;
            }
        }
        self.push_str(ch.encode_utf8(&mut [0; 4]));
    }

    /// Empties the text, keeping its buffer.
    pub fn clear(&mut self) {
        match &mut self.text {
            Text::Inline(inline) => inline.clear(),
            Text::Heap(heap) => heap.clear(),
        }
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        match &self.text {
            Text::Inline(inline) => inline,
            Text::Heap(heap) => heap,
        }
    }

    /// Whether the text is empty.
    pub fn is_empty(&self) -> bool {
        self.as_str().is_empty()
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.as_str().len()
    }
}

impl fmt::Write for KeyText {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        self.push_str(text);
        Ok(())
    }
}

impl std::ops::Deref for KeyText {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Debug for KeyText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for KeyText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who a request comes from, as far as a throttle is concerned.
///
/// ```
/// use traffik_core::Identity;
///
/// let client = Identity::client("203.0.113.7");
/// assert_eq!(client.as_client(), Some("203.0.113.7"));
/// assert!(Identity::Exempt.is_exempt());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Identity {
    /// A client, identified by this string (an IP address, a user id...).
    Client(String),
    /// A client that bypasses throttling (the seed's `UNLIMITED` identifier result).
    Exempt,
}

impl Identity {
    /// A client identified by `id`.
    pub fn client(id: impl Into<String>) -> Self {
        Identity::Client(id.into())
    }

    /// Whether this identity bypasses throttling.
    pub fn is_exempt(&self) -> bool {
        matches!(self, Identity::Exempt)
    }

    /// The client's id, unless exempt.
    pub fn as_client(&self) -> Option<&str> {
        match self {
            Identity::Client(id) => Some(id),
            Identity::Exempt => None,
        }
    }
}

impl From<&str> for Identity {
    fn from(id: &str) -> Self {
        Identity::client(id)
    }
}

impl From<String> for Identity {
    fn from(id: String) -> Self {
        Identity::Client(id)
    }
}

/// The key a throttle's state lives under for one client and scope, relative to the
/// backend's namespace.
///
/// ```
/// use traffik_core::key::throttle_key;
///
/// assert_eq!(throttle_key("api", "10.0.0.1", "http:GET:/users/{id}"), "{api:10.0.0.1}:http:GET:/users/{id}");
/// // A uid or identity cannot forge the structure of the key:
/// assert_eq!(throttle_key("a:b", "c", ""), "{a%3Ab:c}");
/// assert_ne!(throttle_key("a:b", "c", ""), throttle_key("a", "b:c", ""));
/// ```
pub fn throttle_key(uid: &str, identity: &str, scope: &str) -> String {
    throttle_key_text(uid, identity, scope).as_str().to_owned()
}

/// [`throttle_key`], built into a [`KeyText`]: no allocation for a key up to
/// [`KeyText::INLINE`] bytes. What [`Throttle`](crate::Throttle) decides with.
///
/// ```
/// use traffik_core::key::{throttle_key, throttle_key_text};
///
/// let key = throttle_key_text("api", "10.0.0.1", "http:GET:/items");
/// assert_eq!(key.as_str(), throttle_key("api", "10.0.0.1", "http:GET:/items"));
/// ```
pub fn throttle_key_text(uid: &str, identity: &str, scope: &str) -> KeyText {
    let mut key = KeyText::new();
    key.push_ascii(b'{');
    push_escaped(&mut key, uid, &COMPONENT);
    key.push_ascii(b':');
    push_escaped(&mut key, identity, &COMPONENT);
    key.push_ascii(b'}');
    if !scope.is_empty() {
        key.push_ascii(b':');
        push_escaped(&mut key, scope, &SCOPE);
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_text_stays_utf8_and_grows_past_its_inline_bytes() {
        let mut text = KeyText::new();
        text.push_ascii(b'a');
        text.push_ascii(0xFF);
        assert_eq!(text.as_str(), "a\u{FFFD}");
        let long = "x".repeat(KeyText::INLINE * 2);
        text.clear();
        text.push_str(&long);
        text.push_str("é");
        assert_eq!(text.len(), long.len() + 2);
        assert_eq!(text.as_str(), format!("{long}é"));
        let key = throttle_key_text("api", &long, "s");
        assert_eq!(key.as_str(), throttle_key("api", &long, "s"));
        assert!(key.as_str().ends_with(":s"));
    }

    #[test]
    fn hostile_components_are_escaped() {
        let key = throttle_key("u}id", "x{y} z\r\nSET a b", "scope with space");
        assert_eq!(
            key,
            "{u%7Did:x%7By%7D%20z%0D%0ASET%20a%20b}:scope%20with%20space"
        );
        assert!(!key.contains(char::is_whitespace));
        assert_eq!(throttle_key("u", "é", ""), "{u:%C3%A9}");
        assert_eq!(throttle_key("u", "100%", ""), "{u:100%25}");
    }

    #[test]
    fn distinct_inputs_give_distinct_keys() {
        let pairs = [("a:b", "c"), ("a", "b:c"), ("a%3Ab", "c")];
        let keys: std::collections::HashSet<_> =
            pairs.iter().map(|(u, i)| throttle_key(u, i, "s")).collect();
        assert_eq!(keys.len(), pairs.len());
    }
}
