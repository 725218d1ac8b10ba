//! SRTP and SRTCP (RFC 3711) for the media a WHEP session sends itself
//! (see [`send_stream`](super::send_stream)): its own RTP and RTCP are
//! protected here, and the viewer's RTCP (receiver reports, NACKs, PLIs) is
//! checked and decrypted here, with the keys of the session's DTLS
//! handshake (DTLS-SRTP, RFC 5764 §4.2).
//!
//! The profiles are those str0m's DTLS may agree on: `AES_CM_128_HMAC_SHA1_80`
//! (RFC 3711 §4.1.1, §4.2.1), `AEAD_AES_128_GCM` and `AEAD_AES_256_GCM`
//! (RFC 7714). AES-CM and HMAC-SHA1 are str0m's crypto provider's, AES-GCM
//! is aws-lc-rs's (the library under that provider) called directly; the
//! key derivation, IVs, associated data and packet layout are ours.
//!
//! Protection writes straight into the datagram buffer: the RTP header, then
//! the payload encrypted from where it lies (the path's shared packet), then
//! the tag — the payload is read once and never copied in the clear.

use aws_lc_rs::aead::{AES_128_GCM, AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::error::Unspecified;
use str0m::crypto::dtls::SrtpProfile;
use str0m::crypto::{Aes128CmSha1_80Cipher, CryptoProvider, Sha1HmacProvider};

/// RFC 3711 §4.3.1 key derivation labels.
const LABEL_RTP_ENCRYPTION: u8 = 0;
const LABEL_RTP_AUTH: u8 = 1;
const LABEL_RTP_SALT: u8 = 2;
const LABEL_RTCP_ENCRYPTION: u8 = 3;
const LABEL_RTCP_AUTH: u8 = 4;
const LABEL_RTCP_SALT: u8 = 5;

/// `HMAC-SHA1` tag length of `AES_CM_128_HMAC_SHA1_80` (RFC 3711 §5.2).
const HMAC_TAG: usize = 10;
/// GCM tag length (RFC 7714 §7).
const GCM_TAG: usize = 16;
/// The E flag and SRTCP index after an SRTCP packet (RFC 3711 §3.4).
const SRTCP_INDEX: usize = 4;
/// Room the provider's AES counter mode wants past the data it encrypts
/// (aws-lc-rs writes whole blocks).
const CTR_SLACK: usize = 15;
/// Most bytes protection adds to a packet (tag and SRTCP index).
pub(crate) const MAX_OVERHEAD: usize = GCM_TAG + SRTCP_INDEX;

/// What the DTLS handshake exported for SRTP (RFC 5764 §4.2): the keying
/// material (client key, server key, client salt, server salt), the
/// profile, and which side this end was (the DTLS client uses the client
/// keys to send).
#[derive(Clone)]
pub(crate) struct SrtpKeys {
    pub material: Vec<u8>,
    pub profile: SrtpProfile,
    pub client: bool,
}

impl std::fmt::Debug for SrtpKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key itself.
        f.debug_struct("SrtpKeys")
            .field("profile", &self.profile)
            .field("client", &self.client)
            .finish()
    }
}

/// Why a received SRTCP packet was not accepted.
#[derive(Debug, thiserror::Error, PartialEq)]
pub(crate) enum SrtcpError {
    #[error("SRTCP packet of {0} bytes is too short")]
    TooShort(usize),
    #[error("SRTCP authentication failed (SSRC {ssrc:#010x}, index {index})")]
    Auth { ssrc: u32, index: u32 },
}

/// One direction's cipher and session keys, per RTP or RTCP.
enum Cipher {
    CmSha1 {
        aes: Box<dyn Aes128CmSha1_80Cipher>,
        auth: [u8; 20],
        salt: [u8; 14],
        hmac: &'static dyn Sha1HmacProvider,
    },
    Gcm {
        key: GcmKey,
        salt: [u8; 12],
    },
}

