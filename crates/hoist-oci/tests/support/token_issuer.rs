//! A token issuer for the real registry's token auth (the Docker token endpoint,
//! `GET /token?service=…&scope=…&account=…`, and its OAuth2 form, `POST /token` with an
//! identity token): the one part of a token-auth registry that
//! Debian's `docker-registry` does not ship. The registry itself (started with
//! [`super::registry::Registry::start_token`]) verifies what this signs: issuer, audience,
//! times, the x5c chain against its `rootcertbundle`, the ES256 signature, and the access
//! each request needs.
//!
//! Policy: per account (`None`: anonymous), repository patterns (`team/*` or an exact
//! name) and the actions granted on them; a token holds the intersection of what was
//! asked and what is granted, as the token spec says (a denied action is left out, not
//! refused). Every query is recorded so tests can assert the scopes a client asked for.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};

pub const SERVICE: &str = "hoist-test";
pub const ISSUER: &str = "hoist-test-issuer";

/// distribution's `token.Leeway`: it accepts a token until `exp` + 60 s (and from `nbf` −
/// 60 s), for clock skew. To make the real registry stop accepting a token after its
/// lifetime (within a second: claims are whole seconds), `exp` is set that much earlier.
pub const REGISTRY_LEEWAY_SECS: u64 = 60;

/// One grant: `account` (`None`: anonymous requests) may do `actions` on repositories
/// matching `pattern` (`team/*`: any name under `team/`; `*`: any; else exact).
#[derive(Clone, Debug)]
pub struct Grant {
    pub account: Option<String>,
    pub pattern: String,
    pub actions: Vec<String>,
}

pub fn grant(account: Option<&str>, pattern: &str, actions: &[&str]) -> Grant {
    Grant {
        account: account.map(String::from),
        pattern: pattern.into(),
        actions: actions.iter().map(|a| a.to_string()).collect(),
    }
}

/// Which fields the token response carries (the spec allows `token`, `access_token` or
/// both; clients must take either).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenFields {
    Both,
    TokenOnly,
    AccessTokenOnly,
}

/// A query the issuer got, and what it answered.
#[derive(Clone, Debug)]
pub struct Query {
    /// `GET` (Basic or anonymous) or `POST` (an identity token).
    pub method: String,
    /// Who signed in: the Basic user, or a refresh token's account (`None`: anonymous).
    pub user: Option<String>,
    pub service: Option<String>,
    pub account: Option<String>,
    /// Each `scope` parameter as sent.
    pub scopes: Vec<String>,
    /// HTTP status of the answer.
    pub status: u16,
    /// What the token granted: (repository, actions).
    pub granted: Vec<(String, Vec<String>)>,
}

struct State {
    users: Vec<(String, String)>,
    /// Identity (OAuth2 refresh) tokens and the account each signs in as.
    refresh_tokens: Vec<(String, String)>,
    grants: Vec<Grant>,
    lifetime: Duration,
    /// The `expires_in` told, if not the lifetime.
    told: Option<Duration>,
    fields: TokenFields,
    queries: Vec<Query>,
    issued: u64,
}

