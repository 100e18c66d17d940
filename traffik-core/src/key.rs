//! Storage keys: `{uid:identity}:scope`, hash-tagged and escaped.
//!
//! The braces are a Redis Cluster hash tag: every key of one client under one throttle
//! lands in the same slot. Components are percent-escaped so that no uid or identity can
//! forge another's key: `:`, `{`, `}`, `%`, whitespace, control characters and non-ASCII
//! bytes never appear raw in the uid or identity part. The scope keeps `:` and braces
//! (`http:GET:/users/{id}`) since it comes after the tag.

use std::fmt;

use crate::inline_text::InlineText;
use crate::key_escapes::Escapes;

/// Appends `text` to `key`, percent-escaping the bytes `escapes` marks. Text with
/// nothing to escape (IP addresses, ids, routes: nearly always) is copied at once.
fn push_escaped(key: &mut KeyText, text: &str, escapes: Escapes) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    if !escapes.any_in(text.as_bytes()) {
        key.push_str(text);
        return;
    }
    for byte in text.bytes() {
        if escapes.contains(byte) {
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
    Inline(InlineText<INLINE>),
    /// Past [`INLINE`] bytes.
    Heap(String),
}

impl Default for KeyText {
    fn default() -> Self {
        Self {
            text: Text::Inline(InlineText::new()),
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
                if !inline.try_push_str(text) {
                    let mut heap = String::with_capacity(2 * (inline.len() + text.len()));
                    heap.push_str(inline.as_str());
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
        if let Text::Inline(inline) = &mut self.text {
            if inline.try_push_ascii(byte) {
                return;
            }
        }
        let ch = if byte.is_ascii() {
            char::from(byte)
        } else {
            char::REPLACEMENT_CHARACTER
        };
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
            Text::Inline(inline) => inline.as_str(),
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
    throttle_key_after(&key_prefix(uid), identity, scope)
}

/// What every key of the throttle `uid` starts with: `{`, the escaped uid and `:`. A
/// throttle keeps it, and starts each key with [`throttle_key_after`].
pub(crate) fn key_prefix(uid: &str) -> KeyText {
    let mut prefix = KeyText::new();
    prefix.push_ascii(b'{');
    push_escaped(&mut prefix, uid, Escapes::Component);
    prefix.push_ascii(b':');
    prefix
}

/// [`throttle_key_text`] for a throttle whose [`key_prefix`] is `prefix`.
pub(crate) fn throttle_key_after(prefix: &str, identity: &str, scope: &str) -> KeyText {
    let mut key = KeyText::new();
    throttle_key_joined(&mut key, prefix, identity, std::slice::from_ref(&scope));
    key
}

/// [`throttle_key_after`] for a scope given in pieces, joined as the key is written
/// into `key` (emptied first).
pub(crate) fn throttle_key_joined(key: &mut KeyText, prefix: &str, identity: &str, scope: &[&str]) {
    key.clear();
    let scoped = scope.iter().any(|piece| !piece.is_empty());
    if let Text::Inline(inline) = &mut key.text {
        if write_plain_key(inline, prefix, identity, scope, scoped) {
            return;
        }
    }
    write_escaped_key(key, prefix, identity, scope, scoped);
}

/// Where the scope starts in a key [`throttle_key_joined`] wrote: after the `}:` that
/// closes its hash tag (the first `}`: the uid and the identity have theirs escaped). The
/// key's length for a key without a scope.
pub(crate) fn scope_start(key: &str) -> usize {
    key.find('}')
        .map_or(key.len(), |end| (end + 2).min(key.len()))
}

/// [`throttle_key_joined`] for any key, escaping byte by byte where needed. Out of line
/// and cold: nearly no key has anything to escape, and this code kept inside the usual
/// path would only spread it over more of the instruction cache.
#[cold]
#[inline(never)]
fn write_escaped_key(
    key: &mut KeyText,
    prefix: &str,
    identity: &str,
    scope: &[&str],
    scoped: bool,
) {
    key.push_str(prefix);
    push_escaped(key, identity, Escapes::Component);
    if !scoped {
        key.push_ascii(b'}');
        return;
    }
    key.push_str("}:");
    for piece in scope.iter().filter(|piece| !piece.is_empty()) {
        push_escaped(key, piece, Escapes::Scope);
    }
}

/// [`throttle_key_joined`] into an empty inline buffer, for a key with nothing to escape
/// that fits (nearly every key): each piece copied, then checked, as it is appended.
/// `false`, the buffer left empty, for any other key.
fn write_plain_key(
    inline: &mut InlineText<INLINE>,
    prefix: &str,
    identity: &str,
    scope: &[&str],
    scoped: bool,
) -> bool {
    inline
        .fill(|key| {
            // The prefix was escaped when the throttle was built.
            key.push_str(prefix)?;
            let mut escaped = key.push_str_marked(identity, Escapes::Component)?;
            if !scoped {
                key.push_str("}")?;
                return (!escaped).then_some(());
            }
            key.push_str("}:")?;
            for piece in scope {
                escaped |= key.push_str_marked(piece, Escapes::Scope)?;
            }
            (!escaped).then_some(())
        })
        .is_some()
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

    /// Reads a key component back: what `push_escaped` wrote, unescaped.
    fn unescape(text: &str) -> Vec<u8> {
        let bytes = text.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).expect("ASCII escape");
                out.push(u8::from_str_radix(hex, 16).expect("two hex digits"));
                i += 3;
            } else {
                out.push(bytes[i]);
                i += 1;
            }
        }
        out
    }

    proptest::proptest! {
        /// The plain path writes what the escaping path writes, for keys that take it
        /// (plain, short) and keys that do not; the scope is found where it was written.
        #[test]
        fn the_plain_path_writes_the_escaped_paths_key(
            uid in "[a-z]{1,8}|\\PC{1,8}",
            identity in "[0-9.]{0,15}|[0-9a-f:.{}% ]{0,16}|[a-z]{100,140}",
            scope in proptest::collection::vec("[a-zA-Z:/]{0,12}|[a-z %{}]{0,6}", 0..4),
        ) {
            let prefix = key_prefix(&uid);
            let pieces: Vec<&str> = scope.iter().map(String::as_str).collect();
            let mut key = KeyText::new();
            throttle_key_joined(&mut key, &prefix, &identity, &pieces);
            let mut expected = KeyText::new();
            let scoped = pieces.iter().any(|piece| !piece.is_empty());
            write_escaped_key(&mut expected, &prefix, &identity, &pieces, scoped);
            proptest::prop_assert_eq!(key.as_str(), expected.as_str());
            let mut scope_text = KeyText::new();
            for piece in &pieces {
                push_escaped(&mut scope_text, piece, Escapes::Scope);
            }
            proptest::prop_assert_eq!(&key.as_str()[scope_start(&key)..], scope_text.as_str());
        }
    }

    proptest::proptest! {
        /// A throttle's kept prefix gives the key built whole; every component reads
        /// back unchanged; the structure's bytes never appear raw in the uid or identity,
        /// nor whitespace or non-ASCII anywhere.
        #[test]
        fn keys_escape_exactly_and_read_back(
            uid in "\\PC{1,12}|[a-z:{}% ]{1,8}",
            identity in "\\PC{0,16}|[0-9a-f:.{}% \t]{0,16}",
            scope in "\\PC{0,24}|[a-zA-Z:/{}% ]{0,24}",
        ) {
            let key = throttle_key_text(&uid, &identity, &scope);
            let prefix = key_prefix(&uid);
            let after_prefix = throttle_key_after(&prefix, &identity, &scope);
            proptest::prop_assert_eq!(after_prefix.as_str(), key.as_str());
            let text = key.as_str();
            proptest::prop_assert!(text.bytes().all(|b| b.is_ascii_graphic()));
            let tag_end = text.find('}').expect("the tag closes");
            let (uid_part, identity_part) = text[1..tag_end].split_once(':').expect("uid:identity");
            proptest::prop_assert_eq!(unescape(uid_part), uid.as_bytes());
            proptest::prop_assert_eq!(unescape(identity_part), identity.as_bytes());
            let rest = &text[tag_end + 1..];
            match rest.strip_prefix(':') {
                Some(scope_part) => proptest::prop_assert_eq!(unescape(scope_part), scope.as_bytes()),
                None => proptest::prop_assert!(rest.is_empty() && scope.is_empty()),
            }
        }
    }
}