/// An AES-GCM key of either size, used through aws-lc-rs directly (the
/// library str0m's provider wraps): sealing reads the clear payload where
/// it lies and writes the ciphertext and tag into the datagram in one pass,
/// where the provider's trait first copies the input into the output.
struct GcmKey(LessSafeKey);

impl GcmKey {
    /// A 16-byte key is AES-128, a 32-byte one AES-256.
    fn new(key: &[u8]) -> Option<GcmKey> {
        let algorithm = if key.len() == 16 {
            &AES_128_GCM
        } else {
            &AES_256_GCM
        };
        UnboundKey::new(algorithm, key)
            .ok()
            .map(|k| GcmKey(LessSafeKey::new(k)))
    }

    /// Encrypts `input` into the start of `output` and writes the 16-byte
    /// tag after the ciphertext (`output` is at least that long).
    fn seal(&self, iv: &[u8; 12], aad: &[u8], input: &[u8], output: &mut [u8]) {
        let (ciphertext, rest) = output.split_at_mut(input.len());
        let tag = &mut rest[..GCM_TAG];
        let sealed = self.0.seal_out_of_place_scatter(
            Nonce::assume_unique_for_key(*iv),
            Aad::from(aad),
            input,
            ciphertext,
            &[],
            tag,
        );
        // Cannot fail: the lengths are right by construction.
        debug_assert!(sealed.is_ok(), "AES-GCM seal failed");
    }

    /// Checks `tag` over `aad` and `ciphertext` and decrypts the latter
    /// into `output` (its length).
    fn open(
        &self,
        iv: &[u8; 12],
        aad: &[u8],
        ciphertext: &[u8],
        tag: &[u8],
        output: &mut [u8],
    ) -> Result<(), Unspecified> {
        self.0.open_separate_gather(
            Nonce::assume_unique_for_key(*iv),
            Aad::from(aad),
            ciphertext,
            tag,
            output,
        )
    }
}

impl Cipher {
    /// Session keys for one of RTP (`rtcp` false) or RTCP from a master key
    /// and salt (RFC 3711 §4.3; RFC 7714 §11 for GCM's 96-bit salts).
    fn new(
        crypto: &CryptoProvider,
        profile: SrtpProfile,
        key: &[u8],
        salt: &[u8],
        rtcp: bool,
        encrypt: bool,
    ) -> Option<Cipher> {
        let (enc_label, auth_label, salt_label) = if rtcp {
            (LABEL_RTCP_ENCRYPTION, LABEL_RTCP_AUTH, LABEL_RTCP_SALT)
        } else {
            (LABEL_RTP_ENCRYPTION, LABEL_RTP_AUTH, LABEL_RTP_SALT)
        };
        let srtp = crypto.srtp_provider;
        match profile {
            SrtpProfile::AES128_CM_SHA1_80 => {
                let mut k = [0; 16];
                let mut auth = [0; 20];
                let mut s = [0; 14];
                derive(crypto, key, salt, enc_label, &mut k);
                derive(crypto, key, salt, auth_label, &mut auth);
                derive(crypto, key, salt, salt_label, &mut s);
                Some(Cipher::CmSha1 {
                    aes: srtp.aes_128_cm_sha1_80().create_cipher(k, encrypt),
                    auth,
                    salt: s,
                    hmac: crypto.sha1_hmac_provider,
                })
            }
            SrtpProfile::AEAD_AES_128_GCM | SrtpProfile::AEAD_AES_256_GCM => {
                let mut s = [0; 12];
                derive(crypto, key, salt, salt_label, &mut s);
                let mut k = [0; 32];
                let k = &mut k[..key.len()]; // 16 or 32 (`master_lengths`)
                derive(crypto, key, salt, enc_label, k);
                let key = GcmKey::new(k)?;
                Some(Cipher::Gcm { key, salt: s })
            }
            _ => None,
        }
    }
}

