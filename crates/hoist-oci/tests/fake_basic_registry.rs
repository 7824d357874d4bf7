//! Requests to a registry that wants Basic auth, seen from a FAKE registry: the real
//! docker-registry answers every request as soon as it can, so it cannot show whether a
//! client waits for one answer before sending the next. This loopback server plays an
//! htpasswd registry that holds its answer to the first authenticated request.

#[path = "support/fake_http.rs"]
mod fake_http;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
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
    let Some((head, _)) = fake_http::read_head(&mut sock).await else {
        return;
    };
    if head.header("authorization").as_deref() != Some(basic.as_str()) {
        let challenge = [("WWW-Authenticate", "Basic realm=\"fake\"")];
        return fake_http::respond(&mut sock, "401 Unauthorized", &challenge, b"{}").await;
    }
    if seen.authenticated.fetch_add(1, Ordering::SeqCst) == 0 {
        // Like bcrypt and an fsync, but longer: do the others come meanwhile?
        let deadline = Instant::now() + HOLD;
        while seen.authenticated.load(Ordering::SeqCst) < 3 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        seen.when_first_answered
            .store(seen.authenticated.load(Ordering::SeqCst), Ordering::SeqCst);
    }
    fake_http::respond(&mut sock, "200 OK", &[], b"{}").await;
}

#[tokio::test]
async fn requests_after_the_challenge_do_not_wait_for_the_first_answer() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let basic = Arc::new(format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("user:pass")
    ));
    let server = {
        let seen = seen.clone();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                tokio::spawn(answer(sock, seen.clone(), basic.clone()));
            }
        })
    };

    let (c, r) = fake_http::client_as_user(addr, "pass");
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
