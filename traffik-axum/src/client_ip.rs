//! Who is the client? Resolving the IP address a request came from.
//!
//! A rate limit counts requests per client, so it must know who the client is, and must not
//! let a client choose its own identity. [`ClientIpConfig`] answers the question from a
//! request's [`Parts`]:
//!
//! - **By default** the client is the socket peer: the address of the TCP connection, taken
//!   from axum's [`ConnectInfo<SocketAddr>`](ConnectInfo). Headers such as
//!   `X-Forwarded-For` are ignored, since any client can send them.
//! - **Behind a reverse proxy** every connection comes from the proxy. Name the proxies with
//!   [`trust_proxies`](ClientIpConfig::trust_proxies): the proxy headers are then read, but
//!   only on a request whose socket peer is one of them. Lists (`Forwarded`,
//!   `X-Forwarded-For`) are walked from the right, the end your own proxies append to: trusted
//!   proxies are skipped and the first untrusted address is the client. A client can put
//!   anything on the left of the list; it is never reached. A hop that names no address
//!   (malformed, not UTF-8, `unknown`, an obfuscated `_identifier`), or the 65th hop, or
//!   bytes past the first 8 KiB from the right, end the walk at the last trusted hop. Read
//!   only the headers your proxies set: see [`proxy_headers`](ClientIpConfig::proxy_headers).
//! - **IPv6 clients** usually own a whole network (a /64 or more), so one of them could take a
//!   fresh address for each request. [`ipv6_prefix`](ClientIpConfig::ipv6_prefix) counts a
//!   whole network as one client.
//!
//! ```
//! use std::net::{IpAddr, SocketAddr};
//!
//! use axum::extract::ConnectInfo;
//! use axum::http::Request;
//! use traffik_axum::client_ip::ClientIpConfig;
//!
//! // Behind a load balancer at 10.0.0.1.
//! let config = ClientIpConfig::new().try_trust_proxies(["10.0.0.1"])?;
//!
//! let peer: SocketAddr = "10.0.0.1:51234".parse()?;
//! let (parts, ()) = Request::builder()
//!     .header("x-forwarded-for", "6.6.6.6, 203.0.113.7")
//!     .extension(ConnectInfo(peer))
//!     .body(())?
//!     .into_parts();
//!
//! // 6.6.6.6 was written by the client itself; the load balancer appended 203.0.113.7.
//! assert_eq!(config.resolve(&parts)?, "203.0.113.7".parse::<IpAddr>()?);
//! assert_eq!(config.identity(&parts)?, "203.0.113.7");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The socket peer is only known when the app is served with connect info:
//!
//! ```no_run
//! use std::net::SocketAddr;
//!
//! use axum::{Router, routing::get};
//!
//! # async fn run() -> std::io::Result<()> {
//! let app = Router::new().route("/", get(|| async { "hello" }));
//! let listener = tokio::net::TcpListener::bind("0.0.0.0:3000").await?;
//! axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await
//! # }
//! ```
//!
//! In tests without a socket, axum's
//! [`MockConnectInfo`](axum::extract::connect_info::MockConnectInfo) layer supplies one.

use std::borrow::Cow;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use axum::extract::ConnectInfo;
use http::header::{FORWARDED, GetAll, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::{Extensions, Request};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use traffik_core::key::KeyText;

use crate::header_lookup::{Occurrence, occurrence};
use crate::ip_text::{parse_ipv4, parse_ipv4_text, write_ipv4};
use crate::trusted_nets::TrustedNets;

/// `X-Forwarded-For`, named once (a name given as text is parsed on every lookup).
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `X-Real-IP`, named once.
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// At most this many entries of one proxy header are examined, from the right.
const MAX_ENTRIES: usize = 64;

/// At most this many bytes of one proxy header (all its lines together) are examined, from
/// the right.
const MAX_BYTES: usize = 8 * 1024;

/// A single-address header longer than this is not believed. The longest address a proxy
/// writes, `[ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255]:65535`, has 53 bytes.
const MAX_SINGLE_BYTES: usize = 100;

/// Errors of client IP resolution and of its configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientIpError {
    /// The request carries no [`ConnectInfo<SocketAddr>`](ConnectInfo), so its socket peer is
    /// unknown.
    #[error(
        "the request has no `ConnectInfo<SocketAddr>` extension, so the client's IP address is \
         unknown: serve the app with \
         `axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())` \
         (in tests, add the `axum::extract::connect_info::MockConnectInfo` layer)"
    )]
    MissingConnectInfo,

    /// A trusted proxy given as text is neither an IP address nor a CIDR network.
    #[error(
        "invalid trusted proxy {input:?}: expected an IP address such as `10.0.0.1` or `::1`, \
         or a CIDR network such as `10.0.0.0/8` or `fd00::/8`"
    )]
    InvalidProxy {
        /// The text that was given.
        input: String,
        /// Why it does not parse as a network.
        #[source]
        source: ipnet::AddrParseError,
    },
}

/// A request header a trusted proxy uses to tell who its client is.
///
/// See [`ClientIpConfig::proxy_headers`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProxyHeader {
    /// `Forwarded` ([RFC 7239](https://www.rfc-editor.org/rfc/rfc7239)): the `for=` parameter of
    /// each element, walked from the right. Quoted values, bracketed IPv6 addresses and ports
    /// (`for="[2001:db8::1]:4711"`) are understood; obfuscated identifiers (`for=_hidden`) and
    /// `for=unknown` name no address, so the walk stops there.
    Forwarded,
    /// `X-Forwarded-For`: a comma-separated list of addresses, possibly over several header
    /// lines, walked from the right.
    XForwardedFor,
    /// `X-Real-IP`: one address, set (not appended to) by the proxy.
    XRealIp,
    /// Another header holding one address set by the proxy, like `X-Real-IP`: for example
    /// `CF-Connecting-IP` or `True-Client-IP`.
    SingleIp(HeaderName),
}

/// How to tell a request's client IP address: the socket peer, or what trusted proxies say.
///
/// Built with methods that take and return `self`. The default trusts no proxy, so the client
/// is always the socket peer; see the [module documentation](self) for the model.
///
/// ```
/// use traffik_axum::client_ip::{ClientIpConfig, ProxyHeader};
///
/// let config = ClientIpConfig::new()
///     // nginx on this host, and the load balancers' private network
///     .try_trust_proxies(["127.0.0.1", "::1", "10.20.0.0/16"])?
///     // nginx is set up with `proxy_add_x_forwarded_for`; read nothing else
///     .proxy_headers([ProxyHeader::XForwardedFor])
///     // one quota per IPv6 /56
///     .ipv6_prefix(56);
/// # let _ = config;
/// # Ok::<(), traffik_axum::client_ip::ClientIpError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIpConfig {
    trusted: TrustedNets,
    headers: Vec<ProxyHeader>,
    ipv6_prefix: u8,
}

