//! The measuring client of the echo/bulk service: echo probes with RTT per
//! probe, bulk download or upload throughput; a line per second and a final
//! summary (human text or JSON lines). A broken connection is counted as an
//! error and re-established while time remains.

use crate::service::{MODE_BULK, MODE_ECHO, MODE_UPLOAD};
use crate::sockets::{self, Proto, SocketError};
use crate::stats::{Meter, Summary, Tick};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// How long one blocking read/write may wait before the loop looks at the
/// clock again.
const POLL: Duration = Duration::from_millis(100);
/// Longest wait for a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Pause between reconnection attempts.
const RECONNECT_PAUSE: Duration = Duration::from_millis(200);
/// Bytes of one echo probe: sequence number and send time.
const PROBE: usize = 16;
/// Buffer for bulk transfers.
const BULK_BUF: usize = 256 * 1024;

/// What to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Small probes every interval; RTT per probe.
    Echo,
    /// Download as fast as possible; throughput.
    Bulk,
    /// Upload as fast as possible; throughput.
    Upload,
}

impl Mode {
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Echo => "echo",
            Mode::Bulk => "bulk",
            Mode::Upload => "upload",
        }
    }

    fn byte(self) -> u8 {
        match self {
            Mode::Echo => MODE_ECHO,
            Mode::Bulk => MODE_BULK,
            Mode::Upload => MODE_UPLOAD,
        }
    }
}

/// Client settings.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Service address.
    pub addr: SocketAddr,
    /// Plain TCP instead of MPTCP.
    pub tcp_only: bool,
    /// Mode.
    pub mode: Mode,
    /// Length of the measurement.
    pub duration: Duration,
    /// Echo probe interval.
    pub interval: Duration,
    /// JSON lines instead of text.
    pub json: bool,
}

/// Errors of the client.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The first connection failed.
    #[error(transparent)]
    Connect(#[from] SocketError),
    /// Setting up the first connection failed.
    #[error("starting session: {0}")]
    Start(io::Error),
    /// Writing the output failed.
    #[error("writing output: {0}")]
    Output(io::Error),
}

/// Echo probe bookkeeping.
struct Echo {
    seq: u64,
    outstanding: Option<(u64, Instant)>,
    buf: [u8; PROBE],
    filled: usize,
    next_send: Instant,
}

/// Opens a session: connect, send the mode byte, set timeouts.
fn open(cfg: &ClientConfig, timeout: Duration) -> Result<(TcpStream, Proto), ClientError> {
    let (mut s, proto) = sockets::connect(cfg.addr, cfg.tcp_only, timeout)?;
    s.write_all(&[cfg.mode.byte()])
        .map_err(ClientError::Start)?;
    s.set_read_timeout(Some(POLL)).map_err(ClientError::Start)?;
    s.set_write_timeout(Some(POLL))
        .map_err(ClientError::Start)?;
    Ok((s, proto))
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

/// Runs the measurement, printing lines to `out`; returns the summary
/// (also printed). Fails only if the first connection cannot be made.
pub fn run(cfg: &ClientConfig, out: &mut dyn Write) -> Result<Summary, ClientError> {
    let (stream, mut proto) = open(cfg, CONNECT_TIMEOUT)?;
    let mut conn = Some(stream);
    let start = Instant::now();
    let end = start + cfg.duration;
    let mut meter = Meter::new(start, cfg.mode == Mode::Echo);
    let mut next_tick = start + Duration::from_secs(1);
    let mut echo = Echo {
        seq: 0,
        outstanding: None,
        buf: [0; PROBE],
        filled: 0,
        next_send: start,
    };
    let mut bulk = vec![0u8; BULK_BUF];
    loop {
        let now = Instant::now();
        if now >= next_tick {
            let tick = meter.tick(now);
            print_tick(out, cfg, &tick)?;
            next_tick += Duration::from_secs(1);
            if next_tick < now {
                next_tick = now + Duration::from_secs(1);
            }
        }
        if now >= end {
            break;
        }
        let Some(stream) = conn.as_mut() else {
            let left = end.saturating_duration_since(now).min(CONNECT_TIMEOUT);
            match open(cfg, left.max(Duration::from_millis(10))) {
                Ok((s, p)) => {
                    eprintln!("edgemig-guest: reconnected to {}", cfg.addr);
                    conn = Some(s);
                    proto = p;
                    echo.outstanding = None;
                    echo.filled = 0;
                }
                Err(_) => std::thread::sleep(RECONNECT_PAUSE.min(left)),
            }
            continue;
        };
        let step = match cfg.mode {
            Mode::Echo => echo_step(
                stream,
                &mut echo,
                &mut meter,
                cfg.interval,
                next_tick.min(end),
            ),
            Mode::Bulk => bulk_step(stream, &mut bulk, &mut meter),
            Mode::Upload => upload_step(stream, &bulk, &mut meter),
        };
        if let Err(e) = step {
            eprintln!("edgemig-guest: connection to {} broke: {e}", cfg.addr);
            meter.error();
            conn = None;
        }
    }
    if let Some(s) = conn {
        let _ = s.shutdown(Shutdown::Both);
    }
    let summary = meter.summary(Instant::now(), cfg.mode.name(), proto.name());
    print_summary(out, cfg, &summary)?;
    Ok(summary)
}

fn echo_step(
    stream: &mut TcpStream,
    echo: &mut Echo,
    meter: &mut Meter,
    interval: Duration,
    wake: Instant,
) -> io::Result<()> {
    let now = Instant::now();
    if echo.outstanding.is_none() {
        if now < echo.next_send {
            std::thread::sleep(echo.next_send.min(wake).saturating_duration_since(now));
            return Ok(());
        }
        echo.seq += 1;
        let mut probe = [0u8; PROBE];
        probe[..8].copy_from_slice(&echo.seq.to_le_bytes());
        probe[8..].copy_from_slice(&0x6564_6765_6d69_6721u64.to_le_bytes());
        stream.write_all(&probe)?;
        echo.outstanding = Some((echo.seq, now));
        echo.next_send = now + interval;
        echo.buf = [0; PROBE];
        echo.filled = 0;
    }
    match stream.read(&mut echo.buf[echo.filled..]) {
        Ok(0) => Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "server closed the connection",
        )),
        Ok(n) => {
            echo.filled += n;
            if echo.filled == PROBE
                && let Some((seq, sent)) = echo.outstanding.take()
            {
                echo.filled = 0;
                let mut got = [0u8; 8];
                got.copy_from_slice(&echo.buf[..8]);
                if u64::from_le_bytes(got) != seq {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "echo does not match the probe",
                    ));
                }
                let at = Instant::now();
                meter.progress(at, PROBE as u64, Some(at.saturating_duration_since(sent)));
            }
            Ok(())
        }
        Err(e) if is_timeout(&e) => Ok(()),
        Err(e) => Err(e),
    }
}

