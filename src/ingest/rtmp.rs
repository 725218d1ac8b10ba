//! RTMP publishing: the session's audio/video/metadata events become hub
//! frames through the pure [`FlvIngest`](super::flv::FlvIngest) converter.

use std::sync::Arc;

use crate::hub::Publisher;
use crate::media::Track;
use crate::protocol::rtmp::{Amf0Value, ServerEvent};
use crate::server::conn::{ConnError, RtmpConn};

use super::flv::{FlvIngest, IngestError, Output};

/// Why a publishing session ended.
#[derive(Debug, thiserror::Error)]
pub enum PublishEnd {
    #[error(transparent)]
    Conn(#[from] ConnError),
    #[error(transparent)]
    Media(#[from] IngestError),
    #[error("kicked or replaced by another publisher")]
    Kicked,
    #[error("server shutting down")]
    Shutdown,
}

/// Runs a publishing connection until the publisher stops, fails or is kicked.
pub async fn run(mut conn: RtmpConn, mut publisher: Publisher) -> Result<(), ConnError> {
    tracing::info!("publishing started");
    conn.grow_read_buffer(crate::server::conn::PUBLISH_READ_BUFFER);
    let mut ingest = FlvIngest::new();
    let mut tracks: Vec<Arc<Track>> = Vec::new();
    let mut out = Vec::new();
    let result: Result<(), PublishEnd> = async {
        // Media the client sent right behind its `publish`.
        conn.session.resume().map_err(ConnError::from)?;
        loop {
            let mut finished = false;
            while let Some(event) = conn.session.poll_event() {
                match event {
                    ServerEvent::Metadata { properties } => {
                        let has = |key: &str| {
                            properties
                                .iter()
                                .find(|(k, _)| k == key)
                                .map(|(_, v)| !matches!(v, Amf0Value::Null | Amf0Value::Undefined))
                        };
                        ingest.on_metadata(has("videocodecid"), has("audiocodecid"));
                    }
                    ServerEvent::Video { timestamp, payload } => {
                        ingest.on_video(timestamp, &payload, &mut out)?
                    }
                    ServerEvent::Audio { timestamp, payload } => {
                        ingest.on_audio(timestamp, &payload, &mut out)?
                    }
                    ServerEvent::PublishFinished => finished = true,
                    other => tracing::debug!(?other, "ignored while publishing"),
                }
                apply(&mut publisher, &mut tracks, &mut out)?;
            }
            conn.flush().await?;
            if finished {
                return Ok(());
            }
            tokio::select! {
                read = conn.read_input() => { read?; }
                _ = publisher.cancelled() => {
                    return Err(if publisher.hub().is_shutting_down() {
                        PublishEnd::Shutdown
                    } else {
                        PublishEnd::Kicked
                    });
                }
            }
        }
    }
    .await;
    // A stream too short to have started still reaches its readers.
    ingest.force_start(&mut out);
    let _ = apply(&mut publisher, &mut tracks, &mut out);
    match result {
        Ok(()) => {
            tracing::info!("publishing stopped by the client");
            Ok(())
        }
        Err(PublishEnd::Conn(ConnError::Closed)) => {
            tracing::info!("publisher disconnected");
            Ok(())
        }
        Err(PublishEnd::Conn(e)) => Err(e),
        Err(PublishEnd::Shutdown) => {
            tracing::info!("publishing ended: server shutting down");
            Ok(())
        }
        Err(e) => {
            tracing::warn!(error = %e, "publishing ended");
            Ok(())
        }
    }
}

/// Hands the converter's outputs to the hub; a publisher that lost its
/// slot ends.
fn apply(
    publisher: &mut Publisher,
    tracks: &mut Vec<Arc<Track>>,
    out: &mut Vec<Output>,
) -> Result<(), PublishEnd> {
    super::publish_flv_outputs(publisher, tracks, out).map_err(|_| PublishEnd::Kicked)
}