/// Master key and salt lengths of a profile (RFC 5764 §4.1.2, RFC 7714 §12).
fn master_lengths(profile: SrtpProfile) -> Option<(usize, usize)> {
    match profile {
        SrtpProfile::AES128_CM_SHA1_80 => Some((16, 14)),
        SrtpProfile::AEAD_AES_128_GCM => Some((16, 12)),
        SrtpProfile::AEAD_AES_256_GCM => Some((32, 12)),
        _ => None,
    }
}

/// The AES-CM pseudo-random function of RFC 3711 §4.3.1 (key derivation
/// rate 0): `x` is the master salt with the label XORed into its eighth
/// byte, and the output is AES in counter mode over `x · 2^16`.
fn derive(crypto: &CryptoProvider, master: &[u8], salt: &[u8], label: u8, out: &mut [u8]) {
    let mut input = [0u8; 16];
    input[..salt.len()].copy_from_slice(salt);
    input[7] ^= label;
    let mut block = [0u8; 32];
    for (i, chunk) in out.chunks_mut(16).enumerate() {
        input[14..].copy_from_slice(&(i as u16).to_be_bytes());
        if master.len() == 32 {
            crypto
                .srtp_provider
                .srtp_aes_256_ecb_round(master, &input, &mut block);
        } else {
            crypto
                .srtp_provider
                .srtp_aes_128_ecb_round(master, &input, &mut block);
        }
        chunk.copy_from_slice(&block[..chunk.len()]);
    }
}

/// The AES-CM IV (RFC 3711 §4.1.1): `salt · 2^16 ⊕ SSRC · 2^64 ⊕ index · 2^16`.
fn cm_iv(salt: &[u8; 14], ssrc: u32, index: u64) -> [u8; 16] {
    let mut iv = [0u8; 16];
    iv[..14].copy_from_slice(salt);
    for (b, s) in iv[4..8].iter_mut().zip(ssrc.to_be_bytes()) {
        *b ^= s;
    }
    for (b, s) in iv[8..14].iter_mut().zip(&index.to_be_bytes()[2..]) {
        *b ^= s;
    }
    iv
}

/// The GCM IV of an SRTP packet (RFC 7714 §8.1): `00 00 ‖ SSRC ‖ ROC ‖ SEQ`
/// XOR the salt; of an SRTCP packet (§9.1): `00 00 ‖ SSRC ‖ 00 00 ‖ 0 ‖
/// index` XOR the salt.
fn gcm_iv(salt: &[u8; 12], ssrc: u32, high: u32, low: u16) -> [u8; 12] {
    let mut iv = [0u8; 12];
    iv[2..6].copy_from_slice(&ssrc.to_be_bytes());
    iv[6..10].copy_from_slice(&high.to_be_bytes());
    iv[10..12].copy_from_slice(&low.to_be_bytes());
    for (b, s) in iv.iter_mut().zip(salt) {
        *b ^= s;
    }
    iv
}

/// A session's SRTP: protection of what it sends, checking of the RTCP it
/// receives.
pub(crate) struct Srtp {
    rtp: Cipher,
    rtcp: Cipher,
    rtcp_in: Cipher,
    /// The next SRTCP index (RFC 3711 §3.4: from 0, one per packet, mod 2^31).
    srtcp_index: u32,
}

impl std::fmt::Debug for Srtp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Srtp")
            .field("srtcp_index", &self.srtcp_index)
            .finish_non_exhaustive()
    }
}

impl Srtp {
    /// `None` for a profile this module does not know or keying material
    /// of the wrong length.
    pub fn new(crypto: &CryptoProvider, keys: &SrtpKeys) -> Option<Srtp> {
        let (key_len, salt_len) = master_lengths(keys.profile)?;
        if keys.material.len() != 2 * (key_len + salt_len) {
            return None;
        }
        let m = &keys.material;
        let client = (&m[..key_len], &m[2 * key_len..2 * key_len + salt_len]);
        let server = (
            &m[key_len..2 * key_len],
            &m[2 * key_len + salt_len..2 * (key_len + salt_len)],
        );
        let (ours, theirs) = if keys.client {
            (client, server)
        } else {
            (server, client)
        };
        Some(Srtp {
            rtp: Cipher::new(crypto, keys.profile, ours.0, ours.1, false, true)?,
            rtcp: Cipher::new(crypto, keys.profile, ours.0, ours.1, true, true)?,
            rtcp_in: Cipher::new(crypto, keys.profile, theirs.0, theirs.1, true, false)?,
            srtcp_index: 0,
        })
    }

