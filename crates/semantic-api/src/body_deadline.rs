//! A request body must arrive whole within `--body-timeout-secs`: a client that trickles its body
//! (a byte a second) is cut with a 408 in the route's error shape instead of holding a connection
//! and a task for as long as it likes. Owns the body wrapper and its error; the JSON extractors
//! (`extract.rs`) turn the error into the 408. Headers are bounded by the HTTP server
//! (`--header-timeout-secs`, in the binary).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::BoxError;
use http_body::{Frame, SizeHint};
use tokio::time::Sleep;

/// The body did not arrive within the deadline.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {secs} s (--body-timeout-secs)")]
pub struct BodyDeadlineElapsed {
    /// The deadline, seconds.
    pub secs: u64,
}

/// `inner`, failing with [`BodyDeadlineElapsed`] once `limit` has passed since it was wrapped.
pub(crate) fn with_deadline(inner: Body, limit: Duration) -> Body {
    if inner.is_end_stream() {
        return inner;
    }
    Body::new(DeadlineBody { inner, sleep: Box::pin(tokio::time::sleep(limit)), secs: limit.as_secs() })
}

struct DeadlineBody {
    inner: Body,
    sleep: Pin<Box<Sleep>>,
    secs: u64,
}

impl HttpBody for DeadlineBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(BoxError::from)));
        }
        if this.sleep.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(Box::new(BodyDeadlineElapsed { secs: this.secs }))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Whether an error (or one of its sources) is a body deadline.
pub(crate) fn is_deadline(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(error) = next {
        if error.is::<BodyDeadlineElapsed>() {
            return true;
        }
        next = error.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;
    use http_body_util::BodyExt;

    #[tokio::test(start_paused = true)]
    async fn a_trickled_body_fails_at_the_deadline_and_a_prompt_one_passes() {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
        let stream = tokio_stream_from(rx);
        let body = with_deadline(Body::from_stream(stream), Duration::from_secs(5));
        tx.send(Ok(Bytes::from_static(b"{"))).await.unwrap();
        // The sender stays open and sends no more: paused time runs to the deadline.
        let error = body.collect().await.expect_err("cut at the deadline");
        assert!(is_deadline(&error), "{error}");
        drop(tx);
        let whole = with_deadline(Body::from("{}"), Duration::from_secs(5)).collect().await.unwrap().to_bytes();
        assert_eq!(&whole[..], b"{}");
    }

    fn tokio_stream_from(
        rx: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
    ) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) }).boxed()
    }
}
