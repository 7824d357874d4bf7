//! How long a registry may stay silent. A request's answer must start within the timeout
//! of the last byte of its body going out, however long the body took: a large upload is
//! never cut while it moves, and the registry still gets the whole timeout to commit a blob
//! after its last byte ([`Watch`]). An answer's body may pause for no longer than the
//! timeout ([`chunk_within`], [`Paced`]). (reqwest's read timeout would count from the
//! start of a request, body included, and live on a second client: a second connection
//! pool, twice the connections and TLS handshakes per registry.)

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::Instant;

/// The environment variable that sets [`crate::ClientOptions::timeout`], in seconds.
pub const TIMEOUT_ENV: &str = "HOIST_REGISTRY_TIMEOUT";
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// `HOIST_REGISTRY_TIMEOUT`: a positive number of seconds.
pub(crate) fn timeout_env() -> Result<Duration, String> {
    crate::client::env_setting(
        TIMEOUT_ENV,
        DEFAULT_TIMEOUT,
        "a positive number of seconds",
        |v| {
            (v.parse::<f64>().ok())
                .filter(|s| s.is_finite() && *s > 0.0 && *s < 1e9)
                .map(Duration::from_secs_f64)
        },
    )
}

/// `60 s`, `1.5 s`.
pub(crate) fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{s:.0} s")
    } else {
        format!("{s:.1} s")
    }
}

/// A response body that sent nothing for the timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stalled;

impl std::fmt::Display for Stalled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the answer's body paused for the timeout")
    }
}

impl std::error::Error for Stalled {}

/// Why reading an answer's body stopped.
pub(crate) enum BodyRead {
    Stalled,
    Failed(reqwest::Error),
}

/// The next piece of `resp`'s body (`None` at its end), waiting no longer than `limit`.
pub(crate) async fn chunk_within(
    resp: &mut reqwest::Response,
    limit: Duration,
) -> Result<Option<Bytes>, BodyRead> {
    match tokio::time::timeout(limit, resp.chunk()).await {
        Err(_) => Err(BodyRead::Stalled),
        Ok(r) => r.map_err(BodyRead::Failed),
    }
}

/// All of `resp`'s body, no piece more than `limit` after the one before.
pub(crate) async fn read_within(
    mut resp: reqwest::Response,
    limit: Duration,
) -> Result<Bytes, BodyRead> {
    let mut all = bytes::BytesMut::new();
    while let Some(piece) = chunk_within(&mut resp, limit).await? {
        all.extend_from_slice(&piece);
    }
    Ok(all.freeze())
}

/// A body (a download forwarded into an upload) that fails with [`Stalled`] when its
/// source sends nothing for `limit`.
pub(crate) struct Paced<B> {
    inner: Pin<Box<B>>,
    limit: Duration,
    silence: Pin<Box<tokio::time::Sleep>>,
}

impl<B> Paced<B> {
    pub(crate) fn new(inner: B, limit: Duration) -> Self {
        Self {
            inner: Box::pin(inner),
            limit,
            silence: Box::pin(tokio::time::sleep(limit)),
        }
    }
}

impl<B> Body for Paced<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        match this.inner.as_mut().poll_frame(cx) {
            Poll::Ready(r) => {
                let next = Instant::now() + this.limit;
                this.silence.as_mut().reset(next);
                Poll::Ready(r.map(|r| r.map_err(Into::into)))
            }
            Poll::Pending => match this.silence.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(Stalled)))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
}

/// When a request last made progress: sent a piece of its body, or was waiting on the
/// body's own source (a download being forwarded, which watches itself).
#[derive(Clone)]
pub(crate) struct Watch(Arc<Mutex<State>>);

struct State {
    last: Instant,
    in_source: bool,
}

impl Watch {
    pub(crate) fn start() -> Self {
        Self(Arc::new(Mutex::new(State {
            last: Instant::now(),
            in_source: false,
        })))
    }

    fn set(&self, in_source: bool) {
        let mut s = self.0.lock().expect("watch lock");
        s.last = Instant::now();
        s.in_source = in_source;
    }

    /// How long the request has sat still (its body sent, no answer yet); zero while its
    /// body waits on its own source.
    pub(crate) fn quiet_for(&self) -> Duration {
        let s = self.0.lock().expect("watch lock");
        if s.in_source {
            Duration::ZERO
        } else {
            s.last.elapsed()
        }
    }

