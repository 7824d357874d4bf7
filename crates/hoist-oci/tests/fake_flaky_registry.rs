//! Downloads from a FAKE registry that misbehaves in ways a real one (behind the fault
//! proxy) cannot be made to on cue: a chunked body cut after its last byte, a 206 for
//! another range, 503s before every cut body. Each request the fake sees is logged, so a
//! test can compare what the client says it did with what arrived.

#[path = "support/fake_http.rs"]
mod fake_http;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hoist_oci::client::{ClientOptions, RegistryClient};
use hoist_oci::{Digest, Error, Reference};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

/// What the fake answers to one request.
enum Reply {
    /// A bare status, no body.
    Status(&'static str),
    /// The blob from byte `from` on, chunked, cut after `len` bytes without the closing
    /// 0-chunk; `range` makes it a 206 with that `Content-Range`.
    CutChunked {
        from: usize,
        len: usize,
        range: Option<String>,
    },
    /// [`Reply::CutChunked`] of other bytes than the blob's (each one flipped).
    CutChunkedWrong {
        from: usize,
        len: usize,
        range: Option<String>,
    },
    /// The whole blob, 200, with its `Content-Length`.
    Whole,
    /// A 416 as Go's `http.ServeContent` gives it: `Content-Range: bytes */SIZE`.
    Unsatisfiable,
}

/// A fake registry serving one blob; `script(n, range)` picks the answer to the `n`th
/// request (from 0), `range` being its `Range` header. Returns its address and the log of
/// request lines it saw.
async fn fake<F>(blob: Arc<Vec<u8>>, script: F) -> (std::net::SocketAddr, Arc<Mutex<Vec<String>>>)
where
    F: Fn(usize, Option<&str>) -> Reply + Send + Sync + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let seen = log.clone();
    let script = Arc::new(script);
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let (blob, seen, script) = (blob.clone(), seen.clone(), script.clone());
            tokio::spawn(async move { serve(sock, &blob, &seen, &*script).await });
        }
    });
    (addr, log)
}

async fn serve(
    mut sock: TcpStream,
    blob: &[u8],
    seen: &Mutex<Vec<String>>,
    script: &(dyn Fn(usize, Option<&str>) -> Reply + Send + Sync),
) {
    let Some((head, _)) = fake_http::read_head(&mut sock).await else {
        return;
    };
    if head.path == "/v2/" {
        return fake_http::respond(&mut sock, "200 OK", &[], b"{}").await;
    }
    let range = head.header("range");
    let n = {
        let mut seen = seen.lock().unwrap();
        seen.push(format!("{} {} {range:?}", head.method, head.path));
        seen.len() - 1
    };
    match script(n, range.as_deref()) {
        Reply::Status(s) => fake_http::respond(&mut sock, s, &[], b"").await,
        Reply::Whole => fake_http::respond(&mut sock, "200 OK", &[], blob).await,
        Reply::Unsatisfiable => {
            let total = format!("bytes */{}", blob.len());
            let h = [("Content-Range", total.as_str())];
            fake_http::respond(&mut sock, "416 Requested Range Not Satisfiable", &h, b"").await
        }
        Reply::CutChunkedWrong { from, len, range } => {
            let wrong: Vec<u8> = blob.iter().map(|b| !b).collect();
            cut_chunked(&mut sock, &wrong, from, len, range).await
        }
        Reply::CutChunked { from, len, range } => {
            cut_chunked(&mut sock, blob, from, len, range).await
        }
    }
}

/// Answer with `blob[from..from + len]`, chunked, and close without the closing 0-chunk;
/// `range` makes it a 206 with that `Content-Range`.
async fn cut_chunked(
    sock: &mut TcpStream,
    blob: &[u8],
    from: usize,
    len: usize,
    range: Option<String>,
) {
    let status = if range.is_some() {
        "206 Partial Content"
    } else {
        "200 OK"
    };
    let mut out = format!("HTTP/1.1 {status}\r\nTransfer-Encoding: chunked\r\n");
    if let Some(r) = range {
        out.push_str(&format!("Content-Range: {r}\r\n"));
    }
    out.push_str("\r\n");
    let part = &blob[from..(from + len).min(blob.len())];
    let mut out = out.into_bytes();
    out.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
    out.extend_from_slice(part);
    out.extend_from_slice(b"\r\n");
    let _ = sock.write_all(&out).await;
    // No closing 0-chunk: the body breaks off.
    let _ = sock.shutdown().await;
}

