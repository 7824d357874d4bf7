//! A request body that forwards another body (a blob download) while hashing it, for
//! streaming a blob from one registry into another without holding it in memory.
//!
//! The digest and length are checked *before* the last byte is handed on: a blob that does
//! not match is never completed at the destination (the upload is aborted instead), and the
//! caller learns why through a [`Verdict`]. Forwarding in the request body itself (rather
//! than a download task feeding a channel) costs no extra task, channel or cross-thread
//! wake-up per chunk.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use sha2::{Digest as _, Sha256};

use crate::digest::Digest;

/// Why a forwarded blob was cut off.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamFailure {
    /// All bytes arrived but hash to something else.
    Mismatch { actual: Digest },
    /// The source ended early.
    Short { received: u64 },
    /// The source sent more than the descriptor's size (`received` so far).
    Long { received: u64 },
    /// Reading the source failed (dropped connection, …).
    Source(String),
    /// The source sent nothing for the client's timeout.
    Stalled,
}

/// What the body saw; shared with the caller, who reads it once the request is done.
#[derive(Clone, Debug, Default)]
pub struct Verdict(Arc<Mutex<Option<Result<u64, StreamFailure>>>>);

impl Verdict {
    /// `None` while the body has not reached its end (the request stopped before that).
    pub fn get(&self) -> Option<Result<u64, StreamFailure>> {
        self.0.lock().expect("verdict lock").clone()
    }

    fn set(&self, v: Result<u64, StreamFailure>) {
        let mut slot = self.0.lock().expect("verdict lock");
        if slot.is_none() {
            *slot = Some(v);
        }
    }
}

pub struct VerifiedBody<B> {
    inner: Pin<Box<B>>,
    hasher: Sha256,
    expected: Digest,
    size: u64,
    seen: u64,
    done: bool,
    verdict: Verdict,
    /// Dropped once the last byte is out (or the body failed), not when the request ends.
    held: Option<Box<dyn std::any::Any + Send + Sync>>,
    /// Where the forwarded bytes are counted for the progress bar.
    counter: Option<crate::progress::Counter>,
}

impl<B> VerifiedBody<B> {
    /// Forward `inner`, which must be exactly `size` bytes hashing to `expected`.
    pub fn new(inner: B, expected: Digest, size: u64) -> (Self, Verdict) {
        let verdict = Verdict::default();
        (
            Self {
                inner: Box::pin(inner),
                hasher: Sha256::new(),
                expected,
                size,
                seen: 0,
                done: false,
                verdict: verdict.clone(),
                held: None,
                counter: None,
            },
            verdict,
        )
    }

    /// Keep `guard` (a transfer slot) until the body has produced its last byte or failed:
    /// the registry's answer to the request is not waited for.
    pub fn holding(mut self, guard: impl std::any::Any + Send + Sync) -> Self {
        self.held = Some(Box::new(guard));
        self
    }

    /// Count the bytes on `counter` as they are handed on.
    pub(crate) fn counting(mut self, counter: crate::progress::Counter) -> Self {
        self.counter = Some(counter);
        self
    }

    fn finish(&mut self, v: Result<u64, StreamFailure>) {
        self.done = true;
        self.held = None;
        self.verdict.set(v);
    }

    fn fail(&mut self, f: StreamFailure) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let msg = format!("blob {} not forwarded: {f:?}", self.expected);
        self.finish(Err(f));
        Poll::Ready(Some(Err(std::io::Error::other(msg))))
    }
}

