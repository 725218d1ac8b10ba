//! Fragmented MP4 (ISO/IEC 14496-12) for CMAF/LL-HLS: the init segment
//! (`ftyp` + `moov` with `mvex`) and per-fragment `moof` + `mdat` headers.
//!
//! Box structs come from `shiguredo_mp4`; this module only decides their
//! contents. Payloads are never copied here: a fragment is its header (built
//! here) followed by the samples' own `Bytes`, track by track, in order.

use std::num::{NonZeroU16, NonZeroU32};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use shiguredo_mp4::boxes::{
    Avc1Box, AvccBox, Brand, DinfBox, DopsBox, EsdsBox, FtypBox, HdlrBox, Hvc1Box, HvccBox,
    MdhdBox, MdiaBox, MediaHeader, MfhdBox, MinfBox, MoofBox, MoovBox, Mp4aBox, MvexBox, MvhdBox,
    OpusBox, SampleEntry, SmhdBox, StblBox, StcoBox, StscBox, StsdBox, StszBox, SttsBox, TfdtBox,
    TfhdBox, TkhdBox, TrafBox, TrakBox, TrexBox, TrunBox, TrunSample, VisualSampleEntryFields,
    VmhdBox,
};
use shiguredo_mp4::descriptors::{
    DecoderConfigDescriptor, DecoderSpecificInfo, EsDescriptor, SlConfigDescriptor,
};
use shiguredo_mp4::{
    Decode, Either, Encode, FixedPointNumber, LanguageCode, Mp4FileTime, SampleFlags, Uint,
};

use crate::media::{AacParams, CodecParams, H264Params, H265Params, OpusParams, Track, TrackKind};

/// A box could not be encoded (a value out of range for its field).
#[derive(Debug, thiserror::Error)]
#[error("fMP4 {what}: {reason}")]
pub struct Fmp4Error {
    what: &'static str,
    reason: String,
}

fn err(what: &'static str) -> impl FnOnce(shiguredo_mp4::Error) -> Fmp4Error {
    move |e| Fmp4Error {
        what,
        reason: e.to_string(),
    }
}

/// `mvhd` timescale; nothing in a fragmented file is timed in it.
const MOVIE_TIMESCALE: NonZeroU32 = NonZeroU32::new(1000).unwrap();

/// The `track_ID` of a stream's track: its index plus one.
pub fn track_id(track: &Track) -> u32 {
    track.index as u32 + 1
}

/// Builds the init segment for these tracks (one `trak` each).
pub fn init_segment(tracks: &[Arc<Track>]) -> Result<Bytes, Fmp4Error> {
    let epoch = Mp4FileTime::from_unix_time(Duration::ZERO);
    let mut compatible_brands = vec![Brand::ISOM, Brand::ISO6, Brand::MP41];
    if tracks
        .iter()
        .any(|t| matches!(t.params, CodecParams::H264(_)))
    {
        compatible_brands.push(Brand::AVC1);
    }
    if tracks
        .iter()
        .any(|t| matches!(t.params, CodecParams::H265(_)))
    {
        compatible_brands.push(Brand::HVC1);
    }
    let ftyp = FtypBox {
        major_brand: Brand::ISO6,
        minor_version: 0,
        compatible_brands,
    };
    let traks = tracks
        .iter()
        .map(|t| trak(t, epoch))
        .collect::<Result<Vec<_>, _>>()?;
    let moov = MoovBox {
        mvhd_box: MvhdBox {
            creation_time: epoch,
            modification_time: epoch,
            timescale: MOVIE_TIMESCALE,
            duration: 0,
            rate: MvhdBox::DEFAULT_RATE,
            volume: MvhdBox::DEFAULT_VOLUME,
            matrix: MvhdBox::DEFAULT_MATRIX,
            next_track_id: tracks.len() as u32 + 1,
        },
        trak_boxes: traks,
        mvex_box: Some(MvexBox {
            mehd_box: None,
            trex_boxes: tracks
                .iter()
                .map(|t| TrexBox {
                    track_id: track_id(t),
                    default_sample_description_index: 1,
                    default_sample_duration: 0,
                    default_sample_size: 0,
                    default_sample_flags: SampleFlags::new(0),
                })
                .collect(),
            unknown_boxes: Vec::new(),
        }),
        unknown_boxes: Vec::new(),
    };
    let mut out = ftyp.encode_to_vec().map_err(err("ftyp"))?;
    out.extend(moov.encode_to_vec().map_err(err("moov"))?);
    Ok(Bytes::from(out))
}

