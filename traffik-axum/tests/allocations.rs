//! A request admitted by `Throttled<T>` in memory allocates nothing that the same handler
//! without it does not: the client's address, the scope, the key and the decision all
//! live on the stack or in the slot the client already has.
//!
//! Its own test binary: it counts allocations with a global allocator, and only while a
//! request is being served, on a server with one worker thread and a client that does
//! not allocate while counting.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use traffik_axum::client_ip::ClientIpConfig;
use traffik_axum::{HttpThrottle, Throttled, Traffik, throttle};
use traffik_core::InMemoryBackend;

/// Counts allocations while `COUNTING` is set.
struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is passed on to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::SeqCst) {
            ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
        }
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc` above, that is from the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

throttle!(Limit = HttpThrottle::new("allocations", "1000/s"));

async fn bare() -> &'static str {
    "ok"
}

async fn throttled(_: Throttled<Limit>) -> &'static str {
    "ok"
}

/// Allocations made while serving the last of a few requests on one connection (the first
/// ones warm up the connection, the route and the client's slot).
fn allocations_of(addr: SocketAddr, path: &str, client: Option<&str>) -> usize {
    let mut stream = TcpStream::connect(addr).expect("the server accepts");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("a timeout can be set");
    let forwarded = client.map_or(String::new(), |ip| format!("X-Forwarded-For: {ip}\r\n"));
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{forwarded}\r\n");
    let mut response = [0u8; 1024];
    let mut counted = 0;
    for round in 0..4 {
        let last = round == 3;
        if last {
            ALLOCATIONS.store(0, Ordering::SeqCst);
            COUNTING.store(true, Ordering::SeqCst);
        }
        stream
            .write_all(request.as_bytes())
            .expect("the request is sent");
        let read = stream.read(&mut response).expect("a response comes");
        // The server may still be finishing the request (dropping its future) after the
        // response left: wait a moment before counting stops.
        std::thread::sleep(Duration::from_millis(50));
        COUNTING.store(false, Ordering::SeqCst);
        assert!(
            response[..read].starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&response[..read])
        );
        if last {
            counted = ALLOCATIONS.load(Ordering::SeqCst);
        }
    }
    counted
}

#[test]
fn an_admitted_request_allocates_what_the_bare_handler_does() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime");
    let traffik = Traffik::new(InMemoryBackend::new("allocations"))
        .client_ip(ClientIpConfig::new().trust_proxies([IpAddr::from([127, 0, 0, 1])]));
    let app = Router::new()
        .route("/bare", get(bare))
        .route("/throttled", get(throttled))
        .with_state(traffik);
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("a loopback port");
    let addr = listener.local_addr().expect("a bound address");
    runtime.spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });
    // A client named by the proxy header, and one by its socket peer (no header), each
    // against the bare handler answering the same request.
    for client in [Some("203.0.113.7"), None] {
        let bare = allocations_of(addr, "/bare", client);
        assert!(bare > 0, "the count sees the server's allocations");
        let throttled = allocations_of(addr, "/throttled", client);
        assert_eq!(throttled, bare, "client {client:?}");
    }
}
