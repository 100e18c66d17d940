//! Where connections come from, and the one shared multiplexed connection every call uses.
//!
//! deadpool-redis pings (`UNWATCH` + `PING`) every connection it hands out: checking one
//! out per decision would double the round trips. Its connections are multiplexed, so the
//! backend checks one out once, keeps a clone (a handle on the same socket) for every
//! call, and checks out again only after the connection failed.
//!
//! Nothing here waits forever: getting a connection (from a pool, however exhausted, or a
//! factory) is bounded by the connect timeout, and redis-rs bounds each command by its
//! response timeout (500 ms by default), after which the connection is dropped and made
//! again. A decision's commands are bounded by its [`Deadline`] too (the throttle's
//! timeout, or the backend's): a queued one by the pipeline it goes in, any other by
//! [`within`].

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use deadpool_redis::redis::aio::{ConnectionLike, MultiplexedConnection};
use deadpool_redis::redis::cluster_async::ClusterConnection;
use deadpool_redis::redis::{self, Cmd, Pipeline, RedisError, RedisFuture, RedisResult, Value};

use super::batch::{Batcher, Counters, Pipelined, Reply, Work};
use crate::error::{Error, Result};

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

/// Where [`Shared::submit`] put a command.
enum Submitted {
    /// With the batching task; its reply comes here.
    Queued(oneshot::Receiver<Reply>),
    /// Not queued: the connection has no batching task (a cluster, or made outside a
    /// runtime), so the command goes on it alone.
    Direct(Conn, Work),
    /// No connection is ready.
    NoConnection(Work),
}

/// The shared connection, or the attempt to make one.
enum Slot {
    /// No connection: the next call starts an attempt.
    Idle,
    /// An attempt is running in a task of its own; its result is sent here.
    Connecting(watch::Receiver<Option<Result<Conn, String>>>),
    /// The connection every call uses, and the task that coalesces decisions on it (a
    /// standalone connection made inside a runtime).
    Ready(Conn, Option<Batcher>),
}

/// The source and the connection currently shared.
///
/// Connecting runs in a task of its own, bounded by the connect timeout: a caller that
/// gives up (a throttle's decision timeout) does not cancel it, so a connection slower
/// to establish than one decision may take is still established, and concurrent callers
/// share one attempt instead of each opening a connection.
pub(super) struct Shared {
    source: Source,
    connect_timeout: Duration,
    slot: Arc<Mutex<Slot>>,
    /// Commands abandoned in a row before they answered (see [`Watch`]).
    abandoned: AtomicU32,
    /// What the batching tasks sent.
    counters: Arc<Counters>,
}

/// Commands abandoned in a row (cancelled by a throttle's timeout before Redis answered)
/// after which the shared connection is presumed dead and made again.
///
/// A server that vanished without closing the connection (a crashed host, a network
/// partition) never answers on it again, and a caller that gives up first never sees
/// redis-rs's response timeout: without this, the dead connection would be kept forever.
/// Three in a row, with no answer between them, do not happen on a healthy connection.
const ABANDONED_LIMIT: u32 = 3;

/// Watches one command on the shared connection: [`answered`](Watch::answered) when Redis
/// replied (with a value or an error); dropped without it, the command was abandoned.
pub(super) struct Watch<'a> {
    shared: &'a Shared,
    answered: bool,
}

impl Watch<'_> {
    /// Redis replied: the connection is alive.
    pub fn answered(mut self) {
        self.answered = true;
        self.shared.abandoned.store(0, Ordering::Relaxed);
    }
}

impl Drop for Watch<'_> {
    fn drop(&mut self) {
        if self.answered {
            return;
        }
        let abandoned = self.shared.abandoned.fetch_add(1, Ordering::Relaxed) + 1;
        if abandoned >= ABANDONED_LIMIT {
            self.shared.abandoned.store(0, Ordering::Relaxed);
            tracing::warn!(
                abandoned,
                "redis stopped answering on its connection; connecting again"
            );
            self.shared.clear();
        }
    }
}

impl Shared {
    pub fn new(source: Source, connect_timeout: Duration) -> Self {
        Self {
            source,
            connect_timeout,
            slot: Arc::new(Mutex::new(Slot::Idle)),
            abandoned: AtomicU32::new(0),
            counters: Arc::default(),
        }
    }

    /// Waits for `reply`, Redis's answer to one command on the shared connection,
    /// watched (see [`Watch`]): given up before it completes, the command counts as
    /// abandoned.
    pub async fn watched<F: Future>(&self, reply: F) -> F::Output {
        let watch = Watch {
            shared: self,
            answered: false,
        };
        let answered = reply.await;
        watch.answered();
        answered
    }

    pub fn source(&self) -> &Source {
        &self.source
    }

