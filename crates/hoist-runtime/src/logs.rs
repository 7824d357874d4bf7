//! Container stdout/stderr into one file in the CRI log format the kubelet uses:
//! `2026-11-23T20:00:00.123456789Z stdout F text` per line; lines longer than 16 KiB are
//! split into `P` (partial) records ending with an `F` one.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{IoContext, Result};

pub const MAX_LINE: usize = 16 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// The shared log file both pumps append to.
#[derive(Clone)]
pub struct LogSink {
    file: Arc<Mutex<File>>,
}

impl LogSink {
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).ctx(|| format!("creating {}", dir.display()))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .ctx(|| format!("opening log {}", path.display()))?;
        Ok(Self {
            file: Arc::new(Mutex::new(file)),
        })
    }

    fn record(&self, stream: Stream, full: bool, text: &[u8]) {
        let mut rec = Vec::with_capacity(text.len() + 48);
        rec.extend_from_slice(rfc3339_nanos(SystemTime::now()).as_bytes());
        rec.push(b' ');
        rec.extend_from_slice(stream.as_str().as_bytes());
        rec.extend_from_slice(if full { b" F " } else { b" P " });
        rec.extend_from_slice(text);
        rec.push(b'\n');
        // One write per record under the lock keeps stdout and stderr records whole.
        let mut f = self.file.lock().expect("log file lock poisoned");
        if let Err(e) = f.write_all(&rec) {
            tracing::warn!(error = %e, "writing container log");
        }
    }

    /// Copy `reader` into the log until EOF, on its own thread.
    pub fn pump(&self, stream: Stream, reader: impl Read + Send + 'static) -> JoinHandle<()> {
        let sink = self.clone();
        std::thread::Builder::new()
            .name(format!("log-{}", stream.as_str()))
            .spawn(move || sink.copy(stream, reader))
            .expect("spawning a log pump thread")
    }

    fn copy(&self, stream: Stream, reader: impl Read) {
        let mut r = BufReader::with_capacity(MAX_LINE, reader);
        let mut pending: Vec<u8> = Vec::new();
        loop {
            let buf = match r.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            };
            if buf.is_empty() {
                break;
            }
            let room = MAX_LINE - pending.len();
            let window = &buf[..buf.len().min(room)];
            if let Some(nl) = window.iter().position(|&b| b == b'\n') {
                pending.extend_from_slice(&window[..nl]);
                r.consume(nl + 1);
                self.record(stream, true, strip_cr(&pending));
                pending.clear();
            } else {
                let n = window.len();
                pending.extend_from_slice(window);
                r.consume(n);
                if pending.len() >= MAX_LINE {
                    self.record(stream, false, &pending);
                    pending.clear();
                }
            }
        }
        if !pending.is_empty() {
            self.record(stream, true, &pending);
        }
    }
}

/// A FIFO read end that reports EOF when its writers are gone or `stop` is set (polled
/// every 200 ms), so a pump can be detached from a container that keeps running.
pub struct StoppableFifo {
    file: File,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl StoppableFifo {
    /// Open `path` for reading without blocking (a FIFO without a writer reads as EOF).
    pub fn open(path: &Path, stop: std::sync::Arc<std::sync::atomic::AtomicBool>) -> Result<Self> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .ctx(|| format!("opening {}", path.display()))?;
        Ok(Self { file, stop })
    }
}

impl Read for StoppableFifo {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if self.stop.load(std::sync::atomic::Ordering::Relaxed) {
                return Ok(0);
            }
            if !crate::sys::poll_readable(&self.file, 200)? {
                continue;
            }
            match self.file.read(buf) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                other => return other,
            }
        }
    }
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// One parsed CRI log record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogRecord {
    pub timestamp: String,
    pub stream: String,
    pub partial: bool,
    pub text: String,
}

/// Parse one line of a CRI log file.
pub fn parse_record(line: &str) -> Option<LogRecord> {
    let mut it = line.splitn(4, ' ');
    let timestamp = it.next()?.to_string();
    let stream = it.next()?.to_string();
    let tag = it.next()?;
    let text = it.next().unwrap_or("").to_string();
    if !matches!(stream.as_str(), "stdout" | "stderr") || !matches!(tag, "F" | "P") {
        return None;
    }
    Some(LogRecord {
        timestamp,
        stream,
        partial: tag == "P",
        text,
    })
}

