//! Alice's stock client: `curl` made MPTCP by `mptcpize` (LD_PRELOAD),
//! run in her namespace. One long download over one connection (the same
//! file requested again and again with keep-alive), its bytes read from a
//! pipe as they come so its progress can be timed and every copy checked;
//! and short requests that time the TCP handshake (one round trip).

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use edgemig_testbed::process::{self, ProcessError};

use super::progress::Arrival;

/// Errors of alice's client.
#[derive(Debug, thiserror::Error)]
pub enum CurlError {
    /// curl (or `ip netns exec`, `mptcpize`) could not start.
    #[error("Cannot start curl in {netns}")]
    Spawn {
        /// Alice's namespace.
        netns: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A short request could not run.
    #[error("Cannot run curl in alice's namespace")]
    Process(#[from] ProcessError),
    /// No handshake was timed.
    #[error("curl reached no server at {url}: {stderr}")]
    Unreachable {
        /// What was asked.
        url: String,
        /// What curl said.
        stderr: String,
    },
}

/// FNV-1a 64 offset basis (the guest agent's disk reports use FNV-1a 64).
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
/// FNV-1a 64 prime.
const FNV_PRIME: u64 = 0x0100_0000_01b3;

/// What the reader thread saw of the download.
#[derive(Debug, Default)]
struct Seen {
    arrivals: Vec<Arrival>,
    bytes: u64,
    /// FNV-1a 64 of every complete copy, in order.
    checksums: Vec<u64>,
    /// Of the copy being read.
    hash: u64,
    in_copy: u64,
    /// curl's line after each transfer (`--write-out`).
    transfers: Vec<Transfer>,
    /// curl's other stderr lines (errors).
    errors: Vec<String>,
}

/// One transfer as curl's `--write-out` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    /// HTTP status (0 when no answer came).
    pub http_code: u16,
    /// Bytes of the body.
    pub size: u64,
    /// Connections curl opened for it (0: it reused the open one).
    pub connects: u32,
}

/// A download in progress; ended (by pid) when dropped.
pub struct Download {
    /// When curl started.
    pub started: Instant,
    child: Option<Child>,
    seen: Arc<Mutex<Seen>>,
    readers: Vec<JoinHandle<()>>,
}

/// How the download ended.
#[derive(Debug, Clone)]
pub struct Finished {
    /// curl's exit code (`None`: killed by a signal).
    pub exit_code: Option<i32>,
    /// Every byte read, timed.
    pub arrivals: Vec<Arrival>,
    /// Bytes read.
    pub bytes: u64,
    /// FNV-1a 64 of each complete copy.
    pub checksums: Vec<u64>,
    /// Per transfer, curl's report.
    pub transfers: Vec<Transfer>,
    /// What curl printed besides its reports.
    pub errors: Vec<String>,
}

/// The `--write-out` line: `edgemig-transfer CODE SIZE CONNECTS`.
const WRITE_OUT: &str =
    "%{stderr}edgemig-transfer %{http_code} %{size_download} %{num_connects}\\n";

impl Download {
    /// Starts `curl` through `mptcpize` in `netns`, downloading
    /// `copies` copies of `url` (each `copy_bytes` long) one after the
    /// other over one kept-alive connection, as fast as the network
    /// carries them.
    pub fn start(netns: &str, url: &str, copies: u32, copy_bytes: u64) -> Result<Self, CurlError> {
        let glob = format!("{url}?copy=[1-{copies}]");
        let mut child = Command::new("ip")
            .args(["netns", "exec", netns, "mptcpize", "run", "curl"])
            .args(["--silent", "--show-error", "--fail", "--no-buffer"])
            .args(["--write-out", WRITE_OUT])
            .arg(&glob)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| CurlError::Spawn {
                netns: netns.to_string(),
                source,
            })?;
        let started = Instant::now();
        let seen = Arc::new(Mutex::new(Seen {
            hash: FNV_OFFSET,
            ..Seen::default()
        }));
        let mut readers = Vec::new();
        if let Some(mut out) = child.stdout.take() {
            let seen = seen.clone();
            readers.push(std::thread::spawn(move || {
                let mut buf = vec![0u8; 256 * 1024];
                while let Ok(n) = out.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let at_ms = ms_since(started);
                    let mut s = seen.lock().unwrap_or_else(PoisonError::into_inner);
                    s.take(at_ms, &buf[..n], copy_bytes);
                }
            }));
        }
        if let Some(err) = child.stderr.take() {
            let seen = seen.clone();
            readers.push(std::thread::spawn(move || {
                for line in BufReader::new(err).lines().map_while(Result::ok) {
                    let mut s = seen.lock().unwrap_or_else(PoisonError::into_inner);
                    match parse_transfer(&line) {
                        Some(t) => s.transfers.push(t),
                        None => s.errors.push(line),
                    }
                }
            }));
        }
        Ok(Self {
            started,
            child: Some(child),
            seen,
            readers,
        })
    }

    /// Every read so far.
    pub fn arrivals(&self) -> Vec<Arrival> {
        self.lock().arrivals.clone()
    }

    /// Ms since the download started, now.
    pub fn now_ms(&self) -> u64 {
        ms_since(self.started)
    }

    /// Whether curl still runs.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Waits up to `limit` for curl to end by itself (then ends it) and
    /// returns what it did.
    pub fn finish(mut self, limit: Duration) -> Finished {
        let deadline = Instant::now() + limit;
        let mut status: Option<ExitStatus> = None;
        if let Some(child) = self.child.as_mut() {
            loop {
                match child.try_wait() {
                    Ok(Some(s)) => {
                        status = Some(s);
                        break;
                    }
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    _ => {
                        let _ = child.kill();
                        status = child.wait().ok();
                        break;
                    }
                }
            }
        }
        self.child = None;
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        let s = std::mem::take(&mut *self.lock());
        Finished {
            exit_code: status.and_then(|s| s.code()),
            arrivals: s.arrivals,
            bytes: s.bytes,
            checksums: s.checksums,
            transfers: s.transfers,
            errors: s.errors,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Download {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Seen {
    /// Records one read and hashes it into the copies it belongs to.
    fn take(&mut self, at_ms: u64, data: &[u8], copy_bytes: u64) {
        self.arrivals.push(Arrival {
            at_ms,
            bytes: data.len() as u64,
        });
        self.bytes += data.len() as u64;
        let mut rest = data;
        while !rest.is_empty() {
            let room =
                usize::try_from(copy_bytes.saturating_sub(self.in_copy)).unwrap_or(usize::MAX);
            let (now, later) = rest.split_at(room.min(rest.len()));
            self.hash = now.iter().fold(self.hash, |h, b| {
                (h ^ u64::from(*b)).wrapping_mul(FNV_PRIME)
            });
            self.in_copy += now.len() as u64;
            if self.in_copy >= copy_bytes {
                self.checksums.push(self.hash);
                self.hash = FNV_OFFSET;
                self.in_copy = 0;
            }
            rest = later;
        }
    }
}

fn ms_since(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}

fn parse_transfer(line: &str) -> Option<Transfer> {
    let mut words = line.strip_prefix("edgemig-transfer ")?.split_whitespace();
    Some(Transfer {
        http_code: words.next()?.parse().ok()?,
        size: words.next()?.parse().ok()?,
        connects: words.next()?.parse().ok()?,
    })
}

/// Median TCP handshake time (one round trip) of `tries` fresh MPTCP
/// connections from `netns` to `url`, in ms.
pub fn handshake_rtt_ms(netns: &str, url: &str, tries: usize) -> Result<f64, CurlError> {
    let argv: Vec<String> = [
        "mptcpize",
        "run",
        "curl",
        "--silent",
        "--show-error",
        "--fail",
        "--max-time",
        "5",
        "--output",
        "/dev/null",
        "--write-out",
        "%{time_connect}",
        url,
    ]
    .iter()
    .map(|s| (*s).to_string())
    .collect();
    let mut times = Vec::new();
    let mut last_err = String::new();
    for _ in 0..tries {
        let out = process::output_in(netns, &argv)?;
        let text = String::from_utf8_lossy(&out.stdout);
        match text.trim().parse::<f64>() {
            Ok(s) if out.status.success() && s > 0.0 => times.push(s * 1000.0),
            _ => last_err = String::from_utf8_lossy(&out.stderr).trim().to_string(),
        }
    }
    times.sort_by(f64::total_cmp);
    times
        .get(times.len() / 2)
        .copied()
        .ok_or_else(|| CurlError::Unreachable {
            url: url.to_string(),
            stderr: last_err,
        })
}

/// Whether one request from `netns` to `url` succeeds (a byte of it).
pub fn reachable(netns: &str, url: &str) -> bool {
    let argv: Vec<String> = [
        "curl",
        "--silent",
        "--fail",
        "--max-time",
        "3",
        "--range",
        "0-0",
        "--output",
        "/dev/null",
        url,
    ]
    .iter()
    .map(|s| (*s).to_string())
    .collect();
    process::output_in(netns, &argv).is_ok_and(|o| o.status.success())
}

/// alice's established TCP sockets (MPTCP subflows among them) to port
/// 80 of `ip`.
pub fn established_to(netns: &str, ip: &str) -> Result<u32, CurlError> {
    let argv: Vec<String> = [
        "ss",
        "-Htn",
        "state",
        "established",
        "dst",
        &format!("{ip}:80"),
    ]
    .iter()
    .map(|s| (*s).to_string())
    .collect();
    let out = process::output_in(netns, &argv)?;
    let lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count();
    Ok(u32::try_from(lines).unwrap_or(u32::MAX))
}

/// FNV-1a 64 of `data` (tests).
#[cfg(test)]
fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(FNV_OFFSET, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(FNV_PRIME)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_are_hashed_across_reads() {
        let copy: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut s = Seen {
            hash: FNV_OFFSET,
            ..Seen::default()
        };
        let mut stream = copy.clone();
        stream.extend_from_slice(&copy);
        stream.extend_from_slice(&copy[..10]);
        for (i, chunk) in stream.chunks(333).enumerate() {
            s.take(i as u64, chunk, 1000);
        }
        assert_eq!(s.checksums, vec![fnv(&copy), fnv(&copy)]);
        assert_eq!(s.bytes, 2010);
        assert_eq!(s.in_copy, 10);
        assert_eq!(s.arrivals.len(), 7);
    }

    #[test]
    fn write_out_lines_parse() {
        assert_eq!(
            parse_transfer("edgemig-transfer 200 16777216 1"),
            Some(Transfer {
                http_code: 200,
                size: 16_777_216,
                connects: 1
            })
        );
        assert_eq!(parse_transfer("curl: (18) transfer closed"), None);
        assert_eq!(parse_transfer("edgemig-transfer x"), None);
    }
}
