//! Splits what an RTSP peer sends into requests (parsed by `rtsp-types`,
//! RFC 7826 §20) and interleaved binary frames (`$`, channel, 16-bit
//! length, data: RFC 2326 §10.12, RFC 7826 §14), within bounds: a request
//! that has not ended within `max_request` bytes ends the connection.

use bytes::{Buf, Bytes, BytesMut};

/// One unit of input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    Request(rtsp_types::Request<Bytes>),
    /// A response from the peer (to a request of ours; clients send none
    /// unsolicited, so the server ignores them).
    Response(rtsp_types::Response<Bytes>),
    /// An interleaved frame: RTP or RTCP of a TCP transport.
    Interleaved {
        channel: u8,
        payload: Bytes,
    },
}

/// Why the input cannot be read on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramerError {
    #[error("not an RTSP message at byte {offset}: {start:?}")]
    Malformed { offset: u64, start: String },
    #[error("RTSP message at byte {offset} longer than {limit} bytes without its end")]
    TooLarge { offset: u64, limit: usize },
}

/// The input side of one RTSP connection (sans-IO).
#[derive(Debug)]
pub struct Framer {
    buf: BytesMut,
    max_request: usize,
    /// Bytes consumed so far, for error offsets.
    consumed: u64,
}

impl Framer {
    /// A framer for requests (head and body) of at most `max_request` bytes.
    pub fn new(max_request: usize) -> Framer {
        Framer {
            buf: BytesMut::new(),
            max_request,
            consumed: 0,
        }
    }

    /// Appends received bytes.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Bytes received and not yet returned.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete unit, if the buffer holds one.
    pub fn next_incoming(&mut self) -> Result<Option<Incoming>, FramerError> {
        let offset = self.consumed;
        match self.buf.first() {
            None => Ok(None),
            Some(b'$') => {
                let Some(&[_, channel, hi, lo]) = self.buf.get(..4) else {
                    return Ok(None);
                };
                let len = usize::from(u16::from_be_bytes([hi, lo]));
                if self.buf.len() < len.saturating_add(4) {
                    return Ok(None);
                }
                self.buf.advance(4);
                let payload = self.buf.split_to(len).freeze();
                self.consumed = self.consumed.wrapping_add(4).wrapping_add(len as u64);
                Ok(Some(Incoming::Interleaved { channel, payload }))
            }
            Some(_) => {
                let parsed = rtsp_types::Message::<Vec<u8>>::parse(&self.buf[..]);
                match parsed {
                    Ok((message, used)) => {
                        self.buf.advance(used);
                        self.consumed = self.consumed.wrapping_add(used as u64);
                        Ok(Some(match message {
                            rtsp_types::Message::Request(r) => {
                                Incoming::Request(r.map_body(Bytes::from))
                            }
                            rtsp_types::Message::Response(r) => {
                                Incoming::Response(r.map_body(Bytes::from))
                            }
                            rtsp_types::Message::Data(d) => Incoming::Interleaved {
                                channel: d.channel_id(),
                                payload: Bytes::copy_from_slice(d.as_slice()),
                            },
                        }))
                    }
                    Err(rtsp_types::ParseError::Incomplete(_)) => {
                        if self.buf.len() > self.max_request {
                            return Err(FramerError::TooLarge {
                                offset,
                                limit: self.max_request,
                            });
                        }
                        Ok(None)
                    }
                    Err(rtsp_types::ParseError::Error) => {
                        let head = self.buf.get(..self.buf.len().min(40)).unwrap_or_default();
                        let start: String = String::from_utf8_lossy(head)
                            .chars()
                            .map(|c| if c.is_control() { '.' } else { c })
                            .collect();
                        Err(FramerError::Malformed { offset, start })
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DESCRIBE: &[u8] = b"DESCRIBE rtsp://127.0.0.1:8554/live/cam RTSP/1.0\r\nCSeq: 2\r\nAccept: application/sdp\r\nUser-Agent: Lavf61.7.100\r\n\r\n";

    fn request(i: Incoming) -> rtsp_types::Request<Bytes> {
        match i {
            Incoming::Request(r) => r,
            other => panic!("not a request: {other:?}"),
        }
    }

    #[test]
    fn requests_and_interleaved_frames_in_any_split() {
        let mut input = DESCRIBE.to_vec();
        input.extend([b'$', 1, 0, 3, 0xaa, 0xbb, 0xcc]);
        input.extend(
            b"GET_PARAMETER rtsp://h/x RTSP/1.0\r\nCSeq: 3\r\nContent-Length: 4\r\n\r\nab\r\n",
        );
        for split in 1..input.len() {
            let mut f = Framer::new(4096);
            let mut got = Vec::new();
            for piece in input.chunks(split) {
                f.push(piece);
                while let Some(i) = f.next_incoming().unwrap() {
                    got.push(i);
                }
            }
            assert_eq!(got.len(), 3, "split {split}");
            let mut got = got.into_iter();
            let d = request(got.next().unwrap());
            assert_eq!(d.method(), &rtsp_types::Method::Describe);
            assert_eq!(d.header(&rtsp_types::headers::CSEQ).unwrap().as_str(), "2");
            assert_eq!(
                got.next().unwrap(),
                Incoming::Interleaved {
                    channel: 1,
                    payload: Bytes::from_static(&[0xaa, 0xbb, 0xcc])
                }
            );
            let g = request(got.next().unwrap());
            assert_eq!(g.body().as_ref(), b"ab\r\n");
            assert_eq!(f.buffered(), 0);
        }
    }

    #[test]
    fn garbage_and_endless_heads_are_errors() {
        let mut f = Framer::new(4096);
        f.push(b"\x16\x03\x01 hello");
        assert!(matches!(
            f.next_incoming(),
            Err(FramerError::Malformed { offset: 0, .. })
        ));

        // A head that never ends, one header at a time.
        let mut f = Framer::new(1024);
        f.push(b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\n");
        let mut result = Ok(None);
        for _ in 0..200 {
            f.push(b"X-Pad: aaaaaaaaaaaaaaaa\r\n");
            result = f.next_incoming();
            if result.is_err() {
                break;
            }
        }
        assert_eq!(
            result,
            Err(FramerError::TooLarge {
                offset: 0,
                limit: 1024
            })
        );

        // A body whose Content-Length lies (never arrives) is bounded too.
        let mut f = Framer::new(1024);
        f.push(b"ANNOUNCE rtsp://h/x RTSP/1.0\r\nCSeq: 1\r\nContent-Length: 100000\r\n\r\n");
        f.push(&[b'v'; 2000]);
        assert!(matches!(
            f.next_incoming(),
            Err(FramerError::TooLarge { .. })
        ));
    }
}
