//! Reading FLV files (Adobe FLV spec v10.1 Annex E.2–E.3): header, then tags
//! of an 11-byte header, a body and a 4-byte back pointer. Used to replay
//! recorded streams (tests, the load tool); pure and panic-free.

use bytes::Bytes;

/// Tag types (E.4.1).
pub const TAG_AUDIO: u8 = 8;
pub const TAG_VIDEO: u8 = 9;
pub const TAG_SCRIPT: u8 = 18;

/// One FLV tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag {
    pub tag_type: u8,
    /// Milliseconds, the 24-bit field plus the extension byte.
    pub timestamp: u32,
    /// The tag body: what an RTMP message of the same type carries.
    pub body: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlvFileError {
    #[error("not an FLV file (no 'FLV' signature)")]
    Signature,
    #[error("FLV header offset {0} is out of range")]
    HeaderOffset(u32),
    #[error("tag at byte {offset} is truncated: needs {needed} bytes, {available} left")]
    Truncated {
        offset: usize,
        needed: usize,
        available: usize,
    },
}

/// Iterates the tags of an FLV file held in memory (tag bodies are slices of
/// `data`, not copies).
pub struct FlvFile {
    data: Bytes,
    pos: usize,
}

impl FlvFile {
    pub fn new(data: Bytes) -> Result<Self, FlvFileError> {
        if data.get(..3) != Some(b"FLV") {
            return Err(FlvFileError::Signature);
        }
        let offset = data
            .get(5..9)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or(FlvFileError::Signature)?;
        let pos = offset as usize + 4; // skip PreviousTagSize0
        if pos > data.len() || offset < 9 {
            return Err(FlvFileError::HeaderOffset(offset));
        }
        Ok(FlvFile { data, pos })
    }

    /// The next tag, `None` at the end of the file.
    pub fn next_tag(&mut self) -> Option<Result<Tag, FlvFileError>> {
        let offset = self.pos;
        let available = self.data.len() - offset;
        if available == 0 {
            return None;
        }
        let header = self.data.get(offset..offset + 11).map(|h| {
            (
                h[0] & 0x1f,
                u32::from_be_bytes([0, h[1], h[2], h[3]]) as usize,
                u32::from_be_bytes([h[7], h[4], h[5], h[6]]),
            )
        });
        let (tag_type, size, timestamp) = match header {
            Some(h) if available >= 11 + h.1 => h,
            other => {
                // Nothing after a truncated tag can be read: stop there.
                self.pos = self.data.len();
                return Some(Err(FlvFileError::Truncated {
                    offset,
                    needed: other.map_or(11, |h| 11 + h.1 + 4),
                    available,
                }));
            }
        };
        let body = self.data.slice(offset + 11..offset + 11 + size);
        self.pos = (offset + 11 + size + 4).min(self.data.len());
        Some(Ok(Tag {
            tag_type,
            timestamp,
            body,
        }))
    }
}

impl Iterator for FlvFile {
    type Item = Result<Tag, FlvFileError>;
    fn next(&mut self) -> Option<Self::Item> {
        self.next_tag()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> Bytes {
        Bytes::from(
            std::fs::read(crate::repo_dir().join("fixtures/media/res_a_320x240.flv")).unwrap(),
        )
    }

    #[test]
    fn reads_every_tag_of_a_real_file() {
        let tags: Vec<Tag> = FlvFile::new(fixture())
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let video = tags.iter().filter(|t| t.tag_type == TAG_VIDEO).count();
        let audio = tags.iter().filter(|t| t.tag_type == TAG_AUDIO).count();
        // 60 frames + the sequence header (+ end of sequence); 95 AAC frames + ASC.
        assert!((61..=62).contains(&video), "{video}");
        assert_eq!(audio, 96);
        assert_eq!(tags[0].tag_type, TAG_SCRIPT);
    }

    #[test]
    fn truncation_and_garbage_are_errors() {
        let data = fixture();
        let cut = data.slice(..data.len() / 2);
        let last = FlvFile::new(cut).unwrap().last().unwrap();
        assert!(last.is_err());
        assert!(FlvFile::new(Bytes::from_static(b"GIF89a")).is_err());
        assert!(FlvFile::new(Bytes::from_static(b"FLV\x01\x05\x00\x00\xff\xff")).is_err());
        for n in 0..40 {
            let _ = FlvFile::new(data.slice(..n)).map(|f| f.count());
        }
    }
}