pub struct TokenIssuer {
    pub addr: String,
    /// The issuer's certificate (PEM): the registry's `rootcertbundle`.
    pub cert_file: PathBuf,
    _dir: tempfile::TempDir,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

struct Signer {
    key: EcdsaKeyPair,
    cert_der: Vec<u8>,
    rng: SystemRandom,
}

impl TokenIssuer {
    /// Serve on a free loopback port. `users`: (name, password) pairs that Basic auth
    /// accepts; anonymous requests are served only if a grant names `None`.
    pub fn start(users: &[(&str, &str)], grants: Vec<Grant>) -> TokenIssuer {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = rcgen::KeyPair::generate().expect("generate a P-256 key");
        let params = rcgen::CertificateParams::new(vec![ISSUER.to_string()]).unwrap();
        let cert = params.self_signed(&key).expect("self-sign the issuer cert");
        let cert_file = dir.path().join("issuer.pem");
        std::fs::write(&cert_file, cert.pem()).unwrap();
        let rng = SystemRandom::new();
        let signer = Signer {
            key: EcdsaKeyPair::from_pkcs8(
                &ECDSA_P256_SHA256_FIXED_SIGNING,
                &key.serialize_der(),
                &rng,
            )
            .expect("ring reads rcgen's PKCS#8 key"),
            cert_der: cert.der().to_vec(),
            rng,
        };
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().unwrap().to_string();
        let state = Arc::new(Mutex::new(State {
            users: (users.iter())
                .map(|(u, p)| (u.to_string(), p.to_string()))
                .collect(),
            refresh_tokens: vec![],
            grants,
            lifetime: Duration::from_secs(300),
            told: None,
            fields: TokenFields::Both,
            queries: vec![],
            issued: 0,
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (state, stop, signer) = (state.clone(), stop.clone(), Arc::new(signer));
            std::thread::spawn(move || {
                for sock in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(sock) = sock else { continue };
                    let (state, signer) = (state.clone(), signer.clone());
                    // One thread per connection: a client may hold one open while it
                    // opens another.
                    std::thread::spawn(move || serve(sock, &state, &signer));
                }
            })
        };
        TokenIssuer {
            addr,
            cert_file,
            _dir: dir,
            state,
            stop,
            thread: Some(thread),
        }
    }

    pub fn realm(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    /// How long tokens issued from now on are valid (`expires_in`, and for the registry).
    pub fn set_lifetime(&self, lifetime: Duration) {
        let mut s = self.state.lock().unwrap();
        s.lifetime = lifetime;
        s.told = None;
    }

    /// Tokens the registry accepts for `lifetime` while `expires_in` says `told`: as a
    /// token revoked early, or judged by a registry whose clock runs ahead, looks.
    pub fn set_lifetime_telling(&self, lifetime: Duration, told: Duration) {
        let mut s = self.state.lock().unwrap();
        s.lifetime = lifetime;
        s.told = Some(told);
    }

    /// Accept `token` as an identity (refresh) token for `account`.
    pub fn add_refresh_token(&self, token: &str, account: &str) {
        (self.state.lock().unwrap().refresh_tokens).push((token.into(), account.into()));
    }

    pub fn set_fields(&self, fields: TokenFields) {
        self.state.lock().unwrap().fields = fields;
    }

    pub fn queries(&self) -> Vec<Query> {
        self.state.lock().unwrap().queries.clone()
    }

    pub fn clear_queries(&self) {
        self.state.lock().unwrap().queries.clear();
    }

    /// Tokens issued so far.
    pub fn issued(&self) -> u64 {
        self.state.lock().unwrap().issued
    }
}

impl Drop for TokenIssuer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(&self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Answer one request on `sock`, then close it.
fn serve(mut sock: TcpStream, state: &Mutex<State>, signer: &Signer) {
    let _ = sock.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(sock.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut authorization = None;
    let mut content_length = 0usize;
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) if line.trim().is_empty() => break,
            Ok(_) => {}
        }
        if let Some((k, v)) = line.split_once(':') {
            let v = v.trim().to_string();
            match k.trim().to_ascii_lowercase().as_str() {
                "authorization" => authorization = Some(v),
                "content-length" => content_length = v.parse().unwrap_or(0),
                _ => {}
            }
        }
    }
    let mut body = vec![0; content_length.min(1 << 20)];
    let _ = reader.read_exact(&mut body);
    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let body = String::from_utf8_lossy(&body);
    let (status, json) = answer(
        method,
        target,
        authorization.as_deref(),
        &body,
        state,
        signer,
    );
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        _ => "Not Found",
    };
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        json.len()
    );
    if status == 401 {
        out.push_str("WWW-Authenticate: Basic realm=\"hoist-test-issuer\"\r\n");
    }
    out.push_str("\r\n");
    out.push_str(&json);
    let _ = sock.write_all(out.as_bytes());
    let _ = sock.flush();
}

fn error_json(code: &str, message: &str) -> String {
    serde_json::json!({"errors": [{"code": code, "message": message}]}).to_string()
}

