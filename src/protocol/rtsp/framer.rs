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
    /// Where the search for the end of the current message's head goes on
    /// (bytes before it were searched already).
    scanned: usize,
    /// The buffer length the current message needs before it is parsed:
    /// its head's end plus `Content-Length`, once the head has ended.
    /// Parsing a message only when it can be whole keeps a peer that
    /// trickles bytes from costing a parse of the whole buffer per byte.
    need: usize,
}

impl Framer {
    /// A framer for requests (head and body) of at most `max_request` bytes.
    pub fn new(max_request: usize) -> Framer {
        Framer {
            buf: BytesMut::new(),
            max_request,
            consumed: 0,
            scanned: 0,
            need: 0,
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
                let too_large = |len: usize| {
                    if len > self.max_request {
                        Err(FramerError::TooLarge {
                            offset,
                            limit: self.max_request,
                        })
                    } else {
                        Ok(None)
                    }
                };
                // A request starts with a method, a response with
                // `RTSP/`: anything else (TLS, garbage) is refused at once
                // rather than waited on.
                if !self.buf.first().is_some_and(u8::is_ascii_uppercase) {
                    return Err(self.malformed(offset));
                }
                if self.need == 0 {
                    // The head ends at the first empty line (RFC 7826 §5).
                    let from = self.scanned.saturating_sub(3);
                    let tail = self.buf.get(from..).unwrap_or_default();
                    let Some(end) = tail.windows(4).position(|w| w == b"\r\n\r\n") else {
                        self.scanned = self.buf.len();
                        return too_large(self.buf.len());
                    };
                    let head_len = from.saturating_add(end).saturating_add(4);
                    let head = self.buf.get(..head_len).unwrap_or_default();
                    self.need = head_len.saturating_add(content_length(head));
                }
                if self.buf.len() < self.need {
                    return too_large(self.need);
                }
                let parsed = rtsp_types::Message::<Vec<u8>>::parse(&self.buf[..]);
                match parsed {
                    Ok((message, used)) => {
                        self.scanned = 0;
                        self.need = 0;
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
                    // The head said the message is whole and the parser
                    // wants more: parse again only with more bytes.
                    Err(rtsp_types::ParseError::Incomplete(_)) => {
                        self.need = self.buf.len().saturating_add(1);
                        too_large(self.buf.len())
                    }
                    Err(rtsp_types::ParseError::Error) => Err(self.malformed(offset)),
                }
            }
        }
    }
}

impl Framer {
    fn malformed(&self, offset: u64) -> FramerError {
        let head = self.buf.get(..self.buf.len().min(40)).unwrap_or_default();
        let start: String = String::from_utf8_lossy(head)
            .chars()
            .map(|c| if c.is_control() { '.' } else { c })
            .collect();
        FramerError::Malformed { offset, start }
    }
}

/// The `Content-Length` of a message head (0 without one, or when it does
/// not parse: the parser then says what is wrong).
fn content_length(head: &[u8]) -> usize {
    head.split(|&b| b == b'\n')
        .find_map(|line| {
            let colon = line.iter().position(|&b| b == b':')?;
            let (name, value) = line.split_at(colon);
            if !name.trim_ascii().eq_ignore_ascii_case(b"content-length") {
                return None;
            }
            std::str::from_utf8(value.get(1..)?)
                .ok()?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0)
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

    /// A request trickled a byte at a time is parsed once, when whole (its
    /// head ended and its body arrived), not once per byte.
    #[test]
    fn a_trickled_request_is_parsed_when_whole() {
        let body = b"v=0\r\n";
        let mut req =
            b"ANNOUNCE rtsp://h/x RTSP/1.0\r\nCSeq: 1\r\ncontent-length:  5\r\n\r\n".to_vec();
        req.extend_from_slice(body);
        let mut f = Framer::new(4096);
        for (i, b) in req.iter().enumerate() {
            f.push(&[*b]);
            let got = f.next_incoming().unwrap();
            if i + 1 < req.len() {
                assert_eq!(got, None, "byte {i}");
                // Nothing is parsed before the message can be whole.
                assert!(f.need == 0 || f.need == req.len(), "byte {i}: {}", f.need);
            } else {
                assert_eq!(request(got.unwrap()).body().as_ref(), body);
            }
        }
        assert_eq!((f.buffered(), f.need, f.scanned), (0, 0, 0));
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
