//! How a blob streams between registries, seen on the wire, against a FAKE registry: the real
//! docker-registry logs no request headers and cannot be made to serve a corrupt blob
//! mid-stream, so this small loopback HTTP server plays both the source (serving a blob)
//! and the destination (recording the upload's headers and how many body bytes arrived).

#[path = "support/fake_http.rs"]
mod fake_http;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hoist_oci::client::{BlobOutcome, ClientOptions, RegistryClient};
use hoist_oci::{Digest, Error, Reference};
use tokio::net::TcpListener;

#[derive(Debug, Default, Clone)]
struct Put {
    content_length: Option<u64>,
    transfer_encoding: Option<String>,
    received: u64,
    completed: bool,
}

#[derive(Default)]
struct Seen {
    posts: usize,
    /// Answer `POST …?mount=` with 405, as a registry that does not take mount queries might.
    refuse_mounts: bool,
    refused: usize,
    heads: usize,
    puts: Vec<Put>,
    /// Answer the first PUT with a 500 as soon as its head is in, then read its body.
    answer_first_put_early: bool,
}

/// One request per connection (`Connection: close`), enough for this client.
async fn serve(listener: TcpListener, blob: Arc<Vec<u8>>, seen: Arc<Mutex<Seen>>) {
    loop {
        let Ok((mut sock, _)) = listener.accept().await else {
            return;
        };
        let (blob, seen) = (blob.clone(), seen.clone());
        tokio::spawn(async move {
            let Some((head, early)) = fake_http::read_head(&mut sock).await else {
                return;
            };
            let path = head.path.as_str();
            let (status, extra, body): (&str, Vec<(&str, &str)>, &[u8]) = match head.method.as_str()
            {
                "GET" if path.starts_with("/v2/src/blobs/") => ("200 OK", vec![], &blob[..]),
                "HEAD" => {
                    seen.lock().unwrap().heads += 1;
                    ("404 Not Found", vec![], b"")
                }
                "POST" if path.contains("mount=") && seen.lock().unwrap().refuse_mounts => {
                    seen.lock().unwrap().refused += 1;
                    ("405 Method Not Allowed", vec![], b"")
                }
                "POST" => {
                    seen.lock().unwrap().posts += 1;
                    (
                        "202 Accepted",
                        vec![("Location", "/v2/dst/blobs/uploads/u1")],
                        b"",
                    )
                }
                "PUT" if seen.lock().unwrap().answer_first_put_early => {
                    seen.lock().unwrap().answer_first_put_early = false;
                    // The answer, with the connection left open for the rest of the body.
                    let answer = b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n";
                    let _ = tokio::io::AsyncWriteExt::write_all(&mut sock, answer).await;
                    // Read on only once the client has had the answer: more than the socket
                    // buffers hold is still to go then.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    let received = fake_http::read_body(&mut sock, &head, &early).await;
                    seen.lock().unwrap().puts.push(Put {
                        content_length: head.content_length(),
                        transfer_encoding: None,
                        received,
                        completed: false,
                    });
                    return;
                }
                "PUT" => {
                    let content_length = head.content_length();
                    let received = fake_http::read_body(&mut sock, &head, &early).await;
                    let put = Put {
                        content_length,
                        transfer_encoding: head.header("transfer-encoding"),
                        received,
                        completed: content_length == Some(received),
                    };
                    let ok = put.completed;
                    seen.lock().unwrap().puts.push(put);
                    if !ok {
                        return;
                    }
                    ("201 Created", vec![], b"")
                }
                _ => ("404 Not Found", vec![], b""),
            };
            fake_http::respond(&mut sock, status, &extra, body).await;
        });
    }
}

async fn start(blob: Vec<u8>) -> (String, Arc<Mutex<Seen>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let seen = Arc::new(Mutex::new(Seen::default()));
    tokio::spawn(serve(listener, Arc::new(blob), seen.clone()));
    (addr, seen)
}