impl<B> Body for VerifiedBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        loop {
            match ready!(this.inner.as_mut().poll_frame(cx)) {
                Some(Ok(frame)) => {
                    // Trailers (none in practice on a blob GET) are not forwarded.
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    if data.is_empty() {
                        continue;
                    }
                    this.seen += data.len() as u64;
                    if this.seen > this.size {
                        let received = this.seen;
                        return this.fail(StreamFailure::Long { received });
                    }
                    this.hasher.update(&data);
                    if this.seen == this.size {
                        // Check before the last bytes leave: a mismatch never completes.
                        let actual = Digest::from_hasher(std::mem::take(&mut this.hasher));
                        if actual != this.expected {
                            return this.fail(StreamFailure::Mismatch { actual });
                        }
                        this.finish(Ok(this.seen));
                    }
                    if let Some(c) = &this.counter {
                        c.add(data.len() as u64);
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Some(Err(e)) => {
                    let e = e.into();
                    // A download paused for the client's timeout (`watch::Paced`).
                    let stalled = e.downcast_ref::<crate::watch::Stalled>().is_some();
                    return this.fail(match stalled {
                        true => StreamFailure::Stalled,
                        false => StreamFailure::Source(e.to_string()),
                    });
                }
                None if this.seen < this.size => {
                    let received = this.seen;
                    return this.fail(StreamFailure::Short { received });
                }
                None => {
                    // Only a zero-length blob gets here (otherwise `done` is already set).
                    let actual = Digest::from_hasher(std::mem::take(&mut this.hasher));
                    if actual != this.expected {
                        return this.fail(StreamFailure::Mismatch { actual });
                    }
                    this.finish(Ok(0));
                    return Poll::Ready(None);
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.size.saturating_sub(self.seen))
    }
}

/// A body reading a file in pieces as the request goes out (an OCI layout's blob).
pub struct FileBody {
    file: tokio::fs::File,
    /// The next frame's buffer, kept across a pending read.
    buf: Vec<u8>,
    done: bool,
}

impl FileBody {
    /// Bytes read per frame: large enough that per-frame costs vanish, small enough that a
    /// blob is never in memory.
    const PIECE: usize = 256 * 1024;

    pub fn new(file: tokio::fs::File) -> Self {
        Self {
            file,
            buf: vec![],
            done: false,
        }
    }
}

impl Body for FileBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        if this.buf.is_empty() {
            this.buf = vec![0u8; Self::PIECE];
        }
        let mut rb = tokio::io::ReadBuf::new(&mut this.buf);
        match ready!(tokio::io::AsyncRead::poll_read(
            Pin::new(&mut this.file),
            cx,
            &mut rb
        )) {
            Ok(()) => {
                let n = rb.filled().len();
                if n == 0 {
                    this.done = true;
                    return Poll::Ready(None);
                }
                let mut buf = std::mem::take(&mut this.buf);
                buf.truncate(n);
                Poll::Ready(Some(Ok(Frame::data(Bytes::from(buf)))))
            }
            Err(e) => {
                this.done = true;
                Poll::Ready(Some(Err(e)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// A body yielding fixed chunks, then optionally an error.
    struct Chunks(VecDeque<Result<Bytes, String>>);

    impl Body for Chunks {
        type Data = Bytes;
        type Error = String;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, String>>> {
            Poll::Ready(self.0.pop_front().map(|r| r.map(Frame::data)))
        }
    }

    fn run(chunks: Vec<Result<&'static [u8], &'static str>>, d: &Digest, size: u64) -> Verdict {
        let src = Chunks(
            chunks
                .into_iter()
                .map(|c| c.map(Bytes::from_static).map_err(String::from))
                .collect(),
        );
        let (mut body, verdict) = VerifiedBody::new(src, d.clone(), size);
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut out = vec![];
        while let Poll::Ready(Some(f)) = Pin::new(&mut body).poll_frame(&mut cx) {
            match f {
                Ok(f) => out.extend_from_slice(&f.into_data().unwrap()),
                Err(_) => return verdict,
            }
            if body.is_end_stream() {
                break;
            }
        }
        assert_eq!(
            Digest::of(&out),
            *d,
            "a completed stream forwards every byte"
        );
        verdict
    }

    #[test]
    fn bytes_are_counted_as_they_are_handed_on() {
        let d = Digest::of(b"hello world");
        let src = Chunks(
            [b"hello ".as_slice(), b"world"]
                .into_iter()
                .map(|c| Ok(Bytes::from_static(c)))
                .collect(),
        );
        let bar = indicatif::ProgressBar::hidden();
        let sent = crate::progress::Sent::new(Some(bar.clone()), Default::default());
        let (body, _) = VerifiedBody::new(src, d, 11);
        let mut body = body.counting(sent.counter());
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(matches!(
            Pin::new(&mut body).poll_frame(&mut cx),
            Poll::Ready(Some(Ok(_)))
        ));
        assert_eq!(
            bar.position(),
            6,
            "the first chunk, before the blob is done"
        );
        assert!(matches!(
            Pin::new(&mut body).poll_frame(&mut cx),
            Poll::Ready(Some(Ok(_)))
        ));
        sent.keep();
        assert_eq!(bar.position(), 11);
    }

    #[test]
    fn forwards_matching_bytes() {
        let d = Digest::of(b"hello world");
        let v = run(vec![Ok(b"hello "), Ok(b""), Ok(b"world")], &d, 11);
        assert_eq!(v.get(), Some(Ok(11)));
        let empty = Digest::of(b"");
        assert_eq!(run(vec![], &empty, 0).get(), Some(Ok(0)));
    }

    #[test]
    fn mismatch_is_caught_before_the_last_chunk() {
        let d = Digest::of(b"hello world");
        let v = run(vec![Ok(b"hello "), Ok(b"World")], &d, 11);
        assert_eq!(
            v.get(),
            Some(Err(StreamFailure::Mismatch {
                actual: Digest::of(b"hello World")
            }))
        );
    }

    #[test]
    fn short_long_and_broken_sources_fail() {
        let d = Digest::of(b"hello world");
        assert_eq!(
            run(vec![Ok(b"hello")], &d, 11).get(),
            Some(Err(StreamFailure::Short { received: 5 }))
        );
        assert_eq!(
            run(vec![Ok(b"hello world!")], &d, 11).get(),
            Some(Err(StreamFailure::Long { received: 12 }))
        );
        assert_eq!(
            run(vec![Ok(b"hello"), Err("reset")], &d, 11).get(),
            Some(Err(StreamFailure::Source("reset".into())))
        );
    }

    #[test]
    fn held_guard_goes_with_the_last_byte_or_a_failure() {
        let d = Digest::of(b"hello world");
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        for (chunks, ok) in [
            (vec![b"hello ".as_slice(), b"world"], true),
            (vec![b"hello ".as_slice(), b"World"], false),
        ] {
            let slot = Arc::new(());
            let src = Chunks(
                chunks
                    .into_iter()
                    .map(|c| Ok(Bytes::from_static(c)))
                    .collect(),
            );
            let (body, verdict) = VerifiedBody::new(src, d.clone(), 11);
            let mut body = body.holding(slot.clone());
            assert!(Pin::new(&mut body).poll_frame(&mut cx).is_ready());
            assert_eq!(Arc::strong_count(&slot), 2, "held while bytes remain");
            let last = Pin::new(&mut body).poll_frame(&mut cx);
            assert!(matches!(last, Poll::Ready(Some(Ok(_)))) == ok);
            // Released with the body still alive (the request awaiting its answer).
            assert_eq!(Arc::strong_count(&slot), 1);
            assert_eq!(verdict.get().unwrap().is_ok(), ok);
        }
    }
}
