//! Driving one str0m session: datagrams and timeouts in, transmits out,
//! events up to the caller.

use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::net::{Protocol, Receive};
use str0m::{Event, IceConnectionState, Input, Output, Rtc, RtcError};
use tokio::sync::mpsc;

use super::engine::{Datagram, Engine};
use super::udp_batch::Outbox;

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

    fn poll(&mut self, events: &mut Vec<SessionEvent>) -> Result<(), RtcError> {
        let mut due_rounds = 0;
        loop {
            match self.rtc.poll_output()? {
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
        let wait = self.next_timeout.saturating_duration_since(Instant::now());
        let input_at = tokio::select! {
            d = self.rx.recv() => match d {
                Some(d) => Some(d),
                None => {
                    self.closed = true;
                    return Ok(());
                }
            },
            _ = tokio::time::sleep(wait.max(Duration::from_micros(100))) => None,
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
