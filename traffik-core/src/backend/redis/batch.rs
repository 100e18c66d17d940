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
//! Consecutive calls of Traffik's function library in a batch go out as one call of the
//! library's batch function (`scripts/batch.lua`), which runs each as if it were alone
//! and answers each in its place: Redis pays a function call's fixed cost, reads its
//! clock, and parses the arguments the calls share, once for them all (a quarter less of
//! its time per decision, alone on Redis, for the fixed window).
//!
//! A decision carries its deadline: the pipeline it goes in is given up at the earliest
//! deadline of its commands, which are then answered that they expired. One timer per
//! pipeline bounds the wait of every decision in it, where a timer per decision cost the
//! application about 1 200 instructions per request (of some 33 000 for a request decided
//! on Redis, counted by `scripts/bench-instructions.sh`).
//!
//! Alone, a decision waits for one pass of the worker's queue, no timer. The task ends
//! when its connection is dropped (after an error, see
//! [`Shared::failed`](super::conn::Shared::failed)), once the pipelines it sent have
//! answered.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use deadpool_redis::redis::aio::{ConnectionLike, MultiplexedConnection};
use deadpool_redis::redis::{Arg, Cmd, Pipeline, RedisError, RedisResult, Value};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::scripts::{Library, SCRIPTS};

/// The most commands in one pipeline; more wait for the next.
const MAX_BATCH: usize = 256;

/// The most calls one batch function call runs: it holds Redis for their whole time
/// (a few microseconds each), which other clients wait out.
const MAX_COMBINED: usize = 64;

/// What a queued command gets: Redis's reply, or `None` when its deadline passed first.
pub(super) type Reply = Option<RedisResult<Value>>;

/// One queued command, where its reply goes, and until when it is worth sending.
struct Job {
    cmd: Cmd,
    deadline: Option<Instant>,
    reply: oneshot::Sender<Reply>,
}

/// How many commands went out through batching tasks, in how many pipelines.
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub commands: AtomicU64,
    pub pipelines: AtomicU64,
    pub calls: AtomicU64,
}

impl Counters {
    pub fn snapshot(&self) -> Pipelined {
        Pipelined {
            commands: self.commands.load(Ordering::Relaxed),
            pipelines: self.pipelines.load(Ordering::Relaxed),
            calls: self.calls.load(Ordering::Relaxed),
        }
    }
}

/// Function and script calls a [`RedisBackend`](super::RedisBackend) coalesced, since it
/// was built.
///
/// On a standalone server, the calls of the server-side code (decisions, and the
/// primitives that run there) made at the same moment go out together, as one pipeline:
/// `commands / pipelines` is the mean batch. Consecutive function calls of one pipeline
/// go to Redis as one call of the library's batch function: `calls` is how many commands
/// Redis received for the `commands`. Commands sent on their own (on a cluster, plain
/// commands, a library load, or a script sent with its source after `NOSCRIPT` or a
/// missing function) are not counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pipelined {
    /// Function and script calls sent in pipelines.
    pub commands: u64,
    /// Pipelines they were sent in.
    pub pipelines: u64,
    /// Commands Redis received for them: function calls sent together count once.
    pub calls: u64,
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

    /// Queues `cmd` for the next pipeline, answered by `deadline` at the latest; gives it
    /// back when the task has ended (its runtime shut down).
    pub fn submit(
        &self,
        cmd: Cmd,
        deadline: Option<Instant>,
    ) -> Result<oneshot::Receiver<Reply>, Cmd> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job {
                cmd,
                deadline,
                reply,
            })
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

