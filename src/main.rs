//! `mediarelay`: runs the relay on embedded defaults, or with `--config FILE`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use mediarelay::app::App;
use mediarelay::config::{self, Overrides};

/// A live media relay: RTMP in; LL-HLS and RTMP out.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// TOML configuration file (every key is optional; see config/mediarelay.toml).
    #[arg(long, env = "MEDIARELAY_CONFIG")]
    config: Option<PathBuf>,
    /// RTMP listener, e.g. ":1935" or "127.0.0.1:1935".
    #[arg(long)]
    rtmp_listen: Option<String>,
    /// HTTP listener (HLS), e.g. ":8080".
    #[arg(long)]
    http_listen: Option<String>,
    /// Control API listener, e.g. "127.0.0.1:9997".
    #[arg(long)]
    api_listen: Option<String>,
    /// HTTPS listener with the HTTP routes, e.g. ":8443" (needs tls.cert and tls.key; "" = off).
    #[arg(long)]
    https_listen: Option<String>,
    /// RTMPS listener, e.g. ":1936" (used when tls.cert and tls.key are set; "" = off).
    #[arg(long)]
    rtmps_listen: Option<String>,
    /// WebRTC UDP port shared by every WHEP/WHIP session, e.g. ":8189".
    #[arg(long)]
    webrtc_listen: Option<String>,
    /// ICE-over-TCP port for clients whose UDP is blocked ("" turns it off).
    #[arg(long)]
    webrtc_tcp_listen: Option<String>,
    /// RTSP listener, e.g. ":8554" ("" = off).
    #[arg(long)]
    rtsp_listen: Option<String>,
    /// RTSPS (RTSP over TLS) listener, e.g. ":8322" (used when tls.cert and tls.key are set; "" = off).
    #[arg(long)]
    rtsps_listen: Option<String>,
    /// UDP port for RTSP readers' RTP, e.g. ":8000" ("" = RTP over TCP only).
    #[arg(long)]
    rtsp_udp_rtp_listen: Option<String>,
    /// UDP port for RTSP readers' RTCP, e.g. ":8001".
    #[arg(long)]
    rtsp_udp_rtcp_listen: Option<String>,
    /// Log level or tracing filter (overrides log_level).
    #[arg(long)]
    log_level: Option<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut overrides = Overrides::default();
    for (key, value) in [
        ("rtmp_listen", &args.rtmp_listen),
        ("http_listen", &args.http_listen),
        ("api_listen", &args.api_listen),
        ("https_listen", &args.https_listen),
        ("rtmps_listen", &args.rtmps_listen),
        ("webrtc_listen", &args.webrtc_listen),
        ("webrtc_tcp_listen", &args.webrtc_tcp_listen),
        ("rtsp_listen", &args.rtsp_listen),
        ("rtsps_listen", &args.rtsps_listen),
        ("rtsp_udp_rtp_listen", &args.rtsp_udp_rtp_listen),
        ("rtsp_udp_rtcp_listen", &args.rtsp_udp_rtcp_listen),
        ("log_level", &args.log_level),
    ] {
        if let Some(v) = value {
            overrides.values.push((key, v.clone()));
        }
    }
    let env: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k.starts_with(config::ENV_PREFIX))
        .collect();
    let config = match config::load(args.config.as_deref(), env.clone(), &overrides) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mediarelay: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.log_level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
    log_panics();
    raise_open_file_limit();

    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("mediarelay: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let stop = StopSignals::install();
        let app = match App::start(config).await {
            Ok(app) => app,
            Err(e) => {
                tracing::error!("{e}");
                return ExitCode::FAILURE;
            }
        };
        if let Some(file) = args.config.clone() {
            app.watch_config(mediarelay::reload::ConfigOrigin {
                file,
                env,
                overrides,
            });
        }
        stop.wait().await;
        tracing::info!("shutting down");
        app.shutdown().await;
        ExitCode::SUCCESS
    })
}

/// SIGTERM or Ctrl-C, listened for from before the listeners open, so a
/// signal that comes right after start is not missed (its default action
/// would kill the process without a clean shutdown).
struct StopSignals {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
}

impl StopSignals {
    fn install() -> StopSignals {
        StopSignals {
            #[cfg(unix)]
            term: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok(),
        }
    }

    async fn wait(mut self) {
        #[cfg(unix)]
        if let Some(term) = self.term.as_mut() {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// A panic in a task ends that task only (tokio catches it; the session's
/// guards close its sockets and free its path on unwind): it is logged as
/// an error through the same log as everything else, with where it
/// happened, instead of the default hook's bare line on stderr.
fn log_panics() {
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".into());
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let thread = std::thread::current();
        tracing::error!(
            %location,
            thread = thread.name().unwrap_or("?"),
            "panic: {message}; the task that panicked has ended, the server goes on"
        );
    }));
}

/// Raises the soft limit on open files to the hard one: every viewer's
/// connection and every HLS segment's memory file is a descriptor, and the
/// common soft default (1024) would refuse connections long before the
/// machine runs out (as Go's runtime and nginx's `worker_rlimit_nofile` do).
fn raise_open_file_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid rlimit the call fills in.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0
        || lim.rlim_cur >= lim.rlim_max
    {
        return;
    }
    let before = lim.rlim_cur;
    lim.rlim_cur = lim.rlim_max;
    // SAFETY: `lim` is a valid rlimit; raising the soft limit up to the hard
    // one needs no privilege.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } == 0 {
        tracing::debug!(from = before, to = lim.rlim_cur, "open file limit raised");
    }
}