fn blob(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// A source fake serving `source` as `src:1`, an empty destination fake (`dst:1`, whose
/// requests are recorded) and a client.
async fn source_and_destination(
    source: Vec<u8>,
) -> (RegistryClient, Reference, Reference, Arc<Mutex<Seen>>) {
    let (src_addr, _) = start(source).await;
    let (dst_addr, seen) = start(vec![]).await;
    let c = RegistryClient::new(ClientOptions::default()).unwrap();
    let src = Reference::parse(&format!("{src_addr}/src:1")).unwrap();
    let dst = Reference::parse(&format!("{dst_addr}/dst:1")).unwrap();
    (c, src, dst, seen)
}

/// Wait (bounded) until the destination has seen `n` PUTs end.
async fn puts(seen: &Arc<Mutex<Seen>>, n: usize) -> Vec<Put> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let p = seen.lock().unwrap().puts.clone();
        if p.len() >= n || Instant::now() > deadline {
            return p;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn blob_streams_as_one_put_with_the_source_length() {
    let data = blob(3 * 1024 * 1024 + 17);
    let d = Digest::of(&data);
    let (c, src, dst, seen) = source_and_destination(data.clone()).await;
    let out = c
        .copy_blob(&src, &dst, &d, data.len() as u64)
        .await
        .unwrap();
    assert_eq!(out, BlobOutcome::Uploaded);
    let p = puts(&seen, 1).await;
    // The POST that probed for the blob (a mount from the destination repository itself)
    // opened the upload: no HEAD before it.
    assert_eq!(seen.lock().unwrap().posts, 1);
    assert_eq!(seen.lock().unwrap().heads, 0);
    assert_eq!(p.len(), 1, "one monolithic PUT: {p:?}");
    assert_eq!(p[0].content_length, Some(data.len() as u64), "{p:?}");
    assert_eq!(p[0].transfer_encoding, None, "not chunked: {p:?}");
    assert!(p[0].completed);
    assert_eq!(c.counters().upload_bytes, data.len() as u64);
}

#[tokio::test]
async fn corrupt_source_never_completes_the_upload() {
    let good = blob(2 * 1024 * 1024);
    let d = Digest::of(&good);
    let mut bad = good.clone();
    *bad.last_mut().unwrap() ^= 1;
    let (c, src, dst, seen) = source_and_destination(bad).await;
    let e = c
        .copy_blob(&src, &dst, &d, good.len() as u64)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::DigestMismatch { .. }), "{e}");
    let p = puts(&seen, 1).await;
    assert_eq!(p.len(), 1, "a mismatch is not retried: {p:?}");
    assert!(
        !p[0].completed && p[0].received < good.len() as u64,
        "the last byte never left: {p:?}"
    );
}

#[tokio::test]
async fn registry_refusing_the_mount_probe_gets_head_and_post() {
    let data = blob(256 * 1024);
    let d = Digest::of(&data);
    let (c, src, dst, seen) = source_and_destination(data.clone()).await;
    seen.lock().unwrap().refuse_mounts = true;
    let out = c
        .copy_blob(&src, &dst, &d, data.len() as u64)
        .await
        .unwrap();
    assert_eq!(out, BlobOutcome::Uploaded);
    let p = puts(&seen, 1).await;
    assert!(p[0].completed, "{p:?}");
    let s = seen.lock().unwrap();
    assert_eq!((s.refused, s.heads, s.posts), (1, 1, 1));
}

/// A destination that answers the first PUT with a 500 before reading its body (then reads
/// it all): the blob is sent again, and the progress bar counts it once, although the
/// first attempt's body still goes out after that attempt has failed.
#[tokio::test]
async fn a_blob_sent_again_after_an_early_answer_is_counted_once() {
    let data = blob(32_000_000);
    let (c, src, dst, seen) = source_and_destination(data.clone()).await;
    seen.lock().unwrap().answer_first_put_early = true;
    let bar = hoist_oci::indicatif::ProgressBar::hidden();
    c.set_progress(Some(bar.clone()));
    let outcome = c
        .copy_blob(&src, &dst, &Digest::of(&data), data.len() as u64)
        .await
        .unwrap();
    assert_eq!(outcome, BlobOutcome::Uploaded);
    let p = puts(&seen, 2).await;
    assert_eq!(
        p.iter().map(|p| p.completed).collect::<Vec<_>>(),
        [false, true],
        "{p:?}"
    );
    assert_eq!(bar.position(), data.len() as u64);
}
