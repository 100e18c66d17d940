//! Pooled memcached connections and the meta-protocol commands the backend sends.
//!
//! Connections come from a deadpool managed pool: a connection that failed mid-command
//! (async-memcached closes it rather than read a stale reply later) is refused at
//! recycling and replaced by a fresh one.

use std::time::Duration;

use async_memcached::{Client, ErrorKind, MetaProtocol, MetaValue, Status};
use deadpool::managed::{self, Metrics, RecycleError, RecycleResult};

use crate::error::{Error, Result};

/// Creates and recycles connections to one server.
pub(crate) struct Manager {
    /// `host:port` (or `unix:///path`), as async-memcached reads it.
    pub(crate) dsn: String,
}

impl managed::Manager for Manager {
    type Type = Client;
    type Error = async_memcached::Error;

    async fn create(&self) -> Result<Client, async_memcached::Error> {
        Client::new(&self.dsn).await
    }

    async fn recycle(
        &self,
        client: &mut Client,
        _: &Metrics,
    ) -> RecycleResult<async_memcached::Error> {
        if client.is_closed() {
            return Err(RecycleError::message(
                "connection closed by a failed command",
            ));
        }
        Ok(())
    }
}

/// The connection pool.
pub(crate) type Pool = managed::Pool<Manager>;
/// A connection checked out of the pool.
pub(crate) type Conn = managed::Object<Manager>;

/// Builds a pool of up to `size` connections to `dsn`, whose checkouts (waiting for a
/// free connection, or connecting) give up after `timeout`.
pub(crate) fn pool(dsn: String, size: usize, timeout: Duration) -> Result<Pool> {
    Pool::builder(Manager { dsn })
        .max_size(size)
        .runtime(deadpool::Runtime::Tokio1)
        .wait_timeout(Some(timeout))
        .create_timeout(Some(timeout))
        .recycle_timeout(Some(timeout))
        .build()
        .map_err(|e| Error::Configuration(format!("memcached pool: {e}")))
}

/// A connection from `pool`, as a backend error when none can be had.
pub(crate) async fn checkout(pool: &Pool) -> Result<Conn> {
    pool.get()
        .await
        .map_err(|e| Error::Backend(format!("memcached: no connection: {e}")))
}

/// A memcached failure as a backend error.
pub(crate) fn failure(error: async_memcached::Error) -> Error {
    Error::Backend(format!("memcached: {error}"))
}

/// How a conditional write or delete came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Stored (or deleted); with the item's new CAS token when one was asked for.
    Done(Option<u64>),
    /// `add` found the key taken.
    NotStored,
    /// The CAS token no longer matches: another writer got in first.
    Exists,
    /// The key is gone (a CAS write or delete of a key that no longer exists).
    NotFound,
}

/// Reads a reply of a write or delete, with or without returned flags, into an outcome.
fn outcome(reply: Result<Option<MetaValue>, async_memcached::Error>) -> Result<Outcome> {
    let status = match reply {
        Ok(None) => return Ok(Outcome::Done(None)),
        Ok(Some(value)) => match value.status {
            None | Some(Status::Stored | Status::Deleted) => {
                return Ok(Outcome::Done(value.cas));
            }
            Some(status) => status,
        },
        Err(async_memcached::Error::Protocol(status)) => status,
        Err(error) => return Err(failure(error)),
    };
    match status {
        Status::NotStored => Ok(Outcome::NotStored),
        Status::Exists => Ok(Outcome::Exists),
        Status::NotFound => Ok(Outcome::NotFound),
        other => Err(failure(async_memcached::Error::Protocol(other))),
    }
}

/// An item read with its CAS token and remaining lifetime.
pub(crate) struct Item {
    pub(crate) data: Vec<u8>,
    pub(crate) cas: u64,
    /// The seconds it has left as an exptime: 0 for none, else at least 1.
    pub(crate) exptime: u64,
}

