//! Driving one str0m session: datagrams and timeouts in, transmits out,
//! events up to the caller.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use str0m::net::{Protocol, Receive};
use str0m::{Event, IceConnectionState, Input, Output, Rtc, RtcError};
use tokio::sync::mpsc;

use super::engine::{Datagram, Engine};
use super::resend_budget::{ResendBudget, Verdict};
use super::rtcp::{self, Feedback};
use super::send_stream::{MAX_HEADER, SendStream, StreamSpec};
use super::srtp::{MAX_OVERHEAD, Srtp};
use super::udp_batch::{self, Outbox};

/// How often a stream the session sends itself gets a sender report (RFC
/// 3550 §6.2 leaves the interval to the application; browsers' own senders
/// report about once a second, and receivers map RTP to wall-clock time
/// with them for audio/video sync).
const REPORT_INTERVAL: Duration = Duration::from_secs(1);

/// Due timeouts handled in one [`Session::drive`] before it leaves the rest
/// to the timer (bounds the work of one call).
const MAX_DUE_ROUNDS: u32 = 64;

/// What a session reports to its owner.
#[derive(Debug)]
pub enum SessionEvent {
    /// A str0m event (media, keyframe requests, connection state …).
    Rtc(Box<Event>),
    /// The viewer lost its picture (PLI or FIR) on this stream the session
    /// sends itself (its index in [`Session::send_own`]).
    KeyframeRequest(usize),
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
    /// Set by [`Session::send_own`]: the streams this session sends
    /// itself instead of through str0m.
    own: Option<Box<OwnMedia>>,
    /// The SRTP keys of this session's handshake were taken (see
    /// [`super::dtls::take_exported_keys`]).
    keyed: bool,
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
            own: None,
            keyed: false,
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

    /// Sends the outgoing streams of `specs` itself from now on, instead
    /// of through str0m (which must no longer have them: see
    /// `egress::webrtc`): RTP from [`Session::send_rtp`], SRTP with the
    /// keys of this session's DTLS handshake, the packets kept for NACKs
    /// (`keep` each) resent as RTX under the session's [`ResendBudget`],
    /// sender reports, and the viewer's RTCP read here (keyframe requests
    /// come out as [`SessionEvent::KeyframeRequest`]). str0m keeps ICE,
    /// DTLS and consent. Call before the handshake.
    pub(crate) fn send_own(&mut self, specs: Vec<(StreamSpec, usize)>) {
        let rtx = specs
            .iter()
            .filter_map(|(s, _)| s.rtx.map(|r| r.0))
            .collect();
        let now = Instant::now();
        self.own = Some(Box::new(OwnMedia {
            streams: specs
                .into_iter()
                .map(|(spec, keep)| SendStream::new(spec, keep))
                .collect(),
            srtp: None,
            to: None,
            budget: ResendBudget::new(rtx, now),
            header: Vec::with_capacity(MAX_HEADER),
            scratch: Vec::new(),
            rtcp: Vec::new(),
            feedback: Vec::new(),
            keyframe_requests: Vec::new(),
            next_report: now,
        }));
    }

    /// Whether [`Session::send_rtp`] can send: the handshake's keys are in
    /// and the peer's address known.
    pub fn can_send(&self) -> bool {
        self.own
            .as_ref()
            .is_some_and(|o| o.srtp.is_some() && o.to.is_some())
    }

    /// Sends one RTP packet of stream `stream` (an index into
    /// [`Session::send_own`]'s streams): `payload` at RTP time `time`,
    /// which stands for `wallclock`. Queued with the session's other
    /// datagrams; [`Session::flush`] or [`Session::drive`] sends them.
    /// Nothing happens before [`Session::can_send`].
    pub fn send_rtp(
        &mut self,
        stream: usize,
        time: u32,
        marker: bool,
        payload: &Arc<[u8]>,
        wallclock: Instant,
    ) {
        let Some(own) = self.own.as_deref_mut() else {
            return;
        };
        let (Some(srtp), Some(to), Some(s)) =
            (own.srtp.as_mut(), own.to, own.streams.get_mut(stream))
        else {
            return;
        };
        let index = s.next(time, marker, payload, wallclock, &mut own.header);
        let mut datagram = udp_batch::buffer(own.header.len() + payload.len() + MAX_OVERHEAD + 16);
        srtp.protect_rtp(&own.header, payload, index, &mut datagram);
        own.budget.admit(Instant::now(), &datagram);
        let engine = &self.engine;
        send_to(engine, &mut self.outbox, to, datagram);
    }