fn bulk_step(stream: &mut TcpStream, buf: &mut [u8], meter: &mut Meter) -> io::Result<()> {
    match stream.read(buf) {
        Ok(0) => Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "server closed the connection",
        )),
        Ok(n) => {
            meter.progress(Instant::now(), n as u64, None);
            Ok(())
        }
        Err(e) if is_timeout(&e) => Ok(()),
        Err(e) => Err(e),
    }
}

fn upload_step(stream: &mut TcpStream, buf: &[u8], meter: &mut Meter) -> io::Result<()> {
    match stream.write(buf) {
        Ok(0) => Err(io::Error::new(io::ErrorKind::WriteZero, "write returned 0")),
        Ok(n) => {
            meter.progress(Instant::now(), n as u64, None);
            Ok(())
        }
        Err(e) if is_timeout(&e) => Ok(()),
        Err(e) => Err(e),
    }
}

fn print_tick(out: &mut dyn Write, cfg: &ClientConfig, tick: &Tick) -> Result<(), ClientError> {
    let line = if cfg.json {
        serde_json::to_string(tick).unwrap_or_default()
    } else {
        let secs = tick.t_ms as f64 / 1000.0;
        match (tick.rtt_ms, tick.mbit) {
            (Some(Some(rtt)), _) => {
                format!("t={secs:6.1}s rtt={rtt:8.3} ms errors={}", tick.errors)
            }
            (Some(None), _) => format!("t={secs:6.1}s rtt=       - ms errors={}", tick.errors),
            (None, Some(mbit)) => format!("t={secs:6.1}s {mbit:9.2} Mbit/s errors={}", tick.errors),
            (None, None) => format!("t={secs:6.1}s errors={}", tick.errors),
        }
    };
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .map_err(ClientError::Output)
}

