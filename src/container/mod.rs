//! Pure muxers and demuxers: FLV tag bodies and files, fMP4.

pub mod flv;
pub mod flv_file;
pub mod fmp4;