impl Default for ClientIpConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl ClientIpConfig {
    /// The default: no trusted proxy (the client is the socket peer), only
    /// `X-Forwarded-For` read once proxies are trusted (the header every common proxy
    /// appends to; `Forwarded` and `X-Real-IP` are opt-in with
    /// [`proxy_headers`](Self::proxy_headers), since a proxy that passes them through lets
    /// clients choose their own address), and each IPv6 address its own client.
    ///
    /// ```
    /// use std::net::IpAddr;
    ///
    /// use axum::http::HeaderMap;
    /// use traffik_axum::client_ip::ClientIpConfig;
    ///
    /// let mut headers = HeaderMap::new();
    /// headers.insert("x-forwarded-for", "1.2.3.4".parse()?);
    /// let peer: IpAddr = "198.51.100.9".parse()?;
    ///
    /// // Nothing is trusted, so the header is ignored.
    /// assert_eq!(ClientIpConfig::new().resolve_with_peer(peer, &headers), peer);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn new() -> Self {
        Self {
            trusted: TrustedNets::default(),
            headers: vec![ProxyHeader::XForwardedFor],
            ipv6_prefix: 128,
        }
    }

    /// Trusts these proxies, in addition to those already trusted.
    ///
    /// Proxy headers are read only on requests whose socket peer is in one of these networks,
    /// and the addresses in those headers that are in one of them are skipped as further
    /// proxies. Pass networks ([`IpNet`], `Ipv4Net`, `Ipv6Net`) or single addresses
    /// ([`IpAddr`]). IPv4-mapped IPv6 networks (`::ffff:10.0.0.0/104`) are taken as the IPv4
    /// networks they stand for.
    ///
    /// ```
    /// use std::net::{IpAddr, Ipv4Addr};
    ///
    /// use ipnet::IpNet;
    /// use traffik_axum::client_ip::ClientIpConfig;
    ///
    /// let lb: IpNet = "10.0.0.0/8".parse()?;
    /// let config = ClientIpConfig::new()
    ///     .trust_proxies([lb])
    ///     .trust_proxies([IpAddr::V4(Ipv4Addr::LOCALHOST)]);
    /// assert!(config.is_trusted("10.1.2.3".parse()?));
    /// assert!(config.is_trusted("127.0.0.1".parse()?));
    /// assert!(!config.is_trusted("127.0.0.2".parse()?));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn trust_proxies<I>(mut self, proxies: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<IpNet>,
    {
        self.trusted
            .extend(proxies.into_iter().map(|net| canonical_net(net.into())));
        self
    }

    /// Trusts these proxies, written as text: CIDR networks (`10.0.0.0/8`, `fd00::/8`) or
    /// single addresses (`10.0.0.1` as `/32`, `::1` as `/128`).
    ///
    /// Like [`trust_proxies`](Self::trust_proxies), which see.
    ///
    /// # Errors
    ///
    /// [`ClientIpError::InvalidProxy`], naming the first entry that is neither.
    ///
    /// ```
    /// use traffik_axum::client_ip::{ClientIpConfig, ClientIpError};
    ///
    /// let config = ClientIpConfig::new().try_trust_proxies(["10.0.0.0/8", "::1"])?;
    /// assert!(config.is_trusted("10.9.8.7".parse()?));
    ///
    /// let err = ClientIpConfig::new().try_trust_proxies(["10.0.0.0/33"]).unwrap_err();
    /// assert!(matches!(err, ClientIpError::InvalidProxy { ref input, .. } if input == "10.0.0.0/33"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_trust_proxies<I>(self, proxies: I) -> Result<Self, ClientIpError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let nets = proxies
            .into_iter()
            .map(|text| parse_net(text.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(self.trust_proxies(nets))
    }

    /// Which proxy headers to read, in order of precedence; the first one present on the
    /// request decides. This replaces the default, `X-Forwarded-For` alone. An empty list
    /// means no header is ever read.
    ///
    /// List only headers that your proxies set or overwrite on every request. A header the
    /// proxy merely passes through comes from the client, who can then choose its own
    /// address: behind nginx with `proxy_add_x_forwarded_for`, for instance, a client's own
    /// `Forwarded` header reaches the app untouched, so name `X-Forwarded-For` alone.
    ///
    /// ```
    /// use std::net::IpAddr;
    ///
    /// use axum::http::HeaderMap;
    /// use traffik_axum::client_ip::{ClientIpConfig, ProxyHeader};
    ///
    /// let config = ClientIpConfig::new()
    ///     .try_trust_proxies(["10.0.0.0/8"])?
    ///     .proxy_headers([ProxyHeader::XForwardedFor]);
    ///
    /// let mut headers = HeaderMap::new();
    /// headers.insert("forwarded", "for=6.6.6.6".parse()?); // sent by the client
    /// headers.insert("x-forwarded-for", "203.0.113.7".parse()?); // set by the proxy
    /// let peer: IpAddr = "10.0.0.1".parse()?;
    /// assert_eq!(config.resolve_with_peer(peer, &headers), "203.0.113.7".parse::<IpAddr>()?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn proxy_headers<I>(mut self, headers: I) -> Self
    where
        I: IntoIterator<Item = ProxyHeader>,
    {
        self.headers = headers.into_iter().collect();
        self
    }

    /// Counts every IPv6 client by its network of this prefix length: with `56`,
    /// `2001:db8:1234:5678::1` is the client `2001:db8:1234:5600::/56`. A household or a
    /// server is usually given a /64 or a /56, and could take a fresh address from it for
    /// every request. IPv4 clients are not affected. The default, 128, counts each address
    /// alone.
    ///
    /// # Panics
    ///
    /// If `prefix_len` is over 128.
    ///
    /// ```
    /// use traffik_axum::client_ip::ClientIpConfig;
    ///
    /// let config = ClientIpConfig::new().ipv6_prefix(56);
    /// assert_eq!(config.identity_of("2001:db8:1234:5678::1".parse()?), "2001:db8:1234:5600::/56");
    /// assert_eq!(config.identity_of("203.0.113.7".parse()?), "203.0.113.7");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn ipv6_prefix(mut self, prefix_len: u8) -> Self {
        assert!(
            prefix_len <= 128,
            "an IPv6 prefix length is at most 128, got {prefix_len}"
        );
        self.ipv6_prefix = prefix_len;
        self
    }

    /// Whether `ip` is a trusted proxy. IPv4-mapped IPv6 addresses count as IPv4.
    ///
    /// ```
    /// use traffik_axum::client_ip::ClientIpConfig;
    ///
    /// let config = ClientIpConfig::new().try_trust_proxies(["10.0.0.0/8"])?;
    /// assert!(config.is_trusted("::ffff:10.0.0.1".parse()?));
    /// assert!(!config.is_trusted("192.0.2.1".parse()?));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusts(&ip.to_canonical())
    }

    /// [`is_trusted`](Self::is_trusted) for an address already canonical.
    fn trusts(&self, ip: &IpAddr) -> bool {
        self.trusted.contains(ip)
    }

    /// The client's IP address: the socket peer from [`ConnectInfo<SocketAddr>`](ConnectInfo),
    /// or, when that peer is a trusted proxy, what the proxy headers say. IPv4-mapped IPv6
    /// addresses are returned as IPv4. The [IPv6 prefix](Self::ipv6_prefix) is not applied;
    /// [`identity`](Self::identity) applies it.
    ///
    /// # Errors
    ///
    /// [`ClientIpError::MissingConnectInfo`] when the request has no
    /// `ConnectInfo<SocketAddr>`: the app was not served with
    /// `into_make_service_with_connect_info::<SocketAddr>()`.
    ///
    /// ```
    /// use std::net::{IpAddr, SocketAddr};
    ///
    /// use axum::extract::ConnectInfo;
    /// use axum::http::Request;
    /// use traffik_axum::client_ip::{ClientIpConfig, ClientIpError};
    ///
    /// let config = ClientIpConfig::new();
    /// let peer: SocketAddr = "[::ffff:198.51.100.9]:443".parse()?;
    /// let (parts, ()) = Request::new(()).into_parts();
    /// assert_eq!(config.resolve(&parts), Err(ClientIpError::MissingConnectInfo));
    ///
    /// let (parts, ()) = Request::builder().extension(ConnectInfo(peer)).body(())?.into_parts();
    /// assert_eq!(config.resolve(&parts)?, "198.51.100.9".parse::<IpAddr>()?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn resolve(&self, parts: &Parts) -> Result<IpAddr, ClientIpError> {
        self.resolve_from(&parts.extensions, &parts.headers)
    }

    /// [`resolve`](Self::resolve) for a whole request, as a middleware sees it.
    ///
    /// # Errors
    ///
    /// [`ClientIpError::MissingConnectInfo`], as for [`resolve`](Self::resolve).
    ///
    /// ```
    /// use std::net::{IpAddr, SocketAddr};
    ///
    /// use axum::extract::ConnectInfo;
    /// use axum::http::Request;
    /// use traffik_axum::client_ip::ClientIpConfig;
    ///
    /// let peer: SocketAddr = "192.0.2.1:5000".parse()?;
    /// let request = Request::builder().extension(ConnectInfo(peer)).body(())?;
    /// assert_eq!(ClientIpConfig::new().resolve_request(&request)?, peer.ip());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn resolve_request<B>(&self, request: &Request<B>) -> Result<IpAddr, ClientIpError> {
        self.resolve_from(request.extensions(), request.headers())
    }

    /// The client's IP address given its socket peer: `peer` itself, unless it is a trusted
    /// proxy and a [proxy header](Self::proxy_headers) says otherwise. Never fails: a header
    /// that is malformed, not UTF-8 or too long is not believed beyond its last trusted hop.
    ///
    /// ```
    /// use std::net::IpAddr;
    ///
    /// use axum::http::HeaderMap;
    /// use traffik_axum::client_ip::{ClientIpConfig, ProxyHeader};
    ///
    /// let config = ClientIpConfig::new()
    ///     .try_trust_proxies(["10.0.0.0/8"])?
    ///     .proxy_headers([ProxyHeader::Forwarded]);
    /// let mut headers = HeaderMap::new();
    /// headers.insert("forwarded", r#"for="[2001:db8::7]:4711";proto=https, for=10.0.0.9"#.parse()?);
    /// let peer: IpAddr = "10.0.0.1".parse()?;
    /// assert_eq!(config.resolve_with_peer(peer, &headers), "2001:db8::7".parse::<IpAddr>()?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn resolve_with_peer(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        self.find(peer, headers).ip
    }

    /// [`resolve_with_peer`](Self::resolve_with_peer), with the address's text when a
    /// header gave it alone and in the form [`identity_of`](Self::identity_of) writes.
    fn find<'h>(&self, peer: IpAddr, headers: &'h HeaderMap) -> Found<'h> {
        let peer = peer.to_canonical();
        if self.trusts(&peer) {
            // The peer is passed by reference: moved by value through each call, the
            // address was taken apart byte by byte and put back together.
            for header in &self.headers {
                if let Some(found) = self.read_header(header, &peer, headers) {
                    return found;
                }
            }
        }
        Found::ip(peer)
    }

    /// The client's identity for rate-limit keys: its [resolved](Self::resolve) address as
    /// text, or its IPv6 network under [`ipv6_prefix`](Self::ipv6_prefix), such as
    /// `"203.0.113.7"` or `"2001:db8:1200::/56"`.
    ///
    /// # Errors
    ///
    /// [`ClientIpError::MissingConnectInfo`], as for [`resolve`](Self::resolve).
    ///
    /// ```
    /// use std::net::SocketAddr;
    ///
    /// use axum::extract::ConnectInfo;
    /// use axum::http::Request;
    /// use traffik_axum::client_ip::ClientIpConfig;
    ///
    /// let peer: SocketAddr = "[2001:db8:1234:5678:9abc::1]:443".parse()?;
    /// let (parts, ()) = Request::builder().extension(ConnectInfo(peer)).body(())?.into_parts();
    /// let config = ClientIpConfig::new().ipv6_prefix(56);
    /// assert_eq!(config.identity(&parts)?, "2001:db8:1234:5600::/56");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn identity(&self, parts: &Parts) -> Result<String, ClientIpError> {
        self.resolve(parts).map(|ip| self.identity_of(ip))
    }

    /// The identity of a client at `ip`: see [`identity`](Self::identity).
    ///
    /// ```
    /// use traffik_axum::client_ip::ClientIpConfig;
    ///
    /// let config = ClientIpConfig::new().ipv6_prefix(64);
    /// assert_eq!(config.identity_of("::ffff:192.0.2.1".parse()?), "192.0.2.1");
    /// assert_eq!(config.identity_of("2001:db8:0:1:2:3:4:5".parse()?), "2001:db8:0:1::/64");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn identity_of(&self, ip: IpAddr) -> String {
        // The longest identity: a full IPv6 address and a prefix length.
        let mut text = String::with_capacity(43);
        self.write_identity_of(ip, &mut text);
        text
    }

    /// [`identity`](Self::identity) on the request path: the text of an IPv4 address
    /// that `X-Forwarded-For` held alone is borrowed from the header (the strict parse
    /// admits only the text [`identity_of`](Self::identity_of) would write); any other
    /// identity is written into a buffer put in `buf`, on the caller's stack, only then:
    /// a buffer made ready on every request would be zeroed on every request.
    pub(crate) fn identity_text<'a>(
        &self,
        parts: &'a Parts,
        buf: &'a mut Option<KeyText>,
    ) -> Result<&'a str, ClientIpError> {
        let found = self.find_from(&parts.extensions, &parts.headers)?;
        if let Some(text) = found.text {
            return Ok(text);
        }
        let buf = buf.insert(KeyText::new());
        self.write_identity_of(found.ip, buf);
        Ok(buf.as_str())
    }

    /// [`identity_of`](Self::identity_of), written into `out`.
    fn write_identity_of(&self, ip: IpAddr, out: &mut impl fmt::Write) {
        // Writing into a `String` or a `KeyText` cannot fail.
        let _ = match ip.to_canonical() {
            IpAddr::V4(v4) => write_ipv4(v4, out),
            IpAddr::V6(v6) if self.ipv6_prefix >= 128 => write!(out, "{v6}"),
            IpAddr::V6(v6) => match Ipv6Net::new(v6, self.ipv6_prefix) {
                Ok(net) => write!(out, "{}", net.trunc()),
                Err(_) => write!(out, "{v6}"),
            },
        };
    }

    fn resolve_from(
        &self,
        extensions: &Extensions,
        headers: &HeaderMap,
    ) -> Result<IpAddr, ClientIpError> {
        self.find_from(extensions, headers).map(|found| found.ip)
    }

    /// [`find`](Self::find) for the socket peer that `ConnectInfo` names.
    fn find_from<'h>(
        &self,
        extensions: &Extensions,
        headers: &'h HeaderMap,
    ) -> Result<Found<'h>, ClientIpError> {
        let ConnectInfo(peer) = extensions
            .get::<ConnectInfo<SocketAddr>>()
            .ok_or(ClientIpError::MissingConnectInfo)?;
        Ok(self.find(peer.ip(), headers))
    }

    /// What one header says, when it is present; `peer` is trusted.
    fn read_header<'h>(
        &self,
        header: &ProxyHeader,
        peer: &IpAddr,
        headers: &'h HeaderMap,
    ) -> Option<Found<'h>> {
        let peer = *peer;
        let ip = match header {
            ProxyHeader::Forwarded => self.walk_forwarded(peer, headers),
            ProxyHeader::XForwardedFor => {
                match occurrence(headers, &X_FORWARDED_FOR) {
                    Occurrence::Absent => return None,
                    Occurrence::Once(line) => {
                        if let Some(found) = lone_address(line) {
                            return Some(found);
                        }
                    }
                    Occurrence::Repeated => {}
                }
                self.walk_x_forwarded_for(peer, &headers.get_all(X_FORWARDED_FOR))
            }
            ProxyHeader::XRealIp => single_ip(peer, occurrence(headers, &X_REAL_IP)),
            ProxyHeader::SingleIp(name) => single_ip(peer, occurrence(headers, name)),
        };
        ip.map(Found::ip)
    }

    /// `Forwarded` walked entry by entry.
    ///
    /// Out of line, as the other walks are: the walk's code (limits, parsing, the trusted
    /// hops) kept inside the request path would spread the usual case, one address alone,
    /// over more of the instruction cache.
    #[cold]
    #[inline(never)]
    fn walk_forwarded(&self, peer: IpAddr, headers: &HeaderMap) -> Option<IpAddr> {
        let lines = headers.get_all(FORWARDED).into_iter().rev();
        self.walk(peer, RevEntries::new(lines, true), forwarded_for)
    }

    /// `X-Forwarded-For` walked entry by entry: [`read_header`](Self::read_header) when the
    /// header is not one address alone. Out of line: see
    /// [`walk_forwarded`](Self::walk_forwarded).
    #[cold]
    #[inline(never)]
    fn walk_x_forwarded_for(
        &self,
        peer: IpAddr,
        lines: &GetAll<'_, HeaderValue>,
    ) -> Option<IpAddr> {
        self.walk(peer, RevEntries::new(lines.iter().rev(), false), plain_node)
    }

    /// Walks a list of hops from the right: trusted proxies are skipped, the first untrusted
    /// address is the client. Anything that is not an address, or past the limits, ends the
    /// walk at the last trusted hop. `None` when the list is empty.
    fn walk<'a>(
        &self,
        peer: IpAddr,
        entries: impl Iterator<Item = Entry<'a>>,
        parse: impl Fn(&[u8]) -> Node,
    ) -> Option<IpAddr> {
        let mut last_trusted = peer;
        let mut any = false;
        for (walked, entry) in entries.enumerate() {
            any = true;
            if walked >= MAX_ENTRIES {
                tracing::trace!("proxy header has over {MAX_ENTRIES} entries; walk stopped");
                return Some(last_trusted);
            }
            let Entry::Item(bytes) = entry else {
                tracing::trace!("proxy header is over {MAX_BYTES} bytes; walk stopped");
                return Some(last_trusted);
            };
            match parse(bytes) {
                Node::Ip(ip) => {
                    let ip = ip.to_canonical();
                    if !self.is_trusted(ip) {
                        return Some(ip);
                    }
                    last_trusted = ip;
                }
                other => {
                    tracing::trace!(node = ?other, "proxy header names no address; walk stopped");
                    return Some(last_trusted);
                }
            }
        }
        // Every entry was a trusted proxy: the leftmost is the client.
        any.then_some(last_trusted)
    }
}

