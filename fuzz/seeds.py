#!/usr/bin/python3
"""Writes the seed corpora of the fuzz targets, from the project's fixtures.

    python3 fuzz/seeds.py        # rewrites fuzz/seeds/<target>/

Each seed is framed as the target's function in src/fuzzing.rs reads its
input (a mode byte, length-prefixed records, ...). The seeds are committed;
tests/fuzz_regressions.rs replays them, so a seed that stops parsing the way
it did (say, the RTMP capture no longer yields a publish) is noticed there.
Only the standard library is used.
"""

import os
import shutil
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..")
FIX = os.path.join(ROOT, "fixtures")
OUT = os.path.join(HERE, "seeds")

HANDSHAKE = 3073  # C0 + C1 + C2 (or S0 + S1 + S2): the chunk stream starts here


def read(*parts):
    with open(os.path.join(FIX, *parts), "rb") as f:
        return f.read()


def write(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def read_size_mode(step_seed, skip_handshake):
    """The mode byte of rtmp_server: bit 0 skips the handshake, the rest
    picks the read size (1 + seed * 37 bytes)."""
    return bytes([(step_seed << 1) | int(skip_handshake)])


def rtmp():
    for name in ["ffmpeg_publish", "ffmpeg_publish_bframes", "ffmpeg_play", "rtmpdump_play"]:
        c2s = read("rtmp", name + "_c2s.bin")
        write("rtmp_server", name + "_full", read_size_mode(110, False) + c2s[:12000])
        write("rtmp_server", name + "_chunks", read_size_mode(3, True) + c2s[HANDSHAKE:HANDSHAKE + 8000])
    for name in ["ffmpeg_play", "rtmpdump_play"]:
        s2c = read("rtmp", name + "_s2c.bin")
        write("rtmp_client", name, bytes([110]) + s2c[:12000])


def flv_tags_of(path, limit):
    """(type, timestamp, body) of the first `limit` tags of an FLV file."""
    data = read("media", path)
    i = 9 + 4  # FLV header, PreviousTagSize0
    tags = []
    while i + 11 <= len(data) and len(tags) < limit:
        kind = data[i]
        size = int.from_bytes(data[i + 1:i + 4], "big")
        ts = int.from_bytes(data[i + 4:i + 7], "big") | (data[i + 7] << 24)
        body = data[i + 11:i + 11 + size]
        tags.append((kind, ts, body))
        i += 11 + size + 4
    return tags


def flv():
    for path in ["res_a_320x240.flv", "res_b_640x360.flv"]:
        tags = flv_tags_of(path, 60)
        records = b""
        for kind, ts, body in tags:
            if kind not in (8, 9):
                continue
            body = body[:4000]
            records += bytes([1 if kind == 9 else 0]) + struct.pack(">IH", ts, len(body)) + body
        write("flv_tags", path.replace(".flv", ""), records)
        video = [b for k, _, b in tags if k == 9]
        audio = [b for k, _, b in tags if k == 8]
        avc_record = video[0][5:]
        write("codec_config", "avc_record_" + path[:5], bytes([0]) + avc_record)
        write("codec_config", "asc_" + path[:5], bytes([1]) + audio[0][2:])
        frame = min(video[1:], key=len)[5:]  # a whole frame, the smallest
        write("codec_config", "nal_lengths_" + path[:5], bytes([27]) + frame)
        write("codec_config", "avcc_to_annexb_" + path[:5], bytes([4]) + frame)
        # The record's first SPS: numOfSPS at byte 5, then a u16 length.
        sps_len = int.from_bytes(avc_record[6:8], "big")
        write("codec_config", "sps_" + path[:5], bytes([3]) + avc_record[8:8 + sps_len])


def rtp_packets(path, stream):
    data = read("rtp", path)
    i = 0
    while i + 3 <= len(data):
        index = data[i]
        n = int.from_bytes(data[i + 1:i + 3], "big")
        pkt = data[i + 3:i + 3 + n]
        i += 3 + n
        if index == stream:
            yield pkt


def rtp_payload(pkt):
    """(marker, timestamp, payload) of an RTP packet (RFC 3550 §5.1)."""
    cc = pkt[0] & 0x0F
    off = 12 + 4 * cc
    if pkt[0] & 0x10:  # header extension
        words = int.from_bytes(pkt[off + 2:off + 4], "big")
        off += 4 + 4 * words
    end = len(pkt)
    if pkt[0] & 0x20:  # padding
        end -= pkt[-1]
    return bool(pkt[1] & 0x80), int.from_bytes(pkt[4:8], "big"), pkt[off:end]


def rtp():
    for path, stream, which, name in [
        ("h264_opus.bin", 0, 0, "h264"),
        ("h265_aac.bin", 0, 1, "h265"),
        ("h265_aac.bin", 1, 2, "aac"),
        ("h264_opus.bin", 1, 3, "opus"),
    ]:
        out = bytes([which])
        last_ts = None
        for k, pkt in enumerate(rtp_packets(path, stream)):
            if k == 80:
                break
            mark, ts, payload = rtp_payload(pkt)
            step = 0 if last_ts is None else min(15, ((ts - last_ts) % (1 << 32)) // 1500)
            last_ts = ts
            out += bytes([(step << 4) | int(mark)]) + struct.pack(">H", len(payload)) + payload
        write("rtp_depacketize", name, out)


# A browser-style WHEP offer: receive-only H.264 and Opus, bundled, with the
# usual ICE, DTLS fingerprint and RTCP feedback lines (RFC 8829, RFC 8843).
OFFER = """v=0
o=- 4611731400430051336 2 IN IP4 127.0.0.1
s=-
t=0 0
a=group:BUNDLE 0 1
a=extmap-allow-mixed
a=msid-semantic: WMS
m=video 9 UDP/TLS/RTP/SAVPF 102 103 127
c=IN IP4 0.0.0.0
a=rtcp:9 IN IP4 0.0.0.0
a=ice-ufrag:Qa1z
a=ice-pwd:0123456789abcdefghijklmn
a=ice-options:trickle
a=fingerprint:sha-256 2C:1F:3A:8B:77:04:D2:9E:10:55:AB:CD:EF:01:23:45:67:89:9A:BC:DE:F0:12:34:56:78:9A:BC:DE:F0:12:34
a=setup:actpass
a=mid:0
a=extmap:1 urn:ietf:params:rtp-hdrext:sdes:mid
a=recvonly
a=rtcp-mux
a=rtcp-rsize
a=rtpmap:102 H264/90000
a=rtcp-fb:102 nack
a=rtcp-fb:102 nack pli
a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f
a=rtpmap:103 rtx/90000
a=fmtp:103 apt=102
a=rtpmap:127 H264/90000
a=fmtp:127 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=640032
m=audio 9 UDP/TLS/RTP/SAVPF 111
c=IN IP4 0.0.0.0
a=rtcp:9 IN IP4 0.0.0.0
a=ice-ufrag:Qa1z
a=ice-pwd:0123456789abcdefghijklmn
a=fingerprint:sha-256 2C:1F:3A:8B:77:04:D2:9E:10:55:AB:CD:EF:01:23:45:67:89:9A:BC:DE:F0:12:34:56:78:9A:BC:DE:F0:12:34
a=setup:actpass
a=mid:1
a=recvonly
a=rtcp-mux
a=rtpmap:111 opus/48000/2
a=fmtp:111 minptime=10;useinbandfec=1
"""


def sdp():
    write("sdp_offer", "whep_offer", OFFER.replace("\n", "\r\n").encode())
    publish = OFFER.replace("a=recvonly", "a=sendonly")
    write("sdp_offer", "whip_offer", publish.replace("\n", "\r\n").encode())
    for name in ["h264_opus.sdp", "h265_aac.sdp"]:
        write("sdp_offer", "not_webrtc_camera_" + name, read("rtp", name))


def stun():
    # Binding request (RFC 8489 §5): type, length, magic cookie, transaction
    # id, then USERNAME "server:client" (§14.3), padded to 4 bytes.
    user = b"Qa1z:Zb2y"
    attr = struct.pack(">HH", 0x0006, len(user)) + user + b"\0" * (-len(user) % 4)
    msg = struct.pack(">HHI", 0x0001, len(attr), 0x2112A442) + bytes(range(12)) + attr
    write("stun_route", "binding_request", msg)
    write("stun_route", "not_stun_dtls_client_hello", bytes([22, 254, 253]) + bytes(20))
    write("stun_route", "not_stun_srtp", bytes([0x80, 96]) + bytes(30))


def viewer_rtcp():
    # A viewer's compound RTCP (RFC 3550 §6.1): a receiver report with one
    # report block, a generic NACK (RFC 4585 §6.2.1) with two items, a PLI
    # (§6.3.1) and a FIR (RFC 5104 §4.3.1), for media SSRC 0x11223344.
    rr = struct.pack(">BBHI", 0x81, 201, 7, 1) + struct.pack(">I", 0x11223344) + bytes(20)
    nack = struct.pack(">BBHII", 0x81, 205, 4, 1, 0x11223344) + struct.pack(">HHHH", 100, 0b101, 200, 0)
    pli = struct.pack(">BBHII", 0x81, 206, 2, 1, 0x11223344)
    fir = struct.pack(">BBHII", 0x84, 206, 4, 1, 0) + struct.pack(">IB3x", 0x11223344, 7)
    compound = rr + nack + pli + fir
    # Clear mode (high bit): protected by one end, read by the other, per profile.
    for profile, name in enumerate(["aes_cm", "aes128_gcm", "aes256_gcm"]):
        write("viewer_rtcp", "roundtrip_" + name, bytes([0x80 | profile]) + compound)
    # From the network: nobody can forge the tag, so it is refused.
    write("viewer_rtcp", "not_authentic_" + "aes256_gcm", bytes([2]) + compound + bytes(20))
    write("viewer_rtcp", "not_rtcp_rtp", bytes([0x82, 0x80, 96]) + bytes(30))


def hls():
    for i, text in enumerate([
        "index.m3u8?_HLS_msn=5&_HLS_part=2&_HLS_skip=YES",
        "index.m3u8?_HLS_msn=18446744073709551615",
        "part_12_3.m4s",
        "seg_7.m4s",
        "init_2.mp4",
    ]):
        write("hls_request", f"request_{i}", text.encode())


def api():
    for i, body in enumerate([
        '{"rtmp_merge_writes":"100ms","reader_queue_frames":256}',
        '{"hls":{"segment_count":9,"part_duration":"300ms"}}',
        '{"limits":{"max_readers_per_path":null}}',
        '{"source":"rtsp://user:pass@10.0.0.5:554/x","on_demand":true,"publisher_grace":"5s"}',
        '{"publish_allow":["10.0.0.0/8"],"read_deny":["198.51.100.0/24"],"takeover":true}',
    ]):
        write("api_config_body", f"body_{i}", body.encode())


def rtsp():
    # What ffmpeg (Lavf) and GStreamer (rtspsrc) send to play and to
    # record, with an interleaved RTP frame in between (RFC 2326 §10.12).
    play = (
        b"OPTIONS rtsp://127.0.0.1:8554/live/cam RTSP/1.0\r\nCSeq: 1\r\nUser-Agent: Lavf61.7.100\r\n\r\n"
        b"DESCRIBE rtsp://127.0.0.1:8554/live/cam RTSP/1.0\r\nAccept: application/sdp\r\nCSeq: 2\r\nUser-Agent: Lavf61.7.100\r\n\r\n"
        b"SETUP rtsp://127.0.0.1:8554/live/cam/trackID=0 RTSP/1.0\r\nTransport: RTP/AVP/TCP;unicast;interleaved=0-1\r\nCSeq: 3\r\n\r\n"
        b"PLAY rtsp://127.0.0.1:8554/live/cam/ RTSP/1.0\r\nRange: npt=0.000-\r\nCSeq: 4\r\nSession: 3a9f1c2e\r\n\r\n"
        b"$\x01\x00\x08\x81\xc9\x00\x01\x00\x00\x00\x01"
        b"GET_PARAMETER rtsp://127.0.0.1:8554/live/cam/ RTSP/1.0\r\nCSeq: 5\r\nSession: 3a9f1c2e\r\n\r\n"
        b"TEARDOWN rtsp://127.0.0.1:8554/live/cam/ RTSP/1.0\r\nCSeq: 6\r\nSession: 3a9f1c2e\r\n\r\n"
    )
    write("rtsp_framer", "play", bytes([3]) + play)
    # GStreamer's rtspsrc over UDP with ffmpeg's Digest answer (as captured
    # from them against the server).
    udp_digest = (
        b"DESCRIBE rtsp://127.0.0.1:8554/live/cam RTSP/1.0\r\nCSeq: 1\r\nAuthorization: Digest username=\"viewer\", "
        b"realm=\"mediarelay\", nonce=\"1d74c60c72b79bf3162e53824e570c69\", uri=\"rtsp://127.0.0.1:8554/live/cam\", "
        b"response=\"9f264763f2ff88960b97f9295931b765\", algorithm=\"MD5\"\r\n\r\n"
        b"SETUP rtsp://127.0.0.1:8554/live/cam/trackID=1 RTSP/1.0\r\nCSeq: 2\r\n"
        b"Transport: RTP/AVP;unicast;client_port=40000-40001,RTP/AVP/TCP;unicast;interleaved=2-3\r\n"
        b"Authorization: Basic dmlld2VyOnNlY3JldA==\r\n\r\n"
    )
    write("rtsp_framer", "udp_digest", bytes([4]) + udp_digest)
    sdp = read("rtp", "h264_opus.sdp")
    record = (
        b"ANNOUNCE rtsp://127.0.0.1:8554/live/in RTSP/1.0\r\nContent-Type: application/sdp\r\nCSeq: 2\r\n"
        + b"Content-Length: " + str(len(sdp)).encode() + b"\r\n\r\n" + sdp
        + b"SETUP rtsp://127.0.0.1:8554/live/in/stream=0 RTSP/1.0\r\nTransport: RTP/AVP/TCP;unicast;interleaved=0-1;mode=record\r\nCSeq: 3\r\n\r\n"
        + b"RECORD rtsp://127.0.0.1:8554/live/in RTSP/1.0\r\nRange: npt=0.000-\r\nCSeq: 4\r\nSession: 77\r\n\r\n"
    )
    for k, pkt in enumerate(rtp_packets("h264_opus.bin", 0)):
        if k == 20:
            break
        record += b"$\x00" + struct.pack(">H", len(pkt)) + pkt
    write("rtsp_framer", "record", bytes([17]) + record)


def http1():
    # hls.js-like GETs pipelined on one keep-alive connection, curl's HEAD,
    # an HTTP/1.0 GET, then a POST (handed to hyper).
    write("http1_request", "pipelined", (
        b"GET /live/cam/index.m3u8?_HLS_msn=12&_HLS_part=3 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: Mozilla/5.0\r\n"
        b"Accept: */*\r\nOrigin: http://127.0.0.1:8080\r\nCookie: mediarelay_hls=abc123\r\nConnection: keep-alive\r\n\r\n"
        b"GET /live/cam/part_12_3.m4s HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nRange: bytes=0-\r\n\r\n"
        b"HEAD /live/cam/init_0.mp4 HTTP/1.1\r\nHost: h\r\n\r\n"
        b"GET /live/cam/ HTTP/1.0\r\n\r\n"
        b"POST /live/cam/whep HTTP/1.1\r\nHost: h\r\nContent-Type: application/sdp\r\nContent-Length: 3\r\n\r\nv=0"
    ))
    write("http1_request", "close", b"GET /live/cam/seg_7.m4s HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")


def config():
    with open(os.path.join(ROOT, "config", "mediarelay.toml"), "rb") as f:
        write("config_toml", "example", f.read())
    write("config_toml", "paths", b'[paths."live/*"]\ntakeover = true\n[paths.cam]\nsource = "rtsp://10.0.0.5/x"\non_demand = true\n')


def main():
    shutil.rmtree(OUT, ignore_errors=True)
    rtmp()
    flv()
    rtp()
    sdp()
    stun()
    viewer_rtcp()
    hls()
    api()
    config()
    rtsp()
    http1()
    for target in sorted(os.listdir(OUT)):
        files = os.listdir(os.path.join(OUT, target))
        size = sum(os.path.getsize(os.path.join(OUT, target, f)) for f in files)
        print(f"{target}: {len(files)} seeds, {size} bytes")


if __name__ == "__main__":
    main()
