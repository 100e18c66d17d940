//! [`BackendFuture`]: the future every backend method returns.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// The future returned by [`Backend`](super::Backend) methods.
///
/// A backend that can answer without waiting (the in-memory one) returns a ready value
/// and pays no allocation; a backend that does I/O returns a boxed future. This keeps the
/// trait object-safe (`Arc<dyn Backend>`) without boxing the hot path.
///
/// ```
/// use traffik_core::BackendFuture;
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// assert_eq!(BackendFuture::ready(1).await, 1);
/// assert_eq!(BackendFuture::new(async { 2 }).await, 2);
/// # });
/// ```
#[must_use = "futures do nothing unless awaited"]
pub struct BackendFuture<'a, T>(State<'a, T>);

enum State<'a, T> {
    Ready(Option<T>),
    Boxed(Pin<Box<dyn Future<Output = T> + Send + 'a>>),
}

impl<'a, T> BackendFuture<'a, T> {
    /// A future that is already complete.
    pub fn ready(value: T) -> Self {
        Self(State::Ready(Some(value)))
    }

    /// Wraps (and boxes) any future.
    pub fn new(future: impl Future<Output = T> + Send + 'a) -> Self {
        Self(State::Boxed(Box::pin(future)))
    }

    /// The value, if the future was made [`ready`](Self::ready); otherwise the future
    /// back, not polled: nothing it would do has started.
    ///
    /// ```
    /// use traffik_core::BackendFuture;
    ///
    /// assert_eq!(BackendFuture::ready(1).into_ready().ok(), Some(1));
    /// assert!(BackendFuture::new(async { 2 }).into_ready().is_err());
    /// ```
    pub fn into_ready(self) -> Result<T, Self> {
        match self.0 {
            State::Ready(Some(value)) => Ok(value),
            state => Err(Self(state)),
        }
    }

    /// The value, if the future completes on its first poll; otherwise the future back.
    pub fn now_or_never(mut self) -> Result<T, Self> {
        let mut cx = Context::from_waker(Waker::noop());
        match Pin::new(&mut self).poll(&mut cx) {
            Poll::Ready(value) => Ok(value),
            Poll::Pending => Err(self),
        }
    }
}

// `T` is never pinned in place: a ready value is moved out, a pending future is boxed.
impl<T> Unpin for BackendFuture<'_, T> {}

impl<T> Future for BackendFuture<'_, T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        match &mut self.get_mut().0 {
            State::Ready(value) => match value.take() {
                Some(value) => Poll::Ready(value),
                // Polled again after completion: never completes again.
                None => Poll::Pending,
            },
            State::Boxed(future) => future.as_mut().poll(cx),
        }
    }
}

impl<T> fmt::Debug for BackendFuture<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.0 {
            State::Ready(_) => "ready",
            State::Boxed(_) => "boxed",
        };
        f.debug_tuple("BackendFuture").field(&kind).finish()
    }
}