fn trak(track: &Track, epoch: Mp4FileTime) -> Result<TrakBox, Fmp4Error> {
    let entry = sample_entry(&track.params)?;
    let (width, height) = track.params.dimensions().unwrap_or((0, 0));
    let (handler, media_header, volume) = match track.kind() {
        TrackKind::Video => (
            HdlrBox::HANDLER_TYPE_VIDE,
            MediaHeader::Vmhd(VmhdBox::default()),
            TkhdBox::DEFAULT_VIDEO_VOLUME,
        ),
        TrackKind::Audio => (
            HdlrBox::HANDLER_TYPE_SOUN,
            MediaHeader::Smhd(SmhdBox::default()),
            TkhdBox::DEFAULT_AUDIO_VOLUME,
        ),
    };
    let timescale = NonZeroU32::new(track.timescale()).ok_or(Fmp4Error {
        what: "mdhd",
        reason: "timescale is 0".into(),
    })?;
    Ok(TrakBox {
        tkhd_box: TkhdBox {
            flag_track_enabled: true,
            flag_track_in_movie: true,
            flag_track_in_preview: false,
            flag_track_size_is_aspect_ratio: false,
            creation_time: epoch,
            modification_time: epoch,
            track_id: track_id(track),
            duration: 0,
            layer: TkhdBox::DEFAULT_LAYER,
            alternate_group: TkhdBox::DEFAULT_ALTERNATE_GROUP,
            volume,
            matrix: TkhdBox::DEFAULT_MATRIX,
            width: FixedPointNumber::new(width.min(i16::MAX as u16) as i16, 0),
            height: FixedPointNumber::new(height.min(i16::MAX as u16) as i16, 0),
        },
        edts_box: None,
        mdia_box: MdiaBox {
            mdhd_box: MdhdBox {
                creation_time: epoch,
                modification_time: epoch,
                timescale,
                duration: 0,
                language: LanguageCode::UNDEFINED,
            },
            hdlr_box: HdlrBox {
                handler_type: handler,
                name: b"mediarelay\0".to_vec(),
            },
            minf_box: MinfBox {
                media_header: Some(media_header),
                dinf_box: DinfBox::LOCAL_FILE,
                stbl_box: StblBox {
                    stsd_box: StsdBox {
                        entries: vec![entry],
                    },
                    stts_box: SttsBox {
                        entries: Vec::new(),
                    },
                    ctts_box: None,
                    cslg_box: None,
                    stsc_box: StscBox {
                        entries: Vec::new(),
                    },
                    stsz_box: StszBox::Variable {
                        entry_sizes: Vec::new(),
                    },
                    stco_or_co64_box: Either::A(StcoBox {
                        chunk_offsets: Vec::new(),
                    }),
                    stss_box: None,
                    sdtp_box: None,
                    unknown_boxes: Vec::new(),
                },
                unknown_boxes: Vec::new(),
            },
            unknown_boxes: Vec::new(),
        },
        unknown_boxes: Vec::new(),
    })
}

/// Whether fMP4 (and so HLS) can carry this codec.
pub fn carries(params: &CodecParams) -> bool {
    !matches!(params, CodecParams::G711(_))
}

fn sample_entry(params: &CodecParams) -> Result<SampleEntry, Fmp4Error> {
    Ok(match params {
        CodecParams::H264(h) => SampleEntry::Avc1(avc1(h)?),
        CodecParams::H265(h) => SampleEntry::Hvc1(hvc1(h)?),
        CodecParams::Aac(a) => SampleEntry::Mp4a(mp4a(a)),
        CodecParams::Opus(o) => SampleEntry::Opus(opus(o)),
        CodecParams::G711(_) => {
            return Err(Fmp4Error {
                what: "stsd",
                reason: "G.711 is not carried in fMP4 for HLS (transcode it to AAC)".into(),
            });
        }
    })
}

fn visual(width: u16, height: u16) -> VisualSampleEntryFields {
    VisualSampleEntryFields {
        data_reference_index: NonZeroU16::MIN,
        width,
        height,
        horizresolution: VisualSampleEntryFields::DEFAULT_HORIZRESOLUTION,
        vertresolution: VisualSampleEntryFields::DEFAULT_VERTRESOLUTION,
        frame_count: VisualSampleEntryFields::DEFAULT_FRAME_COUNT,
        compressorname: VisualSampleEntryFields::NULL_COMPRESSORNAME,
        depth: VisualSampleEntryFields::DEFAULT_DEPTH,
    }
}

