//! Where connections come from, and the one shared multiplexed connection every call uses.
//!
//! deadpool-redis pings (`UNWATCH` + `PING`) every connection it hands out: checking one
//! out per decision would double the round trips. Its connections are multiplexed, so the
//! backend checks one out once, keeps a clone (a handle on the same socket) for every
//! call, and checks out again only after the connection failed.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use deadpool_redis::redis::aio::{ConnectionLike, MultiplexedConnection};
use deadpool_redis::redis::cluster_async::ClusterConnection;
use deadpool_redis::redis::{self, Cmd, Pipeline, RedisError, RedisFuture, RedisResult, Value};

/// A future yielding a fresh multiplexed connection.
pub type ConnectFuture = Pin<Box<dyn Future<Output = RedisResult<MultiplexedConnection>> + Send>>;

/// Makes connections for a [`RedisBackend`](super::RedisBackend) built from a factory.
pub type ConnectionFactory = Arc<dyn Fn() -> ConnectFuture + Send + Sync>;

#[derive(Clone)]
pub(super) enum Source {
    Pool(deadpool_redis::Pool),
    Cluster(deadpool_redis::cluster::Pool),
    Factory(ConnectionFactory),
}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Source::Pool(_) => "Pool",
            Source::Cluster(_) => "Cluster",
            Source::Factory(_) => "Factory",
        })
    }
}

impl Source {
    async fn connect(&self) -> RedisResult<Conn> {
        let pool_error = |e: deadpool_redis::PoolError| match e {
            deadpool_redis::PoolError::Backend(e) => e,
            other => RedisError::from(std::io::Error::other(other.to_string())),
        };
        match self {
            Source::Pool(pool) => {
                let conn = pool.get().await.map_err(pool_error)?;
                Ok(Conn::Single((*conn).clone()))
            }
            Source::Cluster(pool) => {
                let conn = pool.get().await.map_err(|e| match e {
                    deadpool_redis::cluster::PoolError::Backend(e) => e,
                    other => RedisError::from(std::io::Error::other(other.to_string())),
                })?;
                Ok(Conn::Cluster((*conn).clone()))
            }
            Source::Factory(factory) => Ok(Conn::Single(factory().await?)),
        }
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self, Source::Cluster(_))
    }
}

/// A handle on a standalone or cluster connection; clones share the socket(s).
#[derive(Clone)]
pub(super) enum Conn {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// The source and the connection currently shared.
pub(super) struct Shared {
    source: Source,
    current: Mutex<Option<Conn>>,
}

impl Shared {
    pub fn new(source: Source) -> Self {
        Self {
            source,
            current: Mutex::new(None),
        }
    }

    pub fn source(&self) -> &Source {
        &self.source
    }

    /// The shared connection, connecting first if there is none.
    pub async fn get(&self) -> RedisResult<Conn> {
        if let Some(conn) = self.lock().as_ref() {
            return Ok(conn.clone());
        }
        let conn = self.source.connect().await?;
        let mut slot = self.lock();
        Ok(slot.get_or_insert(conn).clone())
    }

    /// Forgets the shared connection after an error that may mean it is broken.
    pub fn failed(&self, error: &RedisError) {
        if error.is_io_error()
            || error.is_connection_dropped()
            || error.is_unrecoverable_error()
            || error.is_timeout()
        {
            self.lock().take();
        }
    }

    /// Drops the shared connection (the pool keeps its own).
    pub fn clear(&self) {
        self.lock().take();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Conn>> {
        self.current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Runs `cmd` on `conn`.
pub(super) async fn query<T: redis::FromRedisValue>(conn: &mut Conn, cmd: &Cmd) -> RedisResult<T> {
    cmd.query_async(conn).await
}
