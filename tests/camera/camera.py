#!/usr/bin/python3
"""A test IP camera: GStreamer's RTSP server with a few typical mounts.

    /usr/bin/python3 tests/camera/camera.py --port 0 [--user admin --password secret]

Listens on 127.0.0.1 only and prints `READY <port>` on stdout once it accepts
connections (port 0 picks a free one). SIGTERM/SIGINT stop it cleanly, and
with --exit-with-stdin so does EOF on stdin (a test harness that dies closes
the pipe, so no camera outlives it).

Mounts (each shared: one live encoder for all clients, like a camera; RTP
over TCP-interleaved or UDP):

    /h264_pcmu   H.264 + G.711 mu-law 8 kHz mono
    /h264_pcma   H.264 + G.711 A-law 8 kHz mono
    /h264_aac    H.264 + AAC-LC 48 kHz stereo
    /h264_opus   H.264 + Opus 48 kHz stereo
    /h265_aac    H.265 + AAC-LC 48 kHz stereo (only when x265enc exists)
    /h265_opus_inband  H.265 with parameter sets only in-band + Opus
    /video_only  H.264
    /secure      H.264 + PCMU behind Digest auth (--user/--password)
    /inband      H.264 whose SDP has no sprop-parameter-sets (SPS/PPS only
                 in-band, before every IDR)
    /lossy       H.264 in small RTP packets, every 53rd of which is never
                 sent (a sequence gap, as on a lossy network)
    /resize      H.264 + AAC whose picture switches between 320x240 and
                 640x360 every 4 s (new SPS in-band, as when a camera's
                 resolution is changed in its web UI)

Video is 320x240 at 15 fps with a keyframe every second, so a new client gets
a picture within ~1 s and the encoders stay cheap.
"""

import argparse
import os
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
gi.require_version("GstSdp", "1.0")
from gi.repository import GLib, Gst, GstRtsp, GstRtspServer, GstSdp  # noqa: E402

# Before subclassing RTSPMedia: its signals need GStreamer's types registered.
Gst.init(None)

WIDTH, HEIGHT, FPS = 320, 240, 15

VIDEO_SRC = (
    "videotestsrc is-live=true pattern=ball "
    f"! video/x-raw,format=I420,width={WIDTH},height={HEIGHT},framerate={FPS}/1 "
)

H264 = (
    VIDEO_SRC + "! x264enc tune=zerolatency speed-preset=ultrafast "
    f"key-int-max={FPS} bitrate=300 threads=1 "
    "! video/x-h264,profile=baseline,stream-format=byte-stream "
)

# Main profile with B-frames (x264's zerolatency tune would turn them off):
# RTP then carries frames in decode order with presentation timestamps.
H264_BFRAMES = (
    VIDEO_SRC + "! x264enc speed-preset=ultrafast bframes=2 b-adapt=false "
    f"key-int-max={FPS} bitrate=300 threads=1 rc-lookahead=0 "
    "! video/x-h264,profile=main,stream-format=byte-stream "
)

H265 = (
    VIDEO_SRC + "! x265enc tune=zerolatency speed-preset=ultrafast "
    f"key-int-max={FPS} bitrate=300 "
    'option-string="pools=1:frame-threads=1:lookahead-slices=0" '
    "! video/x-h265,stream-format=byte-stream "
)


def audio(rate, channels):
    return (
        "audiotestsrc is-live=true wave=sine "
        f"! audio/x-raw,rate={rate},channels={channels} "
        "! audioconvert ! audioresample "
    )


H264_PAY = "! rtph264pay name=pay0 pt=96 config-interval=-1 "
PCMU = audio(8000, 1) + "! mulawenc ! rtppcmupay name=pay1 pt=0 "
PCMA = audio(8000, 1) + "! alawenc ! rtppcmapay name=pay1 pt=8 "
AAC = audio(48000, 2) + "! avenc_aac ! rtpmp4gpay name=pay1 pt=97 "
OPUS = audio(48000, 2) + "! opusenc ! rtpopuspay name=pay1 pt=111 "

