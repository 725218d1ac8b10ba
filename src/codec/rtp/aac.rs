//! AAC depacketization, RFC 3640 `mode=AAC-hbr` (§3.3.6): a 16-bit
//! AU-headers-length (in bits), AU headers of a 13-bit AU-size and a 3-bit
//! AU-Index (first) or AU-Index-delta (the others), then the access units
//! back to back (§3.2.1, §3.2.3). Access units follow each other by one frame
//! duration from the RTP timestamp. An access unit larger than a packet is
//! fragmented over packets of the same timestamp, each with one AU header
//! giving the whole size, the last with the marker bit (§3.2.3.1, §3.3.6).
//! Interleaving (a non-zero index) is not supported.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use super::{DepacketizeError, Packet, Unit, push_ready};

/// AU-size bits + AU-Index bits in `AAC-hbr`.
const AU_HEADER_BITS: usize = 16;

/// A fragmented access unit being put together.
#[derive(Debug)]
struct Fragment {
    timestamp: i64,
    size: usize,
    data: BytesMut,
}

/// Depacketizer of one `AAC-hbr` stream.
#[derive(Debug)]
pub struct AacDepacketizer {
    samples_per_frame: u32,
    fragment: Option<Fragment>,
    loss: u16,
    ready: VecDeque<Unit>,
}

impl AacDepacketizer {
    /// `samples_per_frame`: 1024 for AAC-LC (960 for the 960-sample variant),
    /// the RTP time between access units of one packet.
    pub fn new(samples_per_frame: u32) -> Self {
        AacDepacketizer {
            samples_per_frame,
            fragment: None,
            loss: 0,
            ready: VecDeque::new(),
        }
    }

    /// See [`super::Depacketizer::pull`].
    pub fn pull(&mut self) -> Option<Unit> {
        self.ready.pop_front()
    }

    /// See [`super::Depacketizer::push`].
    pub fn push(&mut self, pkt: Packet) -> Result<(), DepacketizeError> {
        if pkt.loss > 0 {
            self.loss = self.loss.saturating_add(pkt.loss);
            self.fragment = None;
        }
        let p = &pkt.payload;
        let (Some(&a), Some(&b)) = (p.first(), p.get(1)) else {
            return Err(self.fail(&pkt, "payload shorter than AU-headers-length"));
        };
        let header_bits = usize::from(u16::from_be_bytes([a, b]));
        if header_bits == 0 || header_bits % AU_HEADER_BITS != 0 {
            return Err(self.fail(
                &pkt,
                format!("AU-headers-length {header_bits} is not a multiple of 16 bits"),
            ));
        }
        let count = header_bits / AU_HEADER_BITS;
        let data_start = 2 + count * 2;
        let Some(data) = p.get(data_start..) else {
            return Err(self.fail(&pkt, format!("{count} AU headers do not fit")));
        };
        let header = |i: usize| -> Option<(usize, u8)> {
            let h = u16::from_be_bytes([*p.get(2 + i * 2)?, *p.get(3 + i * 2)?]);
            Some((usize::from(h >> 3), (h & 7) as u8))
        };
        if let Some(f) = &mut self.fragment {
            // A continuation: one AU header with the whole size.
            let same = count == 1
                && f.timestamp == pkt.timestamp
                && header(0).is_some_and(|(size, _)| size == f.size);
            if !same {
                self.fragment = None;
                return Err(self.fail(&pkt, "fragmented access unit not continued"));
            }
            if f.data.len() + data.len() > f.size {
                self.fragment = None;
                return Err(self.fail(&pkt, "fragments longer than the access unit"));
            }
            f.data.extend_from_slice(data);
            if pkt.mark {
                let whole = f.data.len() == f.size;
                let f = self.fragment.take();
                if let (true, Some(f)) = (whole, f) {
                    self.emit(f.timestamp, f.data.freeze());
                } else {
                    return Err(self.fail(&pkt, "fragmented access unit ends short"));
                }
            }
            return Ok(());
        }
        let mut at = 0usize;
        let mut units = Vec::with_capacity(count);
        for i in 0..count {
            let Some((size, index)) = header(i) else {
                return Err(self.fail(&pkt, "truncated AU header"));
            };
            if index != 0 {
                return Err(self.fail(&pkt, "interleaved AAC (AU-Index not 0) not supported"));
            }
            if count == 1 && size > data.len() {
                // The first fragment of a large access unit.
                if pkt.mark {
                    return Err(self.fail(
                        &pkt,
                        format!("access unit of {size} bytes in a shorter packet"),
                    ));
                }
                let mut d = BytesMut::with_capacity(size);
                d.extend_from_slice(data);
                self.fragment = Some(Fragment {
                    timestamp: pkt.timestamp,
                    size,
                    data: d,
                });
                return Ok(());
            }
            let end = at + size;
            if size == 0 || end > data.len() {
                return Err(self.fail(
                    &pkt,
                    format!("access unit {i} of {size} bytes does not fit"),
                ));
            }
            units.push(at..end);
            at = end;
        }
        let payload = p.slice(data_start..);
        for (i, range) in units.into_iter().enumerate() {
            let ts = pkt.timestamp + i as i64 * i64::from(self.samples_per_frame);
            self.emit(ts, payload.slice(range));
        }
        Ok(())
    }

    fn emit(&mut self, timestamp: i64, data: Bytes) {
        push_ready(
            &mut self.ready,
            Unit {
                timestamp,
                keyframe: true,
                loss: std::mem::take(&mut self.loss),
                data,
                new_params: None,
            },
        );
    }

    fn fail(&self, pkt: &Packet, description: impl Into<String>) -> DepacketizeError {
        DepacketizeError::new(pkt, description)
    }
}