    /// Writes the SRTP packet of `header` (a whole RTP header, extensions
    /// included) and `payload` into `out` (RFC 3711 §3.1). `index` is the
    /// packet's extended sequence number (ROC · 2^16 + SEQ, §3.3.1).
    pub fn protect_rtp(&mut self, header: &[u8], payload: &[u8], index: u64, out: &mut Vec<u8>) {
        let ssrc = u32::from_be_bytes([header[8], header[9], header[10], header[11]]);
        let h = header.len();
        let n = payload.len();
        out.clear();
        out.extend_from_slice(header);
        match &mut self.rtp {
            Cipher::CmSha1 {
                aes,
                auth,
                salt,
                hmac,
            } => {
                out.resize(h + n + CTR_SLACK.max(HMAC_TAG), 0);
                let iv = cm_iv(salt, ssrc, index);
                // The provider's CTR mode cannot fail on these lengths.
                let _ = aes.encrypt(&iv, payload, &mut out[h..]);
                // §4.2: the tag is over the packet and the rollover counter.
                let roc = ((index >> 16) as u32).to_be_bytes();
                let tag = hmac.sha1_hmac(auth, &[&out[..h + n], &roc]);
                out[h + n..h + n + HMAC_TAG].copy_from_slice(&tag[..HMAC_TAG]);
                out.truncate(h + n + HMAC_TAG);
            }
            Cipher::Gcm { key, salt } => {
                out.resize(h + n + GCM_TAG, 0);
                let iv = gcm_iv(salt, ssrc, (index >> 16) as u32, index as u16);
                key.seal(&iv, header, payload, &mut out[h..]);
            }
        }
    }