/// A configuration record as the box that carries it, for decoding.
fn boxed(kind: &[u8; 4], record: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(record.len() + 8);
    b.extend_from_slice(&(record.len() as u32 + 8).to_be_bytes());
    b.extend_from_slice(kind);
    b.extend_from_slice(record);
    b
}

/// `hvc1` with the source's HEVCDecoderConfigurationRecord as `hvcC`
/// (ISO/IEC 14496-15 §8.4.1).
fn hvc1(h: &H265Params) -> Result<Hvc1Box, Fmp4Error> {
    let (hvcc_box, _) = HvccBox::decode(&boxed(b"hvcC", &h.hvcc)).map_err(err("hvcC"))?;
    Ok(Hvc1Box {
        visual: visual(h.width, h.height),
        hvcc_box,
        unknown_boxes: Vec::new(),
    })
}

/// `Opus` with `dOps` (Opus in ISOBMFF §4.3.2); pre-skip is unknown for a
/// live RTP source and left at 0.
fn opus(o: &OpusParams) -> OpusBox {
    OpusBox {
        audio: shiguredo_mp4::boxes::AudioSampleEntryFields {
            data_reference_index: NonZeroU16::MIN,
            channelcount: u16::from(o.channels),
            samplesize: 16,
            samplerate: FixedPointNumber::new(48_000, 0),
        },
        dops_box: DopsBox {
            output_channel_count: o.channels,
            pre_skip: 0,
            input_sample_rate: 48_000,
            output_gain: 0,
        },
        unknown_boxes: Vec::new(),
    }
}

/// `avc1` with the publisher's AVCDecoderConfigurationRecord (ISO/IEC
/// 14496-15 §5.4.2.1), passed through as `avcC` so nothing in it is lost.
fn avc1(h: &H264Params) -> Result<Avc1Box, Fmp4Error> {
    let avcc_box = match AvccBox::decode(&boxed(b"avcC", &h.avcc)) {
        Ok((b, _)) => b,
        // Some encoders leave out the High-profile fields; rebuild from the
        // parameter sets rather than refuse the stream.
        Err(_) => {
            // High profiles need chroma format and bit depths (§5.3.3.1.2):
            // take them from the SPS.
            let sps = h
                .sps
                .first()
                .and_then(|s| shiguredo_mp4::bitstream::h264::parse_sps(s).ok());
            let high = !matches!(h.profile_idc, 66 | 77 | 88);
            AvccBox {
                avc_profile_indication: h.profile_idc,
                profile_compatibility: h.constraint_flags,
                avc_level_indication: h.level_idc,
                length_size_minus_one: Uint::new(3),
                sps_list: h.sps.iter().map(|b| b.to_vec()).collect(),
                pps_list: h.pps.iter().map(|b| b.to_vec()).collect(),
                chroma_format: high.then(|| Uint::new(sps.map_or(1, |s| s.chroma_format_idc))),
                bit_depth_luma_minus8: high
                    .then(|| Uint::new(sps.map_or(0, |s| s.bit_depth_luma_minus8))),
                bit_depth_chroma_minus8: high
                    .then(|| Uint::new(sps.map_or(0, |s| s.bit_depth_chroma_minus8))),
                sps_ext_list: Vec::new(),
            }
        }
    };
    Ok(Avc1Box {
        visual: visual(h.width, h.height),
        avcc_box,
        unknown_boxes: Vec::new(),
    })
}

