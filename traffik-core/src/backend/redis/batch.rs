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
//! Consecutive decisions in a batch go out as one call of the library's batch function
//! (`scripts/batch.lua`), which runs each as if it were alone and answers each in its
//! place: Redis pays a function call's fixed cost, reads its clock, and parses the
//! arguments the calls share, once for them all (a quarter less of its time per
//! decision, alone on Redis, for the fixed window). A decision is queued in parts (a
//! [`Call`]: the function, the key, the numbers), which the batch call is written from
//! directly: building each decision as a redis-rs `Cmd` that this task then read back
//! apart cost about 900 instructions per request (of some 33 000 for a request decided
//! on Redis, counted by `scripts/bench-instructions.sh`).
//!
//! As a rule one pipeline at a time is sent and not yet answered: while one is on its way,
//! the next gathers the commands queued meanwhile and goes when it is answered. On one
//! connection Redis answers in order, so the next pipeline's replies could not have come
//! sooner; sent at once, the batches stayed small (2.6 decisions per pipeline with 32
//! connections loading the bench server), each paying its write, its read, its task and
//! its batch call. Waiting for the one before, the server's CPU per request decided on
//! Redis fell by a tenth and its rate rose by a twentieth (`scripts/bench.sh`'s `redis`
//! setup, docs/BENCHMARKS.md, fix 57). But a batch that has gathered [`EARLY_BATCH`]
//! commands goes without waiting any longer: by then a second pipeline's fixed cost is
//! shared by enough decisions, and each of them would otherwise wait out a whole round
//! trip. Where the round trip rather than a CPU bounds the rate, that gave a tenth more
//! requests per second with many clients, for 3% more of the server's CPU per request
//! (fix 58): the waiting task took each command off the queue as it came, woken by
//! each. The commands now stay queued while it waits, counted by the side that queues
//! them, and the one that makes the batch early wakes it (fix 59: 3% less of the
//! server's CPU per request decided on Redis).
//!
//! A decision carries its deadline: the pipeline it goes in is given up at the earliest
//! deadline of its commands, which are then answered that they expired. One timer per
//! pipeline bounds the wait of every decision in it, where a timer per decision cost the
//! application about 1 200 instructions per request (of some 33 000 for a request decided
//! on Redis, counted by `scripts/bench-instructions.sh`). A batch waiting for the pipeline
//! before it goes anyway at its first command's deadline (the earliest of its own: a
//! throttle's commands share their timeout), so that a pipeline Redis is slow to answer,
//! or one with no deadline, never holds the next past its deadline.
//!
//! Alone, a decision waits for one pass of the worker's queue, no timer. The task ends
//! when its connection is dropped (after an error, see
//! [`Shared::failed`](super::conn::Shared::failed)), once the pipelines it sent have
//! answered.

use std::future::{Future, poll_fn};
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::Poll;

use arrayvec::ArrayVec;
use deadpool_redis::redis::aio::{ConnectionLike, MultiplexedConnection};
use deadpool_redis::redis::{Cmd, Pipeline, RedisError, RedisResult, Value};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::time::Instant;

use super::scripts::{EXTRA, Library, LuaScript, SCRIPTS};
use crate::clock::Micros;
use crate::key::KeyText;

/// The most commands in one pipeline; more wait for the next.
const MAX_BATCH: usize = 256;

/// The most pipelines a batching task has sent and not had answered: the next waits for
/// it, gathering the commands queued meanwhile, up to [`EARLY_BATCH`] (see the module's
/// documentation).
const MAX_IN_FLIGHT: usize = 1;

/// Commands a batch gathers before it goes without waiting for the pipeline before it.
const EARLY_BATCH: usize = 16;

/// The most calls one batch function call runs: it holds Redis for their whole time
/// (a few microseconds each), which other clients wait out.
const MAX_COMBINED: usize = 64;

/// What a queued command gets: Redis's reply, or `None` when its deadline passed first.
pub(super) type Reply = Option<RedisResult<Value>>;

/// The most numbers a [`Call`] carries after the clock: a decision's limit, period and
/// cost, and the arguments its strategy's script takes beyond them.
const CALL_ARGS: usize = 3 + EXTRA;