    /// Writes the SRTCP packet of the compound RTCP packet `packet` into
    /// `out` (RFC 3711 §3.4, encrypted: E set), with the next SRTCP index.
    pub fn protect_rtcp(&mut self, packet: &[u8], out: &mut Vec<u8>) {
        let index = self.srtcp_index;
        self.srtcp_index = (self.srtcp_index + 1) & 0x7fff_ffff;
        let e_index = (0x8000_0000 | index).to_be_bytes();
        let ssrc = u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]);
        let n = packet.len();
        out.clear();
        out.extend_from_slice(&packet[..8]);
        match &mut self.rtcp {
            Cipher::CmSha1 {
                aes,
                auth,
                salt,
                hmac,
            } => {
                out.resize(n + SRTCP_INDEX + CTR_SLACK.max(HMAC_TAG), 0);
                let iv = cm_iv(salt, ssrc, u64::from(index));
                let _ = aes.encrypt(&iv, &packet[8..], &mut out[8..]);
                out[n..n + SRTCP_INDEX].copy_from_slice(&e_index);
                // §3.4: the tag covers the packet, E and the index.
                let tag = hmac.sha1_hmac(auth, &[&out[..n + SRTCP_INDEX]]);
                out[n + SRTCP_INDEX..n + SRTCP_INDEX + HMAC_TAG].copy_from_slice(&tag[..HMAC_TAG]);
                out.truncate(n + SRTCP_INDEX + HMAC_TAG);
            }
            Cipher::Gcm { key, salt } => {
                out.resize(n + GCM_TAG + SRTCP_INDEX, 0);
                let iv = srtcp_gcm_iv(gcm_iv(salt, ssrc, 0, 0), index);
                let aad = srtcp_aad(packet, e_index);
                key.seal(&iv, &aad, &packet[8..], &mut out[8..]);
                out[n + GCM_TAG..].copy_from_slice(&e_index);
            }
        }
    }

    /// Checks and decrypts a received SRTCP packet into `out` (the compound
    /// RTCP packet). Replays are not detected: what a replayed NACK or PLI
    /// could make the session do is bounded by its resend budget and by
    /// the keyframe replay's minimum interval.
    pub fn unprotect_rtcp(&mut self, packet: &[u8], out: &mut Vec<u8>) -> Result<(), SrtcpError> {
        let n = packet.len();
        let tag_len = match self.rtcp_in {
            Cipher::CmSha1 { .. } => HMAC_TAG,
            _ => GCM_TAG,
        };
        if n < 8 + SRTCP_INDEX + tag_len {
            return Err(SrtcpError::TooShort(n));
        }
        let ssrc = u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]);
        out.clear();
        out.extend_from_slice(&packet[..8]);
        match &mut self.rtcp_in {
            Cipher::CmSha1 {
                aes,
                auth,
                salt,
                hmac,
            } => {
                let body_end = n - HMAC_TAG - SRTCP_INDEX;
                let e_index = u32::from_be_bytes(
                    packet[body_end..body_end + SRTCP_INDEX]
                        .try_into()
                        .unwrap_or_default(),
                );
                let index = e_index & 0x7fff_ffff;
                let tag = hmac.sha1_hmac(auth, &[&packet[..n - HMAC_TAG]]);
                if !constant_time_eq(&tag[..HMAC_TAG], &packet[n - HMAC_TAG..]) {
                    return Err(SrtcpError::Auth { ssrc, index });
                }
                if e_index & 0x8000_0000 == 0 {
                    out.extend_from_slice(&packet[8..body_end]);
                    return Ok(());
                }
                out.resize(body_end + CTR_SLACK, 0);
                let iv = cm_iv(salt, ssrc, u64::from(index));
                aes.decrypt(&iv, &packet[8..body_end], &mut out[8..])
                    .map_err(|_| SrtcpError::Auth { ssrc, index })?;
                out.truncate(body_end);
                Ok(())
            }
            Cipher::Gcm { key, salt } => {
                let (iv, e_index, body_end) = gcm_rtcp_in(packet, salt, ssrc);
                let index = u32::from_be_bytes(e_index) & 0x7fff_ffff;
                gcm_open(key, packet, iv, e_index, body_end, out)
                    .map_err(|_| SrtcpError::Auth { ssrc, index })
            }
        }
    }
}

/// The two ends of a session with fixed keys, for the fuzz harness
/// ([`crate::fuzzing::viewer_rtcp`]): profile 0 `AES_CM_128_HMAC_SHA1_80`,
/// 1 `AEAD_AES_128_GCM`, else `AEAD_AES_256_GCM`; the server end first.
pub(crate) fn fuzzing_pair(profile: u8) -> (Srtp, Srtp) {
    let profile = match profile {
        0 => SrtpProfile::AES128_CM_SHA1_80,
        1 => SrtpProfile::AEAD_AES_128_GCM,
        _ => SrtpProfile::AEAD_AES_256_GCM,
    };
    let crypto = str0m::crypto::from_feature_flags();
    let material: Vec<u8> = (0..88u8).collect();
    let len = master_lengths(profile).map_or(0, |(k, s)| 2 * (k + s));
    let end = |client| {
        Srtp::new(
            &crypto,
            &SrtpKeys {
                material: material[..len].to_vec(),
                profile,
                client,
            },
        )
    };
    match (end(false), end(true)) {
        (Some(server), Some(client)) => (server, client),
        _ => unreachable!("fixed keys of the profile's length"),
    }
}

/// The SRTCP GCM IV (RFC 7714 §9.1): the index in the last four bytes.
fn srtcp_gcm_iv(mut iv: [u8; 12], index: u32) -> [u8; 12] {
    for (b, s) in iv[8..].iter_mut().zip(index.to_be_bytes()) {
        *b ^= s;
    }
    iv
}