/// `mp4a` with the raw AudioSpecificConfig in `esds` (ISO/IEC 14496-14 §5.6),
/// unchanged so that SBR/PS signalling survives.
fn mp4a(a: &AacParams) -> Mp4aBox {
    Mp4aBox {
        audio: shiguredo_mp4::boxes::AudioSampleEntryFields {
            data_reference_index: NonZeroU16::MIN,
            channelcount: u16::from(a.channels),
            samplesize: 16,
            samplerate: FixedPointNumber::new(u16::try_from(a.sample_rate).unwrap_or(0), 0),
        },
        esds_box: EsdsBox {
            es: EsDescriptor {
                es_id: EsDescriptor::MIN_ES_ID,
                stream_priority: EsDescriptor::LOWEST_STREAM_PRIORITY,
                depends_on_es_id: None,
                url_string: None,
                ocr_es_id: None,
                dec_config_descr: DecoderConfigDescriptor {
                    object_type_indication:
                        DecoderConfigDescriptor::OBJECT_TYPE_INDICATION_AUDIO_ISO_IEC_14496_3,
                    stream_type: DecoderConfigDescriptor::STREAM_TYPE_AUDIO,
                    up_stream: DecoderConfigDescriptor::UP_STREAM_FALSE,
                    buffer_size_db: Uint::new(0),
                    max_bitrate: 0,
                    avg_bitrate: 0,
                    dec_specific_info: Some(DecoderSpecificInfo {
                        payload: a.asc.to_vec(),
                    }),
                },
                sl_config_descr: SlConfigDescriptor,
            },
        },
        unknown_boxes: Vec::new(),
    }
}

/// One sample of a fragment run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SampleInfo {
    pub duration: u32,
    pub size: u32,
    pub keyframe: bool,
    /// `pts - dts`, in the track's timescale.
    pub composition_offset: i64,
}

/// One track's part of a fragment.
#[derive(Debug, Clone)]
pub struct TrackRun<'a> {
    pub track_id: u32,
    /// `tfdt` (ISO/IEC 14496-12 §8.8.12): dts of the first sample.
    pub base_decode_time: u64,
    pub samples: &'a [SampleInfo],
    /// Video tracks mark non-keyframes as non-sync; audio samples are all sync.
    pub is_video: bool,
}