fn print_summary(out: &mut dyn Write, cfg: &ClientConfig, s: &Summary) -> Result<(), ClientError> {
    let line = if cfg.json {
        serde_json::to_string(s).unwrap_or_default()
    } else {
        let ms = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.3}"));
        let opt = |v: Option<u64>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
        format!(
            "summary: {} over {} for {:.1} s: {} bytes, {:.2} Mbit/s, {} probes, rtt p50 {} ms max {} ms, max stall {} ms, gap max {} ms p99 {} ms, errors {}",
            s.mode,
            s.proto,
            s.duration_ms as f64 / 1000.0,
            s.bytes,
            s.mbit,
            s.probes,
            ms(s.rtt_ms_p50),
            ms(s.rtt_ms_max),
            s.max_stall_ms,
            opt(s.gap_ms_max),
            opt(s.gap_ms_p99),
            s.errors
        )
    };
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .map_err(ClientError::Output)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service;

    fn cfg(addr: SocketAddr, mode: Mode, ms: u64) -> ClientConfig {
        ClientConfig {
            addr,
            tcp_only: false,
            mode,
            duration: Duration::from_millis(ms),
            interval: Duration::from_millis(20),
            json: true,
        }
    }

    fn server(tcp_only: bool) -> SocketAddr {
        service::spawn("127.0.0.1:0".parse().unwrap(), tcp_only).unwrap()
    }

    fn lines(out: &[u8]) -> Vec<serde_json::Value> {
        String::from_utf8_lossy(out)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn echo_measures_rtt() {
        let addr = server(false);
        let mut out = Vec::new();
        let s = run(&cfg(addr, Mode::Echo, 1300), &mut out).unwrap();
        assert_eq!(s.errors, 0);
        assert!(s.probes >= 20, "{s:?}");
        assert!(s.rtt_ms_p50.is_some());
        assert_eq!(s.proto, "mptcp");
        let l = lines(&out);
        assert_eq!(l.len(), 2, "{l:?}");
        assert!(l[0]["rtt_ms"].is_number());
        assert_eq!(l[0]["errors"], 0);
        // Every answer of the first second closed a gap; the open gap is
        // shorter than the second.
        let gaps = l[0]["gaps_ms"].as_array().expect("gaps_ms");
        assert!(gaps.len() >= 10, "{gaps:?}");
        assert!(gaps.iter().all(serde_json::Value::is_u64));
        assert!(l[0]["open_gap_ms"].as_u64() < Some(1000), "{}", l[0]);
        let max = s.gap_ms_max.expect("gap_ms_max");
        let p99 = s.gap_ms_p99.expect("gap_ms_p99");
        assert!(p99 <= max && max <= s.duration_ms, "{s:?}");
        assert_eq!(l[1]["mode"], "echo");
        for key in [
            "duration_ms",
            "bytes",
            "mbit",
            "rtt_ms_p50",
            "rtt_ms_max",
            "max_stall_ms",
            "errors",
            "gap_ms_max",
            "gap_ms_p99",
        ] {
            assert!(l[1].get(key).is_some(), "missing {key}");
        }
    }

    #[test]
    fn bulk_and_upload_move_data() {
        let addr = server(false);
        for mode in [Mode::Bulk, Mode::Upload] {
            let mut out = Vec::new();
            let s = run(&cfg(addr, mode, 1100), &mut out).unwrap();
            assert_eq!(s.errors, 0);
            assert!(s.bytes > 1_000_000, "{s:?}");
            assert!(s.mbit > 1.0);
            let l = lines(&out);
            assert!(l[0]["mbit"].is_number());
        }
    }

    #[test]
    fn tcp_only_and_text_output() {
        let addr = server(true);
        let mut c = cfg(addr, Mode::Echo, 300);
        c.tcp_only = true;
        c.json = false;
        let mut out = Vec::new();
        let s = run(&c, &mut out).unwrap();
        assert_eq!(s.proto, "tcp");
        assert!(String::from_utf8_lossy(&out).contains("summary: echo over tcp"));
    }

    #[test]
    fn broken_connection_is_counted() {
        // A server that accepts, reads the mode, answers one probe, then
        // closes every connection.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { continue };
                let mut b = [0u8; 1 + PROBE];
                if s.read_exact(&mut b).is_ok() {
                    let _ = s.write_all(&b[1..]);
                }
            }
        });
        let mut c = cfg(addr, Mode::Echo, 800);
        c.tcp_only = true;
        let mut out = Vec::new();
        let s = run(&c, &mut out).unwrap();
        assert!(s.errors >= 1, "{s:?}");
        assert!(s.probes >= 2, "{s:?}");
    }

    #[test]
    fn a_freeze_shows_as_one_gap() {
        // An echo server that answers 20 probes, then freezes for 600 ms
        // once, then answers again.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            let Some(Ok(mut s)) = l.incoming().next() else {
                return;
            };
            let mut mode = [0u8; 1];
            if s.read_exact(&mut mode).is_err() {
                return;
            }
            let mut probe = [0u8; PROBE];
            let mut n = 0;
            while s.read_exact(&mut probe).is_ok() {
                n += 1;
                if n == 20 {
                    std::thread::sleep(Duration::from_millis(600));
                }
                if s.write_all(&probe).is_err() {
                    return;
                }
            }
        });
        let mut c = cfg(addr, Mode::Echo, 2500);
        c.tcp_only = true;
        c.interval = Duration::from_millis(10);
        let mut out = Vec::new();
        let s = run(&c, &mut out).unwrap();
        assert_eq!(s.errors, 0, "{s:?}");
        assert!(s.gap_ms_max >= Some(600), "{s:?}");
        let l = lines(&out);
        let longest = l
            .iter()
            .filter_map(|v| v["gaps_ms"].as_array())
            .flatten()
            .filter_map(serde_json::Value::as_u64)
            .max();
        assert!(longest >= Some(600), "{l:?}");
    }

    #[test]
    fn refused_first_connection_is_error() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        let mut out = Vec::new();
        assert!(run(&cfg(addr, Mode::Echo, 100), &mut out).is_err());
    }
}
