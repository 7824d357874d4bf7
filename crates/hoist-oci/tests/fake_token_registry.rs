//! Token auth where only a FAKE registry will do. The flow itself (scopes, the service
//! parameter, caching, mounts, denied scopes, wrong passwords, expiry) is tested against
//! the real registry in token_registry.rs. What stays here needs a registry that
//! misbehaves at a moment the test chooses, which the real one never does: a 503 and a
//! dropped connection on particular requests behind a bearer token, a blob whose bytes
//! do not match its digest, and a token refused between opening an upload and its
//! streamed PUT although it has not expired by its `expires_in` (revoked, or a skewed
//! clock).

#[path = "support/fake_http.rs"]
mod fake_http;

use std::sync::{Arc, Mutex};

use base64::Engine as _;
use hoist_oci::client::{ClientOptions, RegistryClient};
use hoist_oci::{Digest, Reference};
use tokio::net::TcpListener;

#[derive(Default)]
struct Seen {
    token_queries: Vec<String>,
    manifest_gets: usize,
    blob_gets: usize,
}

const CONFIG: &[u8] =
    br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;

async fn serve(listener: TcpListener, seen: Arc<Mutex<Seen>>, manifest: Vec<u8>) {
    let port = listener.local_addr().unwrap().port();
    let challenge =
        format!("Bearer realm=\"http://127.0.0.1:{port}/token\",service=\"fake-registry\"");
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("user:pass")
    );
    let config_digest = Digest::of(CONFIG).to_string();
    loop {
        let Ok((mut sock, _)) = listener.accept().await else {
            return;
        };
        let Some((head, _)) = fake_http::read_head(&mut sock).await else {
            continue;
        };
        let path = head.path.clone();
        let auth = head.header("authorization").unwrap_or_default();
        let (status, headers, body): (&str, Vec<(&str, String)>, Vec<u8>) = if path
            .starts_with("/token")
        {
            seen.lock().unwrap().token_queries.push(path.clone());
            if auth == basic {
                ("200 OK", vec![], br#"{"token":"good-token"}"#.to_vec())
            } else {
                ("401 Unauthorized", vec![], b"{}".to_vec())
            }
        } else if auth != "Bearer good-token" {
            (
                "401 Unauthorized",
                vec![("WWW-Authenticate", challenge.clone())],
                b"{}".to_vec(),
            )
        } else if path == "/v2/team/app/manifests/v1" {
            let k = {
                let mut s = seen.lock().unwrap();
                s.manifest_gets += 1;
                s.manifest_gets
            };
            if k == 1 {
                ("503 Service Unavailable", vec![], b"busy".to_vec())
            } else {
                (
                    "200 OK",
                    vec![
                        (
                            "Content-Type",
                            "application/vnd.oci.image.manifest.v1+json".into(),
                        ),
                        ("Docker-Content-Digest", Digest::of(&manifest).to_string()),
                    ],
                    manifest.clone(),
                )
            }
        } else if path == format!("/v2/team/app/blobs/{config_digest}") {
            let k = {
                let mut s = seen.lock().unwrap();
                s.blob_gets += 1;
                s.blob_gets
            };
            if k == 1 {
                drop(sock); // a dropped connection, mid-request
                continue;
            }
            ("200 OK", vec![], CONFIG.to_vec())
        } else if path
            == "/v2/team/app/blobs/sha256:0000000000000000000000000000000000000000000000000000000000000000"
        {
            ("200 OK", vec![], b"lies".to_vec())
        } else {
            ("404 Not Found", vec![], b"{}".to_vec())
        };
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        fake_http::respond(&mut sock, status, &headers, &body).await;
    }
}

#[tokio::test]
async fn behind_a_bearer_token_503s_and_drops_are_retried_and_lies_rejected() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[]}}"#,
        Digest::of(CONFIG),
        CONFIG.len()
    )
    .into_bytes();
    let server = tokio::spawn(serve(listener, seen.clone(), manifest.clone()));

    let (c, r) = fake_http::client_as_user(addr, "pass");
    let raw = c.get_manifest(&r).await.unwrap();
    assert_eq!(raw.digest, Digest::of(&manifest));
    let cfg = c.get_blob(&r, &Digest::of(CONFIG)).await.unwrap();
    assert_eq!(&cfg[..], CONFIG);
    {
        let s = seen.lock().unwrap();
        assert_eq!(s.token_queries.len(), 1, "{:?}", s.token_queries);
        assert_eq!(s.manifest_gets, 2, "503 retried once");
        assert_eq!(s.blob_gets, 2, "dropped connection retried once");
    }
    // The fake lies about a blob: rejected.
    let zero =
        Digest::parse("sha256:0000000000000000000000000000000000000000000000000000000000000000")
            .unwrap();
    let e = c.get_blob(&r, &zero).await.unwrap_err().to_string();
    assert!(e.contains("digest mismatch"), "{e}");

    server.abort();
}

