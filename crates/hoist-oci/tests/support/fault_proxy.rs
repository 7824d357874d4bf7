//! A TCP proxy on a free loopback port in front of a real registry that injects the faults
//! registries and networks produce: a connection cut in the middle of an answer, 503s
//! while a registry restarts, the answer to an upload's closing request lost after the
//! registry committed it. Each fault happens a set number of times and is counted, so a
//! test can prove it met the fault. Stopped on drop.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::thread;

/// Which faults, how often.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// Cut a connection after it carried this many bytes of answers, `cuts` times.
    pub cut_after: u64,
    pub cuts: u32,
    /// Answer this many requests (the first ones) `503 Service Unavailable` and close.
    pub unavailable: u32,
    /// With [`Faults::unavailable`]: the `Retry-After` seconds to send, if any.
    pub retry_after: Option<u32>,
    /// Forward this many closing upload requests (`PUT …/blobs/uploads/…digest=…`) to the
    /// registry, then cut the connection instead of passing its answer on.
    pub lost_closing_answers: u32,
    /// The same for upload chunks (`PATCH …/blobs/uploads/…`): the registry appends the
    /// chunk, the client never hears it did.
    pub lost_patch_answers: u32,
    /// Take the `Range` header off requests, as a registry (or a proxy before it) that
    /// does not resume downloads would ignore it.
    pub ignore_range: bool,
    /// Called with each manifest `PUT`'s number (0, 1, …) before it goes on to the
    /// registry: a test changes the registry there (wipes its storage, restarts it).
    pub before_manifest_put: Option<Hook>,
}

/// A test's callback, run on the proxy's thread.
#[derive(Clone)]
pub struct Hook(pub Arc<dyn Fn(u32) + Send + Sync>);

impl std::fmt::Debug for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hook")
    }
}

#[derive(Default)]
struct Left {
    cuts: AtomicU32,
    unavailable: AtomicU32,
    lost_closing_answers: AtomicU32,
    manifest_puts: AtomicU32,
    lost_patch_answers: AtomicU32,
}

pub struct FaultProxy {
    /// `127.0.0.1:PORT`, to use as the registry's address.
    pub addr: String,
    faults: Faults,
    left: Arc<Left>,
    stop: Arc<AtomicBool>,
}

/// Take one from `n` if it is not 0 yet.
fn take(n: &AtomicU32) -> bool {
    n.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| v.checked_sub(1))
        .is_ok()
}

impl FaultProxy {
    /// Proxy `target` (`host:port`) with `faults`.
    pub fn start(target: &str, faults: Faults) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().unwrap().to_string();
        let left = Arc::new(Left {
            cuts: AtomicU32::new(faults.cuts),
            unavailable: AtomicU32::new(faults.unavailable),
            lost_closing_answers: AtomicU32::new(faults.lost_closing_answers),
            manifest_puts: AtomicU32::new(0),
            lost_patch_answers: AtomicU32::new(faults.lost_patch_answers),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let (target, f, l, s) = (
            target.to_string(),
            faults.clone(),
            left.clone(),
            stop.clone(),
        );
        thread::spawn(move || {
            for client in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let (target, f, l) = (target.clone(), f.clone(), l.clone());
                thread::spawn(move || serve(client, &target, &f, &l));
            }
        });
        FaultProxy {
            addr,
            faults,
            left,
            stop,
        }
    }

    /// How many connections were cut mid-answer.
    pub fn cuts_done(&self) -> u32 {
        self.faults.cuts - self.left.cuts.load(Ordering::SeqCst)
    }

    /// How many requests got a 503.
    pub fn unavailable_done(&self) -> u32 {
        self.faults.unavailable - self.left.unavailable.load(Ordering::SeqCst)
    }

    /// How many closing upload requests lost their answer.
    pub fn lost_closing_answers_done(&self) -> u32 {
        self.faults.lost_closing_answers - self.left.lost_closing_answers.load(Ordering::SeqCst)
    }

    /// How many upload chunks lost their answer.
    pub fn lost_patch_answers_done(&self) -> u32 {
        self.faults.lost_patch_answers - self.left.lost_patch_answers.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(&self.addr);
    }
}