/// A call of one of the library's functions on one key, in parts: what a decision
/// queues. Its arguments after the key are the caller's clock (or two empty strings, for
/// the server's), then its numbers. The batching task writes consecutive calls into one
/// batch call straight from these parts; a call sent alone, or anywhere else, becomes
/// its command ([`cmd`](Self::cmd)) there.
#[derive(Clone, Debug)]
pub(super) struct Call {
    /// The script, whose function (`FCALL`) or code (`EVALSHA`, `EVAL`) is called.
    pub script: &'static LuaScript,
    /// The key, namespace included.
    pub key: KeyText,
    /// What the backend's clock read, and its offset from the server's.
    pub clock: Option<(Micros, i64)>,
    /// The numbers after the clock.
    pub numbers: ArrayVec<u64, CALL_ARGS>,
}

impl Call {
    /// `verb body 1 key` and the call's arguments: `FCALL` and the function's name, or
    /// the same code as a script (`EVALSHA` and its SHA, `EVAL` and its source).
    pub fn cmd(&self, verb: &str, body: &str) -> Cmd {
        // Two allocations, not one per argument: the numbers have at most 20 digits.
        let size = verb.len() + body.len() + 1 + self.key.len() + 20 * (2 + self.numbers.len());
        let mut cmd = Cmd::with_capacity(4 + self.argc(), size);
        cmd.arg(verb).arg(body).arg(1).arg(self.key.as_str());
        self.write_argv(&mut cmd);
        cmd
    }

    /// How many arguments follow the key.
    fn argc(&self) -> usize {
        2 + self.numbers.len()
    }

    /// The arguments that follow the key.
    fn write_argv(&self, cmd: &mut Cmd) {
        write_clock(cmd, self.clock);
        for number in &self.numbers {
            cmd.arg(*number);
        }
    }

    /// Whether `other` calls the same function with the same arguments after its key
    /// (the decisions of one throttle, read on the server's clock).
    fn same_run(&self, other: &Self) -> bool {
        std::ptr::eq(self.script, other.script)
            && self.clock == other.clock
            && self.numbers == other.numbers
    }
}

/// A script call's clock arguments, the first after its key: a clock's reading and its
/// offset from the server's, or two empty strings for the server's own clock.
pub(super) fn write_clock(cmd: &mut Cmd, clock: Option<(Micros, i64)>) {
    match clock {
        Some((now, offset)) => cmd.arg(now).arg(offset),
        None => cmd.arg("").arg(""),
    };
}

/// What a batching task sends: a decision in parts, or any other command.
#[derive(Debug)]
pub(super) enum Work {
    Call(Call),
    Cmd(Cmd),
}

impl Work {
    /// The command that sends this work alone.
    pub fn into_cmd(self) -> Cmd {
        match self {
            Work::Call(call) => call.cmd("FCALL", &call.script.function),
            Work::Cmd(cmd) => cmd,
        }
    }

    /// The command that sends this work alone, leaving an empty command in its place
    /// (a call is only read).
    fn take_cmd(&mut self) -> Cmd {
        match self {
            Work::Call(call) => call.cmd("FCALL", &call.script.function),
            Work::Cmd(cmd) => std::mem::take(cmd),
        }
    }

    fn as_call(&self) -> Option<&Call> {
        match self {
            Work::Call(call) => Some(call),
            Work::Cmd(_) => None,
        }
    }
}

/// One queued command, where its reply goes, and until when it is worth sending.
struct Job {
    work: Work,
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
    queued: Arc<Queued>,
}

/// How many commands wait in a batching task's queue, counted by the side that queues
/// them, and the signal that they are enough for an early batch.
///
/// A batching task waiting for the pipeline before its batch used to take each command
/// off the queue as it came, to count them: every command queued meanwhile woke it, to
/// find fewer than [`EARLY_BATCH`] nearly every time. Now it leaves them queued and is
/// woken once, by the command that makes the batch early.
#[derive(Default)]
struct Queued {
    /// Commands queued and not yet taken off the queue. Counted before each command is
    /// queued, so that taking it off never finds the count short.
    count: AtomicUsize,
    /// Signalled when `count` reaches [`EARLY_QUEUED`].
    early: Notify,
}

