//! The cost of `Throttled<T>` per request: the same handler bare and behind one throttle,
//! driven in-process through the router (`tower::ServiceExt::oneshot`), side by side.
//!
//! `cargo bench -p traffik-axum --bench extractor`

use std::hint::black_box;
use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::routing::get;
use criterion::{Criterion, criterion_group, criterion_main};
use http::Request;
use tower::ServiceExt;
use traffik_axum::{HttpThrottle, Throttled, Traffik, throttle};
use traffik_core::InMemoryBackend;

// A limit no client reaches during a run: every request passes the throttle.
throttle!(Generous = HttpThrottle::new("bench", "1000000000/s"));

async fn bare() -> &'static str {
    "ok"
}

async fn throttled(_: Throttled<Generous>) -> &'static str {
    "ok"
}

fn request(client: u32) -> Request<Body> {
    let peer = SocketAddr::from((
        [10, (client >> 16) as u8, (client >> 8) as u8, client as u8],
        40000,
    ));
    let mut request = Request::get("/data").body(Body::empty()).expect("request");
    request.extensions_mut().insert(ConnectInfo(peer));
    request
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let traffik = runtime.block_on(async { Traffik::new(InMemoryBackend::new("bench")) });
    let bare_app: Router = Router::new()
        .route("/data", get(bare))
        .with_state(traffik.clone());
    let throttled_app: Router = Router::new()
        .route("/data", get(throttled))
        .with_state(traffik);

    let mut group = c.benchmark_group("router_oneshot");
    for (name, app) in [("bare", &bare_app), ("throttled", &throttled_app)] {
        group.bench_function(format!("{name}/one_client"), |b| {
            b.iter(|| {
                let response = runtime.block_on(app.clone().oneshot(request(1)));
                black_box(response.expect("infallible"))
            })
        });
        let mut client = 0u32;
        group.bench_function(format!("{name}/10k_clients"), |b| {
            b.iter(|| {
                client = (client + 1) % 10_000;
                let response = runtime.block_on(app.clone().oneshot(request(client)));
                black_box(response.expect("infallible"))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