fn client(retries: u32) -> RegistryClient {
    RegistryClient::new(ClientOptions {
        retries,
        retry_pause: Duration::from_millis(20),
        timeout: Duration::from_secs(5),
        ..Default::default()
    })
    .unwrap()
}

fn blob() -> Arc<Vec<u8>> {
    Arc::new((0..100_000u32).map(|i| (i * 7 % 251) as u8).collect())
}

/// `c` downloads `blob`, said to be `size` bytes, from the fake at `addr` into a new temp
/// dir, within 20 s: what it returned, and where the blob was to land (in the dir given
/// back, kept as long as the test holds it).
async fn download(
    c: &RegistryClient,
    addr: std::net::SocketAddr,
    blob: &[u8],
    size: u64,
) -> (Result<u64, Error>, tempfile::TempDir, std::path::PathBuf) {
    let r = Reference::parse(&format!("{addr}/team/app:v1")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("blob");
    let got = tokio::time::timeout(
        Duration::from_secs(20),
        c.download_blob_to(&r, &Digest::of(blob), size, &dest),
    )
    .await
    .expect("bounded");
    (got, dir, dest)
}

fn get_count(log: &Mutex<Vec<String>>) -> usize {
    log.lock()
        .unwrap()
        .iter()
        .filter(|l| l.starts_with("GET "))
        .count()
}

/// All 100 000 bytes came, then the connection broke (no final 0-chunk): nothing is left to
/// ask for, and a registry asked for it anyway answers 416 (as distribution does).
#[tokio::test]
async fn a_download_whose_bytes_all_came_before_the_cut_is_done() {
    let blob = blob();
    let size = blob.len();
    let (addr, log) = fake(blob.clone(), move |_, range| match range {
        None => Reply::CutChunked {
            from: 0,
            len: size,
            range: None,
        },
        Some(_) => Reply::Unsatisfiable,
    })
    .await;
    let c = client(5);
    let (n, _dir, dest) = download(&c, addr, &blob, size as u64).await;
    let n = n.unwrap_or_else(|e| panic!("the whole blob came: {e}\n{:?}", log.lock().unwrap()));
    assert_eq!(n, size as u64);
    assert_eq!(std::fs::read(&dest).unwrap(), *blob);
    assert_eq!(
        get_count(&log),
        1,
        "no request for bytes beyond the end: {:?}",
        log.lock().unwrap()
    );
}

/// A 416 whose `Content-Range: bytes */N` says the blob is the N bytes already held ends the
/// download: here the manifest's size is wrong (10 bytes more than the blob), so what
/// follows is the size check naming the descriptor, not an HTTP 416.
#[tokio::test]
async fn a_416_saying_the_size_already_held_ends_the_download() {
    let blob = blob();
    let size = blob.len();
    let (addr, log) = fake(blob.clone(), move |_, range| match range {
        None => Reply::CutChunked {
            from: 0,
            len: size,
            range: None,
        },
        Some(_) => Reply::Unsatisfiable,
    })
    .await;
    let c = client(5);
    let (e, _dir, dest) = download(&c, addr, &blob, size as u64 + 10).await;
    let e = e.unwrap_err();
    assert!(
        matches!(e, Error::ManifestSizeWrong { actual: Some(n), .. } if n == size as u64),
        "{e}\n{:?}",
        log.lock().unwrap()
    );
    assert_eq!(get_count(&log), 2, "{:?}", log.lock().unwrap());
    assert!(!dest.exists());
}

/// A status the client does not expect is an error that says itself without a dangling
/// `: ` (its body is empty) and with a hint.
#[tokio::test]
async fn an_unexpected_status_says_itself_without_an_empty_body() {
    let blob = blob();
    let (addr, _log) = fake(blob.clone(), |_, _| Reply::Status("418 I'm a teapot")).await;
    let c = client(0);
    let (e, _dir, dest) = download(&c, addr, &blob, blob.len() as u64).await;
    let e = e.unwrap_err();
    let said = e.to_string();
    assert!(said.contains("unexpected HTTP 418 for GET"), "{said}");
    assert!(!said.contains(": \n") && !said.ends_with(": "), "{said}");
    assert!(said.contains("\nhint: "), "{said}");
    assert!(!dest.exists());
}

/// The reviewer's repro: five 503s, then a body cut in the middle, over and over. The
/// request retries and the transfer's retries share one budget, so the download gives up
/// after the 6 requests the default 5 retries allow (not 6 × 6), and says how many requests
/// it sent: as many as the fake saw.
#[tokio::test]
async fn retries_inside_retries_share_one_budget_and_say_their_requests() {
    let blob = blob();
    let size = blob.len();
    let (addr, log) = fake(blob.clone(), move |n, _| match n % 6 {
        5 => Reply::CutChunked {
            from: 0,
            len: size / 2,
            range: None,
        },
        _ => Reply::Status("503 Service Unavailable"),
    })
    .await;
    let c = client(5);
    let started = std::time::Instant::now();
    let e = download(&c, addr, &blob, size as u64).await.0.unwrap_err();
    let took = started.elapsed();
    let seen = get_count(&log);
    assert_eq!(
        seen,
        6,
        "one budget of 6 requests: {:?}",
        log.lock().unwrap()
    );
    match &e {
        Error::GaveUp { requests, .. } => assert_eq!(*requests as usize, seen, "{e}"),
        e => panic!("expected GaveUp, got {e:?}"),
    }
    let said = e.to_string();
    assert!(
        said.contains(&format!("after {seen} requests over")),
        "{said}"
    );
    // Pauses of 20, 40, 80, 160, 320 ms (+ up to a quarter): well under a second of them.
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert_eq!(c.counters().requests as usize, seen, "{:?}", c.counters());
}

/// A 206 for another range than asked (`bytes 49990-…` for `bytes=50000-`): nothing of it is
/// taken, and the download starts over from byte 0 as one more attempt.
#[tokio::test]
async fn a_206_for_another_range_starts_the_download_over() {
    let blob = blob();
    let size = blob.len();
    let (addr, log) = fake(blob.clone(), move |n, _| match n {
        0 => Reply::CutChunked {
            from: 0,
            len: 50_000,
            range: None,
        },
        1 => Reply::CutChunked {
            from: 49_990,
            len: size - 49_990,
            range: Some(format!("bytes 49990-{}/{size}", size - 1)),
        },
        _ => Reply::Whole,
    })
    .await;
    let c = client(5);
    let (got, _dir, dest) = download(&c, addr, &blob, size as u64).await;
    got.unwrap_or_else(|e| panic!("{e}\n{:?}", log.lock().unwrap()));
    assert_eq!(std::fs::read(&dest).unwrap(), *blob);
    let seen = log.lock().unwrap().clone();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(seen[1].ends_with("Some(\"bytes=50000-\")"), "{seen:?}");
    assert!(seen[2].ends_with("None"), "the whole blob again: {seen:?}");
    assert_eq!(c.counters().retries, 2, "{:?}", c.counters());
}

/// A FAKE registry taking one blob upload: sessions `u1`, `u2`, …; the first `lost` closing
/// PUTs' answers are lost (the connection closes without one); a HEAD for the blob answers
/// 200 with `head_length` as its `Content-Length`, or 404 for `None`. Returns its address
/// and the request lines seen.
async fn upload_fake(
    lost: usize,
    head_length: Option<u64>,
) -> (std::net::SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let log = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = log.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let Some((head, early)) = fake_http::read_head(&mut sock).await else {
                    return;
                };
                let (sessions, puts) = {
                    let mut seen = seen.lock().unwrap();
                    seen.push(format!("{} {}", head.method, head.path));
                    let count = |m: &str| seen.iter().filter(|l| l.starts_with(m)).count();
                    (count("POST "), count("PUT "))
                };
                match head.method.as_str() {
                    "POST" => {
                        let loc = format!("/v2/team/app/blobs/uploads/u{sessions}");
                        let h = [("Location", loc.as_str())];
                        fake_http::respond(&mut sock, "202 Accepted", &h, b"").await
                    }
                    "PUT" => {
                        fake_http::read_body(&mut sock, &head, &early).await;
                        if puts <= lost {
                            // Taken, never answered.
                            let _ = sock.shutdown().await;
                            return;
                        }
                        fake_http::respond(&mut sock, "201 Created", &[], b"").await
                    }
                    "HEAD" => {
                        let Some(head_length) = head_length else {
                            return fake_http::respond(&mut sock, "404 Not Found", &[], b"").await;
                        };
                        let out = format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {head_length}\r\nConnection: close\r\n\r\n"
                        );
                        let _ = sock.write_all(out.as_bytes()).await;
                        let _ = sock.shutdown().await;
                    }
                    _ => fake_http::respond(&mut sock, "404 Not Found", &[], b"").await,
                }
            });
        }
    });
    (addr, log)
}

