//! An HTTP body made of parts' shared `Bytes`, with an exact length: a part
//! or a segment is sent from the muxer's buffers without copying them, and
//! without even a list of its chunks per request — the body walks the
//! parts it holds by reference count.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};

use super::window::Part;

pub struct ChunksBody {
    parts: Vec<Arc<Part>>,
    /// The part being sent, and its next chunk: 0 is the header, `i + 1`
    /// the `i`-th payload.
    part: usize,
    chunk: usize,
    remaining: u64,
}

impl ChunksBody {
    /// A body of `parts` in order (one part, or a segment's parts).
    pub fn new(parts: Vec<Arc<Part>>) -> Self {
        let remaining = parts.iter().map(|p| p.len() as u64).sum();
        ChunksBody {
            parts,
            part: 0,
            chunk: 0,
            remaining,
        }
    }

    /// The next non-empty chunk, advancing past it.
    fn next_chunk(&mut self) -> Option<Bytes> {
        while let Some(part) = self.parts.get(self.part) {
            let chunk = match self.chunk {
                0 => Some(&part.header),
                i => part.payloads.get(i - 1),
            };
            match chunk {
                Some(c) => {
                    self.chunk += 1;
                    if !c.is_empty() {
                        return Some(c.clone());
                    }
                }
                None => {
                    self.part += 1;
                    self.chunk = 0;
                }
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
        Arc::new(Part {
            duration_nanos: 0,
            independent: false,
            header: Bytes::from_static(header),
            payloads: payloads.iter().map(|p| Bytes::from_static(p)).collect(),
        })
    }

    #[test]
    fn sends_every_chunk_in_order_and_skips_empty_ones() {
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
        let want: [&[u8]; 5] = [b"h1", b"a", b"bc", b"h3", b"d"];
        assert_eq!(out, want.map(Bytes::from_static));
        assert!(ChunksBody::new(Vec::new()).next_chunk().is_none());
    }
}