MOUNTS = {
    "/h264_pcmu": H264 + H264_PAY + PCMU,
    "/h264_pcma": H264 + H264_PAY + PCMA,
    "/h264_aac": H264 + H264_PAY + AAC,
    "/h264_opus": H264 + H264_PAY + OPUS,
    "/h265_aac": H265 + "! rtph265pay name=pay0 pt=96 config-interval=-1 " + AAC,
    # H.265 with VPS/SPS/PPS only in-band (InbandMedia) and Opus audio.
    "/h265_opus_inband": H265 + "! rtph265pay name=pay0 pt=96 config-interval=-1 " + OPUS,
    "/video_only": H264 + H264_PAY,
    "/h264_bframes": H264_BFRAMES + H264_PAY + AAC,
    # Like a camera that only does RTP over TCP (answers UDP SETUP with 461).
    "/tcp_only": H264 + H264_PAY + PCMU,
    "/secure": H264 + H264_PAY + PCMU,
    # SPS/PPS sent in-band with every IDR; InbandMedia strips them from the SDP.
    "/inband": H264 + "! rtph264pay name=pay0 pt=96 config-interval=-1 ",
    "/lossy": H264 + "! rtph264pay name=pay0 pt=96 config-interval=-1 mtu=300 ",
    "/resize": "videotestsrc is-live=true pattern=ball "
    f"! capsfilter name=size caps=video/x-raw,format=I420,width={WIDTH},height={HEIGHT},framerate={FPS}/1 "
    f"! x264enc tune=zerolatency speed-preset=ultrafast key-int-max={FPS} bitrate=300 threads=1 "
    "! video/x-h264,profile=baseline,stream-format=byte-stream " + H264_PAY + AAC,
}

# /lossy: every LOSS_EVERY-th video RTP packet is dropped.
LOSS_EVERY = 53
# /resize: the picture size alternates every RESIZE_SECS.
RESIZE_SECS = 4
SIZES = [(WIDTH, HEIGHT), (640, 360)]


def drop_some_packets(_factory, media):
    pad = media.get_element().get_by_name("pay0").get_static_pad("src")
    count = [0]

    def probe(_pad, _info):
        count[0] += 1
        if count[0] % LOSS_EVERY == 0:
            return Gst.PadProbeReturn.DROP
        return Gst.PadProbeReturn.OK

    pad.add_probe(Gst.PadProbeType.BUFFER, probe)


def resize_now_and_then(_factory, media):
    caps = media.get_element().get_by_name("size")
    turn = [0]

    def flip():
        if media.get_status() == GstRtspServer.RTSPMediaStatus.UNPREPARED:
            return GLib.SOURCE_REMOVE
        turn[0] += 1
        w, h = SIZES[turn[0] % len(SIZES)]
        caps.set_property(
            "caps",
            Gst.Caps.from_string(f"video/x-raw,format=I420,width={w},height={h},framerate={FPS}/1"),
        )
        return GLib.SOURCE_CONTINUE

    GLib.timeout_add_seconds(RESIZE_SECS, flip)

ROLE_USER = "user"
ROLE_ANON = "anonymous"


class InbandMedia(GstRtspServer.RTSPMedia):
    """A media whose SDP leaves out sprop-parameter-sets (and sprop-vps/sps/pps)."""

    def do_setup_sdp(self, sdp, info):
        if not GstRtspServer.RTSPMedia.do_setup_sdp(self, sdp, info):
            return False
        for i in range(sdp.medias_len()):
            media = sdp.get_media(i)
            for j in range(media.attributes_len()):
                attr = media.get_attribute(j)
                if attr.key != "fmtp":
                    continue
                fmt, _, params = attr.value.partition(" ")
                kept = [
                    p
                    for p in params.split(";")
                    if p.strip() and not p.strip().startswith("sprop-")
                ]
                new = GstSdp.SDPAttribute()
                new.set("fmtp", f"{fmt} {';'.join(kept)}")
                media.replace_attribute(j, new)
        return True


def has_element(name):
    return Gst.ElementFactory.find(name) is not None