/// RFC 3339 in UTC with nanoseconds, as CRI logs and `kubectl logs --timestamps` use.
pub fn rfc3339_nanos(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_nanos()
    )
}

/// Days since 1970-01-01 to (year, month, day) — Howard Hinnant's algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_are_rfc3339_nanos_utc() {
        let t = UNIX_EPOCH + Duration::new(1_795_464_000, 5);
        assert_eq!(rfc3339_nanos(t), "2026-11-23T20:00:00.000000005Z");
        assert_eq!(rfc3339_nanos(UNIX_EPOCH), "1970-01-01T00:00:00.000000000Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert!(rfc3339_nanos(leap).starts_with("2000-02-29T00:00:00"));
    }

    #[test]
    fn pump_writes_full_and_partial_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.log");
        let sink = LogSink::open(&path).unwrap();
        let long = "x".repeat(MAX_LINE + 10);
        let input = format!("hello\r\nworld\n{long}\ntail-no-newline");
        sink.pump(Stream::Stderr, std::io::Cursor::new(input.into_bytes()))
            .join()
            .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let recs: Vec<_> = text.lines().map(|l| parse_record(l).unwrap()).collect();
        let got: Vec<_> = recs
            .iter()
            .map(|r| (r.stream.as_str(), r.partial, r.text.len()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("stderr", false, 5),
                ("stderr", false, 5),
                ("stderr", true, MAX_LINE),
                ("stderr", false, 10),
                ("stderr", false, 15),
            ]
        );
        assert_eq!(recs[0].text, "hello");
        assert_eq!(recs[4].text, "tail-no-newline");
        assert!(recs[0].timestamp.ends_with('Z') && recs[0].timestamp.len() == 30);
    }
}

/// What `kubectl logs` asks for (pods/log query parameters).
#[derive(Clone, Debug, Default)]
pub struct LogQuery {
    /// `tailLines`: only the last N lines.
    pub tail_lines: Option<usize>,
    /// `sinceSeconds`/`sinceTime`: only lines at or after this instant.
    pub since: Option<SystemTime>,
    /// `timestamps`: prefix each line with its RFC 3339 timestamp.
    pub timestamps: bool,
    /// `limitBytes`: stop after this many bytes of output.
    pub limit_bytes: Option<usize>,
}

/// Whole lines (partial records joined) from CRI log text, as `(timestamp, text)`.
fn lines_of(text: &str) -> Vec<(String, String)> {
    let mut out = vec![];
    let mut pending: Option<(String, String)> = None;
    for rec in text.lines().filter_map(parse_record) {
        let (ts, mut acc) = pending
            .take()
            .unwrap_or_else(|| (rec.timestamp.clone(), String::new()));
        acc.push_str(&rec.text);
        if rec.partial {
            pending = Some((ts, acc));
        } else {
            out.push((ts, acc));
        }
    }
    out.extend(pending);
    out
}

fn render(lines: &[(String, String)], timestamps: bool, out: &mut Vec<u8>) {
    for (ts, text) in lines {
        if timestamps {
            out.extend_from_slice(ts.as_bytes());
            out.push(b' ');
        }
        out.extend_from_slice(text.as_bytes());
        out.push(b'\n');
    }
}

/// Render a container log for `kubectl logs`. Also returns the file offset reached, from
/// which [`follow_log`] continues.
pub fn read_log(path: &Path, q: &LogQuery) -> Result<(Vec<u8>, u64)> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => vec![],
        Err(e) => {
            return Err(crate::Error::Io {
                context: format!("reading log {}", path.display()),
                source: e,
            });
        }
    };
    // Only whole records: a pump may be mid-write.
    let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let text = String::from_utf8_lossy(&bytes[..complete]);
    let mut lines = lines_of(&text);
    if let Some(since) = q.since {
        // Fixed-width UTC timestamps compare correctly as strings.
        let since = rfc3339_nanos(since);
        lines.retain(|(ts, _)| *ts >= since);
    }
    if let Some(n) = q.tail_lines {
        let skip = lines.len().saturating_sub(n);
        lines.drain(..skip);
    }
    let mut out = vec![];
    render(&lines, q.timestamps, &mut out);
    if let Some(limit) = q.limit_bytes {
        out.truncate(limit);
    }
    Ok((out, complete as u64))
}

