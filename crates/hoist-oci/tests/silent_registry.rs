//! Registries that accept a connection and then say nothing (or stop in the middle): the
//! client gives up after its timeout, names the registry and the URL, and says how often it
//! asked. Uploads that keep moving are never cut, however long they take.

#[path = "support/fake_http.rs"]
mod fake_http;

use std::time::{Duration, Instant};

use bytes::Bytes;
use hoist_oci::client::{ClientOptions, RegistryClient};
use hoist_oci::{Digest, Error, Reference};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const TIMEOUT: Duration = Duration::from_secs(1);
/// Far longer than any of these tests takes when the client keeps to its timeout.
const BOUND: Duration = Duration::from_secs(20);

fn client() -> RegistryClient {
    RegistryClient::new(ClientOptions {
        timeout: TIMEOUT,
        ..Default::default()
    })
    .unwrap()
}

/// A loopback listener that runs `serve` on each connection it accepts. Its receive buffer
/// is small and fixed (no autotuning up to tens of MB): what the client has sent is then
/// close to what the test has read.
async fn listen<F, Fut>(serve: F) -> std::net::SocketAddr
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let s = tokio::net::TcpSocket::new_v4().unwrap();
    s.set_recv_buffer_size(64 << 10).unwrap();
    s.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let l = s.listen(16).unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((sock, _)) = l.accept().await {
            tokio::spawn(serve(sock));
        }
    });
    addr
}

/// Reads the request and never answers (the socket stays open until the test ends).
async fn silent(mut sock: TcpStream) {
    let _ = fake_http::read_head(&mut sock).await;
    std::future::pending::<()>().await;
}

fn no_answer(e: &Error) -> (&str, u32) {
    match e {
        Error::NoAnswer { url, attempts, .. } => (url.as_str(), *attempts),
        other => panic!("expected NoAnswer, got {other:?}"),
    }
}

#[tokio::test]
async fn silent_registry_fails_after_the_timeout_asked_twice() {
    let addr = listen(silent).await;
    let c = client();
    let r = Reference::parse(&format!("{addr}/t/bb:v1")).unwrap();

    let t = Instant::now();
    let e = tokio::time::timeout(BOUND, c.ping(&r)).await.expect("hung");
    let e = e.unwrap_err();
    let (url, attempts) = no_answer(&e);
    assert_eq!(url, format!("http://{addr}/v2/"));
    assert_eq!(attempts, 2);
    // Two attempts of a second each (and the pause between them); not minutes of retries.
    assert!(
        t.elapsed() >= 2 * TIMEOUT && t.elapsed() < 6 * TIMEOUT,
        "{:?}",
        t.elapsed()
    );
    let said = e.to_string();
    assert!(
        said.starts_with(&format!(
            "the registry at {addr} did not answer within 1 s (http://{addr}/v2/); asked 2 times"
        )),
        "{said}"
    );
    assert!(said.contains("HOIST_REGISTRY_TIMEOUT=SECONDS"), "{said}");

    let e = tokio::time::timeout(BOUND, c.get_manifest(&r))
        .await
        .expect("hung");
    let (url, _) = no_answer(e.as_ref().unwrap_err());
    assert_eq!(url, format!("http://{addr}/v2/t/bb/manifests/v1"));
}

/// Serves blobs whose body stops after 3000 of 100000 bytes.
async fn stalling(mut sock: TcpStream) {
    let Some((head, _)) = fake_http::read_head(&mut sock).await else {
        return;
    };
    if head.path == "/v2/" {
        return fake_http::respond(&mut sock, "200 OK", &[], b"").await;
    }
    let start = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n";
    let _ = sock.write_all(start).await;
    let _ = sock.write_all(&[1u8; 3000]).await;
    std::future::pending::<()>().await;
}

/// A blob download whose body stops after some bytes: the temp file goes, nothing lands.
#[tokio::test]
async fn stalled_blob_download_fails_after_the_timeout() {
    let addr = listen(stalling).await;
    let c = client();
    let r = Reference::parse(&format!("{addr}/t/bb:v1")).unwrap();
    let d = Digest::of(&[1u8; 100_000]);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("blob");

    let t = Instant::now();
    let e = tokio::time::timeout(BOUND, c.download_blob_to(&r, &d, 100_000, &dest))
        .await
        .expect("hung")
        .unwrap_err();
    let (url, _) = no_answer(&e);
    assert_eq!(url, format!("http://{addr}/v2/t/bb/blobs/{d}"));
    assert!(
        e.to_string()
            .contains("stopped sending in the middle of its answer"),
        "{e}"
    );
    assert!(t.elapsed() < 5 * TIMEOUT, "{:?}", t.elapsed());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);

    let e = tokio::time::timeout(BOUND, c.get_blob(&r, &d))
        .await
        .expect("hung")
        .unwrap_err();
    no_answer(&e);
}

