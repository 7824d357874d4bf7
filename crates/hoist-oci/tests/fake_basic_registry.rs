//! Requests to a registry that wants Basic auth, seen from a FAKE registry: the real
//! docker-registry answers every request as soon as it can, so it cannot show whether a
//! client waits for one answer before sending the next. This loopback server plays an
//! htpasswd registry that holds its answer to the first authenticated request.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use hoist_oci::Reference;
use hoist_oci::auth::Credential;
use hoist_oci::client::{ClientOptions, RegistryClient};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the fake saw: authenticated requests so far, and how many had arrived when it
/// answered the first one.
#[derive(Default)]
struct Seen {
    authenticated: AtomicUsize,
    when_first_answered: AtomicUsize,
}

/// How long the first authenticated answer waits for the others (the test's bound).
const HOLD: Duration = Duration::from_secs(2);

async fn answer(mut sock: TcpStream, seen: Arc<Seen>, basic: Arc<String>) {
    let mut buf = vec![0u8; 8192];
    let mut n = 0;
    while !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
        match sock.read(&mut buf[n..]).await {
            Ok(0) | Err(_) => return,
            Ok(k) => n += k,
        }
    }
    let head = String::from_utf8_lossy(&buf[..n]).to_lowercase();
    let authed = head
        .lines()
        .any(|l| l.strip_prefix("authorization: ") == Some(basic.as_str()));
    let status = if authed {
        if seen.authenticated.fetch_add(1, Ordering::SeqCst) == 0 {
            // Like bcrypt and an fsync, but longer: do the others come meanwhile?
            let deadline = Instant::now() + HOLD;
            while seen.authenticated.load(Ordering::SeqCst) < 3 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            seen.when_first_answered
                .store(seen.authenticated.load(Ordering::SeqCst), Ordering::SeqCst);
        }
        "200 OK"
    } else {
        "401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"fake\""
    };
    let resp = format!("HTTP/1.1 {status}\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}");
    let _ = sock.write_all(resp.as_bytes()).await;
    let _ = sock.shutdown().await;
}

#[tokio::test]
async fn requests_after_the_challenge_do_not_wait_for_the_first_answer() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    // The header as the fake compares it: lower-cased like the rest of the request head.
    let basic = Arc::new(
        format!(
            "basic {}",
            base64::engine::general_purpose::STANDARD.encode("user:pass")
        )
        .to_lowercase(),
    );
    let server = {
        let seen = seen.clone();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                tokio::spawn(answer(sock, seen.clone(), basic.clone()));
            }
        })
    };

    let c = RegistryClient::new(ClientOptions::default()).unwrap();
    let r = Reference::parse(&format!("{addr}/team/app:v1")).unwrap();
    c.set_credential(
        &r.registry,
        Credential::Basic {
            username: "user".into(),
            password: "pass".into(),
        },
    );
    let started = Instant::now();
    let (a, b, d) = tokio::join!(c.ping(&r), c.ping(&r), c.ping(&r));
    a.unwrap();
    b.unwrap();
    d.unwrap();
    server.abort();
    assert_eq!(seen.authenticated.load(Ordering::SeqCst), 3);
    assert_eq!(
        seen.when_first_answered.load(Ordering::SeqCst),
        3,
        "the other requests waited for the first authenticated answer ({:?})",
        started.elapsed()
    );
}