    /// Sends what [`Session::send_rtp`] queued.
    pub fn flush(&mut self) {
        let engine = &self.engine;
        self.outbox.flush(&mut |to, d| engine.send_many(to, d));
    }

    /// Drops SRTP keys some other session's call into str0m left behind
    /// (one that returned early with an error): called before this
    /// session's calls while its own handshake is not done, so that
    /// [`Session::take_keys`] after them can only find its own.
    fn discard_stray_keys(&self) {
        if !self.keyed {
            let _ = super::dtls::take_exported_keys();
        }
    }

    /// Takes the SRTP keys of this session's handshake when a call into
    /// str0m has just finished it (see [`super::dtls::take_exported_keys`]).
    fn take_keys(&mut self) {
        if self.keyed {
            return;
        }
        let Some(keys) = super::dtls::take_exported_keys() else {
            return;
        };
        self.keyed = true;
        tracing::debug!(session = self.id, ?keys, "DTLS exported SRTP keys");
        if let Some(own) = self.own.as_deref_mut() {
            own.srtp = Srtp::new(&super::dtls::crypto_provider(), &keys);
            if own.srtp.is_none() {
                tracing::warn!(
                    session = self.id,
                    ?keys,
                    "SRTP keying material of the wrong length"
                );
            }
        }
    }

    /// A datagram the session reads itself: the viewer's SRTCP, once the
    /// session sends its own media. Feedback is acted on here (NACKs) or
    /// queued as an event (keyframe requests); the packet's source becomes
    /// where media goes (the peer sends on the pair it nominated).
    fn own_rtcp(&mut self, d: &Datagram) -> bool {
        let Some(own) = self.own.as_deref_mut() else {
            return false;
        };
        let Some(srtp) = own.srtp.as_mut() else {
            return false;
        };
        if !rtcp::is_rtcp(&d.data) {
            return false;
        }
        if let Err(e) = srtp.unprotect_rtcp(&d.data, &mut own.rtcp) {
            tracing::debug!(session = self.id, error = %e, "SRTCP packet dropped");
            return true;
        }
        own.to = Some((d.proto, d.source));
        own.feedback.clear();
        rtcp::feedback(&own.rtcp, |f| own.feedback.push(f));
        let now = Instant::now();
        for i in 0..own.feedback.len() {
            let f = own.feedback[i];
            let Some(n) = own.streams.iter().position(|s| s.ssrc() == f.ssrc()) else {
                continue;
            };
            match f {
                Feedback::KeyframeRequest { .. } => own.keyframe_requests.push(n),
                Feedback::Nack { pid, blp, .. } => {
                    for seq in Feedback::nacked(pid, blp) {
                        if !own.resend(n, seq, now, &self.engine, &mut self.outbox) {
                            break;
                        }
                    }
                }
            }
        }
        true
    }

    /// Sends the sender reports that are due and returns when the next are.
    fn report(&mut self, now: Instant) -> Option<Instant> {
        let own = self.own.as_deref_mut()?;
        let (Some(srtp), Some(to)) = (own.srtp.as_mut(), own.to) else {
            return None;
        };
        if now >= own.next_report {
            let wall = SystemTime::now();
            for s in &own.streams {
                let Some(info) = s.sender_info(now, wall) else {
                    continue;
                };
                rtcp::sender_report(&info, s.cname(), &mut own.scratch);
                let mut datagram = udp_batch::buffer(own.scratch.len() + MAX_OVERHEAD);
                srtp.protect_rtcp(&own.scratch, &mut datagram);
                send_to(&self.engine, &mut self.outbox, to, datagram);
            }
            own.next_report = now + REPORT_INTERVAL;
        }
        Some(own.next_report)
    }

