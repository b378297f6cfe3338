//! The response body type: a whole buffer, a stream of chunks (watch), or a body proxied from a
//! kubelet (pod logs).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::sync::mpsc;

/// A response body.
#[derive(Debug)]
pub(crate) enum Body {
    Full(Option<Bytes>),
    Stream(mpsc::Receiver<Bytes>),
    /// Forwarded frame by frame; an upstream failure aborts the response.
    Proxied(capstan_streams::ForwardBody),
    /// A list spliced from cached JSON, copied into chunks as the connection takes them.
    List(ListBody),
}

/// About how many bytes of a list go into one chunk.
const LIST_CHUNK: usize = 64 * 1024;

/// `head` + `items` joined by commas + `tail`, produced in chunks of about `LIST_CHUNK` bytes so that
/// the first bytes leave before the whole list is copied, and no buffer holds all of it.
#[derive(Debug)]
pub(crate) struct ListBody {
    head: Option<Bytes>,
    items: std::vec::IntoIter<Bytes>,
    tail: Option<Bytes>,
    first: bool,
    remaining: u64,
    /// The response's media type.
    pub(crate) content_type: &'static str,
}

impl ListBody {
    pub(crate) fn new(head: Bytes, items: Vec<Bytes>, tail: Bytes) -> Self {
        let remaining = (head.len()
            + tail.len()
            + items.iter().map(Bytes::len).sum::<usize>()
            + items.len().saturating_sub(1)) as u64;
        Self {
            head: Some(head),
            items: items.into_iter(),
            tail: Some(tail),
            first: true,
            remaining,
            content_type: "application/json",
        }
    }

    /// The same list with every item (not yet sent) changed by `f`.
    pub(crate) fn map_items(self, f: impl Fn(&Bytes) -> Bytes) -> Self {
        let head = self.head.unwrap_or_default();
        let tail = self.tail.unwrap_or_default();
        let items = self.items.map(|item| f(&item)).collect();
        let mut mapped = Self::new(head, items, tail);
        mapped.content_type = self.content_type;
        mapped
    }

    /// The next chunk, or `None` at the end.
    pub(crate) fn next_chunk(&mut self) -> Option<Bytes> {
        let mut out = BytesMut::new();
        if let Some(head) = self.head.take() {
            // A small head goes out with the first items.
            out.reserve(LIST_CHUNK + 8 * 1024);
            out.extend_from_slice(&head);
        }
        while out.len() < LIST_CHUNK {
            let Some(item) = self.items.next() else {
                if let Some(tail) = self.tail.take() {
                    out.extend_from_slice(&tail);
                }
                break;
            };
            if out.is_empty() {
                out.reserve(LIST_CHUNK + item.len());
            }
            if !self.first {
                out.extend_from_slice(b",");
            }
            self.first = false;
            out.extend_from_slice(&item);
        }
        if out.is_empty() {
            return None;
        }
        self.remaining = self.remaining.saturating_sub(out.len() as u64);
        Some(out.freeze())
    }

    fn is_end(&self) -> bool {
        self.head.is_none() && self.tail.is_none()
    }
}

impl Body {
    pub(crate) fn full(bytes: impl Into<Bytes>) -> Self {
        Body::Full(Some(bytes.into()))
    }

    pub(crate) fn empty() -> Self {
        Body::Full(None)
    }
}

impl HttpBody for Body {
    type Data = Bytes;
    type Error = capstan_streams::StreamError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.get_mut() {
            Body::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Body::Stream(rx) => rx
                .poll_recv(cx)
                .map(|chunk| chunk.map(|b| Ok(Frame::data(b)))),
            Body::Proxied(body) => Pin::new(body).poll_frame(cx),
            Body::List(list) => Poll::Ready(list.next_chunk().map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Full(bytes) => bytes.is_none(),
            Body::Stream(_) => false,
            Body::Proxied(body) => body.is_end_stream(),
            Body::List(list) => list.is_end(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            Body::Full(None) => SizeHint::with_exact(0),
            Body::Stream(_) => SizeHint::default(),
            Body::Proxied(body) => body.size_hint(),
            Body::List(list) => SizeHint::with_exact(list.remaining),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(mut list: ListBody) -> (Vec<u8>, usize) {
        let declared = list.remaining;
        let mut out = Vec::new();
        let mut chunks = 0;
        while let Some(chunk) = list.next_chunk() {
            assert!(
                chunk.len() < LIST_CHUNK + 16 * 1024,
                "chunk of {}",
                chunk.len()
            );
            out.extend_from_slice(&chunk);
            chunks += 1;
        }
        assert!(list.is_end());
        assert_eq!(out.len() as u64, declared, "size hint matches the body");
        (out, chunks)
    }

    #[test]
    fn list_bodies_join_items_in_chunks() {
        let head = Bytes::from_static(b"{\"items\":[");
        let tail = Bytes::from_static(b"]}");
        for (count, size, min_chunks) in [
            (0usize, 0usize, 1usize),
            (1, 10, 1),
            (3, 5, 1),
            (100, 4000, 6),
        ] {
            let items: Vec<Bytes> = (0..count)
                .map(|i| Bytes::from(format!("{{\"i\":\"{}\"}}", "x".repeat(size + i % 3))))
                .collect();
            let (out, chunks) = collect(ListBody::new(head.clone(), items.clone(), tail.clone()));
            let value: serde_json::Value = serde_json::from_slice(&out).expect("valid JSON");
            assert_eq!(value["items"].as_array().map(Vec::len), Some(count));
            let expected: Vec<String> = items
                .iter()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .collect();
            assert_eq!(
                String::from_utf8_lossy(&out),
                format!("{{\"items\":[{}]}}", expected.join(","))
            );
            assert!(
                chunks >= min_chunks,
                "{count} items of {size} B: {chunks} chunks"
            );
        }
    }
}