/// What the expiring-token fake saw.
#[derive(Default)]
struct Uploads {
    tokens_issued: usize,
    /// The one token the fake accepts now (none after it "expires").
    valid: Option<String>,
    posts: usize,
    /// Per PUT: the token it carried, how many body bytes came, and the answer.
    puts: Vec<(String, u64, u16)>,
}

/// A token registry that refuses its first token as soon as it has opened one upload,
/// though the token's lifetime (the spec's default 60 s: no `expires_in`) has not run out,
/// so the client cannot see it coming: the PUT that follows is refused, as one would be
/// after a revocation, or by a registry whose clock runs ahead of the token server's.
async fn serve_expiring(listener: TcpListener, seen: Arc<Mutex<Uploads>>) {
    let port = listener.local_addr().unwrap().port();
    let challenge =
        format!("Bearer realm=\"http://127.0.0.1:{port}/token\",service=\"fake-registry\"");
    loop {
        let Ok((mut sock, _)) = listener.accept().await else {
            return;
        };
        let Some((head, early)) = fake_http::read_head(&mut sock).await else {
            continue;
        };
        // The whole body first: the client then sees the answer, not a reset.
        let received = fake_http::read_body(&mut sock, &head, &early).await;
        let (method, path) = (head.method.as_str(), head.path.as_str());
        let token = head
            .header("authorization")
            .and_then(|a| a.strip_prefix("Bearer ").map(String::from))
            .unwrap_or_default();
        let (status, headers, body): (&str, Vec<(&str, String)>, String) = {
            let mut s = seen.lock().unwrap();
            let accepted = s.valid.as_deref() == Some(token.as_str());
            if path.starts_with("/token") {
                s.tokens_issued += 1;
                let t = format!("t{}", s.tokens_issued);
                s.valid = Some(t.clone());
                ("200 OK", vec![], format!(r#"{{"token":"{t}"}}"#))
            } else if !accepted {
                if method == "PUT" {
                    s.puts.push((token, received, 401));
                }
                (
                    "401 Unauthorized",
                    vec![("WWW-Authenticate", challenge.clone())],
                    "{}".into(),
                )
            } else if method == "POST" && path.starts_with("/v2/team/app/blobs/uploads/") {
                s.posts += 1;
                if s.tokens_issued == 1 {
                    s.valid = None; // the first token expires now
                }
                let loc = format!("/v2/team/app/blobs/uploads/s{}", s.posts);
                ("202 Accepted", vec![("Location", loc)], String::new())
            } else if method == "PUT" && path.starts_with("/v2/team/app/blobs/uploads/s") {
                s.puts.push((token, received, 201));
                ("201 Created", vec![], String::new())
            } else {
                ("404 Not Found", vec![], "{}".into())
            }
        };
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        fake_http::respond(&mut sock, status, &headers, body.as_bytes()).await;
    }
}

#[tokio::test]
async fn a_token_refused_before_the_streamed_put_is_renewed_and_the_blob_sent_again() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Uploads::default()));
    let server = tokio::spawn(serve_expiring(listener, seen.clone()));

    let dir = tempfile::tempdir().unwrap();
    let blob: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let path = dir.path().join("blob");
    std::fs::write(&path, &blob).unwrap();
    let d = Digest::of(&blob);

    let c = RegistryClient::new(ClientOptions::default()).unwrap();
    let bar = hoist_oci::indicatif::ProgressBar::hidden();
    c.set_progress(Some(bar.clone()));
    let r = Reference::parse(&format!("{addr}/team/app:v1")).unwrap();
    let outcome = c
        .upload_blob_file(&r, &d, &path, blob.len() as u64)
        .await
        .unwrap();
    server.abort();
    assert_eq!(outcome, hoist_oci::client::BlobOutcome::Uploaded);
    assert_eq!(
        bar.position(),
        blob.len() as u64,
        "the progress bar counts the blob sent twice once"
    );
    let s = seen.lock().unwrap();
    assert_eq!(s.tokens_issued, 2, "one renewal");
    assert_eq!(
        s.puts,
        vec![
            ("t1".to_string(), blob.len() as u64, 401),
            ("t2".to_string(), blob.len() as u64, 201)
        ],
        "the refused PUT is sent again, whole, with the new token"
    );
}
