//! Driving one str0m session: datagrams and timeouts in, transmits out,
//! events up to the caller.

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::media::Mid;
use str0m::net::{Protocol, Receive};
use str0m::rtp::Ssrc;
use str0m::{Event, IceConnectionState, Input, Output, Rtc, RtcError};
use tokio::sync::mpsc;

use super::engine::{Datagram, Engine};
use super::resend_budget::{ResendBudget, Verdict};
use super::udp_batch::Outbox;

/// How long str0m keeps a sent packet for resending (its default).
const RESEND_MAX_AGE: Duration = Duration::from_secs(3);

/// Due timeouts handled in one [`Session::drive`] before it leaves the rest
/// to the timer (bounds the work of one call).
const MAX_DUE_ROUNDS: u32 = 64;

/// What a session reports to its owner.
#[derive(Debug)]
pub enum SessionEvent {
    /// A str0m event (media, keyframe requests, connection state …).
    Rtc(Box<Event>),
    /// ICE disconnected or the peer closed: the session is over.
    Closed,
}

/// One WebRTC session on the engine's socket. Dropping it unregisters it.
pub struct Session {
    id: u64,
    pub rtc: Rtc,
    rx: mpsc::Receiver<Box<Datagram>>,
    engine: Arc<Engine>,
    next_timeout: Instant,
    closed: bool,
    /// UDP datagrams of the current [`Session::drive`], sent at its end.
    outbox: Outbox,
    /// Set by [`Session::cap_resends`]: the session's own cap on resends,
    /// and the streams whose resend buffer it empties when over it (main
    /// SSRC, buffer size in packets).
    resends: Option<(ResendBudget, Vec<(Ssrc, usize)>)>,
    /// The timer [`Session::input`] waits on, with the str0m timeout it was
    /// set for. Kept between calls: a session is woken for every frame it
    /// sends, and a timer made per wait was entered into and taken out of
    /// the runtime's timer wheel each time. Made on the first wait (it needs
    /// the runtime), moved only when str0m's next timeout moves or the
    /// timer has fired.
    timer: Option<(Pin<Box<tokio::time::Sleep>>, Instant)>,
}

