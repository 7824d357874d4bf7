//! The HTTP/1.1 the FAKE registries of these tests speak: one request per connection
//! (`Connection: close`), read by hand so that a test sees exactly what arrived and when;
//! and a client signed in to one.
#![allow(dead_code)] // each test binary uses its own part

use hoist_oci::Reference;
use hoist_oci::auth::Credential;
use hoist_oci::client::{ClientOptions, RegistryClient};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A client that signs in to the fake registry at `addr` as `user` with `password`, and
/// the image `team/app:v1` there.
pub fn client_as_user(addr: std::net::SocketAddr, password: &str) -> (RegistryClient, Reference) {
    let c = RegistryClient::new(ClientOptions::default()).unwrap();
    let r = Reference::parse(&format!("{addr}/team/app:v1")).unwrap();
    c.set_credential(
        &r.registry,
        Credential::Basic {
            username: "user".into(),
            password: password.into(),
        },
    );
    (c, r)
}

/// A request head.
pub struct Head {
    pub method: String,
    pub path: String,
    text: String,
}

impl Head {
    /// The value of header `name` (compared without case).
    pub fn header(&self, name: &str) -> Option<String> {
        self.text.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }

    pub fn content_length(&self) -> Option<u64> {
        self.header("content-length")?.parse().ok()
    }
}

/// Read a request head; returns it and the body bytes that came with it.
pub async fn read_head(sock: &mut TcpStream) -> Option<(Head, Vec<u8>)> {
    let mut buf = vec![];
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let text = String::from_utf8_lossy(&buf[..end]).to_string();
            let mut line = text.lines().next().unwrap_or_default().split(' ');
            let (method, path) = (line.next().unwrap_or_default(), line.next().unwrap_or(""));
            let head = Head {
                method: method.to_string(),
                path: path.to_string(),
                text: text.clone(),
            };
            return Some((head, buf[end + 4..].to_vec()));
        }
        match sock.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(k) => buf.extend_from_slice(&chunk[..k]),
        }
    }
}

/// Read the rest of a `Content-Length` body, `early` being what came with the head;
/// returns how many body bytes arrived in all (fewer if the client stopped).
pub async fn read_body(sock: &mut TcpStream, head: &Head, early: &[u8]) -> u64 {
    let want = head.content_length().unwrap_or(0);
    let mut received = early.len() as u64;
    let mut buf = vec![0u8; 64 * 1024];
    while received < want {
        match sock.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(k) => received += k as u64,
        }
    }
    received
}

/// Answer with `status` ("200 OK"), `headers` and `body`, then close.
pub async fn respond(sock: &mut TcpStream, status: &str, headers: &[(&str, &str)], body: &[u8]) {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    let _ = sock.write_all(&out).await;
    let _ = sock.shutdown().await;
}
