//! The hub's one puller: routes each pulled source to the ingest of its URL
//! scheme (`rtsp`/`rtsps` → [`RtspPuller`], `rtmp`/`rtmps` →
//! [`RtmpPuller`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::rtmp_pull::RtmpPuller;
use super::rtsp::RtspPuller;
use crate::config::Source;
use crate::hub::source::{PullJob, Puller};

/// Dispatches pulled sources by the kind of their URL.
pub struct SchemePuller {
    rtsp: Arc<dyn Puller>,
    rtmp: Arc<dyn Puller>,
}

impl Default for SchemePuller {
    fn default() -> Self {
        SchemePuller::new(
            Arc::new(RtspPuller::default()),
            Arc::new(RtmpPuller::default()),
        )
    }
}

impl SchemePuller {
    /// A dispatcher over these pullers (tests pass fakes).
    pub fn new(rtsp: Arc<dyn Puller>, rtmp: Arc<dyn Puller>) -> Self {
        SchemePuller { rtsp, rtmp }
    }
}

impl Puller for SchemePuller {
    fn pull(&self, job: PullJob) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        match &job.settings.source {
            Source::Rtsp(_) => self.rtsp.pull(job),
            Source::Rtmp(_) => self.rtmp.pull(job),
            Source::Publisher => Box::pin(async {}),
        }
    }
}