/// The address a one-line `X-Forwarded-For` holds when it is one address and nothing
/// else, the usual case behind one proxy: what walking the list gives (that address,
/// trusted or not, since it is the leftmost entry), without splitting, trimming and
/// checking it entry by entry. `None` sends anything else (several entries, a port,
/// `unknown`, bytes that are not visible ASCII, a line at the byte limit) to the walk.
fn lone_address(line: &HeaderValue) -> Option<Found<'_>> {
    if line.len() >= MAX_BYTES {
        return None;
    }
    // A valid header value holds no whitespace but spaces and tabs. An IPv4 address is
    // read from the bytes, as its own text; anything else must be visible ASCII.
    if let Some((v4, text)) = parse_ipv4_text(line.as_bytes().trim_ascii()) {
        return Some(Found {
            ip: IpAddr::V4(v4),
            text: Some(text),
        });
    }
    lone_address_parsed(line)
}

/// [`lone_address`] for anything but a plain IPv4 address (an IPv6 address, or a line to
/// walk): the standard parser, out of the IPv4 path's way.
#[cold]
#[inline(never)]
fn lone_address_parsed(line: &HeaderValue) -> Option<Found<'_>> {
    line.to_str()
        .ok()?
        .trim_ascii()
        .parse::<IpAddr>()
        .ok()
        .map(|ip| Found::ip(ip.to_canonical()))
}