    /// The shared connection, connecting first if there is none.
    pub async fn get(&self) -> Result<Conn> {
        let joined = {
            let mut slot = lock(&self.slot);
            match &*slot {
                Slot::Ready(conn, _) => return Ok(conn.clone()),
                Slot::Connecting(attempt) => Some(attempt.clone()),
                Slot::Idle => match tokio::runtime::Handle::try_current() {
                    Ok(runtime) => {
                        let attempt = self.start(&runtime);
                        *slot = Slot::Connecting(attempt.clone());
                        Some(attempt)
                    }
                    // Outside a runtime no task can be spawned: connect in place.
                    Err(_) => None,
                },
            }
        };
        let Some(mut attempt) = joined else {
            let conn = connect(&self.source, self.connect_timeout).await?;
            let mut slot = lock(&self.slot);
            if let Slot::Ready(current, _) = &*slot {
                return Ok(current.clone());
            }
            *slot = Slot::Ready(conn.clone(), None);
            return Ok(conn);
        };
        let waited = attempt
            .wait_for(Option::is_some)
            .await
            .map(|outcome| outcome.clone());
        let outcome = match waited {
            Ok(outcome) => outcome,
            Err(_) => {
                // The task ended without an answer (its runtime shut down): forget it so
                // that the next call tries again.
                let mut slot = lock(&self.slot);
                if matches!(&*slot, Slot::Connecting(current) if current.same_channel(&attempt)) {
                    *slot = Slot::Idle;
                }
                None
            }
        };
        match outcome {
            Some(Ok(conn)) => Ok(conn),
            Some(Err(message)) => Err(Error::Backend(message)),
            None => Err(Error::Backend("redis: connection attempt abandoned".into())),
        }
    }

    /// Starts a connection attempt in a task; it stores its result in the slot.
    fn start(
        &self,
        runtime: &tokio::runtime::Handle,
    ) -> watch::Receiver<Option<Result<Conn, String>>> {
        let (done, attempt) = watch::channel(None);
        let source = self.source.clone();
        let limit = self.connect_timeout;
        let slot = Arc::clone(&self.slot);
        let counters = Arc::clone(&self.counters);
        let handle = runtime.clone();
        runtime.spawn(async move {
            let result = connect(&source, limit).await;
            let mut slot = lock(&slot);
            let outcome = match result {
                Ok(conn) => {
                    let batcher = match &conn {
                        Conn::Single(single) => {
                            Some(Batcher::start(single.clone(), &handle, counters))
                        }
                        Conn::Cluster(_) => None,
                    };
                    *slot = Slot::Ready(conn.clone(), batcher);
                    Ok(conn)
                }
                Err(error) => {
                    tracing::debug!(%error, "redis connection attempt failed");
                    *slot = Slot::Idle;
                    Err(error.to_string())
                }
            };
            drop(slot);
            let _ = done.send(Some(outcome));
        });
        attempt
    }

    /// Forgets the shared connection after an error that may mean it is broken.
    pub fn failed(&self, error: &RedisError) {
        if error.is_io_error()
            || error.is_connection_dropped()
            || error.is_unrecoverable_error()
            || error.is_timeout()
        {
            self.clear();
        }
    }

    /// Drops the shared connection (the pool keeps its own).
    pub fn clear(&self) {
        let mut slot = lock(&self.slot);
        if matches!(&*slot, Slot::Ready(..)) {
            *slot = Slot::Idle;
        }
    }
}