/// Builds `moof` + the `mdat` header for runs whose sample data follow the
/// header in the order given (all of run 0's samples, then run 1's, …).
pub fn fragment_header(sequence_number: u32, runs: &[TrackRun<'_>]) -> Result<Bytes, Fmp4Error> {
    let data_sizes: Vec<u64> = runs
        .iter()
        .map(|r| r.samples.iter().map(|s| u64::from(s.size)).sum())
        .collect();
    let total: u64 = data_sizes.iter().sum();
    let mut moof = MoofBox {
        mfhd_box: MfhdBox { sequence_number },
        traf_boxes: runs.iter().map(traf).collect(),
        unknown_boxes: Vec::new(),
    };
    // The moof's size does not depend on the offsets' values: encode once to
    // learn it, then point each trun at its data.
    let moof_len = moof.encode_to_vec().map_err(err("moof"))?.len() as u64;
    let mdat_header_len: u64 = if total + 8 > u64::from(u32::MAX) {
        16
    } else {
        8
    };
    let mut offset = moof_len + mdat_header_len;
    for (traf, size) in moof.traf_boxes.iter_mut().zip(&data_sizes) {
        let data_offset = i32::try_from(offset).map_err(|_| Fmp4Error {
            what: "trun",
            reason: "fragment larger than 2 GiB".into(),
        })?;
        if let Some(trun) = traf.trun_boxes.first_mut() {
            trun.data_offset = Some(data_offset);
        }
        offset += size;
    }
    let mut out = moof.encode_to_vec().map_err(err("moof"))?;
    if mdat_header_len == 8 {
        out.extend_from_slice(&((total + 8) as u32).to_be_bytes());
        out.extend_from_slice(b"mdat");
    } else {
        out.extend_from_slice(&1u32.to_be_bytes());
        out.extend_from_slice(b"mdat");
        out.extend_from_slice(&(total + 16).to_be_bytes());
    }
    Ok(Bytes::from(out))
}

fn traf(run: &TrackRun<'_>) -> TrafBox {
    let has_cto = run.samples.iter().any(|s| s.composition_offset != 0);
    TrafBox {
        tfhd_box: TfhdBox {
            track_id: run.track_id,
            base_data_offset: None,
            sample_description_index: None,
            default_sample_duration: None,
            default_sample_size: None,
            default_sample_flags: None,
            duration_is_empty: false,
            default_base_is_moof: true,
        },
        tfdt_box: Some(TfdtBox {
            version: 1,
            base_media_decode_time: run.base_decode_time,
        }),
        trun_boxes: vec![TrunBox {
            data_offset: Some(0),
            first_sample_flags: None,
            samples: run
                .samples
                .iter()
                .map(|s| TrunSample {
                    duration: Some(s.duration),
                    size: Some(s.size),
                    flags: Some(sample_flags(s.keyframe || !run.is_video)),
                    composition_time_offset: has_cto.then_some(s.composition_offset),
                })
                .collect(),
        }],
        unknown_boxes: Vec::new(),
    }
}

/// ISO/IEC 14496-12 §8.8.3.1 sample flags: sync samples depend on nothing;
/// others depend on earlier samples and are non-sync.
fn sample_flags(sync: bool) -> SampleFlags {
    if sync {
        SampleFlags::from_fields(0, 2, 0, 0, 0, false, 0)
    } else {
        SampleFlags::from_fields(0, 1, 0, 0, 0, true, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shiguredo_mp4::boxes::RootBox;

    fn aac_track() -> Arc<Track> {
        Arc::new(Track::new(
            1,
            0,
            CodecParams::Aac(AacParams {
                asc: Bytes::from_static(&[0x11, 0x90]),
                object_type: 2,
                sample_rate: 48_000,
                channels: 2,
                samples_per_frame: 1024,
            }),
        ))
    }

    #[test]
    fn init_segment_parses_back() {
        let init = init_segment(&[aac_track()]).unwrap();
        assert_eq!(&init[4..8], b"ftyp");
        let mut offset = 0;
        let mut kinds = vec![];
        while offset < init.len() {
            let (b, n) = RootBox::decode(&init[offset..]).unwrap();
            kinds.push(format!("{:?}", std::mem::discriminant(&b)));
            offset += n;
        }
        assert_eq!(kinds.len(), 2);
        let moov_at = u32::from_be_bytes(init[0..4].try_into().unwrap()) as usize;
        let (moov, _) = MoovBox::decode(&init[moov_at..]).unwrap();
        let trak = &moov.trak_boxes[0];
        assert_eq!(trak.tkhd_box.track_id, 2);
        assert_eq!(trak.mdia_box.mdhd_box.timescale.get(), 48_000);
        let SampleEntry::Mp4a(m) = &trak.mdia_box.minf_box.stbl_box.stsd_box.entries[0] else {
            panic!("mp4a expected");
        };
        let dsi = m
            .esds_box
            .es
            .dec_config_descr
            .dec_specific_info
            .as_ref()
            .unwrap();
        assert_eq!(dsi.payload, vec![0x11, 0x90]);
    }

    #[test]
    fn fragment_offsets_point_at_each_runs_data() {
        let v = [
            SampleInfo {
                duration: 3000,
                size: 100,
                keyframe: true,
                composition_offset: 6000,
            },
            SampleInfo {
                duration: 3000,
                size: 50,
                keyframe: false,
                composition_offset: 0,
            },
        ];
        let a = [SampleInfo {
            duration: 1024,
            size: 20,
            keyframe: true,
            composition_offset: 0,
        }];
        let header = fragment_header(
            7,
            &[
                TrackRun {
                    track_id: 1,
                    base_decode_time: 90_000,
                    samples: &v,
                    is_video: true,
                },
                TrackRun {
                    track_id: 2,
                    base_decode_time: 48_000,
                    samples: &a,
                    is_video: false,
                },
            ],
        )
        .unwrap();
        let (moof, moof_len) = MoofBox::decode(&header).unwrap();
        assert_eq!(&header[moof_len + 4..moof_len + 8], b"mdat");
        let mdat_size = u32::from_be_bytes(header[moof_len..moof_len + 4].try_into().unwrap());
        assert_eq!(mdat_size, 8 + 170);
        assert_eq!(header.len(), moof_len + 8);
        assert_eq!(moof.mfhd_box.sequence_number, 7);
        let off0 = moof.traf_boxes[0].trun_boxes[0].data_offset.unwrap();
        let off1 = moof.traf_boxes[1].trun_boxes[0].data_offset.unwrap();
        assert_eq!(off0 as usize, moof_len + 8);
        assert_eq!(off1 - off0, 150);
        assert_eq!(
            moof.traf_boxes[0]
                .tfdt_box
                .as_ref()
                .unwrap()
                .base_media_decode_time,
            90_000
        );
        let s = &moof.traf_boxes[0].trun_boxes[0].samples;
        assert_eq!(s[0].composition_time_offset, Some(6000));
        assert_eq!(
            moof.traf_boxes[1].trun_boxes[0].samples[0].composition_time_offset,
            None
        );
    }
}