/// Sends `batch` as one pipeline and hands each command its own reply, or, when the
/// earliest deadline of its commands passes first, tells each that it expired.
async fn send(mut conn: MultiplexedConnection, queued: Vec<Job>, counters: Arc<Counters>) {
    // Callers that gave up (a throttle's timeout), or whose deadline already passed, are
    // not sent at all.
    let now = Instant::now();
    let mut earliest: Option<Instant> = None;
    let mut batch = Vec::with_capacity(queued.len());
    for job in queued {
        if job.reply.is_closed() {
            continue;
        }
        if let Some(at) = job.deadline {
            if at <= now {
                let _ = job.reply.send(None);
                continue;
            }
            earliest = Some(earliest.map_or(at, |earliest| earliest.min(at)));
        }
        batch.push(job);
    }
    if batch.is_empty() {
        return;
    }
    let library = &SCRIPTS.library;
    let (mut cmds, replies): (Vec<Option<Cmd>>, Vec<_>) = batch
        .into_iter()
        .map(|job| (Some(job.cmd), job.reply))
        .unzip();
    let mut pipeline = Pipeline::with_capacity(cmds.len());
    // How many of the commands, in order, each command of the pipeline carries.
    let mut spans = Vec::with_capacity(cmds.len());
    let mut start = 0;
    while start < cmds.len() {
        let calls: Vec<LibraryCall<'_>> = cmds[start..]
            .iter()
            .take(MAX_COMBINED)
            .map_while(|cmd| cmd.as_ref().and_then(|cmd| LibraryCall::of(cmd, library)))
            .collect();
        let run = calls.len();
        if run >= 2 {
            pipeline.add_command(combined(&calls, library));
        } else if let Some(cmd) = cmds[start].take() {
            pipeline.add_command(cmd);
        }
        let span = run.max(1);
        spans.push(span);
        start += span;
    }
    counters.pipelines.fetch_add(1, Ordering::Relaxed);
    counters
        .commands
        .fetch_add(replies.len() as u64, Ordering::Relaxed);
    counters
        .calls
        .fetch_add(spans.len() as u64, Ordering::Relaxed);
    let sent = conn.req_packed_commands(&pipeline, 0, spans.len());
    let answered = match earliest {
        Some(at) => tokio::time::timeout_at(at, sent).await.ok(),
        None => Some(sent.await),
    };
    let Some(answered) = answered else {
        for reply in replies {
            let _ = reply.send(None);
        }
        return;
    };
    match answered {
        Ok(values) if values.len() == spans.len() => {
            let mut replies = replies.into_iter();
            for (span, value) in spans.into_iter().zip(values) {
                let answers: Vec<_> = replies.by_ref().take(span).collect();
                match <[_; 1]>::try_from(answers) {
                    Ok([reply]) => {
                        let _ = reply.send(Some(value.extract_error()));
                    }
                    Err(answers) => answer_each(answers, value),
                }
            }
        }
        Ok(values) => {
            let error = RedisError::from(std::io::Error::other(format!(
                "redis answered a pipeline of {} commands with {} replies",
                spans.len(),
                values.len()
            )));
            answer_all(replies, &error);
        }
        Err(error) => answer_all(replies, &error),
    }
}

/// A command that is `FCALL` of one of the library's functions (not the batch function
/// itself) on one key: what the batch function can run.
struct LibraryCall<'c> {
    function: &'c [u8],
    key: &'c [u8],
    cmd: &'c Cmd,
}

impl<'c> LibraryCall<'c> {
    fn of(cmd: &'c Cmd, library: &Library) -> Option<Self> {
        let mut args = cmd.args_iter().map(simple);
        let (verb, function, keys, key) =
            (args.next()??, args.next()??, args.next()??, args.next()??);
        // Every argument plain bytes (no cursor): `argv` passes them on as they are.
        let ours = verb.eq_ignore_ascii_case(b"FCALL")
            && function.starts_with(library.prefix.as_bytes())
            && function != library.batch.as_bytes()
            && keys == b"1"
            && args.all(|arg| arg.is_some());
        ours.then_some(Self { function, key, cmd })
    }

    /// The function's ARGV: what follows the verb, the function, the key count and the key.
    fn argv(&self) -> impl Iterator<Item = &'c [u8]> + use<'c> {
        self.cmd.args_iter().skip(4).filter_map(simple)
    }

    /// Whether `other` calls the same function with the same ARGV (on its own key).
    fn same_as(&self, other: &Self) -> bool {
        self.function == other.function && self.argv().eq(other.argv())
    }
}

fn simple(arg: Arg<&[u8]>) -> Option<&[u8]> {
    match arg {
        Arg::Simple(bytes) => Some(bytes),
        _ => None,
    }
}