    /// When the request has been silent for `limit`, unless something happens before.
    fn deadline(&self, limit: Duration) -> Option<Instant> {
        let s = self.0.lock().expect("watch lock");
        (!s.in_source).then_some(s.last + limit)
    }

    /// Wait for `answer` (a request's response head); `None` if the request sat still for
    /// `limit`: its body stopped moving (the registry does not read it) or, once sent, the
    /// registry did not answer.
    pub(crate) async fn answer<T>(
        &self,
        answer: impl std::future::Future<Output = T>,
        limit: Duration,
    ) -> Option<T> {
        tokio::pin!(answer);
        loop {
            // While the body waits on its source, check back after `limit` anyway.
            let deadline = self
                .deadline(limit)
                .unwrap_or_else(|| Instant::now() + limit);
            tokio::select! {
                biased;
                r = &mut answer => return Some(r),
                _ = tokio::time::sleep_until(deadline) => {
                    if self.deadline(limit).is_some_and(|d| d <= Instant::now()) {
                        return None;
                    }
                }
            }
        }
    }
}

/// A request body that reports its progress to a [`Watch`], in pieces of at most
/// [`Watched::PIECE`] bytes: the HTTP client asks for the next piece only as the previous
/// one goes out, so a piece handed on means bytes are moving.
pub(crate) struct Watched<B> {
    inner: Pin<Box<B>>,
    watch: Watch,
    rest: Bytes,
}

impl<B> Watched<B> {
    const PIECE: usize = 64 * 1024;

    pub(crate) fn new(inner: B, watch: Watch) -> Self {
        Self {
            inner: Box::pin(inner),
            watch,
            rest: Bytes::new(),
        }
    }

    fn piece(&mut self) -> Frame<Bytes> {
        let n = self.rest.len().min(Self::PIECE);
        self.watch.set(false);
        Frame::data(self.rest.split_to(n))
    }
}

impl<B> Body for Watched<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.get_mut();
        if !this.rest.is_empty() {
            return Poll::Ready(Some(Ok(this.piece())));
        }
        let polled = this.inner.as_mut().poll_frame(cx);
        if polled.is_pending() {
            this.watch.set(true);
        }
        match ready!(polled) {
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => {
                    this.rest = data;
                    Poll::Ready(Some(Ok(this.piece())))
                }
                Err(frame) => {
                    this.watch.set(false);
                    Poll::Ready(Some(Ok(frame)))
                }
            },
            other => {
                this.watch.set(false);
                Poll::Ready(other)
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        let inner = self.inner.size_hint();
        let rest = self.rest.len() as u64;
        // Upper first: SizeHint refuses a lower bound above the upper one it holds.
        let mut h = SizeHint::new();
        if let Some(u) = inner.upper() {
            h.set_upper(u + rest);
        }
        h.set_lower(inner.lower() + rest);
        h
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty() && self.inner.is_end_stream()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size stays exact while pieces of a frame are still to go.
    #[test]
    fn size_hint_counts_what_is_held_back() {
        let body = reqwest::Body::from(Bytes::from(vec![1u8; 100_000]));
        let mut w = Box::pin(Watched::new(body, Watch::start()));
        assert_eq!(w.size_hint().exact(), Some(100_000));
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let Poll::Ready(Some(Ok(first))) = w.as_mut().poll_frame(&mut cx) else {
            panic!("a first piece")
        };
        assert_eq!(first.into_data().unwrap().len(), 65536);
        assert_eq!(w.size_hint().exact(), Some(100_000 - 65536));
    }

    /// Time spent before the body goes out does not count; the silence starts at its end.
    #[tokio::test]
    async fn silence_counts_from_the_last_piece() {
        let watch = Watch::start();
        let limit = Duration::from_millis(300);
        let one_frame = reqwest::Body::from(Bytes::from(vec![7u8; 200_000]));
        let mut body = Box::pin(Watched::new(one_frame, watch.clone()));
        tokio::time::sleep(Duration::from_millis(400)).await;
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut pieces = vec![];
        while let Poll::Ready(Some(Ok(f))) = body.as_mut().poll_frame(&mut cx) {
            pieces.push(f.into_data().unwrap().len());
        }
        assert_eq!(pieces, [65536, 65536, 65536, 3392]);
        let sent = Instant::now();
        assert!(watch.deadline(limit).unwrap() >= sent + limit - Duration::from_millis(5));
        let silent = watch.answer(std::future::pending::<()>(), limit).await;
        assert!(silent.is_none());
        assert!(sent.elapsed() >= limit - Duration::from_millis(5));
    }
}
