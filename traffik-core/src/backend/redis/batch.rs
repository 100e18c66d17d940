//! Coalescing of decision scripts into pipelines on the shared standalone connection.
//!
//! redis-rs's multiplexed connection writes each command as soon as its driver task
//! runs, and tokio runs a task woken by another task next (its LIFO slot): under load,
//! every decision went out in a write of its own, and Redis read each with a read of its
//! own. Here decisions queue for a batching task instead. Woken by the first one, the
//! task yields once, so that every request task ready on its worker queues its decision
//! too, then sends everything queued as one pipeline (one write, one read on the
//! server). A pipeline carries each reply apart, server errors included: one key's
//! `WRONGTYPE` or `NOSCRIPT` is that decision's error alone.
//!
//! Alone, a decision waits for one pass of the worker's queue, no timer. The task ends
//! when its connection is dropped (after an error, see
//! [`Shared::failed`](super::conn::Shared::failed)), once the pipelines it sent have
//! answered.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use deadpool_redis::redis::aio::{ConnectionLike, MultiplexedConnection};
use deadpool_redis::redis::{Cmd, Pipeline, RedisError, RedisResult, Value};
use tokio::sync::{mpsc, oneshot};

/// The most commands in one pipeline; more wait for the next.
const MAX_BATCH: usize = 256;

/// One queued command and where its reply goes.
struct Job {
    cmd: Cmd,
    reply: oneshot::Sender<RedisResult<Value>>,
}

/// How many commands went out through batching tasks, in how many pipelines.
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub commands: AtomicU64,
    pub pipelines: AtomicU64,
}

impl Counters {
    pub fn snapshot(&self) -> Pipelined {
        Pipelined {
            commands: self.commands.load(Ordering::Relaxed),
            pipelines: self.pipelines.load(Ordering::Relaxed),
        }
    }
}

/// Function and script calls a [`RedisBackend`](super::RedisBackend) coalesced, since it
/// was built.
///
/// On a standalone server, the calls of the server-side code (decisions, and the
/// primitives that run there) made at the same moment go out together, as one pipeline:
/// `commands / pipelines` is the mean batch. Commands sent on their own (on a cluster,
/// plain commands, a library load, or a script sent with its source after `NOSCRIPT` or
/// a missing function) are not counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pipelined {
    /// Function and script calls sent in pipelines.
    pub commands: u64,
    /// Pipelines they were sent in.
    pub pipelines: u64,
}

/// The queue of one batching task; dropping every clone ends the task.
#[derive(Clone)]
pub(super) struct Batcher {
    jobs: mpsc::UnboundedSender<Job>,
}

impl Batcher {
    /// Starts a batching task for `conn` on `runtime`.
    pub fn start(
        conn: MultiplexedConnection,
        runtime: &tokio::runtime::Handle,
        counters: Arc<Counters>,
    ) -> Self {
        let (jobs, queue) = mpsc::unbounded_channel();
        runtime.spawn(run(conn, queue, counters));
        Self { jobs }
    }

    /// Queues `cmd` for the next pipeline; gives it back when the task has ended (its
    /// runtime shut down).
    pub fn submit(&self, cmd: Cmd) -> Result<oneshot::Receiver<RedisResult<Value>>, Cmd> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job { cmd, reply })
            .map(|()| answer)
            .map_err(|refused| refused.0.cmd)
    }
}

/// The batching task: waits for a command, lets the worker's other ready tasks queue
/// theirs, and sends all of them as one pipeline, in a task of its own so that the next
/// batch need not wait for this one's replies.
async fn run(
    conn: MultiplexedConnection,
    mut queue: mpsc::UnboundedReceiver<Job>,
    counters: Arc<Counters>,
) {
    while let Some(first) = queue.recv().await {
        tokio::task::yield_now().await;
        let mut batch = Vec::with_capacity(queue.len().min(MAX_BATCH - 1) + 1);
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        tokio::spawn(send(conn.clone(), batch, Arc::clone(&counters)));
    }
}

/// Sends `batch` as one pipeline and hands each command its own reply.
async fn send(mut conn: MultiplexedConnection, batch: Vec<Job>, counters: Arc<Counters>) {
    let mut pipeline = Pipeline::with_capacity(batch.len());
    let mut replies = Vec::with_capacity(batch.len());
    for job in batch {
        // Callers that gave up (a throttle's timeout) are not sent at all.
        if job.reply.is_closed() {
            continue;
        }
        pipeline.add_command(job.cmd);
        replies.push(job.reply);
    }
    if replies.is_empty() {
        return;
    }
    counters.pipelines.fetch_add(1, Ordering::Relaxed);
    counters
        .commands
        .fetch_add(replies.len() as u64, Ordering::Relaxed);
    match conn.req_packed_commands(&pipeline, 0, replies.len()).await {
        Ok(values) if values.len() == replies.len() => {
            for (reply, value) in replies.into_iter().zip(values) {
                let _ = reply.send(value.extract_error());
            }
        }
        Ok(values) => {
            let error = RedisError::from(std::io::Error::other(format!(
                "redis answered a pipeline of {} commands with {} replies",
                replies.len(),
                values.len()
            )));
            answer_all(replies, &error);
        }
        Err(error) => answer_all(replies, &error),
    }
}

fn answer_all(replies: Vec<oneshot::Sender<RedisResult<Value>>>, error: &RedisError) {
    for reply in replies {
        let _ = reply.send(Err(error.clone()));
    }
}