/// A client's address, and its text when it was read alone from a header in the form
/// [`ClientIpConfig::identity_of`] writes (an IPv4 address, which the strict parse admits
/// in that form only): the request path then copies it instead of writing it anew.
#[derive(Clone, Copy)]
struct Found<'h> {
    ip: IpAddr,
    text: Option<&'h str>,
}

impl Found<'_> {
    fn ip(ip: IpAddr) -> Self {
        Self { ip, text: None }
    }
}

/// A header of one address set by the proxy: the address, or `peer` if the header is
/// malformed or appears more than once; `None` if absent or empty.
#[inline(never)]
fn single_ip(peer: IpAddr, header: Occurrence<'_>) -> Option<IpAddr> {
    let first = match header {
        Occurrence::Absent => return None,
        Occurrence::Once(line) => line,
        Occurrence::Repeated => {
            tracing::trace!("single-address proxy header appears more than once; ignored");
            return Some(peer);
        }
    };
    let value = trim_ows(first.as_bytes());
    if value.is_empty() {
        return None;
    }
    if value.len() > MAX_SINGLE_BYTES {
        tracing::trace!("single-address proxy header is over {MAX_SINGLE_BYTES} bytes; ignored");
        return Some(peer);
    }
    match plain_node(value) {
        Node::Ip(ip) => Some(ip.to_canonical()),
        other => {
            tracing::trace!(node = ?other, "single-address proxy header names no address; ignored");
            Some(peer)
        }
    }
}

/// Normalises an IPv4-mapped IPv6 network to the IPv4 network it stands for.
fn canonical_net(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
            Some(v4) => Ipv4Net::new(v4, v6.prefix_len() - 96).map_or(net, IpNet::V4),
            None => net,
        },
        net => net,
    }
}

/// A CIDR network, or a single address as a /32 or /128.
fn parse_net(text: &str) -> Result<IpNet, ClientIpError> {
    let trimmed = text.trim();
    trimmed
        .parse::<IpNet>()
        .or_else(|err| trimmed.parse::<IpAddr>().map(IpNet::from).map_err(|_| err))
        .map_err(|source| ClientIpError::InvalidProxy {
            input: text.to_owned(),
            source,
        })
}

/// What one hop of a proxy header names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Node {
    /// An address.
    Ip(IpAddr),
    /// `unknown` (RFC 7239): the proxy does not know.
    Unknown,
    /// An obfuscated identifier such as `_hidden` (RFC 7239).
    Obfuscated,
    /// Not well-formed, or a `Forwarded` element without `for=`.
    Invalid,
}

/// One list entry, or the notice that the byte budget ran out.
enum Entry<'a> {
    Item(&'a [u8]),
    TooLong,
}

/// The entries of a comma-separated header, possibly over several lines, from the right:
/// trimmed, empty ones skipped, at most [`MAX_BYTES`] looked at.
struct RevEntries<'a, I> {
    lines: I,
    rest: Option<&'a [u8]>,
    budget: usize,
    quotes: bool,
    done: bool,
}

impl<'a, I: Iterator<Item = &'a HeaderValue>> RevEntries<'a, I> {
    /// `lines` from the last to the first; `quotes`: commas inside quoted strings do not
    /// separate entries.
    fn new(lines: I, quotes: bool) -> Self {
        Self {
            lines,
            rest: None,
            budget: MAX_BYTES,
            quotes,
            done: false,
        }
    }
}

impl<'a, I: Iterator<Item = &'a HeaderValue>> Iterator for RevEntries<'a, I> {
    type Item = Entry<'a>;

    fn next(&mut self) -> Option<Entry<'a>> {
        if self.done {
            return None;
        }
        loop {
            let line = match self.rest.take() {
                Some(line) => line,
                None => self.lines.next()?.as_bytes(),
            };
            let Some((head, item)) = split_last(line, self.quotes, self.budget) else {
                self.done = true;
                return Some(Entry::TooLong);
            };
            self.budget = self.budget.saturating_sub(item.len() + 1);
            self.rest = head;
            let item = trim_ows(item);
            if !item.is_empty() {
                return Some(Entry::Item(item));
            }
        }
    }
}

/// Splits `line` at its last comma: `(Some(before), after)`, or `(None, line)` if it has
/// none. `None` if the last entry and its comma take more than `limit` bytes.
fn split_last(line: &[u8], quotes: bool, limit: usize) -> Option<(Option<&[u8]>, &[u8])> {
    let mut in_quotes = false;
    for (i, &byte) in line.iter().enumerate().rev() {
        if line.len() - i > limit {
            return None;
        }
        match byte {
            b',' if !in_quotes => {
                let (head, tail) = line.split_at(i);
                return Some((Some(head), tail.get(1..).unwrap_or_default()));
            }
            b'"' if quotes => {
                // From the right, a quote opens a quoted string; inside one, a quote ends it
                // unless it is escaped by an odd number of backslashes.
                in_quotes = !in_quotes || escaped(line, i);
            }
            _ => {}
        }
    }
    (line.len() < limit).then_some((None, line))
}

/// Whether the byte at `i` is preceded by an odd number of backslashes.
fn escaped(line: &[u8], i: usize) -> bool {
    let before = line.get(..i).unwrap_or_default();
    before
        .iter()
        .rev()
        .take(MAX_BYTES)
        .take_while(|&&b| b == b'\\')
        .count()
        % 2
        == 1
}

/// `bytes` without leading and trailing spaces and tabs.
fn trim_ows(bytes: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = bytes.iter().position(|b| !is_ows(b)).unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !is_ows(b))
        .map_or(start, |i| i + 1);
    bytes.get(start..end).unwrap_or_default()
}

/// An address as `X-Forwarded-For` and `X-Real-IP` give it: `192.0.2.1`, `2001:db8::1`,
/// and, as some proxies write, `192.0.2.1:4711`, `[2001:db8::1]` or `[2001:db8::1]:4711`.
fn plain_node(bytes: &[u8]) -> Node {
    if let Some(v4) = parse_ipv4(bytes) {
        return Node::Ip(IpAddr::V4(v4));
    }
    let Ok(text) = std::str::from_utf8(bytes) else {
        return Node::Invalid;
    };
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Node::Ip(ip);
    }
    if text.eq_ignore_ascii_case("unknown") {
        return Node::Unknown;
    }
    let parsed = if text.starts_with('[') {
        bracketed_v6(text)
    } else {
        text.split_once(':')
            .filter(|(_, port)| is_port(port))
            .and_then(|(v4, _)| v4.parse::<Ipv4Addr>().ok())
            .map(IpAddr::V4)
    };
    parsed.map_or(Node::Invalid, Node::Ip)
}

/// `[2001:db8::1]` or `[2001:db8::1]:4711`.
fn bracketed_v6(text: &str) -> Option<IpAddr> {
    let (inner, after) = text.strip_prefix('[')?.split_once(']')?;
    let ip = inner.parse::<Ipv6Addr>().ok()?;
    match after {
        "" => Some(IpAddr::V6(ip)),
        _ => after
            .strip_prefix(':')
            .filter(|port| is_port(port))
            .map(|_| IpAddr::V6(ip)),
    }
}

/// RFC 7239 `port`: one to five digits.
fn is_port(text: &str) -> bool {
    (1..=5).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_digit())
}

/// RFC 7239 `obfnode` / `obfport`: `_` then letters, digits, `.`, `_`, `-`.
fn is_obfuscated(text: &str) -> bool {
    text.strip_prefix('_').is_some_and(|rest| {
        !rest.is_empty()
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    })
}