    fn poll(&mut self, events: &mut Vec<SessionEvent>) -> Result<(), RtcError> {
        let mut due_rounds = 0;
        let polled_at = Instant::now();
        let next_report = self.report(polled_at);
        self.discard_stray_keys();
        loop {
            let output = self.rtc.poll_output();
            self.take_keys();
            match output? {
                Output::Transmit(t) => {
                    self.learn_destination(t.proto, t.destination, &t.contents);
                    let to = (t.proto, t.destination);
                    send_to(&self.engine, &mut self.outbox, to, t.contents.into());
                }
                Output::Timeout(at) => {
                    let now = Instant::now();
                    if at <= now && due_rounds < MAX_DUE_ROUNDS {
                        due_rounds += 1;
                        let handled = self.rtc.handle_input(Input::Timeout(now));
                        self.take_keys();
                        handled?;
                        continue;
                    }
                    self.next_timeout = next_report.map_or(at, |r| r.min(at));
                    for n in self
                        .own
                        .iter_mut()
                        .flat_map(|o| o.keyframe_requests.drain(..))
                    {
                        events.push(SessionEvent::KeyframeRequest(n));
                    }
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
        self.discard_stray_keys();
        let result = match input_at {
            Some(d) => {
                if self.own_rtcp(&d) {
                    return Ok(());
                }
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
        };
        self.take_keys();
        result
    }

    /// Where the session's own media goes until the peer's RTCP says: the
    /// address str0m sends DTLS to (its nominated pair; RFC 7983 §7: a
    /// first byte of 20–63 is DTLS).
    fn learn_destination(&mut self, proto: Protocol, to: SocketAddr, contents: &[u8]) {
        if let Some(own) = self.own.as_deref_mut()
            && own.to.is_none()
            && contents.first().is_some_and(|b| (20..=63).contains(b))
        {
            own.to = Some((proto, to));
        }
    }

    /// Ends the session (DTLS close, then gone).
    pub fn close(&mut self) {
        let _ = self.rtc.close();
        self.closed = true;
    }
}

/// The state of the streams a session sends itself.
struct OwnMedia {
    streams: Vec<SendStream>,
    srtp: Option<Srtp>,
    /// The peer's address for media.
    to: Option<(Protocol, SocketAddr)>,
    budget: ResendBudget,
    /// Buffers kept between packets: an RTP header, an RTX payload or an
    /// RTCP packet in the clear, a received RTCP packet decrypted.
    header: Vec<u8>,
    scratch: Vec<u8>,
    rtcp: Vec<u8>,
    feedback: Vec<Feedback>,
    /// Streams whose viewer asked for a keyframe, for the next events.
    keyframe_requests: Vec<usize>,
    next_report: Instant,
}

impl OwnMedia {
    /// Resends packet `seq` of stream `n` as RTX, if it is kept and the
    /// resend budget allows; over the budget the stream's kept packets are
    /// forgotten (the rest of the NACK finds nothing) and `false` returned.
    fn resend(
        &mut self,
        n: usize,
        seq: u16,
        now: Instant,
        engine: &Engine,
        outbox: &mut Outbox,
    ) -> bool {
        let (Some(srtp), Some(to), Some(s)) =
            (self.srtp.as_mut(), self.to, self.streams.get_mut(n))
        else {
            return false;
        };
        let Some(index) = s.resend(seq, &mut self.header, &mut self.scratch) else {
            return true;
        };
        let mut datagram =
            udp_batch::buffer(self.header.len() + self.scratch.len() + MAX_OVERHEAD + 16);
        srtp.protect_rtp(&self.header, &self.scratch, index, &mut datagram);
        if self.budget.admit(now, &datagram) == Verdict::Drop {
            s.forget();
            return false;
        }
        send_to(engine, outbox, to, datagram);
        true
    }
}

/// Queues a datagram for the peer (UDP, sent in batches) or sends it at
/// once (ICE-TCP, framed by the engine).
fn send_to(engine: &Engine, outbox: &mut Outbox, to: (Protocol, SocketAddr), datagram: Vec<u8>) {
    match to.0 {
        Protocol::Udp => outbox.push(to.1, datagram, &mut |to, d| engine.send_many(to, d)),
        proto => engine.transmit(proto, to.1, &datagram),
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.engine.close(self.id);
    }
}