fn serve(client: TcpStream, target: &str, f: &Faults, left: &Arc<Left>) {
    let Ok(upstream) = TcpStream::connect(target) else {
        return;
    };
    let lose_answer = Arc::new(AtomicBool::new(false));
    let down = {
        let (from, to) = (upstream.try_clone().unwrap(), client.try_clone().unwrap());
        let (lose, left, cut_after) = (lose_answer.clone(), left.clone(), f.cut_after);
        thread::spawn(move || answers(from, to, &lose, &left, cut_after))
    };
    requests(client, upstream, f, left, &lose_answer);
    let _ = down.join();
}

/// Pass the registry's answers on; cut one that goes past `cut_after` bytes on this
/// connection (while cuts are left), or drop them once `lose` is set.
fn answers(mut from: TcpStream, mut to: TcpStream, lose: &AtomicBool, left: &Left, cut_after: u64) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut carried = 0u64;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if lose.load(Ordering::SeqCst) {
            // The registry committed the upload; the client never hears it.
            break;
        }
        if cut_after > 0 && carried + n as u64 > cut_after && take(&left.cuts) {
            let keep = (cut_after - carried) as usize;
            let _ = to.write_all(&buf[..keep]);
            break;
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
        carried += n as u64;
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}

/// Pass the client's requests on, reading each head (bodies by `Content-Length`) to apply
/// the faults that depend on the request. A chunked body is passed through unread: the
/// faults apply to the requests before it.
fn requests(mut from: TcpStream, mut to: TcpStream, f: &Faults, left: &Left, lose: &AtomicBool) {
    let mut buf = Vec::<u8>::new();
    let mut chunk = vec![0u8; 64 * 1024];
    // Body bytes of the current request still to pass on; `None` once a chunked body
    // made the rest of the connection opaque.
    let mut body_left = Some(0usize);
    loop {
        match body_left {
            None if !buf.is_empty() => {
                if to.write_all(&buf).is_err() {
                    break;
                }
                buf.clear();
            }
            Some(n) if n > 0 && !buf.is_empty() => {
                let k = n.min(buf.len());
                if to.write_all(&buf[..k]).is_err() {
                    break;
                }
                buf.drain(..k);
                body_left = Some(n - k);
                continue;
            }
            Some(0) => {
                if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..end]).to_string();
                    buf.drain(..end + 4);
                    let line = head.lines().next().unwrap_or_default().to_string();
                    let header = |name: &str| {
                        head.lines().skip(1).find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.trim()
                                .eq_ignore_ascii_case(name)
                                .then(|| v.trim().to_string())
                        })
                    };
                    if take(&left.unavailable) {
                        let after = (f.retry_after)
                            .map(|s| format!("Retry-After: {s}\r\n"))
                            .unwrap_or_default();
                        let body = r#"{"errors":[{"code":"UNAVAILABLE","message":"restarting (fault proxy)"}]}"#;
                        let _ = write!(
                            from,
                            "HTTP/1.1 503 Service Unavailable\r\n{after}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        );
                        break;
                    }
                    if line.starts_with("PUT ")
                        && line.contains("/blobs/uploads/")
                        && line.contains("digest=")
                        && take(&left.lost_closing_answers)
                    {
                        lose.store(true, Ordering::SeqCst);
                    }
                    if let Some(hook) = &f.before_manifest_put
                        && line.starts_with("PUT ")
                        && line.contains("/manifests/")
                    {
                        (hook.0)(left.manifest_puts.fetch_add(1, Ordering::SeqCst));
                    }
                    if line.starts_with("PATCH ")
                        && line.contains("/blobs/uploads/")
                        && take(&left.lost_patch_answers)
                    {
                        lose.store(true, Ordering::SeqCst);
                    }
                    let lines: Vec<&str> = (head.split("\r\n"))
                        .filter(|l| {
                            !(f.ignore_range && l.to_ascii_lowercase().starts_with("range:"))
                        })
                        .collect();
                    if to
                        .write_all(format!("{}\r\n\r\n", lines.join("\r\n")).as_bytes())
                        .is_err()
                    {
                        break;
                    }
                    body_left = if header("transfer-encoding").is_some() {
                        None
                    } else {
                        Some(
                            header("content-length")
                                .and_then(|v| v.parse().ok())
                                .unwrap_or(0),
                        )
                    };
                    continue;
                }
            }
            _ => {}
        }
        let n = match from.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}