impl Shared {
    /// Runs `work` in the next pipeline of the shared connection's batching task, or on
    /// its own where there is none (a cluster, a connection made outside a runtime).
    ///
    /// The outer error is getting a connection, or [`Error::Timeout`] once `deadline`
    /// passed; the inner one is Redis's answer, a server error included. Waiting for the
    /// answer is watched (see [`Watch`]).
    ///
    /// `work` is queued when this is called, not when the future is first polled: the
    /// future holds only the channel the reply comes on (or the boxed future of the
    /// unqueued path), not the work, which every decision's future would otherwise
    /// carry.
    pub fn batched<'a>(
        &'a self,
        work: Work,
        deadline: Option<&'a Deadline>,
    ) -> impl Future<Output = Result<RedisResult<Value>>> + Send + 'a {
        let queued = match self.submit(work, deadline) {
            Submitted::Queued(answer) => Ok(answer),
            // Boxed: connecting and a query of its own are futures of several kilobytes,
            // which every queued command's future would otherwise carry, and copy into
            // its box, for nothing.
            unqueued => Err(Box::pin(within(
                deadline,
                self.unqueued(unqueued, deadline),
            ))),
        };
        async move {
            match queued {
                // The batching task answers by the deadline: no timer here.
                Ok(answer) => expired_as_timeout(self.answer(answer).await, deadline),
                Err(unqueued) => unqueued.await,
            }
        }
    }

    /// [`batched`](Self::batched) for a command the batching task did not take.
    async fn unqueued(
        &self,
        submitted: Submitted,
        deadline: Option<&Deadline>,
    ) -> Result<RedisResult<Value>> {
        let (mut conn, work) = match submitted {
            Submitted::Queued(answer) => {
                return expired_as_timeout(self.answer(answer).await, deadline);
            }
            Submitted::Direct(conn, work) => (conn, work),
            Submitted::NoConnection(work) => {
                let conn = self.get().await?;
                // Connected now: queue it if that connection has a batching task.
                match self.submit(work, deadline) {
                    Submitted::Queued(answer) => {
                        return expired_as_timeout(self.answer(answer).await, deadline);
                    }
                    Submitted::Direct(_, work) | Submitted::NoConnection(work) => (conn, work),
                }
            }
        };
        let cmd = work.into_cmd();
        Ok(self.watched(query(&mut conn, &cmd)).await)
    }

    /// Queues `work` with the batching task of the ready connection, or says why not.
    fn submit(&self, work: Work, deadline: Option<&Deadline>) -> Submitted {
        let mut slot = lock(&self.slot);
        match &*slot {
            Slot::Ready(_, Some(batcher)) => match batcher.submit(work, deadline.map(|d| d.at)) {
                Ok(answer) => Submitted::Queued(answer),
                Err(work) => {
                    // The task has ended (its runtime shut down): so has the connection's
                    // driver.
                    *slot = Slot::Idle;
                    Submitted::NoConnection(work)
                }
            },
            Slot::Ready(conn, None) => Submitted::Direct(conn.clone(), work),
            Slot::Idle | Slot::Connecting(_) => Submitted::NoConnection(work),
        }
    }

    /// Waits for the batching task's answer to a queued command, watched (see [`Watch`]):
    /// a command whose deadline passed first (`None`) counts as abandoned, as one a
    /// throttle's timer gave up on would.
    async fn answer(&self, answer: oneshot::Receiver<Reply>) -> Result<Reply> {
        let watch = Watch {
            shared: self,
            answered: false,
        };
        let answered = answer.await;
        match answered {
            Ok(Some(reply)) => {
                watch.answered();
                Ok(Some(reply))
            }
            Ok(None) => Ok(None),
            Err(_) => {
                watch.answered();
                self.clear();
                Err(Error::Backend(
                    "redis: the pipeline ended before Redis answered".into(),
                ))
            }
        }
    }

    /// Commands sent by batching tasks, and the pipelines they went in.
    pub fn pipelined(&self) -> Pipelined {
        self.counters.snapshot()
    }
}

/// When the commands of a decision are given up on: the instant, and the limit it was set
/// from (what [`Error::Timeout`] reports).
#[derive(Debug, Clone, Copy)]
pub(super) struct Deadline {
    pub at: Instant,
    /// The limit in nanoseconds: every decision's future carries a deadline, and 8 bytes
    /// less than a `Duration` keep that future within glibc's thread cache.
    limit_nanos: u64,
}

impl Deadline {
    /// `limit` from now; `None` for a limit too long to end at an instant.
    pub fn after(limit: Duration) -> Option<Self> {
        let limit_nanos = u64::try_from(limit.as_nanos()).ok()?;
        let at = Instant::now().checked_add(limit)?;
        Some(Self { at, limit_nanos })
    }

    /// The limit it was set from.
    pub fn limit(&self) -> Duration {
        Duration::from_nanos(self.limit_nanos)
    }
}

/// A queued command's answer, with its expiry told as [`Error::Timeout`] (only a command
/// with a deadline expires).
fn expired_as_timeout(
    answer: Result<Reply>,
    deadline: Option<&Deadline>,
) -> Result<RedisResult<Value>> {
    answer?.ok_or_else(|| Error::Timeout(deadline.map(Deadline::limit).unwrap_or_default()))
}

/// `future`, given up at `deadline` (if any) with [`Error::Timeout`].
pub(super) async fn within<T>(
    deadline: Option<&Deadline>,
    future: impl Future<Output = Result<T>>,
) -> Result<T> {
    match deadline {
        Some(deadline) => tokio::time::timeout_at(deadline.at, future)
            .await
            .unwrap_or(Err(Error::Timeout(deadline.limit()))),
        None => future.await,
    }
}

fn lock(slot: &Mutex<Slot>) -> std::sync::MutexGuard<'_, Slot> {
    slot.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One connection from `source`, within `limit`.
async fn connect(source: &Source, limit: Duration) -> Result<Conn> {
    match tokio::time::timeout(limit, source.connect()).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(error)) => Err(Error::Backend(format!("redis: cannot connect: {error}"))),
        Err(_) => Err(Error::Backend(format!(
            "redis: no connection within {limit:?}"
        ))),
    }
}

/// Runs `cmd` on `conn`.
pub(super) async fn query<T: redis::FromRedisValue>(conn: &mut Conn, cmd: &Cmd) -> RedisResult<T> {
    cmd.query_async(conn).await
}
