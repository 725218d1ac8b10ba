//! An HTTP body made of parts' shared `Bytes`, with an exact length: a
//! segment is sent from the muxer's buffers without copying them, and
//! without even a list of its chunks per request — the body walks the
//! parts it holds by reference count, one chunk per part.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};

use super::window::Part;

pub struct ChunksBody {
    parts: Vec<Arc<Part>>,
    /// The next part to send.
    next: usize,
    remaining: u64,
}

impl ChunksBody {
    /// A body of `parts` in order (a segment's parts).
    pub fn new(parts: Vec<Arc<Part>>) -> Self {
        let remaining = parts.iter().map(|p| p.len() as u64).sum();
        ChunksBody {
            parts,
            next: 0,
            remaining,
        }
    }

    /// The next non-empty part's bytes, advancing past it.
    fn next_chunk(&mut self) -> Option<Bytes> {
        while let Some(part) = self.parts.get(self.next) {
            self.next += 1;
            if !part.data.is_empty() {
                return Some(part.data.clone());
            }
        }
        None
    }
}

impl http_body::Body for ChunksBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.next_chunk() {
            Some(chunk) => {
                self.remaining -= chunk.len() as u64;
                Poll::Ready(Some(Ok(Frame::data(chunk))))
            }
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(header: &'static [u8], payloads: &[&'static [u8]]) -> Arc<Part> {
        let payloads: Vec<Bytes> = payloads.iter().map(|p| Bytes::from_static(p)).collect();
        Arc::new(Part::new(0, false, header, &payloads))
    }

    #[test]
    fn sends_every_part_in_order_and_skips_empty_ones() {
        let mut body = ChunksBody::new(vec![
            part(b"h1", &[b"a", b"", b"bc"]),
            part(b"", &[]),
            part(b"h3", &[b"d"]),
        ]);
        assert_eq!(http_body::Body::size_hint(&body).exact(), Some(8));
        let mut out = Vec::new();
        while let Some(c) = body.next_chunk() {
            out.push(c);
        }
        let want: [&[u8]; 2] = [b"h1abc", b"h3d"];
        assert_eq!(out, want.map(Bytes::from_static));
        assert!(ChunksBody::new(Vec::new()).next_chunk().is_none());
    }
}