/// Stream what is appended to the log after `offset` to `sink` (which returns false to stop),
/// polling every `poll`, until `done()` says the container has exited and the file is drained.
pub fn follow_log(
    path: &Path,
    mut offset: u64,
    timestamps: bool,
    poll: std::time::Duration,
    mut done: impl FnMut() -> bool,
    mut sink: impl FnMut(&[u8]) -> bool,
) -> Result<()> {
    use std::io::{Seek, SeekFrom};
    let mut carry: Vec<u8> = vec![];
    loop {
        // Decide before reading so the final read sees everything written before exit.
        let finished = done();
        if let Ok(mut f) = File::open(path) {
            f.seek(SeekFrom::Start(offset))
                .ctx(|| format!("seeking in {}", path.display()))?;
            let mut buf = vec![];
            f.read_to_end(&mut buf)
                .ctx(|| format!("reading {}", path.display()))?;
            offset += buf.len() as u64;
            carry.extend_from_slice(&buf);
            if let Some(end) = carry.iter().rposition(|&b| b == b'\n') {
                let whole: Vec<u8> = carry.drain(..=end).collect();
                let text = String::from_utf8_lossy(&whole);
                // Partial records whose final part has not arrived wait for the next round.
                let mut lines = vec![];
                let mut held = String::new();
                for l in text.lines() {
                    held.push_str(l);
                    held.push('\n');
                    if parse_record(l).is_some_and(|r| !r.partial) {
                        lines.extend(lines_of(&held));
                        held.clear();
                    }
                }
                let mut held_bytes = held.into_bytes();
                held_bytes.extend_from_slice(&carry);
                carry = held_bytes;
                let mut out = vec![];
                render(&lines, timestamps, &mut out);
                if !out.is_empty() && !sink(&out) {
                    return Ok(());
                }
            }
        }
        if finished {
            return Ok(());
        }
        std::thread::sleep(poll);
    }
}

#[cfg(test)]
mod read_tests {
    use super::*;
    use std::time::Duration;

    const LOG: &str = "2026-11-23T20:00:00.000000001Z stdout F one\n\
2026-11-23T20:00:01.000000000Z stderr P tw\n\
2026-11-23T20:00:01.500000000Z stderr F o\n\
2026-11-23T20:00:02.000000000Z stdout F three\n\
2026-11-23T20:00:03.000000000Z stdout F fou";

    #[test]
    fn read_log_joins_partials_and_applies_tail_since_timestamps_limit() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("0.log");
        std::fs::write(&p, LOG).unwrap();
        let read = |q: LogQuery| String::from_utf8(read_log(&p, &q).unwrap().0).unwrap();
        assert_eq!(read(LogQuery::default()), "one\ntwo\nthree\n");
        assert_eq!(
            read(LogQuery {
                tail_lines: Some(1),
                timestamps: true,
                ..Default::default()
            }),
            "2026-11-23T20:00:02.000000000Z three\n"
        );
        let since = UNIX_EPOCH + Duration::new(1_795_464_001, 0);
        assert_eq!(
            read(LogQuery {
                since: Some(since),
                ..Default::default()
            }),
            "two\nthree\n"
        );
        assert_eq!(
            read(LogQuery {
                limit_bytes: Some(6),
                ..Default::default()
            }),
            "one\ntw"
        );
        assert_eq!(
            read_log(&dir.path().join("none"), &LogQuery::default())
                .unwrap()
                .0,
            b""
        );
    }

    #[test]
    fn follow_streams_appended_lines_until_done() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("0.log");
        std::fs::write(&p, "2026-11-23T20:00:00.000000001Z stdout F old\n").unwrap();
        let (_, offset) = read_log(&p, &LogQuery::default()).unwrap();
        let writer = {
            let p = p.clone();
            std::thread::spawn(move || {
                let sink = LogSink::open(&p).unwrap();
                sink.pump(
                    Stream::Stdout,
                    std::io::Cursor::new(b"new-1\nnew-2\n".to_vec()),
                )
                .join()
                .unwrap();
            })
        };
        let mut got = vec![];
        let mut rounds = 0;
        follow_log(
            &p,
            offset,
            false,
            Duration::from_millis(5),
            || {
                rounds += 1;
                writer.is_finished() || rounds > 400
            },
            |b| {
                got.extend_from_slice(b);
                true
            },
        )
        .unwrap();
        assert_eq!(String::from_utf8(got).unwrap(), "new-1\nnew-2\n");
    }
}
