//! Ways media comes in: one module per protocol. Each turns its protocol's
//! units into hub frames through a `Publisher` and never talks to an egress.

pub mod flv;
pub mod pull;
pub mod rtmp;
pub mod rtmp_pull;
pub mod rtsp;
pub mod rtsp_record;
pub mod source;
pub mod whip;

use std::sync::Arc;

use crate::hub::{Publisher, Replaced};
use crate::media::{Frame, Track};
use flv::Output;

/// Hands an FLV converter's outputs (RTMP publish, RTMP pull) to the hub:
/// starts the stream, swaps in new track generations, writes frames.
/// `tracks` is the current generation of each track.
pub(crate) fn publish_flv_outputs(
    publisher: &mut Publisher,
    tracks: &mut Vec<Arc<Track>>,
    out: &mut Vec<Output>,
) -> Result<(), Replaced> {
    for o in out.drain(..) {
        match o {
            Output::Start(params) => {
                let n = params.len();
                publisher.start(params)?;
                *tracks = (0..n).filter_map(|i| publisher.track(i)).collect();
                tracing::info!(
                    tracks = ?tracks.iter().map(|t| t.params.codec_string()).collect::<Vec<_>>(),
                    "stream started"
                );
            }
            Output::Params { index, params } => {
                if let (Some(t), Some(slot)) =
                    (publisher.set_params(index, params), tracks.get_mut(index))
                {
                    *slot = t;
                }
            }
            Output::Frame {
                index,
                dts,
                pts,
                keyframe,
                data,
            } => {
                if let Some(track) = tracks.get(index) {
                    publisher.write(Frame::new(Arc::clone(track), dts, pts, keyframe, data));
                }
            }
        }
    }
    Ok(())
}
