//! AAC → Opus once per path for WebRTC viewers: a derived Opus track of the
//! stream, fed by one transcoder that runs while any WHEP viewer needs it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use tokio_util::sync::CancellationToken;

use crate::hub::{Hub, StartAt, Stream};
use crate::media::{CodecParams, Frame};
use crate::transcode::{AacToOpus, AudioTranscoder};

/// A running AAC → Opus transcoder; it stops when the last viewer lets go.
pub struct Bridge {
    stream_id: u64,
    cancel: CancellationToken,
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// The bridges of every path.
pub struct Bridges {
    hub: Hub,
    map: Mutex<HashMap<String, Weak<Bridge>>>,
}

impl Bridges {
    pub fn new(hub: Hub) -> Self {
        Bridges {
            hub,
            map: Mutex::new(HashMap::new()),
        }
    }

    /// The path's bridge, started if needed; `None` if AAC cannot be
    /// transcoded (the viewer then gets no audio).
    pub fn get(&self, path: &str, stream: &Arc<Stream>, aac_track: usize) -> Option<Arc<Bridge>> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, b| b.strong_count() > 0);
        if let Some(b) = map.get(path).and_then(Weak::upgrade)
            && b.stream_id == stream.id
        {
            return Some(b);
        }
        let CodecParams::Aac(aac) = stream.tracks().get(aac_track)?.params.clone() else {
            return None;
        };
        let transcoder = match AacToOpus::new(&aac) {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(path, error = %e, "AAC → Opus transcoder unavailable; WebRTC viewers get no audio");
                return None;
            }
        };
        let opus = stream.add_derived_track(transcoder.output().clone());
        let cancel = CancellationToken::new();
        let bridge = Arc::new(Bridge {
            stream_id: stream.id,
            cancel: cancel.clone(),
        });
        map.insert(path.to_string(), Arc::downgrade(&bridge));
        let hub = self.hub.clone();
        let path = path.to_string();
        let stream = Arc::clone(stream);
        tokio::spawn(async move {
            let Ok(mut reader) = hub.read_internal(&path, StartAt::Live).await else {
                return;
            };
            let mut transcoder: Box<dyn AudioTranscoder> = Box::new(transcoder);
            tracing::info!(path, "AAC → Opus bridge started");
            loop {
                let frame = tokio::select! {
                    _ = cancel.cancelled() => break,
                    f = reader.recv() => match f {
                        Some(f) => f,
                        None => break,
                    },
                };
                if frame.track.index != aac_track {
                    continue;
                }
                match transcoder.push(frame.pts, &frame.data) {
                    Ok(out) => {
                        for o in out {
                            stream.write_derived(Frame::new(
                                Arc::clone(&opus),
                                o.pts,
                                o.pts,
                                true,
                                o.data,
                            ));
                        }
                    }
                    Err(e) => tracing::debug!(error = %e, "AAC frame not transcoded"),
                }
            }
            tracing::info!(path, "AAC → Opus bridge stopped");
        });
        Some(bridge)
    }
}