/// The associated data of an encrypted SRTCP packet (RFC 7714 §9.3): its
/// first eight bytes, then E and the index.
fn srtcp_aad(packet: &[u8], e_index: [u8; 4]) -> [u8; 12] {
    let mut aad = [0u8; 12];
    aad[..8].copy_from_slice(&packet[..8]);
    aad[8..].copy_from_slice(&e_index);
    aad
}

/// IV, E ‖ index and the end of the encrypted part of a received GCM SRTCP
/// packet (long enough: checked by the caller).
fn gcm_rtcp_in(packet: &[u8], salt: &[u8; 12], ssrc: u32) -> ([u8; 12], [u8; 4], usize) {
    let n = packet.len();
    let e_index: [u8; 4] = packet[n - SRTCP_INDEX..].try_into().unwrap_or_default();
    let index = u32::from_be_bytes(e_index) & 0x7fff_ffff;
    let iv = srtcp_gcm_iv(gcm_iv(salt, ssrc, 0, 0), index);
    (iv, e_index, n - SRTCP_INDEX)
}

/// Opens a GCM SRTCP packet: encrypted (E set, RFC 7714 §9.3) or only
/// authenticated (E clear, §9.4: all of it is associated data).
fn gcm_open(
    key: &mut GcmKey,
    packet: &[u8],
    iv: [u8; 12],
    e_index: [u8; 4],
    body_end: usize,
    out: &mut Vec<u8>,
) -> Result<(), Unspecified> {
    if e_index[0] & 0x80 != 0 {
        let aad = srtcp_aad(packet, e_index);
        out.resize(body_end - GCM_TAG, 0);
        let clear = body_end - GCM_TAG;
        key.open(
            &iv,
            &aad,
            &packet[8..clear],
            &packet[clear..body_end],
            &mut out[8..],
        )?;
    } else {
        let clear = body_end - GCM_TAG;
        let mut aad = Vec::with_capacity(clear + SRTCP_INDEX);
        aad.extend_from_slice(&packet[..clear]);
        aad.extend_from_slice(&e_index);
        key.open(&iv, &aad, &[], &packet[clear..body_end], &mut [])?;
        out.extend_from_slice(&packet[8..clear]);
    }
    Ok(())
}