/// An upload that takes several times the timeout, with pauses in it shorter than the
/// timeout, and a registry that commits it a while after the last byte: it goes through.
/// (The silence counts from the last byte handed to the connection, as Go's
/// `ResponseHeaderTimeout` does: the last few MB the kernel buffers are read at once here.)
#[tokio::test]
async fn a_long_upload_that_keeps_moving_is_not_cut() {
    const SIZE: usize = 24 << 20;
    const PAUSE_EVERY: usize = 4 << 20;
    let addr = listen(|mut sock| async move {
        let Some((head, early)) = fake_http::read_head(&mut sock).await else {
            return;
        };
        match head.method.as_str() {
            "GET" => fake_http::respond(&mut sock, "200 OK", &[], b"").await,
            "POST" => {
                let loc = [("Location", "/v2/t/bb/blobs/uploads/u1")];
                fake_http::respond(&mut sock, "202 Accepted", &loc, b"").await
            }
            "PUT" => {
                use tokio::io::AsyncReadExt;
                let mut received = early.len();
                let mut buf = vec![0u8; 256 << 10];
                let mut next_pause = PAUSE_EVERY;
                while received < SIZE {
                    // Pauses in the first 16 MB only: what the client has handed on is
                    // then read at once, whatever its kernel buffers.
                    if received >= next_pause && received < SIZE - 2 * PAUSE_EVERY {
                        tokio::time::sleep(TIMEOUT * 3 / 5).await;
                        next_pause += PAUSE_EVERY;
                    }
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(k) => received += k,
                    }
                }
                // Committing the blob takes a while too, within the timeout.
                tokio::time::sleep(TIMEOUT * 3 / 5).await;
                fake_http::respond(&mut sock, "201 Created", &[], b"").await
            }
            _ => fake_http::respond(&mut sock, "404 Not Found", &[], b"").await,
        }
    })
    .await;
    let c = client();
    let r = Reference::parse(&format!("{addr}/t/bb:v1")).unwrap();
    let data = Bytes::from(vec![5u8; SIZE]);
    let d = Digest::of(&data);

    let t = Instant::now();
    tokio::time::timeout(BOUND, c.upload_blob(&r, &d, data, None))
        .await
        .expect("hung")
        .unwrap();
    // It took well over the timeout, and was not cut.
    assert!(t.elapsed() > 2 * TIMEOUT, "{:?}", t.elapsed());
}

/// A blob streamed from one registry into another whose source stops: the source is named,
/// and the transfer is tried twice, not four times.
#[tokio::test]
async fn stalled_source_of_a_streamed_copy_is_named() {
    let src_addr = listen(stalling).await;
    let dst_addr = listen(|mut sock| async move {
        let Some((head, early)) = fake_http::read_head(&mut sock).await else {
            return;
        };
        if head.method == "PUT" {
            fake_http::read_body(&mut sock, &head, &early).await;
            return;
        }
        // The blob is missing (a retry first asks).
        if head.method == "HEAD" {
            return fake_http::respond(&mut sock, "404 Not Found", &[], b"").await;
        }
        let loc = [("Location", "/v2/t/bb/blobs/uploads/u1")];
        fake_http::respond(&mut sock, "202 Accepted", &loc, b"").await
    })
    .await;
    let c = client();
    let src = Reference::parse(&format!("{src_addr}/t/bb:v1")).unwrap();
    let dst = Reference::parse(&format!("{dst_addr}/t/bb:v1")).unwrap();
    let d = Digest::of(&[1u8; 100_000]);

    let t = Instant::now();
    let e = tokio::time::timeout(BOUND, c.copy_blob(&src, &dst, &d, 100_000))
        .await
        .expect("hung")
        .unwrap_err();
    let (url, attempts) = no_answer(&e);
    assert_eq!(url, format!("http://{src_addr}/v2/t/bb/blobs/{d}"));
    assert_eq!(attempts, 2);
    assert!(t.elapsed() < 6 * TIMEOUT, "{:?}", t.elapsed());
}

/// The request that closes an upload meets silence once: it is an interrupted transfer,
/// sent again (after a HEAD asking whether it landed) into a fresh session, and goes
/// through. A registry is asked once more when silent (the silence used to be counted
/// twice, by the request and by the transfer, so one silence ended the upload).
#[tokio::test]
async fn one_silent_closing_answer_is_retried() {
    let puts = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let seen = puts.clone();
    let addr = listen(move |mut sock| {
        let puts = seen.clone();
        async move {
            while let Some((head, _)) = fake_http::read_head(&mut sock).await {
                let answer = match head.method.as_str() {
                    "POST" => Some(("202 Accepted", "/v2/t/bb/blobs/uploads/u1")),
                    "PUT" if puts.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 => {
                        // The body arrives; the answer never does.
                        std::future::pending::<()>().await;
                        None
                    }
                    "PUT" => Some(("201 Created", "")),
                    _ => Some(("404 Not Found", "")),
                };
                let Some((status, loc)) = answer else { return };
                let headers: Vec<(&str, &str)> = match loc {
                    "" => vec![],
                    l => vec![("Location", l)],
                };
                fake_http::respond(&mut sock, status, &headers, b"").await;
            }
        }
    })
    .await;
    let c = RegistryClient::new(ClientOptions {
        timeout: TIMEOUT,
        retry_pause: Duration::from_millis(10),
        ..Default::default()
    })
    .unwrap();
    let r = Reference::parse(&format!("{addr}/t/bb:v1")).unwrap();
    let data = Bytes::from_static(b"a small blob");
    let d = Digest::of(&data);
    tokio::time::timeout(BOUND, c.upload_blob(&r, &d, data, None))
        .await
        .expect("hung")
        .unwrap();
    assert_eq!(puts.load(std::sync::atomic::Ordering::SeqCst), 2);
}