/// After an upload's closing answer is lost, a HEAD that finds the blob under another size
/// (a broken proxy or cache in between) does not count as "it landed": the blob is sent
/// again into a fresh session. A HEAD with the right size ends the transfer at once.
#[tokio::test]
async fn a_head_after_a_failed_upload_must_give_the_blobs_size() {
    let data = bytes_of(5000);
    let d = Digest::of(&data);
    for (head_length, puts) in [(data.len() as u64 + 1, 2), (data.len() as u64, 1)] {
        let (addr, log) = upload_fake(1, Some(head_length)).await;
        let c = client(5);
        let r = Reference::parse(&format!("{addr}/team/app:v1")).unwrap();
        tokio::time::timeout(
            Duration::from_secs(20),
            c.upload_blob(&r, &d, data.clone().into(), None),
        )
        .await
        .expect("bounded")
        .unwrap_or_else(|e| panic!("{e}\n{:?}", log.lock().unwrap()));
        let seen = log.lock().unwrap().clone();
        let sent = seen.iter().filter(|l| l.starts_with("PUT ")).count();
        assert_eq!(sent, puts, "HEAD said {head_length}: {seen:?}");
        assert_eq!(
            seen.iter().filter(|l| l.starts_with("HEAD ")).count(),
            1,
            "{seen:?}"
        );
    }
}