/// Compares two tags without an early exit.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn crypto() -> CryptoProvider {
        str0m::crypto::from_feature_flags()
    }

    /// RFC 3711 Appendix B.3: session keys from a master key and salt.
    #[test]
    fn key_derivation_matches_rfc_3711_b3() {
        let crypto = crypto();
        let master = hex("E1F97A0D3E018BE0D64FA32C06DE4139");
        let salt = hex("0EC675AD498AFEEBB6960B3AABE6");
        let mut key = [0u8; 16];
        let mut auth = [0u8; 20];
        let mut s = [0u8; 14];
        derive(&crypto, &master, &salt, LABEL_RTP_ENCRYPTION, &mut key);
        derive(&crypto, &master, &salt, LABEL_RTP_AUTH, &mut auth);
        derive(&crypto, &master, &salt, LABEL_RTP_SALT, &mut s);
        assert_eq!(key.to_vec(), hex("C61E7A93744F39EE10734AFE3FF7A087"));
        assert_eq!(s.to_vec(), hex("30CBBC08863D8C85D49DB34A9AE1"));
        assert_eq!(
            auth.to_vec(),
            hex("CEBE321F6FF7716B6FD4AB49AF256A156D38BAA4")
        );
    }

    /// An `Srtp` whose sending keys (this end being the DTLS server) are
    /// derived from `key` and `salt`.
    fn sender(profile: SrtpProfile, key: &str, salt: &str) -> Srtp {
        let (key, salt) = (hex(key), hex(salt));
        let mut material = vec![0u8; key.len()];
        material.extend_from_slice(&key);
        material.extend(std::iter::repeat_n(0, salt.len()));
        material.extend_from_slice(&salt);
        Srtp::new(
            &crypto(),
            &SrtpKeys {
                material,
                profile,
                client: false,
            },
        )
        .unwrap()
    }

    /// libsrtp's reference packets (its `srtp_driver` test vectors):
    /// master key and salt through the key derivation, then RTP with
    /// `AES_CM_128_HMAC_SHA1_80` and `AEAD_AES_128_GCM`, and SRTCP (index 1)
    /// with `AES_CM_128_HMAC_SHA1_80`.
    #[test]
    fn protects_libsrtps_reference_packets() {
        let header = hex("800f1234decafbadcafebabe");
        let payload = [0xab; 16];
        let mut out = Vec::new();
        let rtp = [
            (
                SrtpProfile::AES128_CM_SHA1_80,
                "e1f97a0d3e018be0d64fa32c06de4139",
                "0ec675ad498afeebb6960b3aabe6",
                "800f1234decafbadcafebabe4e55dc4ce79978d88ca4d215949d2402b78d6acc99ea179b8dbb",
            ),
            (
                SrtpProfile::AEAD_AES_128_GCM,
                "000102030405060708090a0b0c0d0e0f",
                "a0a1a2a3a4a5a6a7a8a9aaab",
                "800f1234decafbadcafebabec5002ede04cfdd2eb91159e0880aa06ed2976826f796b201df3131a127e8a392",
            ),
        ];
        for (profile, key, salt, expected) in rtp {
            sender(profile, key, salt).protect_rtp(&header, &payload, 0x1234, &mut out);
            assert_eq!(out, hex(expected), "{profile:?}");
        }
        let mut cm = sender(rtp[0].0, rtp[0].1, rtp[0].2);
        let mut rtcp = hex("81c8000bcafebabe");
        rtcp.extend_from_slice(&payload);
        cm.srtcp_index = 1;
        cm.protect_rtcp(&rtcp, &mut out);
        assert_eq!(
            out,
            hex("81c8000bcafebabe7128035be487b9bdbef89041f977a5a880000001993e08cd54d6c1230798")
        );
    }

    /// RFC 7714 §16.1.1 and §16.2.1: the AEAD packet layout and IV with the
    /// RFC's session keys (no key derivation), AES-128 and AES-256.
    #[test]
    fn protects_rfc_7714_reference_packets() {
        let salt: [u8; 12] = hex("517569642070726f2071756f").try_into().unwrap();
        let key: Vec<u8> = (0u8..32).collect();
        let header = hex("8040f17b8041f8d35501a0b2");
        let payload = b"Gallia est omnis divisa in partes tres";
        let cases = [
            (
                Cipher::Gcm {
                    key: GcmKey::new(&key[..16]).unwrap(),
                    salt,
                },
                "8040f17b8041f8d35501a0b2f24de3a3fb34de6cacba861c9d7e4bcabe633bd50d294e6f42a5f47a51c7d19b36de3adf8833899d7f27beb16a9152cf765ee4390cce",
            ),
            (
                Cipher::Gcm {
                    key: GcmKey::new(&key[..]).unwrap(),
                    salt,
                },
                "8040f17b8041f8d35501a0b232b1de78a822fe12ef9f78fa332e33aab18012389a58e2f3b50b2a0276ffae0f1ba63799b87b7aa3db36dfffd6b0f9bb7878d7a76c13",
            ),
        ];
        for (cipher, expected) in cases {
            let mut s = sender(
                SrtpProfile::AEAD_AES_128_GCM,
                "000102030405060708090a0b0c0d0e0f",
                "a0a1a2a3a4a5a6a7a8a9aaab",
            );
            s.rtp = cipher;
            let mut out = Vec::new();
            s.protect_rtp(&header, payload, 0xf17b, &mut out);
            assert_eq!(out, hex(expected));
        }
    }

    /// The two ends of one DTLS association: each one's sending keys are
    /// the other's receiving keys.
    fn pair(profile: SrtpProfile) -> (Srtp, Srtp) {
        let (k, s) = master_lengths(profile).unwrap();
        let material: Vec<u8> = (0..2 * (k + s)).map(|i| (i * 7 + 3) as u8).collect();
        let crypto = crypto();
        let client = Srtp::new(
            &crypto,
            &SrtpKeys {
                material: material.clone(),
                profile,
                client: true,
            },
        )
        .unwrap();
        let server = Srtp::new(
            &crypto,
            &SrtpKeys {
                material,
                profile,
                client: false,
            },
        )
        .unwrap();
        (client, server)
    }

    const PROFILES: [SrtpProfile; 3] = [
        SrtpProfile::AES128_CM_SHA1_80,
        SrtpProfile::AEAD_AES_128_GCM,
        SrtpProfile::AEAD_AES_256_GCM,
    ];

    /// An SRTCP packet one end protects, the other accepts and decrypts to
    /// the same RTCP; a changed byte anywhere is refused.
    #[test]
    fn srtcp_round_trips_between_the_two_ends_and_detects_tampering() {
        // A receiver report with one PLI after it (RFC 3550 §6.4.2, RFC 4585 §6.3.1).
        let mut rtcp = hex("81c900070000000100000002");
        rtcp.extend_from_slice(&[0; 20]);
        rtcp.extend_from_slice(&hex("81ce00020000000100000002"));
        for profile in PROFILES {
            let (mut client, mut server) = pair(profile);
            let mut wire = Vec::new();
            client.protect_rtcp(&rtcp, &mut wire);
            assert!(wire.len() > rtcp.len(), "{profile:?}");
            assert_ne!(&wire[8..rtcp.len()], &rtcp[8..], "{profile:?}: encrypted");
            let mut clear = Vec::new();
            server.unprotect_rtcp(&wire, &mut clear).expect("accepted");
            assert_eq!(clear, rtcp, "{profile:?}");
            // The sender's own receiving side has the other keys.
            assert!(client.unprotect_rtcp(&wire, &mut clear).is_err());
            for at in [0, 9, wire.len() - 1] {
                let mut bad = wire.clone();
                bad[at] ^= 1;
                assert!(
                    server.unprotect_rtcp(&bad, &mut clear).is_err(),
                    "{profile:?}: byte {at}"
                );
            }
            assert_eq!(
                server.unprotect_rtcp(&wire[..10], &mut clear),
                Err(SrtcpError::TooShort(10))
            );
            // The index goes up per packet (RFC 3711 §3.4).
            let mut second = Vec::new();
            client.protect_rtcp(&rtcp, &mut second);
            assert_ne!(wire, second);
            server
                .unprotect_rtcp(&second, &mut clear)
                .expect("accepted");
            assert_eq!(clear, rtcp);
        }
    }

    /// SRTP output: the header in the clear, the payload encrypted, the
    /// tag of the profile's length; the same packet at another index (ROC)
    /// encrypts differently.
    #[test]
    fn srtp_keeps_the_header_and_encrypts_the_payload() {
        let header = hex("8060303900000bb8deadbeef");
        let payload: Vec<u8> = (0..300).map(|i| i as u8).collect();
        for (profile, tag) in PROFILES.into_iter().zip([HMAC_TAG, GCM_TAG, GCM_TAG]) {
            let (_, mut server) = pair(profile);
            let mut out = Vec::new();
            server.protect_rtp(&header, &payload, 0x3039, &mut out);
            assert_eq!(out.len(), header.len() + payload.len() + tag, "{profile:?}");
            assert_eq!(&out[..12], &header[..]);
            assert_ne!(&out[12..312], &payload[..]);
            let mut wrapped = Vec::new();
            server.protect_rtp(&header, &payload, 0x1_3039, &mut wrapped);
            assert_ne!(
                out, wrapped,
                "{profile:?}: the ROC is part of the IV or tag"
            );
        }
    }
}
