//! The body of a forwarded response: the upstream's body, frame by frame, never buffered.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use crate::StreamError;

/// A forwarded response body: each upstream frame is yielded as soon as it arrives. Dropping it
/// closes the upstream connection (so the upstream stops following a log).
#[derive(Debug)]
pub struct ForwardBody {
    inner: Option<Incoming>,
}

impl ForwardBody {
    pub(crate) fn empty() -> Self {
        Self { inner: None }
    }

    pub(crate) fn upstream(body: Incoming) -> Self {
        Self { inner: Some(body) }
    }
}

impl Body for ForwardBody {
    type Data = Bytes;
    type Error = StreamError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, StreamError>>> {
        match &mut self.get_mut().inner {
            None => Poll::Ready(None),
            Some(body) => Pin::new(body)
                .poll_frame(cx)
                .map(|frame| frame.map(|f| f.map_err(StreamError::Body))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}