/// The node named by the `for=` parameter of one `Forwarded` element.
///
/// ```text
/// forwarded-element = [ forwarded-pair ] *( ";" [ forwarded-pair ] )
/// forwarded-pair    = token "=" value
/// value             = token / quoted-string
/// ```
///
/// Spaces around pairs and unquoted bracketed IPv6 values are tolerated; a parameter given
/// twice, or an element without `for=`, is [`Node::Invalid`].
fn forwarded_for(element: &[u8]) -> Node {
    let mut rest = element;
    let mut found: Option<Cow<'_, [u8]>> = None;
    loop {
        rest = trim_ows(rest);
        let Some((&first, after_first)) = rest.split_first() else {
            break;
        };
        if first == b';' {
            rest = after_first;
            continue;
        }
        let name_len = rest.iter().take_while(|&&b| is_tchar(b)).count();
        if name_len == 0 {
            return Node::Invalid;
        }
        let (name, after_name) = rest.split_at(name_len);
        let Some(after_eq) = after_name.strip_prefix(b"=") else {
            return Node::Invalid;
        };
        let (value, after_value) = if let Some(quoted) = after_eq.strip_prefix(b"\"") {
            match quoted_string(quoted) {
                Some(split) => split,
                None => return Node::Invalid,
            }
        } else {
            let len = after_eq
                .iter()
                .take_while(|&&b| is_tchar(b) || matches!(b, b':' | b'[' | b']'))
                .count();
            if len == 0 {
                return Node::Invalid;
            }
            let (value, after) = after_eq.split_at(len);
            (Cow::Borrowed(value), after)
        };
        rest = trim_ows(after_value);
        if !matches!(rest.first(), None | Some(b';')) {
            return Node::Invalid;
        }
        if name.eq_ignore_ascii_case(b"for") {
            if found.is_some() {
                return Node::Invalid;
            }
            found = Some(value);
        }
    }
    found.map_or(Node::Invalid, |value| forwarded_node(&value))
}

/// The rest of a quoted string after its opening quote: its unescaped content, and what
/// follows the closing quote. `None` if it is not closed or holds a control character.
fn quoted_string(bytes: &[u8]) -> Option<(Cow<'_, [u8]>, &[u8])> {
    let is_text = |b: u8| b == b'\t' || b >= 0x20 && b != 0x7f;
    let mut owned: Option<Vec<u8>> = None;
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        match byte {
            b'"' => {
                let after = bytes.get(i + 1..).unwrap_or_default();
                let content = match owned {
                    Some(content) => Cow::Owned(content),
                    None => Cow::Borrowed(bytes.get(..i).unwrap_or_default()),
                };
                return Some((content, after));
            }
            b'\\' => {
                let &next = bytes.get(i + 1)?;
                if !is_text(next) {
                    return None;
                }
                owned
                    .get_or_insert_with(|| bytes.get(..i).unwrap_or_default().to_vec())
                    .push(next);
                i += 2;
            }
            byte if is_text(byte) => {
                if let Some(content) = owned.as_mut() {
                    content.push(byte);
                }
                i += 1;
            }
            _ => return None,
        }
    }
    None
}

/// RFC 7230 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