/// One call of the library's batch function running `calls` (see `batch.lua`): their
/// keys, then for each run of calls of one function with the same ARGV (the decisions of
/// one throttle, read on the server's clock), the function, the number of its arguments,
/// the arguments and the number of calls. What Redis parses per decision is then little
/// more than its key.
fn combined(calls: &[LibraryCall<'_>], library: &Library) -> Cmd {
    let mut runs: Vec<(&LibraryCall<'_>, usize)> = Vec::new();
    for call in calls {
        match runs.last_mut() {
            Some((first, count)) if first.same_as(call) => *count += 1,
            _ => runs.push((call, 1)),
        }
    }
    let args = 3
        + calls.len()
        + runs
            .iter()
            .map(|(call, _)| 3 + call.argv().count())
            .sum::<usize>();
    let size = library.batch.len()
        + calls.iter().map(|call| call.key.len()).sum::<usize>()
        + runs
            .iter()
            .map(|(call, _)| call.function.len() + 8 + call.argv().map(<[u8]>::len).sum::<usize>())
            .sum::<usize>();
    let mut cmd = Cmd::with_capacity(args, size);
    cmd.arg("FCALL").arg(&library.batch).arg(calls.len());
    for call in calls {
        cmd.arg(call.key);
    }
    for (call, count) in runs {
        cmd.arg(call.function).arg(call.argv().count());
        for arg in call.argv() {
            cmd.arg(arg);
        }
        cmd.arg(count);
    }
    cmd
}

/// Hands each call of a batch function call its own reply: its string in the packed
/// reply, or the array's element in its place, or the call's error (the batch function
/// missing, say) to every one of them.
fn answer_each(replies: Vec<oneshot::Sender<Reply>>, value: Value) {
    match value {
        Value::BulkString(packed) => match unpack(&packed, replies.len()) {
            Some(strings) => {
                for (reply, string) in replies.into_iter().zip(strings) {
                    let _ = reply.send(Some(Ok(Value::BulkString(string.to_vec()))));
                }
            }
            None => {
                let error = RedisError::from(std::io::Error::other(format!(
                    "redis answered a batch of {} function calls with a malformed packed reply \
                     of {} bytes",
                    replies.len(),
                    packed.len()
                )));
                answer_all(replies, &error);
            }
        },
        Value::Array(values) if values.len() == replies.len() => {
            for (reply, value) in replies.into_iter().zip(values) {
                let _ = reply.send(Some(value.extract_error()));
            }
        }
        Value::ServerError(error) => answer_all(replies, &error.into()),
        other => {
            let error = RedisError::from(std::io::Error::other(format!(
                "redis answered a batch of {} function calls with {other:?}",
                replies.len()
            )));
            answer_all(replies, &error);
        }
    }
}

/// The `count` strings of a batch function's packed reply (see `batch.lua`): each behind
/// its length, 4 bytes little-endian; `None` unless `packed` holds exactly that.
fn unpack(packed: &[u8], count: usize) -> Option<Vec<&[u8]>> {
    let mut strings = Vec::with_capacity(count);
    let mut rest = packed;
    while let Some((length, tail)) = rest.split_first_chunk::<4>() {
        let length = usize::try_from(u32::from_le_bytes(*length)).ok()?;
        if length > tail.len() || strings.len() == count {
            return None;
        }
        let (string, tail) = tail.split_at(length);
        strings.push(string);
        rest = tail;
    }
    (rest.is_empty() && strings.len() == count).then_some(strings)
}

fn answer_all(replies: Vec<oneshot::Sender<Reply>>, error: &RedisError) {
    for reply in replies {
        let _ = reply.send(Some(Err(error.clone())));
    }
}

#[cfg(test)]
mod tests {
    use super::unpack;

    fn packed(strings: &[&[u8]]) -> Vec<u8> {
        let mut packed = Vec::new();
        for string in strings {
            let length = u32::try_from(string.len()).expect("a short test string");
            packed.extend_from_slice(&length.to_le_bytes());
            packed.extend_from_slice(string);
        }
        packed
    }

    #[test]
    fn unpack_splits_each_string_in_order() {
        let strings: [&[u8]; 3] = [b"first", b"", &[0xF1; 33]];
        assert_eq!(unpack(&packed(&strings), 3), Some(strings.to_vec()));
    }

    #[test]
    fn unpack_refuses_a_count_that_does_not_match() {
        let reply = packed(&[b"one", b"two"]);
        assert_eq!(unpack(&reply, 1), None);
        assert_eq!(unpack(&reply, 3), None);
        assert_eq!(unpack(&[], 1), None);
    }

    #[test]
    fn unpack_refuses_a_truncated_or_padded_reply() {
        let reply = packed(&[b"one", b"two"]);
        assert_eq!(unpack(&reply[..reply.len() - 1], 2), None);
        assert_eq!(unpack(&reply[..2], 1), None);
        let mut padded = reply.clone();
        padded.push(0);
        assert_eq!(unpack(&padded, 2), None);
        // A length far past the end.
        assert_eq!(unpack(&[0xFF, 0xFF, 0xFF, 0xFF, b'x'], 1), None);
    }
}
