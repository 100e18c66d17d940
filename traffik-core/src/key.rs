//! Storage keys: `{uid:identity}:scope`, hash-tagged and escaped.
//!
//! The braces are a Redis Cluster hash tag: every key of one client under one throttle
//! lands in the same slot. Components are percent-escaped so that no uid or identity can
//! forge another's key: `:`, `{`, `}`, `%`, whitespace, control characters and non-ASCII
//! bytes never appear raw in the uid or identity part. The scope keeps `:` and braces
//! (`http:GET:/users/{id}`) since it comes after the tag.

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
fn push_escaped(key: &mut String, text: &str, escape: &Escape) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    if !text.bytes().any(|byte| escape[usize::from(byte)]) {
        key.push_str(text);
        return;
    }
    for byte in text.bytes() {
        if escape[usize::from(byte)] {
            key.push('%');
            key.push(char::from(HEX[usize::from(byte >> 4)]));
            key.push(char::from(HEX[usize::from(byte & 0xF)]));
        } else {
            key.push(char::from(byte));
        }
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
    let mut key = String::with_capacity(uid.len() + identity.len() + scope.len() + 4);
    key.push('{');
    push_escaped(&mut key, uid, &COMPONENT);
    key.push(':');
    push_escaped(&mut key, identity, &COMPONENT);
    key.push('}');
    if !scope.is_empty() {
        key.push(':');
        push_escaped(&mut key, scope, &SCOPE);
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

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
