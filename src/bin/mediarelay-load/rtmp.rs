//! RTMP: the publisher (an FLV file at real-time pace, looped, every AVC
//! frame stamped for the latency probe) and players, on the project's
//! sans-IO RTMP client.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mediarelay::container::flv_file::{FlvFile, TAG_AUDIO, TAG_VIDEO};
use mediarelay::protocol::rtmp::{ClientEvent, ClientSession};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::Error;
use crate::latency::{self, Latencies};
use crate::stats::ViewerStats;

/// An RTMP connection driven by the project's sans-IO client.
struct Rtmp {
    socket: TcpStream,
    session: ClientSession,
    buf: Vec<u8>,
}

impl Rtmp {
    async fn connect(addr: SocketAddr, app: &str) -> Result<Rtmp, Error> {
        let socket = TcpStream::connect(addr).await?;
        socket.set_nodelay(true)?;
        let mut c = Rtmp {
            socket,
            session: ClientSession::new(),
            buf: vec![0; 64 * 1024],
        };
        c.session.connect(app, &format!("rtmp://{addr}/{app}"));
        c.wait_for(|e| matches!(e, ClientEvent::Connected)).await?;
        c.session.create_stream();
        c.wait_for(|e| matches!(e, ClientEvent::StreamCreated { .. }))
            .await?;
        Ok(c)
    }

    async fn flush(&mut self) -> Result<(), Error> {
        while let Some(b) = self.session.take_output() {
            self.socket.write_all(&b).await?;
        }
        Ok(())
    }

    /// Reads once into the session; `false` at the end of the stream.
    async fn read(&mut self) -> Result<bool, Error> {
        let n = self.socket.read(&mut self.buf).await?;
        if n == 0 {
            return Ok(false);
        }
        self.session.handle_input(&self.buf[..n])?;
        self.flush().await?;
        Ok(true)
    }

    async fn wait_for(
        &mut self,
        want: impl Fn(&ClientEvent) -> bool,
    ) -> Result<ClientEvent, Error> {
        self.flush().await?;
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                while let Some(e) = self.session.poll_event() {
                    if want(&e) {
                        return Ok(e);
                    }
                    if let ClientEvent::Status { level, code, .. } = &e
                        && level == "error"
                    {
                        return Err(format!("refused: {code}").into());
                    }
                }
                if !self.read().await? {
                    return Err("connection closed".into());
                }
            }
        })
        .await
        .map_err(|_| Error::from("no answer in 10 s"))?
    }
}

pub fn split(path: &str) -> (&str, &str) {
    path.rsplit_once('/').unwrap_or(("live", path))
}

/// Publishes `file`'s tags at their own pace, looped, until `deadline`.
pub async fn publish(
    addr: SocketAddr,
    path: &str,
    file: &PathBuf,
    deadline: Instant,
) -> Result<(), Error> {
    let data = Bytes::from(std::fs::read(file)?);
    let (app, key) = split(path);
    let mut c = Rtmp::connect(addr, app).await?;
    c.session.publish(key);
    c.wait_for(|e| matches!(e, ClientEvent::PublishStarted))
        .await?;
    let started = Instant::now();
    let mut offset = 0u32;
    let mut length_size = 4u8;
    while Instant::now() < deadline {
        let mut reader = FlvFile::new(data.clone())?;
        let mut last = 0u32;
        while let Some(tag) = reader.next_tag() {
            let tag = tag?;
            let ts = offset.wrapping_add(tag.timestamp);
            last = last.max(tag.timestamp);
            let due = started + Duration::from_millis(u64::from(ts));
            tokio::time::sleep_until(due.into()).await;
            match tag.tag_type {
                TAG_VIDEO => {
                    if let Some(size) = latency::avc_length_size(&tag.body) {
                        length_size = size;
                    }
                    let unix_us = latency::unix_us_now();
                    match latency::stamp_avc_tag(&tag.body, length_size, unix_us) {
                        Some(stamped) => c.session.send_video(ts, &stamped),
                        None => c.session.send_video(ts, &tag.body),
                    }
                }
                TAG_AUDIO => c.session.send_audio(ts, &tag.body),
                _ => continue,
            }
            c.flush().await?;
            if Instant::now() >= deadline {
                break;
            }
        }
        offset = offset.wrapping_add(last + 40);
    }
    Ok(())
}

pub async fn rtmp_player(
    addr: SocketAddr,
    path: &str,
    s: &ViewerStats,
    latencies: &Latencies,
    start: Instant,
    until: Instant,
) -> Result<(), Error> {
    let joined_us = latency::unix_us_now();
    let (app, key) = split(path);
    let mut c = Rtmp::connect(addr, app).await?;
    c.session.play(key);
    c.wait_for(|e| matches!(e, ClientEvent::PlayStarted))
        .await?;
    let mut last_video: Option<u32> = None;
    while Instant::now() < until {
        let more = tokio::time::timeout_at(until.into(), c.read()).await;
        match more {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) | Ok(Err(_)) => return Err("the server closed the connection".into()),
            Err(_) => break,
        }
        while let Some(e) = c.session.poll_event() {
            match e {
                ClientEvent::Video { timestamp, payload } => {
                    latencies.record(&payload, latency::unix_us_now(), joined_us);
                    s.bytes.fetch_add(payload.len() as u64, Ordering::Relaxed);
                    s.units.fetch_add(1, Ordering::Relaxed);
                    s.first(start);
                    if let Some(last) = last_video
                        && timestamp.wrapping_sub(last) > 1000
                        && timestamp > last
                    {
                        s.lost.fetch_add(1, Ordering::Relaxed);
                    }
                    last_video = Some(timestamp);
                }
                ClientEvent::Audio { payload, .. } => {
                    s.bytes.fetch_add(payload.len() as u64, Ordering::Relaxed);
                }
                _ => {}
            }
        }
    }
    Ok(())
}