fn bytes_of(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 253) as u8).collect()
}

/// A registry that takes every closing PUT and never answers it: the upload's sessions,
/// PUTs and HEADs all draw from one budget, so it gives up after 5 retries of the transfer
/// in all, and says as many requests as the fake saw.
#[tokio::test]
async fn an_upload_whose_every_closing_answer_is_lost_gives_up_within_one_budget() {
    let data = bytes_of(5000);
    let d = Digest::of(&data);
    let (addr, log) = upload_fake(usize::MAX, None).await;
    let c = client(5);
    let r = Reference::parse(&format!("{addr}/team/app:v1")).unwrap();
    let e = tokio::time::timeout(
        Duration::from_secs(20),
        c.upload_blob(&r, &d, data.clone().into(), None),
    )
    .await
    .expect("bounded")
    .unwrap_err();
    let seen = log.lock().unwrap().clone();
    let count = |m: &str| seen.iter().filter(|l| l.starts_with(m)).count();
    assert_eq!(count("PUT "), 6, "{seen:?}");
    assert_eq!(count("HEAD "), 5, "{seen:?}");
    match &e {
        Error::GaveUp { requests, .. } => assert_eq!(*requests as usize, seen.len(), "{e}"),
        e => panic!("expected GaveUp, got {e:?}"),
    }
}

/// A resume whose bytes do not fit what came before (here: a 206 of other bytes, at the
/// right offset) fails the digest check; the download starts over from byte 0 once, as
/// one more attempt, instead of failing the pull.
#[tokio::test]
async fn a_resumed_download_that_does_not_hash_right_starts_over_whole() {
    let blob = blob();
    let size = blob.len();
    let (addr, log) = fake(blob.clone(), move |n, _| match n {
        0 => Reply::CutChunked {
            from: 0,
            len: 50_000,
            range: None,
        },
        1 => Reply::CutChunkedWrong {
            from: 50_000,
            len: size - 50_000,
            range: Some(format!("bytes 50000-{}/{size}", size - 1)),
        },
        _ => Reply::Whole,
    })
    .await;
    let c = client(5);
    let (got, _dir, dest) = download(&c, addr, &blob, size as u64).await;
    got.unwrap_or_else(|e| panic!("{e}\n{:?}", log.lock().unwrap()));
    assert_eq!(std::fs::read(&dest).unwrap(), *blob);
    let seen = log.lock().unwrap().clone();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(seen[2].ends_with("None"), "the whole blob again: {seen:?}");
}
