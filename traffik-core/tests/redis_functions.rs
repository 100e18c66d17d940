#![cfg(feature = "redis")]
//! Traffik's Redis function library: loaded by the call that finds it missing, once at a
//! time, and given up for scripts on a server or user without functions. Apart from the
//! other Redis tests, which would see the library come and go under them (and load it
//! again, each backend once): these count the loads.

mod redis_support;

use deadpool_redis::redis;
use traffik_core::{Backend, FixedWindow, Rate, RedisBackend};

/// Held by the tests that delete the library or count its loads.
static LIBRARIES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn backend(test: &str) -> RedisBackend {
    RedisBackend::from_url(redis_support::url(), redis_support::namespace("rf", test)).unwrap()
}

/// How many `FUNCTION LOAD`s the server has run.
async fn library_loads(conn: &mut redis::aio::MultiplexedConnection) -> u64 {
    let stats = redis_support::command_stats(conn).await;
    stats.get("function|load").copied().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_function_library_is_loaded_again_when_missing() {
    if redis_support::skip() {
        return;
    }
    let _libraries = LIBRARIES.lock().await;
    let b = backend("library");
    let rate: Rate = "2/m".parse().unwrap();
    let mut conn = redis_support::raw().await;
    assert!(redis_support::admits(&b, "{c}", &rate).await);
    assert!(
        !redis_support::function_libraries(&mut conn)
            .await
            .is_empty()
    );
    // Gone (a restart, a FUNCTION FLUSH): the next decision still counts, and loads it.
    redis_support::delete_function_libraries(&mut conn).await;
    assert!(redis_support::admits(&b, "{c}", &rate).await);
    assert!(
        !redis_support::function_libraries(&mut conn)
            .await
            .is_empty()
    );
    assert!(!redis_support::admits(&b, "{c}", &rate).await);
    b.reset().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_without_functions_is_served_by_scripts() {
    if redis_support::skip() {
        return;
    }
    let url = redis_support::url();
    let Some(address) = url.strip_prefix("redis://").filter(|a| !a.contains('@')) else {
        eprintln!("skipped: {url} carries credentials of its own");
        return;
    };
    // A user allowed everything but functions, as some managed services set them up.
    let user = format!("traffik-nofn-{}", std::process::id());
    let mut conn = redis_support::raw().await;
    let () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg(&user)
        .arg("on")
        .arg("nopass")
        .arg("~*")
        .arg("&*")
        .arg("+@all")
        .arg("-fcall")
        .arg("-function")
        .query_async(&mut conn)
        .await
        .unwrap();
    let b = RedisBackend::builder(redis_support::namespace("rf", "nofn"))
        .url(format!("redis://{user}:unused@{address}"))
        .build()
        .unwrap();
    let rate: Rate = "3/m".parse().unwrap();
    let mut admitted = 0;
    for _ in 0..5 {
        admitted += u32::from(redis_support::admits(&b, "{c}", &rate).await);
    }
    assert_eq!(admitted, 3);
    b.reset().await.unwrap();
    let _: i64 = redis::cmd("ACL")
        .arg("DELUSER")
        .arg(&user)
        .query_async(&mut conn)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_that_find_the_library_missing_load_it_once() {
    if redis_support::skip() {
        return;
    }
    let _libraries = LIBRARIES.lock().await;
    let b = backend("once");
    let rate: Rate = "50/m".parse().unwrap();
    let mut conn = redis_support::raw().await;
    // The connection made, then the library gone: the next 64 decisions, sent together,
    // all find their function missing.
    assert!(redis_support::admits(&b, "{warm}", &rate).await);
    redis_support::delete_function_libraries(&mut conn).await;
    let before = library_loads(&mut conn).await;
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let b = b.clone();
            tokio::spawn(async move { b.decide("{c}", &FixedWindow, &rate, 1).await })
        })
        .collect();
    let mut admitted = 0;
    for task in tasks {
        admitted += u32::from(task.await.unwrap().unwrap().allowed);
    }
    let loads = library_loads(&mut conn).await - before;
    assert_eq!(admitted, 50, "every decision counted");
    // One load; a second at most, from a call whose answer came after the first ended.
    assert!(
        (1..=2).contains(&loads),
        "{loads} loads for one missing library"
    );
    assert!(
        !redis_support::function_libraries(&mut conn)
            .await
            .is_empty()
    );
    b.reset().await.unwrap();
}