/// Commands waiting in the queue that make a batch early: with the one the batch began
/// with, [`EARLY_BATCH`].
const EARLY_QUEUED: usize = EARLY_BATCH - 1;

impl Queued {
    /// Counts a command about to be queued; returns whether it makes a batch early.
    fn add(&self) -> bool {
        self.count.fetch_add(1, Ordering::Relaxed) + 1 == EARLY_QUEUED
    }

    /// Takes back the count of a command that was not queued after all.
    fn remove(&self) {
        self.take(1);
    }

    /// Counts `n` commands taken off the queue.
    fn take(&self, n: usize) {
        self.count.fetch_sub(n, Ordering::Relaxed);
    }

    /// Commands queued and not yet taken off the queue.
    fn waiting(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// Whether the commands queued make a batch early.
    fn early(&self) -> bool {
        self.waiting() >= EARLY_QUEUED
    }
}

impl Batcher {
    /// Starts a batching task for `conn` on `runtime`.
    pub fn start(
        conn: MultiplexedConnection,
        runtime: &tokio::runtime::Handle,
        counters: Arc<Counters>,
    ) -> Self {
        let (batcher, queue) = Self::queue();
        runtime.spawn(run(conn, queue, Arc::clone(&batcher.queued), counters));
        batcher
    }

    /// A batcher and the other end of its queue, for a batching task to take.
    fn queue() -> (Self, mpsc::UnboundedReceiver<Job>) {
        let (jobs, queue) = mpsc::unbounded_channel();
        let queued = Arc::new(Queued::default());
        (Self { jobs, queued }, queue)
    }

    /// Queues `work` for the next pipeline, answered by `deadline` at the latest; gives
    /// it back when the task has ended (its runtime shut down).
    // The work is handed back to go another way, as it came: boxing it would allocate
    // once more per decision for a refusal that happens once per runtime.
    #[allow(clippy::result_large_err)]
    pub fn submit(
        &self,
        work: Work,
        deadline: Option<Instant>,
    ) -> Result<oneshot::Receiver<Reply>, Work> {
        let (reply, answer) = oneshot::channel();
        let early = self.queued.add();
        let job = Job {
            work,
            deadline,
            reply,
        };
        if let Err(refused) = self.jobs.send(job) {
            self.queued.remove();
            return Err(refused.0.work);
        }
        if early {
            // Only a batching task waiting right now hears it: one that is not will see
            // the count when it next waits.
            self.queued.early.notify_waiters();
        }
        Ok(answer)
    }
}

/// The batching task: waits for a command and for the pipeline before it to be answered
/// (while the commands queued meanwhile stay queued, at most until the first command's
/// deadline or until [`EARLY_BATCH`] are waiting), lets the worker's other ready tasks
/// queue theirs, and sends all of them as one pipeline from a task of its own, which lets
/// the next batch go once that pipeline is answered.
async fn run(
    conn: MultiplexedConnection,
    mut queue: mpsc::UnboundedReceiver<Job>,
    queued: Arc<Queued>,
    counters: Arc<Counters>,
) {
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let spares = Arc::new(Spares::default());
    while let Some(first) = queue.recv().await {
        queued.take(1);
        let deadline = first.deadline;
        let permit = wait_for_turn(&in_flight, &queued, deadline).await;
        tokio::task::yield_now().await;
        let mut batch = gather(first, &mut queue, &queued, &spares);
        let (conn, counters, spares) = (conn.clone(), Arc::clone(&counters), Arc::clone(&spares));
        tokio::spawn(async move {
            send(conn, &mut batch, counters).await;
            spares.give(batch);
            drop(permit);
        });
    }
}

/// Vectors that carried a batch, emptied, kept for the next batches. A job is a few
/// hundred bytes: the vector of a batch of four or more is past the allocator's
/// per-thread cache (about a kilobyte), and such an allocation cost some 700
/// instructions (glibc: from the shared bins, after merging the small chunks freed
/// since), one per pipeline.
#[derive(Default)]
struct Spares(std::sync::Mutex<Vec<Vec<Job>>>);

/// The most vectors [`Spares`] keeps: a few pipelines are out at a time.
const SPARES: usize = 4;

/// The largest vector [`Spares`] keeps, in jobs: one that a burst grew past it goes.
const SPARE_CAPACITY: usize = 64;

impl Spares {
    /// An empty vector with room for `capacity` jobs: a spare if there is one.
    fn take(&self, capacity: usize) -> Vec<Job> {
        let spare = self.0.lock().ok().and_then(|mut spares| spares.pop());
        let mut batch = spare.unwrap_or_default();
        batch.reserve(capacity);
        batch
    }

