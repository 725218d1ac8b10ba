//! Pure muxers and demuxers: FLV tag bodies, fMP4, HLS playlists.

pub mod flv;
pub mod fmp4;
