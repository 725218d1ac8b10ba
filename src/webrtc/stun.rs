//! Just enough STUN (RFC 8489) to route a datagram from an address not seen
//! yet to its WebRTC session: the local ICE username fragment in the
//! USERNAME attribute of a binding request (RFC 8445 §7.2.2:
//! `<receiver ufrag>:<sender ufrag>`).

const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];
const HEADER_LEN: usize = 20;
const ATTR_USERNAME: u16 = 0x0006;

/// Whether a datagram looks like STUN (RFC 7983 §7: first byte 0..=3, and
/// the magic cookie).
pub fn is_stun(datagram: &[u8]) -> bool {
    datagram.len() >= HEADER_LEN
        && datagram.first().is_some_and(|b| *b < 4)
        && datagram.get(4..8) == Some(&MAGIC_COOKIE[..])
}

/// The receiver's (our) username fragment of a STUN message, if it has a
/// USERNAME attribute.
pub fn local_ufrag(datagram: &[u8]) -> Option<&str> {
    if !is_stun(datagram) {
        return None;
    }
    let body_len = usize::from(u16::from_be_bytes([*datagram.get(2)?, *datagram.get(3)?]));
    let body = datagram.get(HEADER_LEN..HEADER_LEN + body_len)?;
    let mut at = 0;
    while let Some(header) = body.get(at..at + 4) {
        let kind = u16::from_be_bytes([header[0], header[1]]);
        let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
        let value = body.get(at + 4..at + 4 + len)?;
        if kind == ATTR_USERNAME {
            let username = std::str::from_utf8(value).ok()?;
            return username.split(':').next();
        }
        at += 4 + len.div_ceil(4) * 4;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding_request(username: &[u8]) -> Vec<u8> {
        let mut attrs = Vec::new();
        // PRIORITY first, to check attributes are walked.
        attrs.extend_from_slice(&[0x00, 0x24, 0x00, 0x04, 1, 2, 3, 4]);
        attrs.extend_from_slice(&ATTR_USERNAME.to_be_bytes());
        attrs.extend_from_slice(&(username.len() as u16).to_be_bytes());
        attrs.extend_from_slice(username);
        while attrs.len() % 4 != 0 {
            attrs.push(0);
        }
        let mut m = vec![0x00, 0x01];
        m.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
        m.extend_from_slice(&MAGIC_COOKIE);
        m.extend_from_slice(&[7; 12]);
        m.extend_from_slice(&attrs);
        m
    }

    #[test]
    fn finds_the_local_ufrag() {
        let m = binding_request(b"abcd1234:remoteXY");
        assert!(is_stun(&m));
        assert_eq!(local_ufrag(&m), Some("abcd1234"));
    }

    #[test]
    fn other_datagrams_are_not_stun() {
        // DTLS (20..=63) and RTP (128..=191) first bytes.
        assert!(!is_stun(&[22; 40]));
        assert!(!is_stun(&[0x80; 40]));
        assert_eq!(local_ufrag(&[0x80; 40]), None);
        let mut m = binding_request(b"x:y");
        m.truncate(30);
        assert_eq!(local_ufrag(&m), None, "truncated");
        let m = binding_request(&[0xff, 0xfe, b':', b'y']);
        assert_eq!(local_ufrag(&m), None, "not UTF-8");
        for n in 0..m.len() {
            let _ = local_ufrag(&m[..n]);
        }
    }
}