def permissions(anonymous_may_construct):
    perms = GstRtspServer.RTSPPermissions()
    for role, construct in ((ROLE_USER, True), (ROLE_ANON, anonymous_may_construct)):
        # Access for every role: otherwise the server answers 404, not 401.
        perms.add_permission_for_role(role, GstRtspServer.RTSP_PERM_MEDIA_FACTORY_ACCESS, True)
        perms.add_permission_for_role(
            role, GstRtspServer.RTSP_PERM_MEDIA_FACTORY_CONSTRUCT, construct
        )
    return perms


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True, help="0 picks a free port")
    parser.add_argument("--user", default="admin")
    parser.add_argument("--password", default="secret")
    parser.add_argument(
        "--exit-with-stdin",
        action="store_true",
        help="also stop when stdin reaches EOF (the parent holding the pipe died)",
    )
    args = parser.parse_args()

    missing = [
        e
        for e in ("x264enc", "rtph264pay", "mulawenc", "alawenc", "avenc_aac", "opusenc")
        if not has_element(e)
    ]
    if missing:
        print(f"camera.py: missing GStreamer elements: {' '.join(missing)}", file=sys.stderr)
        return 2

    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))

    auth = GstRtspServer.RTSPAuth()
    auth.set_supported_methods(GstRtsp.RTSPAuthMethod.DIGEST)
    user = GstRtspServer.RTSPToken()
    user.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, ROLE_USER)
    auth.add_digest(args.user, args.password, user)
    anon = GstRtspServer.RTSPToken()
    anon.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, ROLE_ANON)
    auth.set_default_token(anon)
    server.set_auth(auth)

    mounts = server.get_mount_points()
    for path, launch in MOUNTS.items():
        if path.startswith("/h265") and not has_element("x265enc"):
            print(f"camera.py: x265enc missing, no {path}", file=sys.stderr)
            continue
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(f"( {launch})")
        factory.set_shared(True)
        if path == "/tcp_only":
            factory.set_protocols(GstRtsp.RTSPLowerTrans.TCP)
        else:
            factory.set_protocols(GstRtsp.RTSPLowerTrans.TCP | GstRtsp.RTSPLowerTrans.UDP)
        factory.set_permissions(permissions(anonymous_may_construct=path != "/secure"))
        if path in ("/inband", "/h265_opus_inband"):
            factory.set_media_gtype(InbandMedia)
        if path == "/lossy":
            factory.connect("media-configure", drop_some_packets)
        if path == "/resize":
            factory.connect("media-configure", resize_now_and_then)
        mounts.add_factory(path, factory)

    loop = GLib.MainLoop()
    if server.attach(None) == 0:
        print(f"camera.py: cannot listen on 127.0.0.1:{args.port}", file=sys.stderr)
        return 1

    def stop():
        loop.quit()
        return GLib.SOURCE_REMOVE

    GLib.unix_signal_add(GLib.PRIORITY_HIGH, signal.SIGTERM, stop)
    GLib.unix_signal_add(GLib.PRIORITY_HIGH, signal.SIGINT, stop)

    if args.exit_with_stdin:

        def on_stdin(_fd, _condition):
            try:
                data = os.read(0, 4096)
            except OSError:
                data = b""
            if data:
                return GLib.SOURCE_CONTINUE
            loop.quit()
            return GLib.SOURCE_REMOVE

        GLib.unix_fd_add_full(
            GLib.PRIORITY_DEFAULT,
            0,
            GLib.IOCondition.IN | GLib.IOCondition.HUP | GLib.IOCondition.ERR,
            on_stdin,
        )

    print(f"READY {server.get_bound_port()}", flush=True)
    loop.run()

    # Close the sessions so every pipeline goes to NULL before exiting.
    server.client_filter(lambda _server, _client: GstRtspServer.RTSPFilterResult.REMOVE)
    pool = server.get_session_pool()
    pool.filter(lambda _pool, _session: GstRtspServer.RTSPFilterResult.REMOVE)
    context = GLib.MainContext.default()
    while context.iteration(False):
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