impl Session {
    pub(crate) fn new(
        id: u64,
        rtc: Rtc,
        rx: mpsc::Receiver<Box<Datagram>>,
        engine: Arc<Engine>,
    ) -> Self {
        Session {
            id,
            rtc,
            rx,
            engine,
            next_timeout: Instant::now(),
            closed: false,
            outbox: Outbox::default(),
            resends: None,
            timer: None,
        }
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn is_closed(&self) -> bool {
        self.closed || !self.rtc.is_alive()
    }

    /// Lets str0m do everything it can now: sends its datagrams and collects
    /// its events. Call after every input and every write.
    ///
    /// A timeout that is already due is handled here, not after a trip
    /// through the timer: str0m packetizes a written frame only on a
    /// timeout (one frame per media per timeout), so a write followed by
    /// `drive` sends its packets at once, with no timer wake per frame.
    ///
    /// The UDP datagrams of one call leave together, several per system
    /// call (see [`udp_batch`](super::udp_batch)).
    pub fn drive(&mut self, events: &mut Vec<SessionEvent>) -> Result<(), RtcError> {
        let result = self.poll(events);
        let engine = &self.engine;
        self.outbox.flush(&mut |to, d| engine.send_many(to, d));
        result
    }

    /// Caps what the peer can make this session resend with the session's
    /// own [`ResendBudget`] instead of str0m's per-stream record (~16 KiB a
    /// viewer): for the outgoing streams of `streams` (media id, resend
    /// buffer size in packets). Call before anything is sent; a stream not
    /// declared yet keeps str0m's cap.
    pub fn cap_resends(&mut self, streams: &[(Mid, usize)]) {
        let mut api = self.rtc.direct_api();
        let mut rtx = Vec::new();
        let mut buffers = Vec::new();
        for &(mid, size) in streams {
            let Some(stream) = api.stream_tx_by_mid(mid, None) else {
                continue;
            };
            stream.set_rtx_cache(size, RESEND_MAX_AGE, None);
            if let Some(r) = stream.rtx() {
                rtx.push(*r);
                buffers.push((stream.ssrc(), size));
            }
        }
        self.resends = Some((ResendBudget::new(rtx, Instant::now()), buffers));
    }

    /// Whether an outgoing datagram may go under the resend budget. A
    /// refused resend empties the resend buffers, so the resends queued
    /// behind it find nothing: one is encrypted and dropped per refusal,
    /// however many a NACK asked for.
    fn admit(&mut self, now: Instant, datagram: &[u8]) -> bool {
        let Some((budget, streams)) = &mut self.resends else {
            return true;
        };
        match budget.admit(now, datagram) {
            Verdict::Send => true,
            Verdict::Drop => {
                tracing::trace!(
                    session = self.id,
                    "resend over the budget dropped; resend buffer emptied"
                );
                let mut api = self.rtc.direct_api();
                for &(ssrc, size) in streams.iter() {
                    if let Some(stream) = api.stream_tx(&ssrc) {
                        stream.set_rtx_cache(size, RESEND_MAX_AGE, None);
                    }
                }
                false
            }
        }
    }

    fn poll(&mut self, events: &mut Vec<SessionEvent>) -> Result<(), RtcError> {
        let mut due_rounds = 0;
        // The resend budget's clock: its buckets are half a second.
        let polled_at = Instant::now();
        loop {
            match self.rtc.poll_output()? {
                Output::Transmit(t) if !self.admit(polled_at, &t.contents) => {}
                Output::Transmit(t) if t.proto == Protocol::Udp => {
                    let engine = &self.engine;
                    self.outbox
                        .push(t.destination, t.contents.into(), &mut |to, d| {
                            engine.send_many(to, d)
                        });
                }
                Output::Transmit(t) => self.engine.transmit(t.proto, t.destination, &t.contents),
                Output::Timeout(at) => {
                    let now = Instant::now();
                    if at <= now && due_rounds < MAX_DUE_ROUNDS {
                        due_rounds += 1;
                        self.rtc.handle_input(Input::Timeout(now))?;
                        continue;
                    }
                    self.next_timeout = at;
                    return Ok(());
                }
                Output::Event(e) => {
                    let closed = matches!(
                        e,
                        Event::IceConnectionStateChange(IceConnectionState::Disconnected)
                            | Event::Closed
                    );
                    events.push(SessionEvent::Rtc(Box::new(e)));
                    if closed && !self.closed {
                        self.closed = true;
                        events.push(SessionEvent::Closed);
                    }
                }
            }
        }
    }

    /// Waits for the next datagram or timeout and feeds it to str0m.
    /// Cancel-safe: nothing is lost if the future is dropped.
    pub async fn input(&mut self) -> Result<(), RtcError> {
        // At least 100 µs, so a timeout that is due already does not spin.
        let wait = self
            .next_timeout
            .saturating_duration_since(Instant::now())
            .max(Duration::from_micros(100));
        let timer = match &mut self.timer {
            Some((timer, set_for)) => {
                if *set_for != self.next_timeout || timer.is_elapsed() {
                    timer.as_mut().reset(tokio::time::Instant::now() + wait);
                    *set_for = self.next_timeout;
                }
                timer
            }
            None => {
                let timer = Box::pin(tokio::time::sleep(wait));
                &mut self.timer.insert((timer, self.next_timeout)).0
            }
        };
        let input_at = tokio::select! {
            d = self.rx.recv() => match d {
                Some(d) => Some(d),
                None => {
                    self.closed = true;
                    return Ok(());
                }
            },
            _ = timer.as_mut() => None,
        };
        match input_at {
            Some(d) => {
                let Ok(contents) = d.data.as_slice().try_into() else {
                    return Ok(()); // not a datagram str0m can parse
                };
                self.rtc.handle_input(Input::Receive(
                    d.at,
                    Receive {
                        proto: d.proto,
                        source: d.source,
                        destination: d.destination,
                        contents,
                    },
                ))
            }
            None => self.rtc.handle_input(Input::Timeout(Instant::now())),
        }
    }

    /// Ends the session (DTLS close, then gone).
    pub fn close(&mut self) {
        let _ = self.rtc.close();
        self.closed = true;
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.engine.close(self.id);
    }
}