    /// Keeps `batch`, emptied, unless enough are kept or it grew too large.
    fn give(&self, mut batch: Vec<Job>) {
        batch.clear();
        if batch.capacity() > SPARE_CAPACITY {
            return;
        }
        if let Ok(mut spares) = self.0.lock() {
            if spares.len() < SPARES {
                spares.push(batch);
            }
        }
    }
}

/// `first` and the commands queued after it, up to [`MAX_BATCH`] in all, in a spare
/// vector if there is one.
fn gather(
    first: Job,
    queue: &mut mpsc::UnboundedReceiver<Job>,
    queued: &Queued,
    spares: &Spares,
) -> Vec<Job> {
    let mut batch = spares.take((queued.waiting() + 1).min(MAX_BATCH));
    batch.push(first);
    while batch.len() < MAX_BATCH {
        match queue.try_recv() {
            Ok(job) => batch.push(job),
            Err(_) => break,
        }
    }
    queued.take(batch.len() - 1);
    batch
}

/// Waits for the pipeline before to be answered: its permit. Gives up the wait, `None`,
/// once [`EARLY_QUEUED`] commands are queued behind the batch's first (woken by the one
/// that makes them so, not by each) or `deadline` passes.
async fn wait_for_turn(
    in_flight: &Arc<Semaphore>,
    queued: &Queued,
    deadline: Option<Instant>,
) -> Option<OwnedSemaphorePermit> {
    let mut answered = pin!(Arc::clone(in_flight).acquire_owned());
    let mut early = pin!(queued.early.notified());
    let mut expired = pin!(deadline.map(tokio::time::sleep_until));
    poll_fn(|cx| {
        if let Poll::Ready(permit) = answered.as_mut().poll(cx) {
            // The semaphore is never closed.
            return Poll::Ready(permit.ok());
        }
        // Listening first, then counting: a command that makes the batch early after the
        // count wakes this task. Nothing takes commands off the queue meanwhile, so a
        // signal heard means the count got there (or, rarely, that a command counted
        // before the last batch was gathered signalled late: this batch then goes with
        // fewer, as it would at its deadline).
        if early.as_mut().poll(cx).is_ready() || queued.early() {
            return Poll::Ready(None);
        }
        match expired.as_mut().as_pin_mut().map(|sleep| sleep.poll(cx)) {
            Some(Poll::Ready(())) => Poll::Ready(None),
            _ => Poll::Pending,
        }
    })
    .await
}

/// Sends `batch` as one pipeline and hands each command its own reply, or, when the
/// earliest deadline of its commands passes first, tells each that it expired.
async fn send(mut conn: MultiplexedConnection, batch: &mut Vec<Job>, counters: Arc<Counters>) {
    // Callers that gave up (a throttle's timeout), or whose deadline already passed, are
    // not sent at all. The others stay in the batch's vector until their replies: a
    // second vector of them (or of their work) was one more allocation past the
    // allocator's per-thread cache per pipeline (see `Spares`).
    let now = Instant::now();
    let mut at = 0;
    while let Some(job) = batch.get(at) {
        if job.reply.is_closed() {
            batch.remove(at);
        } else if job.deadline.is_some_and(|deadline| deadline <= now) {
            let _ = batch.remove(at).reply.send(None);
        } else {
            at += 1;
        }
    }
    if batch.is_empty() {
        return;
    }
    let earliest = batch.iter().filter_map(|job| job.deadline).min();
    // How many of the commands, in order, each command of the pipeline carries: runs of
    // calls go as one batch call.
    let mut spans = Vec::with_capacity(batch.len());
    let mut start = 0;
    while start < batch.len() {
        let span = calls(&batch[start..]).take(MAX_COMBINED).count().max(1);
        spans.push(span);
        start += span;
    }
    let library = &SCRIPTS.library;
    let mut pipeline = Pipeline::with_capacity(spans.len());
    let mut start = 0;
    for &span in &spans {
        if span >= 2 {
            pipeline.add_command(combined(calls(&batch[start..start + span]), library));
        } else {
            pipeline.add_command(batch[start].work.take_cmd());
        }
        start += span;
    }
    counters.pipelines.fetch_add(1, Ordering::Relaxed);
    counters
        .commands
        .fetch_add(batch.len() as u64, Ordering::Relaxed);
    counters
        .calls
        .fetch_add(spans.len() as u64, Ordering::Relaxed);
    let sent = conn.req_packed_commands(&pipeline, 0, spans.len());
    let answered = match earliest {
        Some(at) => tokio::time::timeout_at(at, sent).await.ok(),
        None => Some(sent.await),
    };
    let replies = batch.drain(..).map(|job| job.reply);
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

/// The calls that `jobs` starts with, up to its first other command.
fn calls(jobs: &[Job]) -> impl Iterator<Item = &Call> + Clone {
    jobs.iter().map_while(|job| job.work.as_call())
}

/// One call of the library's batch function running `calls` (see `batch.lua`): their
/// keys, then for each run of calls of one function with the same arguments after the
/// key (the decisions of one throttle, read on the server's clock), the function, the
/// number of its arguments, the arguments and the number of calls. What Redis parses per
/// decision is then little more than its key.
fn combined<'c>(calls: impl Iterator<Item = &'c Call> + Clone, library: &Library) -> Cmd {
    let mut runs: Vec<(&Call, usize)> = Vec::new();
    let (mut count, mut keys) = (0, 0);
    for call in calls.clone() {
        count += 1;
        keys += call.key.len();
        match runs.last_mut() {
            Some((first, calls)) if first.same_run(call) => *calls += 1,
            _ => runs.push((call, 1)),
        }
    }
    let args = 3 + count + runs.iter().map(|(call, _)| 3 + call.argc()).sum::<usize>();
    let size = library.batch.len()
        + 8
        + keys
        + runs
            .iter()
            .map(|(call, _)| call.script.function.len() + 16 + 20 * call.argc())
            .sum::<usize>();
    let mut cmd = Cmd::with_capacity(args, size);
    cmd.arg("FCALL").arg(&library.batch).arg(count);
    for call in calls {
        cmd.arg(call.key.as_str());
    }
    for (call, calls) in runs {
        cmd.arg(&call.script.function).arg(call.argc());
        call.write_argv(&mut cmd);
        cmd.arg(calls);
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

fn answer_all(replies: impl IntoIterator<Item = oneshot::Sender<Reply>>, error: &RedisError) {
    for reply in replies {
        let _ = reply.send(Some(Err(error.clone())));
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::pin;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Context, Poll, Wake, Waker};

    use super::{
        Batcher, Call, EARLY_BATCH, EARLY_QUEUED, Job, LuaScript, SCRIPTS, SPARE_CAPACITY, SPARES,
        Spares, Work, combined, gather, unpack, wait_for_turn,
    };
    use crate::key::KeyText;
    use arrayvec::ArrayVec;
    use deadpool_redis::redis::{Arg, Cmd};
    use tokio::sync::Semaphore;

    /// A waker that counts its wakes.
    #[derive(Default)]
    struct Wakes(AtomicUsize);

    impl Wake for Wakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    impl Wakes {
        fn count(&self) -> usize {
            self.0.load(Ordering::Relaxed)
        }
    }

    fn queue_one(batcher: &Batcher) {
        let sent = batcher.submit(Work::Cmd(Cmd::new()), None);
        assert!(sent.is_ok(), "the queue is open");
    }

    /// A batch waiting for the pipeline before it leaves the commands queued meanwhile in
    /// the queue: the batching task is woken by the command that makes the batch early,
    /// not by each one, and the batch then holds them all.
    #[tokio::test]
    async fn a_waiting_batch_is_woken_once_by_the_command_that_makes_it_early() {
        let (batcher, mut queue) = Batcher::queue();
        let wakes = Arc::new(Wakes::default());
        let waker = Waker::from(Arc::clone(&wakes));
        let mut cx = Context::from_waker(&waker);

        // The task waits for its first command, which wakes it.
        assert!(queue.poll_recv(&mut cx).is_pending());
        queue_one(&batcher);
        assert_eq!(wakes.count(), 1);
        let Poll::Ready(Some(first)) = queue.poll_recv(&mut cx) else {
            panic!("the first command is queued");
        };
        batcher.queued.take(1);

        // The pipeline before is unanswered: no permit.
        let in_flight = Arc::new(Semaphore::new(0));
        let mut turn = pin!(wait_for_turn(&in_flight, &batcher.queued, None));
        assert!(turn.as_mut().poll(&mut cx).is_pending());
        for _ in 1..EARLY_QUEUED {
            queue_one(&batcher);
        }
        assert_eq!(
            wakes.count(),
            1,
            "woken by commands that do not make it early"
        );
        assert!(turn.as_mut().poll(&mut cx).is_pending());
        queue_one(&batcher);
        assert_eq!(wakes.count(), 2);
        let Poll::Ready(permit) = turn.as_mut().poll(&mut cx) else {
            panic!("the batch goes early");
        };
        assert!(permit.is_none(), "without waiting for the pipeline before");

        let batch = gather(first, &mut queue, &batcher.queued, &Spares::default());
        assert_eq!(batch.len(), EARLY_BATCH);
        assert_eq!(batcher.queued.count.load(Ordering::Relaxed), 0);
    }

    /// A batch's vector, given back, carries the next batch: the same allocation,
    /// emptied. One grown past [`SPARE_CAPACITY`], or one more than [`SPARES`] kept, is
    /// let go.
    #[test]
    fn batch_vectors_are_reused_within_bounds() {
        let spares = Spares::default();
        let (batcher, mut queue) = Batcher::queue();
        for _ in 0..2 {
            queue_one(&batcher);
        }
        let mut batch = spares.take(2);
        batch.extend(std::iter::from_fn(|| queue.try_recv().ok()));
        let allocation = batch.as_ptr();
        spares.give(batch);
        let reused = spares.take(1);
        assert_eq!(reused.as_ptr(), allocation, "the same allocation");
        assert!(reused.is_empty());
        assert!(reused.capacity() >= 2);

        spares.give(Vec::<Job>::with_capacity(SPARE_CAPACITY + 1));
        assert!(
            spares.take(1).capacity() <= SPARE_CAPACITY,
            "an outgrown vector is not kept"
        );

        for _ in 0..SPARES + 2 {
            spares.give(Vec::<Job>::with_capacity(4));
        }
        let kept = std::iter::from_fn(|| {
            let spare = spares.take(0);
            (spare.capacity() > 0).then_some(spare)
        })
        .take(SPARES + 2)
        .count();
        assert_eq!(kept, SPARES);
    }

    /// Commands queued before the batch starts waiting make it early at once; fewer let
    /// it wait for its turn, which it takes when the pipeline before is answered.
    #[tokio::test]
    async fn a_batch_goes_early_on_commands_already_queued_and_else_on_its_turn() {
        let (batcher, mut queue) = Batcher::queue();
        let in_flight = Arc::new(Semaphore::new(0));
        let waker = Waker::from(Arc::new(Wakes::default()));
        let mut cx = Context::from_waker(&waker);

        for _ in 0..EARLY_QUEUED {
            queue_one(&batcher);
        }
        let mut turn = pin!(wait_for_turn(&in_flight, &batcher.queued, None));
        assert!(matches!(turn.as_mut().poll(&mut cx), Poll::Ready(None)));

        let Ok(first) = queue.try_recv() else {
            panic!("commands are queued");
        };
        batcher.queued.take(1);
        let mut turn = pin!(wait_for_turn(&in_flight, &batcher.queued, None));
        assert!(
            turn.as_mut().poll(&mut cx).is_pending(),
            "one short of early"
        );
        in_flight.add_permits(1);
        assert!(matches!(turn.as_mut().poll(&mut cx), Poll::Ready(Some(_))));
        assert_eq!(
            gather(first, &mut queue, &batcher.queued, &Spares::default()).len(),
            EARLY_QUEUED
        );
        assert_eq!(batcher.queued.count.load(Ordering::Relaxed), 0);
    }

    fn call(
        script: &'static LuaScript,
        key: &str,
        clock: Option<(u64, i64)>,
        numbers: &[u64],
    ) -> Call {
        let mut text = KeyText::new();
        text.push_str(key);
        Call {
            script,
            key: text,
            clock,
            numbers: numbers.iter().copied().collect::<ArrayVec<_, _>>(),
        }
    }

    fn words(cmd: &Cmd) -> Vec<String> {
        cmd.args_iter()
            .map(|arg| match arg {
                Arg::Simple(bytes) => String::from_utf8_lossy(bytes).into_owned(),
                _ => "<not a plain argument>".to_owned(),
            })
            .collect()
    }

    fn texts(words: &[&str]) -> Vec<String> {
        words.iter().map(|word| (*word).to_owned()).collect()
    }

    #[test]
    fn a_call_alone_is_its_functions_fcall_and_as_a_script_the_same_arguments() {
        let (fw, gcra) = (&SCRIPTS.fixed_window, &SCRIPTS.gcra);
        let on_server = call(fw, "ns:{a}", None, &[5, 60_000_000, 1]);
        let argv = ["1", "ns:{a}", "", "", "5", "60000000", "1"];
        let mut fcall = texts(&["FCALL", &fw.function]);
        fcall.extend(texts(&argv));
        assert_eq!(words(&Work::Call(on_server.clone()).into_cmd()), fcall);
        let mut evalsha = texts(&["EVALSHA", &fw.sha]);
        evalsha.extend(texts(&argv));
        assert_eq!(words(&on_server.cmd("EVALSHA", &fw.sha)), evalsha);
        let own_clock = call(gcra, "ns:{b}", Some((1_700_000_000_000_000, -42)), &[3]);
        assert_eq!(
            words(&Work::Call(own_clock).into_cmd()),
            texts(&[
                "FCALL",
                &gcra.function,
                "1",
                "ns:{b}",
                "1700000000000000",
                "-42",
                "3"
            ])
        );
    }

    /// The layout `batch.lua` reads: the keys, then each run of calls with the same
    /// function and arguments after the key: the function, how many arguments, the
    /// arguments, how many calls.
    #[test]
    fn a_batch_call_holds_the_keys_then_each_run_of_calls_alike() {
        let library = &SCRIPTS.library;
        let (fw, gcra) = (&SCRIPTS.fixed_window, &SCRIPTS.gcra);
        let calls = [
            call(fw, "{a}", None, &[5, 60, 1]),
            call(fw, "{b}", None, &[5, 60, 1]),
            // Another cost: another run.
            call(fw, "{c}", None, &[5, 60, 2]),
            // Another function with the same numbers: another run.
            call(gcra, "{d}", None, &[5, 60, 2]),
            // The same again, read on a clock of the caller's: another run.
            call(gcra, "{e}", Some((7, 0)), &[5, 60, 2]),
        ];
        let mut expected = texts(&[
            "FCALL",
            &library.batch,
            "5",
            "{a}",
            "{b}",
            "{c}",
            "{d}",
            "{e}",
        ]);
        for run in [
            [&fw.function, "5", "", "", "5", "60", "1", "2"],
            [&fw.function, "5", "", "", "5", "60", "2", "1"],
            [&gcra.function, "5", "", "", "5", "60", "2", "1"],
            [&gcra.function, "5", "7", "0", "5", "60", "2", "1"],
        ] {
            expected.extend(texts(&run));
        }
        assert_eq!(words(&combined(calls.iter(), library)), expected);
    }

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