/// `mg key v c t`: the value, CAS token and remaining TTL of `key`, if present.
pub(crate) async fn get(conn: &mut Conn, key: &str) -> Result<Option<Item>> {
    let reply = conn
        .meta_get(key, false, None, Some(&["v", "c", "t"]))
        .await
        .map_err(failure)?;
    Ok(reply.map(|value| Item {
        data: value.data.unwrap_or_default(),
        cas: value.cas.unwrap_or(0),
        exptime: match value.ttl_remaining {
            None | Some(-1) => 0,
            Some(seconds) => u64::try_from(seconds).unwrap_or(0).max(1),
        },
    }))
}

/// How [`set`] writes.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Mode {
    /// Unconditionally.
    Set,
    /// Only if the key is absent.
    Add,
    /// Only if the item's CAS token is still this one.
    Cas(u64),
}

/// `ms key <len> T<exptime> [ME|C<cas>] c`: writes `value`, expiring at `exptime` (memcached's
/// encoding: 0 never, up to 30 days relative seconds, beyond that a Unix time).
pub(crate) async fn set(
    conn: &mut Conn,
    key: &str,
    value: &[u8],
    exptime: u64,
    mode: Mode,
) -> Result<Outcome> {
    let ttl = format!("T{exptime}");
    let cas;
    let flags: &[&str] = match mode {
        Mode::Set => &[&ttl, "c"],
        Mode::Add => &[&ttl, "ME", "c"],
        Mode::Cas(token) => {
            cas = format!("C{token}");
            &[&ttl, &cas, "c"]
        }
    };
    outcome(conn.meta_set(key, value, false, None, Some(flags)).await)
}

/// `md key [C<cas>]`: deletes `key` (only at that CAS token, when given).
pub(crate) async fn delete(conn: &mut Conn, key: &str, cas: Option<u64>) -> Result<Outcome> {
    let token = cas.map(|cas| format!("C{cas}"));
    let flags: Vec<&str> = token.iter().map(String::as_str).collect();
    outcome(conn.meta_delete(key, false, None, Some(&flags)).await)
}

/// Why an arithmetic command failed.
pub(crate) enum ArithmeticError {
    /// The item holds something other than a decimal counter.
    NotANumber,
    /// Anything else.
    Failed(Error),
}

/// `ma key [MD] D<delta> N<exptime> J<initial> v`: adds (or with `decrement`, subtracts,
/// stopping at 0) `delta` to the counter at `key` and returns the new value; a missing key
/// is created holding `initial` (no delta applied), expiring at `exptime`.
pub(crate) async fn arithmetic(
    conn: &mut Conn,
    key: &str,
    delta: u64,
    decrement: bool,
    exptime: u64,
    initial: u64,
) -> std::result::Result<u64, ArithmeticError> {
    let vivify = format!("N{exptime}");
    let start = format!("J{initial}");
    let flags = [vivify.as_str(), start.as_str(), "v"];
    let reply = if decrement {
        conn.meta_decrement(key, false, None, Some(delta), Some(&flags))
            .await
    } else {
        conn.meta_increment(key, false, None, Some(delta), Some(&flags))
            .await
    };
    match reply {
        Ok(Some(value)) => {
            let data = value.data.unwrap_or_default();
            std::str::from_utf8(&data)
                .ok()
                .and_then(|text| text.trim().parse().ok())
                .ok_or_else(|| {
                    ArithmeticError::Failed(Error::Backend(format!(
                        "memcached: unexpected counter value {data:?}"
                    )))
                })
        }
        Ok(None) => Err(ArithmeticError::Failed(Error::Backend(
            "memcached: counter reply without a value".into(),
        ))),
        Err(async_memcached::Error::Protocol(Status::Error(ErrorKind::Client(message))))
            if message.contains("non-numeric") =>
        {
            Err(ArithmeticError::NotANumber)
        }
        Err(error) => Err(ArithmeticError::Failed(failure(error))),
    }
}

/// `version`: whether the server answers.
pub(crate) async fn ping(conn: &mut Conn) -> Result<()> {
    conn.version().await.map(drop).map_err(failure)
}