/// `GET /token` (Basic or anonymous), or `POST /token` with an OAuth2 form
/// (`grant_type=refresh_token`: an identity token, as `docker login` stores for some
/// registries; its `scope` is space-separated).
fn answer(
    method: &str,
    target: &str,
    authorization: Option<&str>,
    body: &str,
    state: &Mutex<State>,
    signer: &Signer,
) -> (u16, String) {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let params: Vec<(String, String)> = match (method, path) {
        ("GET", "/token") => form_pairs(query),
        ("POST", "/token") => form_pairs(body),
        _ => {
            return (
                404,
                error_json("NOT_FOUND", "only GET and POST /token are served"),
            );
        }
    };
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let scopes: Vec<String> = (params.iter())
        .filter(|(k, _)| k == "scope")
        .flat_map(|(_, v)| v.split(' ').map(String::from).collect::<Vec<_>>())
        .filter(|v| !v.is_empty())
        .collect();
    let mut s = state.lock().unwrap();
    let mut q = Query {
        method: method.into(),
        user: None,
        service: get("service"),
        account: get("account"),
        scopes: scopes.clone(),
        status: 0,
        granted: vec![],
    };
    let refresh = (method == "POST").then(|| (get("grant_type"), get("refresh_token")));
    let user = match (
        refresh,
        authorization.and_then(|a| a.strip_prefix("Basic ")),
    ) {
        (Some((Some(grant), Some(token))), _) if grant == "refresh_token" => {
            match (s.refresh_tokens.iter()).find(|(t, _)| *t == token) {
                Some((_, account)) => Some(account.clone()),
                None => {
                    q.status = 401;
                    s.queries.push(q);
                    return (401, error_json("UNAUTHORIZED", "unknown refresh token"));
                }
            }
        }
        (Some(_), _) => {
            q.status = 400;
            s.queries.push(q);
            return (400, error_json("UNSUPPORTED", "unsupported grant_type"));
        }
        (None, None) => None,
        (None, Some(b64)) => {
            let decoded = STANDARD
                .decode(b64.trim())
                .ok()
                .and_then(|d| String::from_utf8(d).ok());
            let ok = decoded
                .as_deref()
                .and_then(|d| d.split_once(':'))
                .filter(|(u, p)| (s.users.iter()).any(|(user, pass)| user == u && pass == p));
            match ok {
                Some((u, _)) => Some(u.to_string()),
                None => {
                    q.user = decoded.and_then(|d| d.split_once(':').map(|(u, _)| u.to_string()));
                    q.status = 401;
                    s.queries.push(q);
                    return (
                        401,
                        error_json("UNAUTHORIZED", "invalid username or password"),
                    );
                }
            }
        }
    };
    q.user = user.clone();
    // As token servers that read it do: the account asked for is the one signed in.
    if q.account.is_some() && q.account != user {
        q.status = 400;
        s.queries.push(q);
        return (
            400,
            error_json("INVALID_REQUEST", "account is not the signed-in user"),
        );
    }
    let anonymous_allowed = s.grants.iter().any(|g| g.account.is_none());
    if user.is_none() && !anonymous_allowed {
        q.status = 401;
        s.queries.push(q);
        return (401, error_json("UNAUTHORIZED", "authentication required"));
    }
    if q.service.as_deref() != Some(SERVICE) {
        q.status = 400;
        s.queries.push(q);
        return (400, error_json("INVALID_REQUEST", "unknown service"));
    }
    let mut access = vec![];
    for scope in &scopes {
        // `type:name:actions`; the name may hold a ':' (a registry port), so type up to
        // the first ':' and actions after the last, as distribution reads it.
        let Some((kind, rest)) = scope.split_once(':') else {
            continue;
        };
        let Some((name, actions)) = rest.rsplit_once(':') else {
            continue;
        };
        let asked: Vec<&str> = actions.split(',').filter(|a| !a.is_empty()).collect();
        let mut allowed: Vec<String> = vec![];
        if kind == "repository" {
            for g in s.grants.iter().filter(|g| g.account == user) {
                if pattern_matches(&g.pattern, name) {
                    for a in &asked {
                        if (g.actions.iter().any(|x| x == a || x == "*"))
                            && !allowed.iter().any(|x| x == a)
                        {
                            allowed.push(a.to_string());
                        }
                    }
                }
            }
        }
        q.granted.push((name.to_string(), allowed.clone()));
        access.push(serde_json::json!({"type": kind, "name": name, "actions": allowed}));
    }
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let now = since_epoch.as_secs();
    // Claims are whole seconds: `exp` rounds up, so the registry accepts a token for at
    // least its lifetime (rounded down, it could refuse one up to a second early).
    let now_up = now + u64::from(since_epoch.subsec_nanos() > 0);
    let lifetime = s.lifetime.as_secs();
    s.issued += 1;
    let claims = serde_json::json!({
        "iss": ISSUER,
        "sub": user.clone().unwrap_or_default(),
        "aud": SERVICE,
        // See REGISTRY_LEEWAY_SECS: the registry then refuses it `lifetime` s from now.
        "exp": (now_up + lifetime).saturating_sub(REGISTRY_LEEWAY_SECS),
        "nbf": now,
        "iat": now,
        "jti": format!("hoist-test-{}-{now}", s.issued),
        "access": access,
    });
    let header = serde_json::json!({
        "typ": "JWT",
        "alg": "ES256",
        "x5c": [STANDARD.encode(&signer.cert_der)],
    });
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let sig = (signer.key)
        .sign(&signer.rng, signing_input.as_bytes())
        .expect("ES256 signing");
    let jwt = format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()));
    let mut resp = serde_json::json!({
        "expires_in": s.told.map_or(lifetime, |t| t.as_secs()),
        "issued_at": hoist_oci::build::rfc3339(now),
    });
    match s.fields {
        TokenFields::Both => {
            resp["token"] = jwt.clone().into();
            resp["access_token"] = jwt.into();
        }
        TokenFields::TokenOnly => resp["token"] = jwt.into(),
        TokenFields::AccessTokenOnly => resp["access_token"] = jwt.into(),
    }
    q.status = 200;
    s.queries.push(q);
    (200, resp.to_string())
}

fn pattern_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

/// `application/x-www-form-urlencoded` pairs (`+` is a space, `%XX` a byte).
fn form_pairs(query: &str) -> Vec<(String, String)> {
    let decode = |s: &str| {
        let b = s.as_bytes();
        let mut out = vec![];
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < b.len() => {
                    let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz");
                    match u8::from_str_radix(hex, 16) {
                        Ok(v) => {
                            out.push(v);
                            i += 2;
                        }
                        Err(_) => out.push(b'%'),
                    }
                }
                c => out.push(c),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    (query.split('&'))
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}