/// RFC 7239 `node = nodename [ ":" node-port ]`, where `nodename` is an IPv4 address, a
/// bracketed IPv6 address, `unknown` or an obfuscated identifier. A bare IPv6 address
/// without brackets or port is tolerated.
fn forwarded_node(value: &[u8]) -> Node {
    let Ok(text) = std::str::from_utf8(value) else {
        return Node::Invalid;
    };
    if let Some(rest) = text.strip_prefix('[') {
        let Some((inner, after)) = rest.split_once(']') else {
            return Node::Invalid;
        };
        let port_ok = after.is_empty()
            || after
                .strip_prefix(':')
                .is_some_and(|port| is_port(port) || is_obfuscated(port));
        return match inner.parse::<Ipv6Addr>() {
            Ok(ip) if port_ok => Node::Ip(IpAddr::V6(ip)),
            _ => Node::Invalid,
        };
    }
    if let Ok(ip) = text.parse::<Ipv6Addr>() {
        return Node::Ip(IpAddr::V6(ip));
    }
    let (name, port) = match text.split_once(':') {
        Some((name, port)) => (name, Some(port)),
        None => (text, None),
    };
    if port.is_some_and(|port| !is_port(port) && !is_obfuscated(port)) {
        return Node::Invalid;
    }
    if name.eq_ignore_ascii_case("unknown") {
        Node::Unknown
    } else if is_obfuscated(name) {
        Node::Obfuscated
    } else {
        name.parse::<Ipv4Addr>()
            .map_or(Node::Invalid, |ip| Node::Ip(IpAddr::V4(ip)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use proptest::prelude::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("test address")
    }

    /// Request parts from `peer` (if any) with these header lines, in order.
    fn parts(peer: Option<&str>, headers: &[(&str, &[u8])]) -> Parts {
        let mut builder = Request::builder();
        for (name, value) in headers {
            let value = HeaderValue::from_bytes(value).expect("test header value");
            builder = builder.header(*name, value);
        }
        if let Some(peer) = peer {
            let peer: SocketAddr = peer.parse().expect("test socket address");
            builder = builder.extension(ConnectInfo(peer));
        }
        builder.body(()).expect("test request").into_parts().0
    }

    /// Trusted proxies, reading every supported header, `Forwarded` first.
    fn behind_proxies() -> ClientIpConfig {
        ClientIpConfig::new()
            .try_trust_proxies(["10.0.0.0/8", "192.168.0.0/16"])
            .expect("test proxies")
            .proxy_headers([
                ProxyHeader::Forwarded,
                ProxyHeader::XForwardedFor,
                ProxyHeader::XRealIp,
            ])
    }

    #[test]
    fn client_ip_by_default_only_x_forwarded_for_is_read() {
        let config = ClientIpConfig::new()
            .try_trust_proxies(["10.0.0.0/8"])
            .expect("test proxies");
        // A client's own Forwarded / X-Real-IP headers, passed through by the proxy.
        let p = parts(
            Some("10.0.0.1:4000"),
            &[
                ("forwarded", b"for=6.6.6.6"),
                ("x-real-ip", b"7.7.7.7"),
                ("x-forwarded-for", b"203.0.113.7"),
            ],
        );
        assert_eq!(config.resolve(&p), Ok(ip("203.0.113.7")));
        let p = parts(Some("10.0.0.1:4000"), &[("x-real-ip", b"7.7.7.7")]);
        assert_eq!(config.resolve(&p), Ok(ip("10.0.0.1")));
    }

    #[test]
    fn client_ip_missing_connect_info_is_an_error_with_the_fix() {
        let parts = parts(None, &[("x-forwarded-for", b"1.2.3.4")]);
        let err = ClientIpConfig::new().resolve(&parts).unwrap_err();
        assert_eq!(err, ClientIpError::MissingConnectInfo);
        let message = err.to_string();
        assert!(
            message.contains(
                "axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())"
            ),
            "{message}"
        );
        assert_eq!(
            behind_proxies().identity(&parts),
            Err(ClientIpError::MissingConnectInfo)
        );
    }

    #[test]
    fn client_ip_default_is_the_peer_even_with_proxy_headers() {
        let parts = parts(
            Some("198.51.100.9:4000"),
            &[
                ("x-forwarded-for", b"1.2.3.4"),
                ("forwarded", b"for=5.6.7.8"),
                ("x-real-ip", b"9.9.9.9"),
            ],
        );
        assert_eq!(
            ClientIpConfig::new().resolve(&parts),
            Ok(ip("198.51.100.9"))
        );
        assert_eq!(
            ClientIpConfig::new().identity(&parts).as_deref(),
            Ok("198.51.100.9")
        );
    }

    #[test]
    fn client_ip_untrusted_peer_cannot_spoof() {
        let parts = parts(
            Some("198.51.100.9:4000"),
            &[
                ("x-forwarded-for", b"10.0.0.2, 1.2.3.4"),
                ("forwarded", b"for=5.6.7.8"),
                ("x-real-ip", b"9.9.9.9"),
            ],
        );
        assert_eq!(behind_proxies().resolve(&parts), Ok(ip("198.51.100.9")));
    }

    #[test]
    fn client_ip_trusted_peer_without_headers_is_the_client() {
        let parts = parts(Some("10.0.0.1:4000"), &[]);
        assert_eq!(behind_proxies().resolve(&parts), Ok(ip("10.0.0.1")));
    }

    #[test]
    fn client_ip_xff_forged_leftmost_entry_is_ignored() {
        let config = ClientIpConfig::new()
            .try_trust_proxies(["10.0.0.1"])
            .expect("proxy");
        let parts = parts(
            Some("10.0.0.1:4000"),
            &[("x-forwarded-for", b"6.6.6.6, 1.2.3.4")],
        );
        assert_eq!(config.resolve(&parts), Ok(ip("1.2.3.4")));
    }

    #[test]
    fn client_ip_xff_chain_of_trusted_proxies() {
        let parts = parts(
            Some("10.0.0.1:4000"),
            &[(
                "x-forwarded-for",
                b"6.6.6.6,1.2.3.4 ,\t192.168.1.1, 10.0.0.7",
            )],
        );
        assert_eq!(behind_proxies().resolve(&parts), Ok(ip("1.2.3.4")));
    }

    #[test]
    fn client_ip_xff_all_trusted_gives_the_leftmost() {
        let parts = parts(
            Some("10.0.0.1:4000"),
            &[("x-forwarded-for", b"10.0.0.9, 192.168.0.3")],
        );
        assert_eq!(behind_proxies().resolve(&parts), Ok(ip("10.0.0.9")));
    }

    #[test]
    fn client_ip_xff_garbage_stops_at_last_trusted_hop() {
        let config = behind_proxies();
        let p = parts(
            Some("10.0.0.1:4000"),
            &[("x-forwarded-for", b"6.6.6.6, not-an-ip, 10.0.0.7")],
        );
        assert_eq!(config.resolve(&p), Ok(ip("10.0.0.7")));
        let p = parts(
            Some("10.0.0.1:4000"),
            &[("x-forwarded-for", b"6.6.6.6, 1.2.3")],
        );
        assert_eq!(config.resolve(&p), Ok(ip("10.0.0.1")));
        let p = parts(
            Some("10.0.0.1:4000"),
            &[("x-forwarded-for", b"6.6.6.6, unknown")],
        );
        assert_eq!(config.resolve(&p), Ok(ip("10.0.0.1")));
    }

    #[test]
    fn client_ip_xff_entries_with_ports() {
        let config = behind_proxies();
        for (value, expected) in [
            (&b"1.2.3.4:5678"[..], "1.2.3.4"),
            (b"[2001:db8::5]:443", "2001:db8::5"),
            (b"[2001:db8::5]", "2001:db8::5"),
            (b"2001:db8::5", "2001:db8::5"),
        ] {
            let p = parts(Some("10.0.0.1:4000"), &[("x-forwarded-for", value)]);
            assert_eq!(config.resolve(&p), Ok(ip(expected)), "{value:?}");
        }
        for value in [
            &b"1.2.3.4:"[..],
            b"1.2.3.4:123456",
            b"[2001:db8::5]x",
            b"01.2.3.4",
        ] {
            let p = parts(Some("10.0.0.1:4000"), &[("x-forwarded-for", value)]);
            assert_eq!(config.resolve(&p), Ok(ip("10.0.0.1")), "{value:?}");
        }
    }

    #[test]
    fn client_ip_xff_multiple_header_lines() {
        let config = behind_proxies();
        let p = parts(
            Some("10.0.0.1:4000"),
            &[
                ("x-forwarded-for", b"6.6.6.6"),
                ("x-forwarded-for", b"1.2.3.4, 10.0.0.2"),
                ("x-forwarded-for", b""),
                ("x-forwarded-for", b"192.168.4.4"),
            ],
        );
        assert_eq!(config.resolve(&p), Ok(ip("1.2.3.4")));
        let p = parts(
            Some("10.0.0.1:4000"),
            &[
                ("x-forwarded-for", b"6.6.6.6, 1.2.3.4"),
                ("x-forwarded-for", b"10.0.0.2"),
            ],
        );
        assert_eq!(config.resolve(&p), Ok(ip("1.2.3.4")));
    }

    #[test]
    fn client_ip_forwarded_quoted_ipv6_with_port() {
        let p = parts(
            Some("10.0.0.1:4000"),
            &[(
                "forwarded",
                br#"for=6.6.6.6, For="[2001:db8:cafe::17]:4711";proto=https;by=10.0.0.1, for=10.0.0.3"#,
            )],
        );
        assert_eq!(behind_proxies().resolve(&p), Ok(ip("2001:db8:cafe::17")));
    }

    #[test]
    fn client_ip_forwarded_rfc_examples() {
        let config = behind_proxies();
        for (value, expected) in [
            (&br#"for="_gazonk""#[..], "10.0.0.1"),
            (br#"For="[2001:db8:cafe::17]:4711""#, "2001:db8:cafe::17"),
            (b"for=192.0.2.60;proto=http;by=203.0.113.43", "192.0.2.60"),
            (b"for=192.0.2.43, for=198.51.100.17", "198.51.100.17"),
            (b"for=192.0.2.43:80", "192.0.2.43"),
            (b"for=\"192.0.2.43:_port\"", "192.0.2.43"),
            (b"proto=https; for=192.0.2.43 ;by=_proxy", "192.0.2.43"),
            (br#"for=192.0.2.43;host="a,b;c""#, "192.0.2.43"),
            (br#"for="192.0.2.43";host="a\"b,\\""#, "192.0.2.43"),
            (br#"for="\1\9\2.0.2.43""#, "192.0.2.43"),
            (b"for=[2001:db8::1]", "2001:db8::1"),
            (b"for=\"2001:db8::1\"", "2001:db8::1"),
        ] {
            let p = parts(Some("10.0.0.1:4000"), &[("forwarded", value)]);
            assert_eq!(
                config.resolve(&p),
                Ok(ip(expected)),
                "{}",
                String::from_utf8_lossy(value)
            );
        }
    }

    #[test]
    fn client_ip_forwarded_malformed_elements_are_not_believed() {
        let config = behind_proxies();
        for value in [
            &b"for=1.2.3.4;for=5.6.7.8"[..],
            b"proto=https",
            b"for=",
            b"for=\"1.2.3.4",
            b"for = 1.2.3.4",
            b"for=1.2.3.4 x",
            b"=1.2.3.4",
            b"for=\"[2001:db8::1]:123456\"",
            b"for=\"[1.2.3.4]\"",
            b"for=\"[2001:db8::1\"",
            b"for=1.2.3.4:_",
            b"for=\"fe80::1%eth0\"",
        ] {
            let p = parts(
                Some("10.0.0.1:4000"),
                &[("forwarded", b"for=6.6.6.6"), ("forwarded", value)],
            );
            assert_eq!(
                config.resolve(&p),
                Ok(ip("10.0.0.1")),
                "{}",
                String::from_utf8_lossy(value)
            );
        }
    }

    #[test]
    fn client_ip_forwarded_obfuscated_identifiers_stop_the_walk() {
        let config = behind_proxies();
        let p = parts(
            Some("10.0.0.1:4000"),
            &[("forwarded", b"for=1.2.3.4, for=_hidden")],
        );
        assert_eq!(config.resolve(&p), Ok(ip("10.0.0.1")));
        let p = parts(
            Some("10.0.0.1:4000"),
            &[("forwarded", b"for=1.2.3.4, for=unknown, for=10.0.0.2")],
        );
        assert_eq!(config.resolve(&p), Ok(ip("10.0.0.2")));
        let p = parts(
            Some("10.0.0.1:4000"),
            &[("forwarded", b"for=1.2.3.4, for=\"_x.y-z:_p\";by=unknown")],
        );
        assert_eq!(config.resolve(&p), Ok(ip("10.0.0.1")));
        assert_eq!(forwarded_for(b"for=_hidden"), Node::Obfuscated);
        assert_eq!(forwarded_for(b"for=UNKNOWN"), Node::Unknown);
        assert_eq!(forwarded_for(b"for=\"unknown:1234\""), Node::Unknown);
        assert_eq!(forwarded_for(b"for=_"), Node::Invalid);
        assert_eq!(forwarded_for(b"for=_a/b"), Node::Invalid);
    }

    #[test]
    fn client_ip_forwarded_multiple_header_lines() {
        let p = parts(
            Some("10.0.0.1:4000"),
            &[
                ("forwarded", b"for=6.6.6.6"),
                ("forwarded", b"for=1.2.3.4"),
                ("forwarded", b"for=192.168.0.9;proto=https"),
            ],
        );
        assert_eq!(behind_proxies().resolve(&p), Ok(ip("1.2.3.4")));
    }

    #[test]
    fn client_ip_forwarded_unclosed_quote_on_the_left_does_not_hide_the_client() {
        // A client sends `Forwarded: for="`; the proxy appends its element.
        let p = parts(
            Some("10.0.0.1:4000"),
            &[("forwarded", br#"for=", for=1.2.3.4"#)],
        );
        assert_eq!(behind_proxies().resolve(&p), Ok(ip("1.2.3.4")));
    }

    #[test]
    fn client_ip_header_order() {
        let headers: &[(&str, &[u8])] = &[
            ("x-real-ip", b"3.3.3.3"),
            ("x-forwarded-for", b"2.2.2.2"),
            ("forwarded", b"for=1.1.1.1"),
            ("cf-connecting-ip", b"4.4.4.4"),
        ];
        let p = parts(Some("10.0.0.1:4000"), headers);
        let config = behind_proxies();
        assert_eq!(config.resolve(&p), Ok(ip("1.1.1.1")));
        let only = |h: ProxyHeader| config.clone().proxy_headers([h]).resolve(&p);
        assert_eq!(only(ProxyHeader::Forwarded), Ok(ip("1.1.1.1")));
        assert_eq!(only(ProxyHeader::XForwardedFor), Ok(ip("2.2.2.2")));
        assert_eq!(only(ProxyHeader::XRealIp), Ok(ip("3.3.3.3")));
        assert_eq!(
            only(ProxyHeader::SingleIp(HeaderName::from_static(
                "cf-connecting-ip"
            ))),
            Ok(ip("4.4.4.4"))
        );
        let reordered = config
            .clone()
            .proxy_headers([ProxyHeader::XRealIp, ProxyHeader::Forwarded]);
        assert_eq!(reordered.resolve(&p), Ok(ip("3.3.3.3")));
        let none = config.proxy_headers([]);
        assert_eq!(none.resolve(&p), Ok(ip("10.0.0.1")));
    }

    #[test]
    fn client_ip_absent_or_empty_headers_fall_through_to_the_next() {
        let config = behind_proxies();
        let p = parts(
            Some("10.0.0.1:4000"),
            &[
                ("forwarded", b""),
                ("x-forwarded-for", b" , ,"),
                ("x-real-ip", b"3.3.3.3"),
            ],
        );
        assert_eq!(config.resolve(&p), Ok(ip("3.3.3.3")));
    }

    #[test]
    fn client_ip_x_real_ip_must_be_one_address() {
        let config = behind_proxies();
        for headers in [
            &[("x-real-ip", &b"3.3.3.3"[..]), ("x-real-ip", b"4.4.4.4")][..],
            &[("x-real-ip", b"3.3.3.3, 4.4.4.4")],
            &[("x-real-ip", b"nonsense")],
            &[("x-real-ip", b"\xff")],
        ] {
            let p = parts(Some("10.0.0.1:4000"), headers);
            assert_eq!(config.resolve(&p), Ok(ip("10.0.0.1")), "{headers:?}");
        }
        let p = parts(Some("10.0.0.1:4000"), &[("x-real-ip", b" 3.3.3.3 ")]);
        assert_eq!(config.resolve(&p), Ok(ip("3.3.3.3")));
    }

    #[test]
    fn client_ip_non_utf8_values_are_not_believed() {
        let config = behind_proxies();
        let p = parts(Some("10.0.0.1:4000"), &[("x-forwarded-for", b"\xff\xfe")]);
        assert_eq!(config.resolve(&p), Ok(ip("10.0.0.1")));
        let p = parts(
            Some("10.0.0.1:4000"),
            &[("x-forwarded-for", b"6.6.6.6\xff, 1.2.3.4")],
        );
        assert_eq!(config.resolve(&p), Ok(ip("1.2.3.4")));
        let p = parts(
            Some("10.0.0.1:4000"),
            &[("forwarded", b"for=\"1.2.3.4\xc3\xa9\"")],
        );
        assert_eq!(config.resolve(&p), Ok(ip("10.0.0.1")));
        let p = parts(
            Some("10.0.0.1:4000"),
            &[("forwarded", b"for=\"\xff\", for=1.2.3.4")],
        );
        assert_eq!(config.resolve(&p), Ok(ip("1.2.3.4")));
        let p = parts(Some("198.51.100.1:4000"), &[("x-forwarded-for", b"\xff")]);
        assert_eq!(config.resolve(&p), Ok(ip("198.51.100.1")));
    }

    #[test]
    fn client_ip_ten_thousand_entries() {
        let config = behind_proxies();
        let mut forged = "6.6.6.6, ".repeat(10_000);
        forged.push_str("1.2.3.4, 10.0.0.2");
        let p = parts(
            Some("10.0.0.1:4000"),
            &[("x-forwarded-for", forged.as_bytes())],
        );
        assert_eq!(config.resolve(&p), Ok(ip("1.2.3.4")));

        // Past the limits, the walk stops at a trusted hop and never reaches the forged
        // address on the far left.
        let mut trusted = String::from("6.6.6.6");
        for i in 0..10_000_u32 {
            trusted.push_str(&format!(
                ", 10.{}.{}.{}",
                i >> 16,
                (i >> 8) & 0xff,
                i & 0xff
            ));
        }
        let p = parts(
            Some("10.0.0.1:4000"),
            &[("x-forwarded-for", trusted.as_bytes())],
        );
        let got = config.resolve(&p).expect("resolves");
        assert!(config.is_trusted(got), "{got}");

        // The entry cap alone (the entries fit in the byte budget) ...
        let short = format!("6.6.6.6{}", ", 10.0.0.3".repeat(MAX_ENTRIES + 1));
        assert!(short.len() < MAX_BYTES);
        let p = parts(
            Some("10.0.0.1:4000"),
            &[("x-forwarded-for", short.as_bytes())],
        );
        assert_eq!(config.resolve(&p), Ok(ip("10.0.0.3")));
        // ... and the byte cap alone (empty entries are not counted as entries).
        let sparse = format!("6.6.6.6{}, 10.0.0.3", ",".repeat(MAX_BYTES));
        let p = parts(
            Some("10.0.0.1:4000"),
            &[("x-forwarded-for", sparse.as_bytes())],
        );
        assert_eq!(config.resolve(&p), Ok(ip("10.0.0.3")));

        let mut forwarded = "for=6.6.6.6, ".repeat(10_000);
        forwarded.push_str("for=\"[2001:db8::9]:80\"");
        let p = parts(
            Some("10.0.0.1:4000"),
            &[("forwarded", forwarded.as_bytes())],
        );
        assert_eq!(config.resolve(&p), Ok(ip("2001:db8::9")));

        let huge = "1".repeat(1 << 20);
        let p = parts(
            Some("10.0.0.1:4000"),
            &[("x-forwarded-for", huge.as_bytes())],
        );
        assert_eq!(config.resolve(&p), Ok(ip("10.0.0.1")));
        let p = parts(Some("10.0.0.1:4000"), &[("x-real-ip", huge.as_bytes())]);
        assert_eq!(config.resolve(&p), Ok(ip("10.0.0.1")));
        let quotes = format!("for=\"{}", "\\\"".repeat(1 << 18));
        let p = parts(Some("10.0.0.1:4000"), &[("forwarded", quotes.as_bytes())]);
        assert_eq!(config.resolve(&p), Ok(ip("10.0.0.1")));
    }

    #[test]
    fn client_ip_ipv6_prefix_bucketing() {
        let config = ClientIpConfig::new().ipv6_prefix(56);
        let a = config.identity_of(ip("2001:db8:1234:5678::1"));
        let b = config.identity_of(ip("2001:db8:1234:56ff:ffff::2"));
        let c = config.identity_of(ip("2001:db8:1234:5778::1"));
        assert_eq!(a, "2001:db8:1234:5600::/56");
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(config.identity_of(ip("203.0.113.7")), "203.0.113.7");
        assert_eq!(
            ClientIpConfig::new().identity_of(ip("2001:db8:1234:5678::1")),
            "2001:db8:1234:5678::1"
        );
        assert_eq!(
            ClientIpConfig::new()
                .ipv6_prefix(0)
                .identity_of(ip("2001:db8::1")),
            "::/0"
        );
        let p = parts(Some("[2001:db8:1234:5678::1]:4000"), &[]);
        assert_eq!(
            config.identity(&p).as_deref(),
            Ok("2001:db8:1234:5600::/56")
        );
        // Bucketing is for keys; the resolved address stays whole.
        assert_eq!(config.resolve(&p), Ok(ip("2001:db8:1234:5678::1")));
    }

    #[test]
    #[should_panic(expected = "at most 128")]
    fn client_ip_ipv6_prefix_over_128_panics() {
        let _ = ClientIpConfig::new().ipv6_prefix(129);
    }

    #[test]
    fn client_ip_ipv4_mapped_addresses_are_ipv4() {
        let config = behind_proxies().ipv6_prefix(56);
        let p = parts(Some("[::ffff:198.51.100.9]:4000"), &[]);
        assert_eq!(config.resolve(&p), Ok(ip("198.51.100.9")));
        assert_eq!(config.identity(&p).as_deref(), Ok("198.51.100.9"));

        // A mapped peer is trusted as its IPv4 address; mapped entries are clients as IPv4.
        let p = parts(
            Some("[::ffff:10.0.0.1]:4000"),
            &[("x-forwarded-for", b"::ffff:1.2.3.4, ::ffff:10.0.0.2")],
        );
        assert_eq!(config.resolve(&p), Ok(ip("1.2.3.4")));
        assert!(config.resolve(&p).is_ok_and(|ip| ip.is_ipv4()));
        let p = parts(Some("10.0.0.1:4000"), &[("x-real-ip", b"::ffff:1.2.3.4")]);
        assert_eq!(
            config.resolve(&p),
            Ok(IpAddr::V4(Ipv4Addr::new(1, 2, 3, 4)))
        );

        // A mapped trusted network means the IPv4 network.
        let mapped = ClientIpConfig::new()
            .try_trust_proxies(["::ffff:10.0.0.0/104"])
            .expect("proxy");
        assert!(mapped.is_trusted(ip("10.1.1.1")));
        assert!(mapped.is_trusted(ip("::ffff:10.1.1.1")));
        assert!(!mapped.is_trusted(ip("11.1.1.1")));
    }

    #[test]
    fn client_ip_try_trust_proxies_parses_networks_and_addresses() {
        let config = ClientIpConfig::new()
            .try_trust_proxies(["10.0.0.1", " ::1 ", "172.16.0.0/12", "fd00::/8"])
            .expect("valid");
        assert!(config.is_trusted(ip("10.0.0.1")));
        assert!(!config.is_trusted(ip("10.0.0.2")));
        assert!(config.is_trusted(ip("::1")));
        assert!(!config.is_trusted(ip("::2")));
        assert!(config.is_trusted(ip("172.31.255.255")));
        assert!(config.is_trusted(ip("fd12::1")));
        assert!(!config.is_trusted(ip("fe80::1")));

        for bad in [
            "10.0.0.0/33",
            "not-an-ip",
            "",
            "10.0.0.1/",
            "::/129",
            "1.2.3.4:80",
        ] {
            let err = ClientIpConfig::new()
                .try_trust_proxies(["10.0.0.1", bad])
                .unwrap_err();
            assert!(
                matches!(&err, ClientIpError::InvalidProxy { input, .. } if input == bad),
                "{err:?}"
            );
            assert!(err.to_string().contains("CIDR"), "{err}");
            assert!(std::error::Error::source(&err).is_some());
        }
    }

    #[test]
    fn client_ip_resolve_request_reads_extensions_and_headers() {
        let peer: SocketAddr = "10.0.0.1:1".parse().expect("addr");
        let request = Request::builder()
            .header("x-forwarded-for", "1.2.3.4")
            .extension(ConnectInfo(peer))
            .body(())
            .expect("request");
        assert_eq!(
            behind_proxies().resolve_request(&request),
            Ok(ip("1.2.3.4"))
        );
        assert_eq!(
            behind_proxies().resolve_request(&Request::new(())),
            Err(ClientIpError::MissingConnectInfo)
        );
    }

    #[test]
    fn client_ip_split_last_respects_quotes_and_limits() {
        assert_eq!(
            split_last(br#"a="x,y", b"#, true, MAX_BYTES),
            Some((Some(&br#"a="x,y""#[..]), &b" b"[..]))
        );
        assert_eq!(
            split_last(br#"a="x,y""#, true, MAX_BYTES),
            Some((None, &br#"a="x,y""#[..]))
        );
        assert_eq!(
            split_last(br#"a="x\",y""#, true, MAX_BYTES),
            Some((None, &br#"a="x\",y""#[..]))
        );
        assert_eq!(
            split_last(br#"a="x",y"#, false, MAX_BYTES),
            Some((Some(&br#"a="x""#[..]), &b"y"[..]))
        );
        assert_eq!(split_last(b"abcdef", false, 4), None);
        assert_eq!(split_last(b"ab,cdef", false, 4), None);
        assert_eq!(
            split_last(b"abcdef,gh", false, 4),
            Some((Some(&b"abcdef"[..]), &b"gh"[..]))
        );
    }

    /// Bytes that steer the parsers into their corners.
    fn header_bytes() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..200),
            prop::collection::vec(
                prop::sample::select(b"\"\\,;=:[]_ \tfFoOrR0123456789.abcdef\x80\xff".to_vec()),
                0..200,
            ),
        ]
    }

    proptest! {
        #[test]
        fn ipv4_identity_is_the_standard_text(bits in any::<u32>()) {
            let ip = std::net::Ipv4Addr::from(bits);
            prop_assert_eq!(ClientIpConfig::new().identity_of(IpAddr::V4(ip)), ip.to_string());
        }

        #[test]
        fn client_ip_arbitrary_header_bytes_never_panic(
            lines in prop::collection::vec(
                (prop::sample::select(vec!["forwarded", "x-forwarded-for", "x-real-ip"]), header_bytes()),
                0..6,
            ),
            peer_trusted in any::<bool>(),
        ) {
            let mut headers = HeaderMap::new();
            for (name, bytes) in &lines {
                if let Ok(value) = HeaderValue::from_bytes(bytes) {
                    headers.append(*name, value);
                }
            }
            let config = behind_proxies().ipv6_prefix(48);
            let peer = if peer_trusted { ip("10.0.0.1") } else { ip("198.51.100.1") };
            let got = config.resolve_with_peer(peer, &headers);
            let _ = config.identity_of(got);
            if !peer_trusted {
                prop_assert_eq!(got, peer);
            }
        }

        /// A one-line `X-Forwarded-For` read as one address gives what the walk gives.
        #[test]
        fn client_ip_lone_address_is_what_the_walk_finds(
            address in prop_oneof![
                any::<u32>().prop_map(|bits| std::net::Ipv4Addr::from(bits).to_string()),
                any::<u128>().prop_map(|bits| std::net::Ipv6Addr::from(bits).to_string()),
                any::<u32>().prop_map(|bits| {
                    std::net::Ipv4Addr::from(bits).to_ipv6_mapped().to_string()
                }),
                prop::sample::select(vec![
                    "10.0.0.7".to_owned(),
                    "::1".to_owned(),
                    "01.2.3.4".to_owned(),
                ]),
            ],
            before in "[ \t]{0,3}",
            after in "[ \t]{0,3}",
            tail in prop::option::of(header_bytes()),
            peer_trusted in any::<bool>(),
        ) {
            let mut value = format!("{before}{address}{after}").into_bytes();
            if let Some(tail) = tail {
                value.extend_from_slice(&tail);
            }
            let Ok(value) = HeaderValue::from_bytes(&value) else {
                return Ok(());
            };
            let mut headers = HeaderMap::new();
            headers.insert(X_FORWARDED_FOR, value.clone());
            let config = behind_proxies();
            let peer = if peer_trusted { ip("10.0.0.1") } else { ip("198.51.100.1") };
            let walked = config.walk_x_forwarded_for(peer, &headers.get_all(X_FORWARDED_FOR));
            if let Some(lone) = lone_address(&value) {
                prop_assert_eq!(Some(lone.ip), walked);
                if let Some(text) = lone.text {
                    prop_assert_eq!(text, config.identity_of(lone.ip));
                }
            }
            prop_assert_eq!(
                config
                    .read_header(&ProxyHeader::XForwardedFor, &peer, &headers)
                    .map(|found| found.ip),
                walked
            );
            // The request path's identity, borrowed from the header or written, is the
            // public one.
            let mut request = Request::builder()
                .extension(ConnectInfo(SocketAddr::new(peer, 4711)))
                .body(())
                .expect("a valid request");
            *request.headers_mut() = headers;
            let (parts, ()) = request.into_parts();
            let mut buf = None;
            prop_assert_eq!(
                config.identity_text(&parts, &mut buf).map(str::to_owned),
                config.identity(&parts)
            );
        }

        /// Whatever a client puts in front, the entry a trusted proxy appends decides.
        #[test]
        fn client_ip_client_prefix_cannot_override_appended_entry(prefix in header_bytes()) {
            let config = behind_proxies();
            let peer = ip("10.0.0.1");
            for (name, appended) in [
                ("x-forwarded-for", &b", 203.0.113.9"[..]),
                ("forwarded", b", for=203.0.113.9;proto=https"),
            ] {
                let mut value = prefix.clone();
                value.extend_from_slice(appended);
                let Ok(value) = HeaderValue::from_bytes(&value) else {
                    continue;
                };
                let mut headers = HeaderMap::new();
                headers.insert(name, value);
                prop_assert_eq!(
                    config.clone().proxy_headers([if name == "forwarded" {
                        ProxyHeader::Forwarded
                    } else {
                        ProxyHeader::XForwardedFor
                    }])
                    .resolve_with_peer(peer, &headers),
                    ip("203.0.113.9")
                );
            }
        }
    }
}
