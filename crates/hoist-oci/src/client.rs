//! OCI distribution API client: ping, auth (anonymous, basic, bearer tokens), manifests,
//! blobs (HEAD, mount, monolithic and chunked upload, verified download), with retries.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, Response, StatusCode};
use tokio::sync::Mutex;

use crate::auth::{self, Credential, Lookup};
use crate::digest::Digest;
use crate::error::{Error, IoContext, Result, Silence};
use crate::manifest::{Parsed, Platform, RawManifest, media};
use crate::reference::Reference;
use crate::verified_body::{FileBody, StreamFailure, Verdict, VerifiedBody};
use crate::watch::{Watch, Watched};

/// Install ring as the process-wide rustls provider. Safe to call many times; the whole
/// workspace (kube included) must use this one provider.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Registries (host[:port]) to talk to over plain HTTP besides loopback ones.
    pub insecure: Vec<String>,
    /// Extra PEM CA certificates to trust.
    pub ca_file: Option<PathBuf>,
    /// Loopback registries that serve HTTPS (loopback defaults to plain HTTP).
    pub tls_loopback: Vec<String>,
    /// Upload blobs larger than this in PATCH chunks of this size; `None` = always monolithic.
    pub chunk_size: Option<u64>,
    /// Blob transfers (bytes moving, file copies between OCI layouts too) at once, over the
    /// whole client. Probes and mounts for the blobs queued behind them run ahead, so a
    /// freed slot starts sending at once.
    pub max_concurrency: usize,
    /// How many times a request or a blob transfer is tried again after a 5xx, a refused
    /// or dropped connection: 5 by default (about 8 s of pauses in all), or
    /// `HOIST_REGISTRY_RETRIES`.
    pub retries: u32,
    /// The pause before the first retry; each next one doubles it (up to 4 s, or this if
    /// longer), plus up to a quarter of jitter. Tests shorten it.
    pub retry_pause: Duration,
    /// How long a registry may stay silent: for the head of an answer, counted from the
    /// last byte of the request body (however long sending it took), and between two
    /// pieces of a body. A silent registry gets one more attempt, so it fails after about
    /// twice this. Default 60 s, or `HOIST_REGISTRY_TIMEOUT` (seconds).
    pub timeout: Duration,
    /// Where to remember which repositories of a registry hold which blobs, to mount them
    /// from there into another repository ([`crate::blob_locations`]). [`from_env`] (what
    /// commands use) puts it under hoist's cache directory; [`Default`] leaves it out, so
    /// a library caller or a test opts in and never shares a user's cache by accident.
    ///
    /// [`from_env`]: ClientOptions::from_env
    pub blob_locations: Option<PathBuf>,
}

impl ClientOptions {
    /// The defaults, with `HOIST_REGISTRY_RETRIES` and `HOIST_REGISTRY_TIMEOUT` refused when
    /// they are not what they take: a command should say so, not quietly use the default
    /// ([`Default`] does that, with a logged warning, for library callers).
    pub fn from_env() -> Result<Self> {
        let bad = |why: String| Error::Invalid(format!("{why}; unset it to use the default"));
        Ok(Self {
            blob_locations: Some(crate::blob_locations::BlobLocations::default_root()),
            ..Self::with(
                retries_env().map_err(bad)?,
                crate::watch::timeout_env().map_err(bad)?,
            )
        })
    }

    /// The defaults with these two settings.
    fn with(retries: u32, timeout: Duration) -> Self {
        let insecure = std::env::var("HOIST_INSECURE_REGISTRIES")
            .map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        Self {
            insecure,
            // For every command (`hoist up`, `deploy`, `ci` have no --ca-file of their own).
            ca_file: std::env::var_os("HOIST_CA_FILE")
                .filter(|f| !f.is_empty())
                .map(PathBuf::from),
            tls_loopback: vec![],
            chunk_size: None,
            max_concurrency: DEFAULT_MAX_CONCURRENCY,
            retries,
            retry_pause: FIRST_PAUSE,
            timeout,
            blob_locations: None,
        }
    }
}

impl Default for ClientOptions {
    fn default() -> Self {
        static RETRIES_WARNED: std::sync::Once = std::sync::Once::new();
        static TIMEOUT_WARNED: std::sync::Once = std::sync::Once::new();
        Self::with(
            or_default(retries_env(), DEFAULT_RETRIES, &RETRIES_WARNED, || {
                format!("retrying {DEFAULT_RETRIES} times")
            }),
            or_default(
                crate::watch::timeout_env(),
                crate::watch::DEFAULT_TIMEOUT,
                &TIMEOUT_WARNED,
                || {
                    let t = crate::watch::secs(crate::watch::DEFAULT_TIMEOUT);
                    format!("waiting {t} for registries")
                },
            ),
        )
    }
}

/// A setting, or `default` with a warning (once per process: options are made often) when
/// it is wrong; `using` says what is done instead.
fn or_default<T>(
    setting: std::result::Result<T, String>,
    default: T,
    warned: &'static std::sync::Once,
    using: impl FnOnce() -> String,
) -> T {
    setting.unwrap_or_else(|why| {
        warned.call_once(|| tracing::warn!("{why}; {}", using()));
        default
    })
}

/// Environment variable `name` as `parse` reads it (trimmed), `default` when it is unset or
/// empty (`NAME= hoist …`); when it is something else, what is wrong with it: not `takes`.
pub(crate) fn env_setting<T>(
    name: &str,
    default: T,
    takes: &str,
    parse: impl FnOnce(&str) -> Option<T>,
) -> std::result::Result<T, String> {
    let Some(v) = std::env::var(name).ok().filter(|v| !v.trim().is_empty()) else {
        return Ok(default);
    };
    parse(v.trim()).ok_or_else(|| format!("{name}={v:?} is not {takes}"))
}

/// `HOIST_REGISTRY_RETRIES`: a whole number from 0 to 100.
fn retries_env() -> std::result::Result<u32, String> {
    env_setting(
        RETRIES_ENV,
        DEFAULT_RETRIES,
        "a whole number of retries from 0 to 100",
        |v| v.parse::<u32>().ok().filter(|n| *n <= 100),
    )
}

/// Sets [`ClientOptions::retries`].
pub const RETRIES_ENV: &str = "HOIST_REGISTRY_RETRIES";
/// Blob transfers at once unless `--jobs` says otherwise.
pub const DEFAULT_MAX_CONCURRENCY: usize = 6;
pub const DEFAULT_RETRIES: u32 = 5;
/// 250 ms, 0.5, 1, 2, 4 s: a registry restarting for several seconds is waited for.
const FIRST_PAUSE: Duration = Duration::from_millis(250);
const MAX_PAUSE: Duration = Duration::from_secs(4);
/// A `Retry-After` longer than this is not waited for in full: a command should fail in
/// seconds, not minutes (the retries that remain may still find the registry back).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(10);
/// All the pauses of one transfer (or request) together: with the default pauses (7.75 s
/// plus jitter) this only cuts `Retry-After`s short, so a registry that keeps failing costs
/// a command seconds, not minutes.
const MAX_PAUSES: Duration = Duration::from_secs(20);

tokio::task_local! {
    /// The retry budget of the transfer the task is in ([`RegistryClient::budgeted`]):
    /// its requests, their retries and the transfer's own retries draw from it, so retries
    /// inside retries do not multiply.
    static BUDGET: Budget;
}

/// A [`Backoff`] shared by every request of one transfer.
#[derive(Clone)]
struct Budget(Arc<std::sync::Mutex<Backoff>>);

impl Budget {
    fn new(opts: &ClientOptions) -> Self {
        Self(Arc::new(std::sync::Mutex::new(Backoff::new(opts))))
    }

    /// The budget of the transfer this task runs, or a fresh one for a lone request.
    fn current_or_new(opts: &ClientOptions) -> Self {
        BUDGET
            .try_with(Budget::clone)
            .unwrap_or_else(|_| Self::new(opts))
    }

    fn with<T>(&self, f: impl FnOnce(&mut Backoff) -> T) -> T {
        f(&mut self.0.lock().unwrap())
    }
}

/// What the client did: tests and benchmarks read these to prove "only the missing blobs".
#[derive(Debug, Default)]
pub struct Counters {
    pub requests: AtomicU64,
    pub blob_uploads: AtomicU64,
    pub upload_bytes: AtomicU64,
    pub mounts: AtomicU64,
    pub mounts_declined: AtomicU64,
    pub blob_downloads: AtomicU64,
    pub download_bytes: AtomicU64,
    pub manifest_puts: AtomicU64,
    /// Requests and transfers tried again.
    pub retries: AtomicU64,
    /// Blob bytes that moved in attempts that failed, and so moved again.
    pub resent_bytes: Arc<AtomicU64>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct CounterSnapshot {
    pub requests: u64,
    pub blob_uploads: u64,
    pub upload_bytes: u64,
    pub mounts: u64,
    pub mounts_declined: u64,
    pub blob_downloads: u64,
    pub download_bytes: u64,
    pub manifest_puts: u64,
    pub retries: u64,
    pub resent_bytes: u64,
}

impl Counters {
    pub fn snapshot(&self) -> CounterSnapshot {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        CounterSnapshot {
            requests: l(&self.requests),
            blob_uploads: l(&self.blob_uploads),
            upload_bytes: l(&self.upload_bytes),
            mounts: l(&self.mounts),
            mounts_declined: l(&self.mounts_declined),
            blob_downloads: l(&self.blob_downloads),
            download_bytes: l(&self.download_bytes),
            manifest_puts: l(&self.manifest_puts),
            retries: l(&self.retries),
            resent_bytes: l(&self.resent_bytes),
        }
    }
}

fn add(a: &AtomicU64, n: u64) {
    a.fetch_add(n, Ordering::Relaxed);
}

#[derive(Clone, Debug)]
enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

#[derive(Default)]
struct RegistryAuth {
    lookup: Option<Lookup>,
    challenge: Option<Challenge>,
    /// Bearer tokens by scope.
    tokens: HashMap<String, Token>,
}

/// A bearer token and when to stop using it.
#[derive(Clone)]
struct Token {
    value: String,
    /// Some time before it expires: a token is fetched again from then on, rather than
    /// sent to be refused (which costs a round trip, and a streamed upload its bytes).
    refresh_at: std::time::Instant,
    /// When its `expires_in` runs out.
    expires_at: std::time::Instant,
}

impl Token {
    /// `expires_in` (seconds; the token spec's default is 60) counted from `asked`, when
    /// the request for it went out: never later than the issuer's own clock, whose
    /// `issued_at` may be skewed from ours. Renewed 10 s early, or halfway through a
    /// lifetime shorter than 20 s.
    fn new(value: String, asked: std::time::Instant, expires_in: Option<u64>) -> Token {
        // At least 2 s: a token server saying 0 would otherwise have every request fetch
        // its own token, one at a time (a token the registry then refuses is fetched again
        // after its 401 anyway).
        let lifetime = Duration::from_secs(expires_in.unwrap_or(60).max(2));
        let margin = (lifetime / 2).min(Duration::from_secs(10));
        // A lifetime past what an Instant holds (a token server's "never") is a day.
        let at = |d| {
            asked
                .checked_add(d)
                .unwrap_or_else(|| asked + Duration::from_secs(86_400))
        };
        Token {
            value,
            refresh_at: at(lifetime - margin),
            expires_at: at(lifetime),
        }
    }

    /// After a renewal failed: keep using this token, without trying again for a few
    /// seconds (the requests queued behind the failed renewal would each wait for a token
    /// server that may not answer), but not past its expiry.
    fn renewal_failed(&mut self) {
        let retry_at = std::time::Instant::now() + Duration::from_secs(5);
        self.refresh_at = retry_at.min(self.expires_at).max(self.refresh_at);
    }

    fn fresh(&self) -> bool {
        std::time::Instant::now() < self.refresh_at
    }
}

/// Async locks by key, made on first use.
type Locks<K> = std::sync::Mutex<HashMap<K, Arc<Mutex<()>>>>;

#[derive(Clone)]
pub struct RegistryClient {
    inner: Arc<Inner>,
}

struct Inner {
    /// One client, so one connection pool per registry: [`Watch`] bounds the wait for an
    /// answer, [`crate::watch::chunk_within`] and [`crate::watch::Paced`] the pauses in its
    /// body (no read timeout, which would count an upload's own sending time).
    http: reqwest::Client,
    opts: ClientOptions,
    auth: Mutex<HashMap<String, RegistryAuth>>,
    /// One lock per registry not yet talked to: the first request learns whether (and how)
    /// it wants credentials while the others wait, instead of all being refused with a 401
    /// and sent twice.
    probes: Locks<String>,
    /// One lock per (registry, token scope): requests that need a token nobody has yet
    /// wait for one fetch instead of each fetching its own.
    token_fetches: Locks<(String, String)>,
    overrides: std::sync::Mutex<HashMap<String, Credential>>,
    counters: Counters,
    progress: std::sync::Mutex<Option<indicatif::ProgressBar>>,
    /// The last retry said, per registry: the same failure at the same attempt for many
    /// blobs at once (a registry down in the middle of a push) is said once, not per blob.
    last_notice: std::sync::Mutex<HashMap<String, (String, std::time::Instant)>>,
    /// One permit per blob transfer in flight (`max_concurrency`), shared by every copy and
    /// push of this client, so concurrent builds do not multiply the bound.
    transfers: Arc<tokio::sync::Semaphore>,
    /// The most transfer slots ever in use at once (tests prove the bound with it).
    transfers_peak: std::sync::atomic::AtomicUsize,
    /// Which scheme each plain-HTTP-first registry (loopback, insecure) turned out to speak.
    schemes: std::sync::Mutex<HashMap<String, Scheme>>,
    /// Where blobs were seen ([`ClientOptions::blob_locations`]).
    locations: Option<crate::blob_locations::BlobLocations>,
    /// Per remembered mount (registry, target repository, source repository) asked: how
    /// the registry answered. A refused one is not asked again by this client: each
    /// refusal costs two requests and a token.
    mount_sources: std::sync::Mutex<HashMap<MountKey, MountAnswer>>,
    /// One lock per remembered mount not yet answered: the blobs of a copy ask one at a
    /// time until the first answer says whether they may.
    mount_trials: Locks<MountKey>,
}

/// (registry, target repository, source repository) of a mount from a remembered place:
/// a refusal may be about either repository, so it holds for that pair only.
type MountKey = (String, String, String);

/// How a registry answered a mount from a remembered repository.
#[derive(Clone, Copy, PartialEq, Eq)]
enum MountAnswer {
    /// Mounted, or declined with an upload session: others may ask too.
    Answers,
    /// Refused (the credentials may not pull there, or the registry takes no mounts).
    Refuses,
}

/// What a registry that hoist first talks plain HTTP to was found to speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scheme {
    /// It answered over plain HTTP: nothing more to check.
    Http,
    /// It answered that it speaks TLS: HTTPS for the rest of the client's life.
    Https,
}

/// What the first plain HTTP answer of a registry says about it (see `says_tls`).
enum PlainAnswer {
    /// It speaks plain HTTP: the answer, to use.
    Plain(Response),
    /// It said it speaks TLS.
    Tls,
    /// A 400 without a body: it may be a TLS server's answer to a HEAD.
    Unsure(Response),
}

/// What TLS servers answer a plain HTTP request with: Go's (the CNCF registry, Harbor,
/// Zot) and nginx's.
const TLS_ONLY_ANSWERS: [&str; 2] = [
    "Client sent an HTTP request to an HTTPS server",
    "The plain HTTP request was sent to HTTPS port",
];

/// A registry named with `--insecure-registry` or `HOIST_INSECURE_REGISTRIES`, as
/// HOST[:PORT]: an `http://` scheme and a trailing `/` are dropped (it is what a URL of the
/// registry looks like). An `https://` one is refused: insecure means plain HTTP.
pub fn insecure_registry(s: &str) -> Result<String> {
    let t = s.trim();
    if t.len() >= 8 && t[..8].eq_ignore_ascii_case("https://") {
        return Err(Error::Invalid(format!(
            "insecure registry {t:?}: an insecure registry is one reached over plain HTTP, so \
             it takes no https:// (set by --insecure-registry or HOIST_INSECURE_REGISTRIES)\n\
             hint: give HOST[:PORT]; for an HTTPS registry with a private CA use --ca-file FILE"
        )));
    }
    let t = if t.len() >= 7 && t[..7].eq_ignore_ascii_case("http://") {
        &t[7..]
    } else {
        t
    };
    let t = t.trim_end_matches('/');
    if t.is_empty() || t.contains(['/', ' ']) {
        return Err(Error::Invalid(format!(
            "insecure registry {s:?}: expected HOST[:PORT] (set by --insecure-registry or \
             HOIST_INSECURE_REGISTRIES)"
        )));
    }
    Ok(t.to_string())
}

/// Does a registry get plain HTTP? Loopback always; others only when named insecure.
pub fn is_insecure(registry: &str, insecure: &[String]) -> bool {
    let host = if let Some(rest) = registry.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        registry.rsplit_once(':').map_or(registry, |(h, _)| h)
    };
    host == "localhost"
        || host == "::1"
        || host.starts_with("127.")
        || insecure.iter().any(|i| i == registry || i == host)
}

impl RegistryClient {
    pub fn new(mut opts: ClientOptions) -> Result<Self> {
        install_crypto_provider();
        opts.insecure = (opts.insecure.iter())
            .map(|i| insecure_registry(i))
            .collect::<Result<_>>()?;
        let mut extra_roots = vec![];
        if let Some(ca) = &opts.ca_file {
            let pem = std::fs::read(ca).ctx(|| format!("reading CA file {}", ca.display()))?;
            extra_roots = crate::tls::pem_certificates(&pem, &ca.display().to_string())?;
        }
        let tls = crate::tls::client_config(extra_roots)?;
        let http = reqwest::Client::builder()
            .user_agent(concat!("hoist/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(15))
            .pool_max_idle_per_host(16)
            .tls_backend_preconfigured(tls)
            .build()
            .map_err(|e| Error::Tls(e.to_string()))?;
        let transfers = Arc::new(tokio::sync::Semaphore::new(opts.max_concurrency.max(1)));
        let locations =
            (opts.blob_locations.as_ref()).map(crate::blob_locations::BlobLocations::new);
        Ok(Self {
            inner: Arc::new(Inner {
                transfers,
                transfers_peak: Default::default(),
                http,
                opts,
                auth: Mutex::new(HashMap::new()),
                probes: Default::default(),
                token_fetches: Default::default(),
                overrides: Default::default(),
                counters: Counters::default(),
                progress: Default::default(),
                last_notice: Default::default(),
                schemes: Default::default(),
                locations,
                mount_sources: Default::default(),
                mount_trials: Default::default(),
            }),
        })
    }

    pub fn counters(&self) -> CounterSnapshot {
        self.inner.counters.snapshot()
    }

    pub fn options(&self) -> &ClientOptions {
        &self.inner.opts
    }

    /// A bound for the tasks of one copy or push: twice the transfer slots, so that while
    /// `max_concurrency` blobs move, as many more are probed (or mounted) and wait with
    /// their upload sessions open; a slot that frees then starts sending without a round
    /// trip. At most `max_concurrency` sessions per copy wait like this, each for no longer
    /// than a transfer.
    pub fn blob_task_limit(&self) -> Arc<tokio::sync::Semaphore> {
        Arc::new(tokio::sync::Semaphore::new(
            2 * self.inner.opts.max_concurrency.max(1),
        ))
    }

    /// Wait for a transfer slot (see [`ClientOptions::max_concurrency`]). A streamed
    /// upload hands it to its body, which frees it after the last byte: the next blob
    /// starts while the registry still commits this one.
    pub(crate) async fn transfer_slot(&self) -> tokio::sync::OwnedSemaphorePermit {
        let slot = self
            .inner
            .transfers
            .clone()
            .acquire_owned()
            .await
            .expect("the transfer semaphore is never closed");
        let in_use = (self.inner.opts.max_concurrency.max(1))
            .saturating_sub(self.inner.transfers.available_permits());
        self.inner
            .transfers_peak
            .fetch_max(in_use, Ordering::Relaxed);
        slot
    }

    /// The most blob transfers this client ever had in flight at once.
    pub fn peak_transfers(&self) -> usize {
        self.inner.transfers_peak.load(Ordering::Relaxed)
    }

    /// Show transferred bytes on this bar (callers create it only on a TTY).
    pub fn set_progress(&self, bar: Option<indicatif::ProgressBar>) {
        *self.inner.progress.lock().unwrap() = bar;
    }

    pub(crate) fn progress(&self, n: u64) {
        if let Some(b) = self.inner.progress.lock().unwrap().as_ref() {
            b.inc(n);
        }
    }

    /// The bar a transfer attempt counts its bytes on as they go (see [`crate::progress`]).
    pub(crate) fn sent(&self) -> crate::progress::Sent {
        crate::progress::Sent::new(
            self.inner.progress.lock().unwrap().clone(),
            self.inner.counters.resent_bytes.clone(),
        )
    }

    /// Say that `what` on `r`'s registry is tried again after `e`: above the progress bar
    /// on a terminal, otherwise as a warning on stderr (a retry should never be silent:
    /// the bar may go back, and the command takes longer).
    fn notice(&self, r: &Reference, what: &str, why: &str, b: &Backoff, delay: Duration) {
        add(&self.inner.counters.retries, 1);
        // A silent registry is asked fewer times (each wait is the whole timeout).
        let (attempt, of) = if b.last_silent {
            (b.silent + 1, SILENT_ATTEMPTS)
        } else {
            (b.attempt + 1, self.inner.opts.retries + 1)
        };
        let key = format!("{why} ({attempt}/{of})");
        {
            let mut last = self.inner.last_notice.lock().unwrap();
            let said = last
                .get(&r.registry)
                .is_some_and(|(k, at)| *k == key && at.elapsed() < Duration::from_secs(1));
            last.insert(r.registry.clone(), (key, std::time::Instant::now()));
            if said {
                return;
            }
        }
        let msg = format!(
            "registry {}: {why} ({}); retrying in {} ({attempt}/{of})",
            r.registry,
            short_digests(what),
            crate::watch::secs(delay),
        );
        self.say(msg);
    }

    /// Show what the command does before its transfers start.
    pub(crate) fn progress_working(&self, what: impl FnOnce() -> String) {
        if let Some(b) = self.inner.progress.lock().unwrap().as_ref() {
            crate::progress::working(b, what());
        }
    }

    /// A command expects to move `bytes` more (blobs it may have to send or fetch).
    pub(crate) fn plan_bytes(&self, bytes: u64) {
        if let Some(b) = self.inner.progress.lock().unwrap().as_ref() {
            crate::progress::plan(b, bytes);
        }
    }

    /// A planned blob of `size` bytes ended as `outcome`: unless it was transferred (it was
    /// there already, or mounted), its bytes leave the plan.
    pub(crate) fn settle_plan(&self, outcome: BlobOutcome, size: u64) {
        if outcome == BlobOutcome::Uploaded {
            return;
        }
        if let Some(b) = self.inner.progress.lock().unwrap().as_ref() {
            crate::progress::unplan(b, size);
        }
    }

    /// Use these credentials for `registry` instead of the Docker config (login checks).
    pub fn set_credential(&self, registry: &str, cred: Credential) {
        self.inner
            .overrides
            .lock()
            .unwrap()
            .insert(registry.to_string(), cred);
    }

    pub fn base_url(&self, r: &Reference) -> String {
        let o = &self.inner.opts;
        let scheme = if is_insecure(&r.registry, &o.insecure)
            && !o.tls_loopback.contains(&r.registry)
            && self.scheme(&r.registry) != Some(Scheme::Https)
        {
            "http"
        } else {
            "https"
        };
        format!("{scheme}://{}", r.api_host())
    }

    /// `…/v2/REPO/manifests/TAG-OR-DIGEST` for `r`.
    fn manifest_url(&self, r: &Reference) -> String {
        format!(
            "{}/v2/{}/manifests/{}",
            self.base_url(r),
            r.repository,
            r.reference()
        )
    }

    fn scheme(&self, registry: &str) -> Option<Scheme> {
        self.inner.schemes.lock().unwrap().get(registry).copied()
    }

    fn set_scheme(&self, registry: &str, scheme: Scheme) {
        (self.inner.schemes.lock().unwrap()).insert(registry.to_string(), scheme);
    }

    /// `url` (made before `registry` was found to speak TLS, or given as an upload
    /// Location) with the scheme the registry speaks.
    fn current_url(&self, registry: &str, url: &str) -> String {
        match url.strip_prefix("http://") {
            Some(rest) if self.scheme(registry) == Some(Scheme::Https) => {
                format!("https://{rest}")
            }
            _ => url.to_string(),
        }
    }

    /// The first answer over plain HTTP from a registry hoist talks HTTP to first: does it
    /// say that it speaks TLS? Go's and nginx's TLS servers answer so with a 400, whose
    /// body is read to tell; any other answer is handed back (rebuilt around the body
    /// read, for a 400). A 400 without a body (the answer to a HEAD never has one) cannot
    /// tell: [`PlainAnswer::Unsure`].
    async fn says_tls(&self, registry: &str, resp: Response) -> PlainAnswer {
        if resp.status() != StatusCode::BAD_REQUEST {
            self.set_scheme(registry, Scheme::Http);
            return PlainAnswer::Plain(resp);
        }
        let (status, version, headers) = (resp.status(), resp.version(), resp.headers().clone());
        let body = tokio::time::timeout(Duration::from_secs(5), resp.bytes())
            .await
            .ok()
            .and_then(|b| b.ok())
            .unwrap_or_default();
        let text = String::from_utf8_lossy(&body);
        if TLS_ONLY_ANSWERS.iter().any(|t| text.contains(t)) {
            return PlainAnswer::Tls;
        }
        let unsure = body.is_empty();
        if !unsure {
            self.set_scheme(registry, Scheme::Http);
        }
        let mut rebuilt = http::Response::new(body);
        *rebuilt.status_mut() = status;
        *rebuilt.version_mut() = version;
        *rebuilt.headers_mut() = headers;
        let resp = Response::from(rebuilt);
        if unsure {
            PlainAnswer::Unsure(resp)
        } else {
            PlainAnswer::Plain(resp)
        }
    }

    /// `registry` speaks TLS where hoist tried plain HTTP first: HTTPS from now on.
    fn switch_to_https(&self, registry: &str, why: &str) {
        tracing::debug!(%registry, why, "the registry speaks TLS: using HTTPS for it from now on");
        self.set_scheme(registry, Scheme::Https);
    }

    async fn lookup(&self, registry: &str) -> Result<Lookup> {
        if let Some(c) = self.inner.overrides.lock().unwrap().get(registry) {
            return Ok(Lookup {
                credential: Some(c.clone()),
                description: "credentials given on the command line".into(),
            });
        }
        auth::lookup(registry).await
    }

    async fn auth_header(&self, r: &Reference, scope: &str) -> Option<HeaderValue> {
        let map = self.inner.auth.lock().await;
        let a = map.get(&r.registry)?;
        match a.challenge.as_ref()? {
            Challenge::Basic => match a.lookup.as_ref()?.credential.as_ref()? {
                Credential::Basic { username, password } => HeaderValue::from_str(&format!(
                    "Basic {}",
                    B64.encode(format!("{username}:{password}"))
                ))
                .ok(),
                Credential::IdentityToken(_) => None,
            },
            Challenge::Bearer { .. } => a
                .tokens
                .get(scope)
                .and_then(|t| HeaderValue::from_str(&format!("Bearer {}", t.value)).ok()),
        }
    }

    /// For a registry known to want bearer tokens, get `scope`'s token before the request
    /// rather than after a 401 for it, once for all the requests that need it meanwhile;
    /// again when the one held is about to expire.
    async fn ensure_token(&self, r: &Reference, scope: &str) -> Result<()> {
        let has_token = |a: &RegistryAuth| a.tokens.get(scope).is_some_and(Token::fresh);
        let (realm, service, lookup) = {
            let map = self.inner.auth.lock().await;
            match map.get(&r.registry) {
                Some(a) if !has_token(a) => match (&a.challenge, &a.lookup) {
                    (Some(Challenge::Bearer { realm, service }), Some(l)) => {
                        (realm.clone(), service.clone(), l.clone())
                    }
                    _ => return Ok(()),
                },
                _ => return Ok(()),
            }
        };
        let lock = (self.inner.token_fetches.lock().unwrap())
            .entry((r.registry.clone(), scope.to_string()))
            .or_default()
            .clone();
        let _fetching = lock.lock().await;
        let held = {
            let map = self.inner.auth.lock().await;
            match map.get(&r.registry) {
                Some(a) if has_token(a) => return Ok(()),
                Some(a) => a.tokens.contains_key(scope),
                None => false,
            }
        };
        let token = match self
            .fetch_token(r, &realm, service.as_deref(), scope, &lookup)
            .await
        {
            Ok(t) => t,
            // A renewal that failed while the token held may still be good (it is renewed
            // early): the registry judges it, and if it refuses it, the fetch after that
            // 401 is the error to show.
            Err(e) if held => {
                tracing::debug!(registry = %r.registry, scope, error = %e, "renewing a bearer token failed: using the one held");
                let mut map = self.inner.auth.lock().await;
                if let Some(t) = map
                    .get_mut(&r.registry)
                    .and_then(|a| a.tokens.get_mut(scope))
                {
                    t.renewal_failed();
                }
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let mut map = self.inner.auth.lock().await;
        let a = map.entry(r.registry.clone()).or_default();
        a.tokens.insert(scope.to_string(), token);
        Ok(())
    }

    /// React to a 401: remember the challenge, find credentials, fetch a token if bearer.
    async fn authenticate(&self, r: &Reference, scope: &str, www: Option<&str>) -> Result<()> {
        let challenge = www.and_then(parse_challenge);
        let lookup = {
            let map = self.inner.auth.lock().await;
            map.get(&r.registry).and_then(|a| a.lookup.clone())
        };
        let lookup = match lookup {
            Some(l) => l,
            None => self.lookup(&r.registry).await?,
        };
        let mut token = None;
        if let Some(Challenge::Bearer { realm, service }) = &challenge {
            token = Some(
                self.fetch_token(r, realm, service.as_deref(), scope, &lookup)
                    .await?,
            );
        }
        let mut map = self.inner.auth.lock().await;
        let a = map.entry(r.registry.clone()).or_default();
        a.lookup = Some(lookup);
        a.challenge = challenge;
        if let Some(t) = token {
            a.tokens.insert(scope.to_string(), t);
        }
        Ok(())
    }

    async fn fetch_token(
        &self,
        r: &Reference,
        realm: &str,
        service: Option<&str>,
        scope: &str,
        lookup: &Lookup,
    ) -> Result<Token> {
        let mut url = reqwest::Url::parse(realm).map_err(|e| {
            Error::Invalid(format!(
                "{} sent an invalid token realm {realm:?}: {e}",
                r.registry
            ))
        })?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = service {
                q.append_pair("service", s);
            }
            for s in scope.split(' ').filter(|s| !s.is_empty()) {
                q.append_pair("scope", s);
            }
            // As Docker sends it: token servers may check it against the Basic user.
            if let Some(Credential::Basic { username, .. }) = &lookup.credential {
                q.append_pair("account", username);
            }
        }
        let req = match &lookup.credential {
            Some(Credential::IdentityToken(t)) => {
                let mut form = vec![
                    ("grant_type", "refresh_token".to_string()),
                    ("refresh_token", t.clone()),
                    ("client_id", "hoist".into()),
                ];
                if let Some(s) = service {
                    form.push(("service", s.into()));
                }
                if !scope.is_empty() {
                    form.push(("scope", scope.into()));
                }
                let body = form
                    .iter()
                    .map(|(k, v)| format!("{k}={}", urlencode(v)))
                    .collect::<Vec<_>>()
                    .join("&");
                self.inner
                    .http
                    .post(realm)
                    .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(body)
            }
            Some(Credential::Basic { username, password }) => self
                .inner
                .http
                .get(url.clone())
                .basic_auth(username, Some(password)),
            None => self.inner.http.get(url.clone()),
        };
        let asked = std::time::Instant::now();
        let resp = (self.exchange(req, &Watch::start()).await)
            .map_err(|f| self.failed(r, url.as_str(), f))?;
        add(&self.inner.counters.requests, 1);
        match resp.status() {
            s if s.is_success() => {}
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                return Err(Error::Unauthorized {
                    registry: r.registry.clone(),
                    url: url.to_string(),
                    lookup: lookup.description.clone(),
                    sent: lookup.credential.is_some(),
                    token_server: true,
                });
            }
            s => return Err(http_error(r, "GET", url.as_str(), s, resp).await),
        }
        let body = self.read_body(r, url.as_str(), resp).await?;
        let v: serde_json::Value = serde_json::from_slice(&body).map_err(|source| Error::Json {
            what: crate::error::without_query(url.as_str()).to_string(),
            source,
        })?;
        // The spec allows either name, or both (then the same token).
        let value = (v.get("token").and_then(|t| t.as_str()))
            .filter(|t| !t.is_empty())
            .or_else(|| v.get("access_token").and_then(|t| t.as_str()))
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "the token server of {} ({}) returned no token (neither `token` nor `access_token`)",
                    r.registry,
                    crate::error::without_query(url.as_str())
                ))
            })?;
        let expires_in = v.get("expires_in").and_then(|e| e.as_u64());
        Ok(Token::new(value.to_string(), asked, expires_in))
    }

    /// Send with auth and retries. `scope` is the token scope this request needs.
    async fn send(
        &self,
        r: &Reference,
        scope: &str,
        method: Method,
        url: &str,
        headers: HeaderMap,
        body: Option<Bytes>,
    ) -> Result<Response> {
        let retries = self.inner.opts.retries;
        self.send_with(r, scope, method, url, headers, body, retries)
            .await
    }

    /// [`RegistryClient::send`] with `retries` of its own: 0 for the requests into an
    /// upload session (chunks, the closing PUT), which are retried from a fresh session
    /// instead ([`session_failed`]).
    #[allow(clippy::too_many_arguments)]
    async fn send_with(
        &self,
        r: &Reference,
        scope: &str,
        method: Method,
        url: &str,
        headers: HeaderMap,
        body: Option<Bytes>,
        retries: u32,
    ) -> Result<Response> {
        // Until this registry's authentication is known, requests to it go one at a time:
        // one learns the challenge (and fetches a token) for the others.
        let mut probe = None;
        if !self.auth_known(&r.registry).await {
            let lock = self
                .inner
                .probes
                .lock()
                .unwrap()
                .entry(r.registry.clone())
                .or_default()
                .clone();
            let guard = lock.lock_owned().await;
            if !self.auth_known(&r.registry).await {
                probe = Some(guard);
            }
        }
        let mut authed = false;
        let budget = Budget::current_or_new(&self.inner.opts);
        self.ensure_token(r, scope).await?;
        let mut url = self.current_url(&r.registry, url);
        // A plain HTTP attempt that failed (or got a 400 that cannot tell) on a registry not
        // known to speak it, kept while the same request tries HTTPS (some TLS servers just
        // close such a connection; the answer to a HEAD has no body to read).
        let mut plain_attempt: Option<std::result::Result<Response, Failure>> = None;
        let mut tls_tried = false;
        loop {
            let url_str = url.as_str();
            let mut req = (self.inner.http)
                .request(method.clone(), url_str)
                .headers(headers.clone());
            let sent = self.auth_header(r, scope).await;
            if let Some(h) = &sent {
                req = req.header(header::AUTHORIZATION, h.clone());
            }
            let watch = Watch::start();
            if let Some(b) = &body {
                let b = Watched::new(reqwest::Body::from(b.clone()), watch.clone());
                req = req.body(reqwest::Body::wrap(b));
            }
            add(&self.inner.counters.requests, 1);
            budget.with(|b| b.requests += 1);
            let exchange = self.exchange(req, &watch);
            let mut result = self
                .saying_still_waiting(r, &method, url_str, &watch, exchange)
                .await;
            // HTTP first for loopback and insecure registries (the common case, and no extra
            // round trip), until the first answer says whether the registry speaks it.
            if url.starts_with("http://") && self.scheme(&r.registry).is_none() {
                match result {
                    Ok(resp) => match self.says_tls(&r.registry, resp).await {
                        PlainAnswer::Plain(resp) => result = Ok(resp),
                        PlainAnswer::Tls => {
                            self.switch_to_https(
                                &r.registry,
                                "it answered HTTP with a 400 saying so",
                            );
                            url = self.current_url(&r.registry, &url);
                            continue;
                        }
                        PlainAnswer::Unsure(resp) if !tls_tried => {
                            tracing::debug!(%url, "plain HTTP got a 400 without a body: trying HTTPS once");
                            tls_tried = true;
                            plain_attempt = Some(Ok(resp));
                            url = format!("https://{}", &url["http://".len()..]);
                            continue;
                        }
                        PlainAnswer::Unsure(resp) => result = Ok(resp),
                    },
                    Err(Failure::Failed(e)) if !e.is_connect() && !tls_tried => {
                        tracing::debug!(%url, error = %e, "plain HTTP failed after connecting: trying HTTPS once");
                        tls_tried = true;
                        plain_attempt = Some(Err(Failure::Failed(e)));
                        url = format!("https://{}", &url["http://".len()..]);
                        continue;
                    }
                    other => result = other,
                }
            } else if let Some(plain) = plain_attempt.take() {
                match &result {
                    Ok(_) => self.switch_to_https(
                        &r.registry,
                        "plain HTTP could not tell and HTTPS answered",
                    ),
                    Err(_) => {
                        // Not TLS either: the plain HTTP answer (or failure) is the one to
                        // report (or retry), over plain HTTP; an answer settles it.
                        url = format!("http://{}", &url["https://".len()..]);
                        if plain.is_ok() {
                            self.set_scheme(&r.registry, Scheme::Http);
                        }
                        result = plain;
                    }
                }
            }
            let url_str = url.as_str();
            let retry = match &result {
                Ok(resp) => {
                    let s = resp.status();
                    (s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS).then(|| {
                        let asked = retry_after(resp);
                        budget.with(|b| b.next_at_least(retries, asked))
                    })
                }
                Err(Failure::Silent) => Some(budget.with(|b| b.next_after_silence(retries))),
                Err(Failure::Failed(e)) => ((e.is_connect() || e.is_request() || e.is_body())
                    && !crate::error::is_tls_failure(e))
                .then(|| budget.with(|b| b.next(retries))),
            };
            // The path names the blob or manifest; the registry is named beside it.
            let what = || {
                let Ok(u) = reqwest::Url::parse(url_str) else {
                    return format!("{method} {url_str}");
                };
                // An upload's URL names its blob in the query (mount probe, closing PUT).
                let blob = (u.query_pairs())
                    .find(|(k, _)| k == "mount" || k == "digest")
                    .map(|(_, d)| format!(" for blob {d}"))
                    .unwrap_or_default();
                format!("{method} {}{blob}", u.path())
            };
            match (retry, result) {
                (Some(Some(delay)), result) => {
                    let why = match &result {
                        Ok(resp) => format!("HTTP {}", resp.status()),
                        Err(Failure::Silent) => format!(
                            "no answer within {}",
                            crate::watch::secs(self.inner.opts.timeout)
                        ),
                        Err(Failure::Failed(e)) => crate::error::reason(e),
                    };
                    let backoff = budget.with(|b| b.clone());
                    tracing::debug!(%url, attempt = backoff.attempt, ?delay, "retrying after a server error, a dropped connection or silence");
                    self.notice(r, &what(), &why, &backoff, delay);
                    tokio::time::sleep(delay).await;
                    continue;
                }
                // Retried as often as allowed: say so (a silent registry says it its own way).
                (Some(None), Ok(resp)) => {
                    let e = http_error(r, method.as_str(), url_str, resp.status(), resp).await;
                    return Err(budget.with(|b| b.gave_up(what(), e)));
                }
                (Some(None), Err(Failure::Failed(e))) => {
                    let e = self.transport(r, url_str, e);
                    return Err(budget.with(|b| b.gave_up(what(), e)));
                }
                (_, r) => result = r,
            }
            let resp = result.map_err(|f| match f {
                Failure::Silent => {
                    let silent = budget.with(|b| b.silent);
                    self.no_answer(r, url_str, Silence::Answer, silent)
                }
                f => self.failed(r, url_str, f),
            })?;
            if resp.status() == StatusCode::UNAUTHORIZED {
                let www = resp
                    .headers()
                    .get(header::WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .map(String::from);
                if !authed && www.is_some() {
                    authed = true;
                    self.authenticate(r, scope, www.as_deref()).await?;
                    // The others need not wait for this request's answer: with Basic auth
                    // that is a password check (bcrypt) plus the request's own work.
                    drop(probe.take());
                    if self.auth_header(r, scope).await.is_some() {
                        continue;
                    }
                }
                let (lookup, have_credentials) = match self.looked_up(&r.registry).await {
                    Some(f) => f,
                    None => match self.lookup(&r.registry).await {
                        Ok(l) => (l.description, l.credential.is_some()),
                        Err(e) => (e.to_string(), false),
                    },
                };
                // A bearer token can be anonymous: only credentials behind it were refused.
                let sent = sent.is_some() && have_credentials;
                // A fresh token for these credentials that still lacks the access: the
                // token server accepted them but does not grant it; logging in again is
                // no help, so say what was denied.
                let params = www.as_deref().and_then(challenge_params);
                let param = |k: &str| params.as_ref().and_then(|(_, p)| p.get(k).cloned());
                if sent && authed && param("error").as_deref() == Some("insufficient_scope") {
                    return Err(Error::Denied {
                        registry: r.registry.clone(),
                        url: url_str.to_string(),
                        scope: param("scope").unwrap_or_else(|| scope.to_string()),
                        lookup,
                    });
                }
                return Err(Error::Unauthorized {
                    registry: r.registry.clone(),
                    url: url_str.to_string(),
                    lookup,
                    sent,
                    token_server: false,
                });
            }
            if resp.status() == StatusCode::FORBIDDEN {
                let lookup = (self.looked_up(&r.registry).await)
                    .map_or_else(|| "anonymous".into(), |(description, _)| description);
                return Err(Error::Forbidden {
                    registry: r.registry.clone(),
                    url: url_str.to_string(),
                    lookup,
                });
            }
            // Answered without a 401: what this registry wants is known now.
            self.inner
                .auth
                .lock()
                .await
                .entry(r.registry.clone())
                .or_default();
            return Ok(resp);
        }
    }

    /// Wait for `answer` (to `method` `url` on `r`'s registry, watched by `watch`), saying
    /// every [`still_waiting_every`] that the request sat still that it is still awaited: a
    /// wait of up to twice the timeout (a minute each by default) should not look like a
    /// hang in a CI log. A body still being sent is not waiting.
    async fn saying_still_waiting<T>(
        &self,
        r: &Reference,
        method: &Method,
        url: &str,
        watch: &Watch,
        answer: impl std::future::Future<Output = T>,
    ) -> T {
        tokio::pin!(answer);
        let every = still_waiting_every(self.inner.opts.timeout);
        loop {
            tokio::select! {
                biased;
                done = &mut answer => return done,
                _ = tokio::time::sleep(every) => {
                    let quiet = watch.quiet_for();
                    if quiet < every {
                        continue;
                    }
                    let path = reqwest::Url::parse(url).map(|u| u.path().to_string());
                    let msg = format!(
                        "registry {}: still waiting for an answer to {method} {} ({} so far; {}=SECONDS sets how long hoist waits)",
                        r.registry,
                        short_digests(path.as_deref().unwrap_or(url)),
                        crate::watch::secs(Duration::from_millis(quiet.as_millis() as u64 / 100 * 100)),
                        crate::watch::TIMEOUT_ENV,
                    );
                    self.say(msg);
                }
            }
        }
    }

    /// A line for the user: above the progress bar on a terminal, otherwise a warning on
    /// stderr.
    pub(crate) fn say(&self, msg: String) {
        match self.inner.progress.lock().unwrap().as_ref() {
            Some(bar) => bar.println(format!("warning: {msg}")),
            None => tracing::warn!("{msg}"),
        }
    }

    /// Send `req` and wait for the head of its answer, no longer than the timeout after its
    /// body stopped moving (at once for a request without a body; [`Watch`]).
    async fn exchange(
        &self,
        req: reqwest::RequestBuilder,
        watch: &Watch,
    ) -> std::result::Result<Response, Failure> {
        match watch.answer(req.send(), self.inner.opts.timeout).await {
            None => Err(Failure::Silent),
            Some(Ok(resp)) => Ok(resp),
            Some(Err(e)) => Err(Failure::Failed(e)),
        }
    }

    /// `r`'s registry stayed silent for the timeout at `url` (where: `silence`), `attempts`
    /// times.
    fn no_answer(&self, r: &Reference, url: &str, silence: Silence, attempts: u32) -> Error {
        Error::NoAnswer {
            registry: r.registry.clone(),
            url: url.to_string(),
            timeout: self.inner.opts.timeout,
            silence,
            attempts,
        }
    }

    /// What [`RegistryClient::exchange`] found wrong, as an error about `url` on `r`'s registry.
    fn failed(&self, r: &Reference, url: &str, f: Failure) -> Error {
        match f {
            Failure::Silent => self.no_answer(r, url, Silence::Answer, 1),
            Failure::Failed(source) => self.transport(r, url, source),
        }
    }

    /// All of the body of `resp`, the answer from `url` on `r`'s registry.
    async fn read_body(&self, r: &Reference, url: &str, resp: Response) -> Result<Bytes> {
        (crate::watch::read_within(resp, self.inner.opts.timeout).await)
            .map_err(|e| self.body_failed(r, url, e))
    }

    /// Reading the body of the answer from `url` on `r`'s registry stopped.
    fn body_failed(&self, r: &Reference, url: &str, e: crate::watch::BodyRead) -> Error {
        match e {
            crate::watch::BodyRead::Stalled => self.no_answer(r, url, Silence::AnswerBody, 1),
            crate::watch::BodyRead::Failed(source) => self.transport(r, url, source),
        }
    }

    /// Talking to `url` on `r`'s registry failed: the connection failed or was cut.
    fn transport(&self, r: &Reference, url: &str, source: reqwest::Error) -> Error {
        Error::Transport {
            registry: r.registry.clone(),
            url: url.to_string(),
            source,
        }
    }

    /// Where this client looked for `registry`'s credentials, and whether it found some; `None`
    /// if it has not looked yet.
    async fn looked_up(&self, registry: &str) -> Option<(String, bool)> {
        let auth = self.inner.auth.lock().await;
        let l = auth.get(registry)?.lookup.as_ref()?;
        Some((l.description.clone(), l.credential.is_some()))
    }

    /// Has `registry` answered a request yet (so its auth scheme is known)?
    async fn auth_known(&self, registry: &str) -> bool {
        self.inner.auth.lock().await.contains_key(registry)
    }

    /// `GET /v2/`: is the registry there, and do our credentials work?
    pub async fn ping(&self, r: &Reference) -> Result<()> {
        let url = format!("{}/v2/", self.base_url(r));
        let resp = self
            .send(r, "", Method::GET, &url, HeaderMap::new(), None)
            .await?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(http_error(r, "GET", &url, resp.status(), resp).await)
        }
    }

    pub async fn get_manifest(&self, r: &Reference) -> Result<RawManifest> {
        let what = format!("manifest {r}");
        self.retry_read(r, &what, || self.get_manifest_once(r))
            .await
    }

    /// Run `read` (a small download, read whole) again while its answer breaks off in a way
    /// worth retrying: the request itself is retried by `send`, not the body it answered.
    async fn retry_read<T, F, Fut>(&self, r: &Reference, what: &str, mut read: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        self.budgeted(async {
            loop {
                match read().await {
                    Err(e) if e.is_transient() => {
                        let delay = self.retry_or_give_up(r, what, e)?;
                        tokio::time::sleep(delay).await;
                    }
                    done => return done,
                }
            }
        })
        .await
    }

    /// Run `transfer` with one retry budget for all its requests (and their retries): the
    /// budget of the transfer this is part of, or a new one.
    async fn budgeted<T>(&self, transfer: impl std::future::Future<Output = T>) -> T {
        if BUDGET.try_with(|_| ()).is_ok() {
            return transfer.await;
        }
        BUDGET.scope(Budget::new(&self.inner.opts), transfer).await
    }

    async fn get_manifest_once(&self, r: &Reference) -> Result<RawManifest> {
        let reference = r.reference();
        let url = self.manifest_url(r);
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_static(media::ACCEPT));
        let resp = self
            .send(r, &pull_scope(&r.repository), Method::GET, &url, h, None)
            .await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Err(Error::ManifestUnknown {
                registry: r.registry.clone(),
                repository: r.repository.clone(),
                reference,
            });
        }
        if !resp.status().is_success() {
            return Err(http_error(r, "GET", &url, resp.status(), resp).await);
        }
        let ct = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(String::from);
        let header_digest = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|d| Digest::parse(d).ok());
        let bytes = self.read_body(r, &url, resp).await?;
        let raw = RawManifest::new(bytes.to_vec(), ct.as_deref())?;
        let expected = r.digest.clone().or(header_digest);
        if let Some(d) = expected
            && d != raw.digest
        {
            return Err(Error::DigestMismatch {
                what: format!("manifest of {r}"),
                expected: d.to_string(),
                actual: raw.digest.to_string(),
            });
        }
        Ok(raw)
    }

    /// Fetch a manifest and, for an index, the manifest for `platform`.
    /// Returns (image manifest, the index it came from).
    pub async fn resolve_image(
        &self,
        r: &Reference,
        platform: &Platform,
    ) -> Result<(RawManifest, Option<RawManifest>)> {
        let top = self.get_manifest(r).await?;
        match top.parse()? {
            Parsed::Image(_) => Ok((top, None)),
            Parsed::Index(idx) => {
                let d = idx.select(platform, &r.to_string())?;
                let child = self.get_manifest(&r.with_digest(d.digest.clone())).await?;
                Ok((child, Some(top)))
            }
        }
    }

    pub async fn put_manifest(&self, r: &Reference, raw: &RawManifest) -> Result<Digest> {
        let url = self.manifest_url(r);
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_str(&raw.media_type).map_err(|e| Error::Invalid(e.to_string()))?,
        );
        let resp = self
            .send(
                r,
                &push_scope(&r.repository, None),
                Method::PUT,
                &url,
                h,
                Some(Bytes::from(raw.bytes.clone())),
            )
            .await?;
        if !resp.status().is_success() {
            return Err(http_error(r, "PUT", &url, resp.status(), resp).await);
        }
        add(&self.inner.counters.manifest_puts, 1);
        Ok(raw.digest.clone())
    }

    /// `HEAD` a manifest: its digest if the registry has `r`, `None` if it does not. A
    /// registry that leaves out `Docker-Content-Digest` is asked with a `GET`.
    pub async fn manifest_digest(&self, r: &Reference) -> Result<Option<Digest>> {
        let url = self.manifest_url(r);
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_static(media::ACCEPT));
        let resp = self
            .send(r, &pull_scope(&r.repository), Method::HEAD, &url, h, None)
            .await?;
        match resp.status() {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => {
                let header = resp
                    .headers()
                    .get("docker-content-digest")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|d| Digest::parse(d).ok());
                match header {
                    Some(d) => Ok(Some(d)),
                    None => Ok(Some(self.get_manifest(r).await?.digest)),
                }
            }
            s => Err(http_error(r, "HEAD", &url, s, resp).await),
        }
    }

    /// `HEAD` a blob: does the repository already have it?
    pub async fn has_blob(&self, r: &Reference, d: &Digest) -> Result<bool> {
        self.head_blob(r, d, None).await
    }

    /// [`RegistryClient::has_blob`], where a blob whose `Content-Length` is not `size` is
    /// not there (a broken proxy or cache in between): asked after an upload seemed to
    /// fail, a wrong answer would lose the blob.
    async fn has_blob_of_size(&self, r: &Reference, d: &Digest, size: u64) -> Result<bool> {
        self.head_blob(r, d, Some(size)).await
    }

    /// `HEAD` blob `d`: there, not there (404), or an error; with `size`, a `Content-Length`
    /// of another size is "not there".
    async fn head_blob(&self, r: &Reference, d: &Digest, size: Option<u64>) -> Result<bool> {
        let url = format!("{}/v2/{}/blobs/{d}", self.base_url(r), r.repository);
        let scope = push_or_pull(r);
        let resp = (self.send(r, &scope, Method::HEAD, &url, HeaderMap::new(), None)).await?;
        match resp.status() {
            s if s.is_success() => {
                let Some(size) = size else { return Ok(true) };
                let length = (resp.headers().get(header::CONTENT_LENGTH))
                    .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
                if length.is_some_and(|n| n != size) {
                    tracing::debug!(%url, ?length, size, "HEAD says another size: not there");
                    return Ok(false);
                }
                Ok(true)
            }
            StatusCode::NOT_FOUND => Ok(false),
            s => Err(http_error(r, "HEAD", &url, s, resp).await),
        }
    }

    /// Download a blob and verify its digest; nothing is returned if it does not match.
    pub async fn get_blob(&self, r: &Reference, d: &Digest) -> Result<Bytes> {
        let what = format!("blob {d} of {}", r.name());
        let bytes = self
            .retry_read(r, &what, || self.get_blob_once(r, d))
            .await?;
        self.remember_blob(r, d);
        Ok(bytes)
    }

    async fn get_blob_once(&self, r: &Reference, d: &Digest) -> Result<Bytes> {
        let url = format!("{}/v2/{}/blobs/{d}", self.base_url(r), r.repository);
        let resp = self
            .send(
                r,
                &pull_scope(&r.repository),
                Method::GET,
                &url,
                HeaderMap::new(),
                None,
            )
            .await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Err(Error::Http {
                registry: r.registry.clone(),
                method: "GET".into(),
                url,
                status: 404,
                body: format!("blob {d} is not in {}", r.repository),
            });
        }
        if !resp.status().is_success() {
            return Err(http_error(r, "GET", &url, resp.status(), resp).await);
        }
        let bytes = self.read_body(r, &url, resp).await?;
        d.verify(&bytes, &format!("blob {} of {}", d, r.name()))?;
        add(&self.inner.counters.blob_downloads, 1);
        add(&self.inner.counters.download_bytes, bytes.len() as u64);
        Ok(bytes)
    }

    /// Download a blob straight into `dest` (a temp file beside it, renamed only once the
    /// digest matches and it is the `size` its descriptor gives), without holding it in
    /// memory. Returns the size. A download cut short is retried, resumed with a `Range`
    /// request from the bytes already written (and hashed) when the registry honours it,
    /// from the start when it answers 200.
    pub async fn download_blob_to(
        &self,
        r: &Reference,
        d: &Digest,
        size: u64,
        dest: &std::path::Path,
    ) -> Result<u64> {
        let n = (self.budgeted(self.download_blob_to_budgeted(r, d, size, dest))).await?;
        self.remember_blob(r, d);
        Ok(n)
    }

    async fn download_blob_to_budgeted(
        &self,
        r: &Reference,
        d: &Digest,
        size: u64,
        dest: &std::path::Path,
    ) -> Result<u64> {
        let _slot = self.transfer_slot().await;
        let url = format!("{}/v2/{}/blobs/{d}", self.base_url(r), r.repository);
        let dir = dest.parent().unwrap_or(std::path::Path::new("."));
        let mut tmp = crate::layout::readable_temp_file(dir)?;
        let mut got = Fetched::new(self.sent());
        let what = format!("blob {d} of {}", r.name());
        let actual = loop {
            let e = match (self.download_into(r, d, size, &url, dest, &mut tmp, &mut got)).await {
                Ok(()) => {
                    let actual = Digest::from_hasher(got.hash.clone());
                    if &actual == d || !got.resumed {
                        break actual;
                    }
                    // Pieces that do not make the blob (a registry or a proxy in between
                    // that served the rest of something else): one more attempt, whole.
                    got.restart(&mut tmp)
                        .ctx(|| format!("writing {}", dest.display()))?;
                    Error::Interrupted {
                        what: format!("blob {d}"),
                        reason: format!(
                            "its resumed download hashes to {actual}; starting over from byte 0"
                        ),
                    }
                }
                Err(e) if e.is_transient() => e,
                Err(e) => return Err(e),
            };
            let delay = self.retry_or_give_up(r, &what, e)?;
            tokio::time::sleep(delay).await;
        };
        let Fetched { n, sent, .. } = got;
        if &actual != d {
            // `tmp` is deleted on drop: nothing lands.
            return Err(Error::DigestMismatch {
                what,
                expected: d.to_string(),
                actual: actual.to_string(),
            });
        }
        if n != size {
            // Right bytes, wrong descriptor: stored, the blob would fail every later read.
            return Err(Error::ManifestSizeWrong {
                image: r.to_string(),
                digest: d.to_string(),
                descriptor: size,
                actual: Some(n),
            });
        }
        tmp.persist(dest).map_err(|e| Error::Io {
            context: format!("writing {}", dest.display()),
            source: e.error,
        })?;
        sent.keep();
        add(&self.inner.counters.blob_downloads, 1);
        add(&self.inner.counters.download_bytes, n);
        Ok(n)
    }

    /// One attempt of [`RegistryClient::download_blob_to`]: GET `url` (from byte `got.n` on,
    /// if some came already) and append it to `tmp`, hashing it; never past `size`.
    #[allow(clippy::too_many_arguments)]
    async fn download_into(
        &self,
        r: &Reference,
        d: &Digest,
        size: u64,
        url: &str,
        dest: &std::path::Path,
        tmp: &mut tempfile::NamedTempFile,
        got: &mut Fetched,
    ) -> Result<()> {
        use sha2::Digest as _;
        use std::io::Write as _;
        if got.n > 0 && got.n == size {
            // Every byte came before the connection broke (a chunked body cut before its
            // end, or silent after its last byte): asking for more gets a 416. The digest
            // check decides.
            return Ok(());
        }
        let mut headers = HeaderMap::new();
        if got.n > 0 {
            let range = format!("bytes={}-", got.n);
            headers.insert(header::RANGE, HeaderValue::from_str(&range).expect("ascii"));
        }
        let mut resp = (self.send(
            r,
            &pull_scope(&r.repository),
            Method::GET,
            url,
            headers,
            None,
        ))
        .await?;
        match resp.status() {
            StatusCode::PARTIAL_CONTENT if got.n > 0 => {
                let from = format!("bytes {}-", got.n);
                let range = (resp.headers().get(header::CONTENT_RANGE))
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default();
                if !range.starts_with(&from) {
                    // Other bytes than asked for (a proxy or cache in between?): nothing of
                    // them is taken, and the next attempt asks for the whole blob.
                    let held = got.n;
                    got.restart(tmp)
                        .ctx(|| format!("writing {}", dest.display()))?;
                    return Err(Error::Interrupted {
                        what: format!("blob {d}"),
                        reason: format!(
                            "registry {} answered a request from byte {held} with the range {range:?}; starting over from byte 0",
                            r.registry
                        ),
                    });
                }
                got.resumed = true;
            }
            StatusCode::OK if got.n > 0 => {
                tracing::debug!(
                    url,
                    from = got.n,
                    "the registry does not resume: downloading again"
                );
                got.restart(tmp)
                    .ctx(|| format!("writing {}", dest.display()))?;
            }
            StatusCode::OK => {}
            // Nothing left from byte `got.n` of a blob of `got.n` bytes: it is all here.
            StatusCode::RANGE_NOT_SATISFIABLE
                if got.n > 0 && unsatisfied_length(&resp) == Some(got.n) =>
            {
                return Ok(());
            }
            s => return Err(http_error(r, "GET", url, s, resp).await),
        }
        let limit = self.inner.opts.timeout;
        while let Some(chunk) = (crate::watch::chunk_within(&mut resp, limit).await)
            .map_err(|e| self.body_failed(r, url, e))?
        {
            got.hash.update(&chunk);
            got.n += chunk.len() as u64;
            if got.n > size {
                // No end to wait for: more than the manifest gives is wrong already.
                return Err(Error::ManifestSizeWrong {
                    image: r.to_string(),
                    digest: d.to_string(),
                    descriptor: size,
                    actual: None,
                });
            }
            tmp.write_all(&chunk)
                .ctx(|| format!("writing {}", dest.display()))?;
            got.sent.add(chunk.len() as u64);
        }
        Ok(())
    }

    /// Ask the registry to mount `d` from `from` (same registry) into `r`.
    /// `Ok(Some(location))` when declined (202: upload there instead), `Ok(None)` when mounted.
    pub async fn mount_blob(
        &self,
        r: &Reference,
        d: &Digest,
        from: &str,
    ) -> Result<Option<String>> {
        let (url, resp) = self
            .post_upload(r, &format!("?mount={d}&from={from}"), Some(from))
            .await?;
        match resp.status() {
            StatusCode::CREATED => {
                add(&self.inner.counters.mounts, 1);
                Ok(None)
            }
            StatusCode::ACCEPTED => {
                add(&self.inner.counters.mounts_declined, 1);
                Ok(Some(self.location(r, &url, &resp)?))
            }
            s => Err(http_error(r, "POST", &url, s, resp).await),
        }
    }

    /// Whether `r` has blob `d` and, if not, an upload session for it, in one request where
    /// the registry allows: a mount from the repository itself (`POST ?mount=d&from=<same
    /// repository>`) answers 201 when the blob is there, and otherwise opens an upload (202),
    /// which is what the distribution spec asks of a registry that cannot mount. A registry
    /// that refuses such a request gets the usual `HEAD` + `POST`. Copying to a registry
    /// that lacks every blob is then one request fewer per blob; each one costs the
    /// destination a password check (bcrypt, with htpasswd auth).
    pub async fn probe_upload(&self, r: &Reference, d: &Digest) -> Result<Option<String>> {
        let query = format!("?mount={d}&from={}", r.repository);
        let (url, resp) = self.post_upload(r, &query, None).await?;
        match resp.status() {
            StatusCode::CREATED => Ok(None),
            StatusCode::ACCEPTED => Ok(Some(self.location(r, &url, &resp)?)),
            s if s.is_client_error() => {
                tracing::debug!(%url, status = %s, "mount probe refused: HEAD + POST instead");
                if self.has_blob(r, d).await? {
                    Ok(None)
                } else {
                    self.start_upload(r).await.map(Some)
                }
            }
            s => Err(http_error(r, "POST", &url, s, resp).await),
        }
    }

    /// `POST /v2/<repo>/blobs/uploads/<query>` (push scope, plus pull on `from` for a
    /// mount); the URL is returned for Location resolution and errors.
    async fn post_upload(
        &self,
        r: &Reference,
        query: &str,
        from: Option<&str>,
    ) -> Result<(String, Response)> {
        let url = format!(
            "{}/v2/{}/blobs/uploads/{query}",
            self.base_url(r),
            r.repository
        );
        let resp = self
            .send(
                r,
                &push_scope(&r.repository, from),
                Method::POST,
                &url,
                HeaderMap::new(),
                None,
            )
            .await?;
        Ok((url, resp))
    }

    fn location(&self, r: &Reference, url: &str, resp: &Response) -> Result<String> {
        let loc = resp
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "{}: upload response to {url} has no Location",
                    r.registry
                ))
            })?;
        let url = self.current_url(&r.registry, url);
        let base = reqwest::Url::parse(&url).map_err(|e| Error::Invalid(e.to_string()))?;
        Ok(base
            .join(loc)
            .map_err(|e| Error::Invalid(format!("bad upload Location {loc:?}: {e}")))?
            .to_string())
    }

    async fn start_upload(&self, r: &Reference) -> Result<String> {
        let (url, resp) = self.post_upload(r, "", None).await?;
        if resp.status() != StatusCode::ACCEPTED {
            return Err(http_error(r, "POST", &url, resp.status(), resp).await);
        }
        self.location(r, &url, &resp)
    }

    /// Upload a blob (monolithic, or chunked above `chunk_size`), into a session or a new
    /// one; retried from a fresh session when it fails on the way.
    pub async fn upload_blob(
        &self,
        r: &Reference,
        d: &Digest,
        data: Bytes,
        session: Option<String>,
    ) -> Result<()> {
        let what = format!("blob {d}");
        let size = data.len() as u64;
        self.retry_transfer(r, d, size, &what, session, |session| {
            self.upload_blob_once(r, d, data.clone(), session)
        })
        .await
    }

    async fn upload_blob_once(
        &self,
        r: &Reference,
        d: &Digest,
        data: Bytes,
        session: Option<String>,
    ) -> Result<()> {
        let _slot = self.transfer_slot().await;
        let mut loc = match session {
            Some(s) => s,
            None => self.start_upload(r).await?,
        };
        let scope = push_scope(&r.repository, None);
        let total = data.len() as u64;
        let mut body = data.clone();
        // What this attempt sent: counted as re-sent if it fails, which the HEAD finding
        // the blob landed after all takes back ([`RegistryClient::retry_transfer`]).
        let sent = self.sent();
        if let Some(chunk) = self.inner.opts.chunk_size.filter(|c| *c > 0 && total > *c) {
            let mut off = 0u64;
            while off < total {
                let end = (off + chunk).min(total);
                let mut h = HeaderMap::new();
                h.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/octet-stream"),
                );
                h.insert(
                    header::CONTENT_RANGE,
                    HeaderValue::from_str(&format!("{off}-{}", end - 1)).expect("ascii"),
                );
                let chunk = Some(data.slice(off as usize..end as usize));
                // Not retried into this session: a chunk whose answer was lost would be
                // appended twice (distribution ignores `Content-Range` on PATCH).
                let resp = (self
                    .send_with(r, &scope, Method::PATCH, &loc, h, chunk, 0)
                    .await)
                    .map_err(|e| session_failed(e, d, "sending a chunk"))?;
                if resp.status() != StatusCode::ACCEPTED {
                    return Err(session_error(r, d, "PATCH", &loc, resp).await);
                }
                loc = self.location(r, &loc, &resp)?;
                sent.add(end - off);
                off = end;
            }
            body = Bytes::new();
        }
        let sep = if loc.contains('?') { '&' } else { '?' };
        let url = format!("{loc}{sep}digest={d}");
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        // Counted before it goes: an answer lost after the registry took it all is what
        // the HEAD after the failure then finds.
        sent.add(body.len() as u64);
        let resp = (self
            .send_with(r, &scope, Method::PUT, &url, h, Some(body), 0)
            .await)
            .map_err(|e| session_failed(e, d, "closing its upload"))?;
        if resp.status() != StatusCode::CREATED {
            return Err(session_error(r, d, "PUT", &url, resp).await);
        }
        sent.keep();
        add(&self.inner.counters.blob_uploads, 1);
        add(&self.inner.counters.upload_bytes, total);
        Ok(())
    }

    /// Make sure `target` has blob `d` ([`RegistryClient::open_upload`]), uploading the
    /// bytes `fetch` produces if it is missing. Returns what happened.
    pub async fn ensure_blob<F, Fut>(
        &self,
        target: &Reference,
        d: &Digest,
        mount_from: Option<&str>,
        fetch: F,
    ) -> Result<BlobOutcome>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Bytes>>,
    {
        // The probe, the fetch and the upload: one transfer, one retry budget.
        self.budgeted(async {
            let session = match self.open_upload(target, d, mount_from).await? {
                Opened::Done(outcome) => return Ok(outcome),
                Opened::Session(loc) => loc,
            };
            let data = fetch().await?;
            d.verify(&data, &format!("blob {d}"))?;
            self.upload_blob(target, d, data, Some(session)).await?;
            Ok(BlobOutcome::Uploaded)
        })
        .await
    }

    /// Whether `target` still needs blob `d` and, if so, the upload session to send it
    /// into. With `mount_from` (another repository of the same registry): HEAD, then a
    /// cross-repository mount, whose 202 opens the session. Otherwise the one-request
    /// [`RegistryClient::probe_upload`]; or, when the blob was seen in another repository
    /// of the registry ([`crate::blob_locations`]), HEAD and a mount from there: a mount
    /// never looks at the target, which may hold the blob already (pushed by someone else),
    /// and must then be neither sent again nor counted as mounted.
    async fn open_upload(
        &self,
        target: &Reference,
        d: &Digest,
        mount_from: Option<&str>,
    ) -> Result<Opened> {
        let opened = match mount_from.filter(|f| *f != target.repository) {
            Some(from) => match self.has_blob(target, d).await? {
                true => Opened::Done(BlobOutcome::Present),
                false => (self.mount_blob(target, d, from).await?)
                    .map_or(Opened::Done(BlobOutcome::Mounted), Opened::Session),
            },
            None => {
                // A copy within one repository reads the blob from the target itself.
                let remembered = match mount_from {
                    Some(_) => None,
                    None => self.remembered_repository(target, d),
                };
                let mounted = match remembered {
                    Some(_) if self.has_blob(target, d).await? => {
                        Some(Opened::Done(BlobOutcome::Present))
                    }
                    Some(from) => self.mount_remembered(target, d, &from).await?,
                    None => None,
                };
                match mounted {
                    Some(opened) => opened,
                    None => (self.probe_upload(target, d).await?)
                        .map_or(Opened::Done(BlobOutcome::Present), Opened::Session),
                }
            }
        };
        if let Opened::Done(_) = opened {
            self.remember_blob(target, d);
        }
        Ok(opened)
    }

    /// The repository to mount blob `d` into `target` from, by what this client remembers:
    /// the most recent one it was seen in on `target`'s registry that has not refused a
    /// mount into `target`. None when it was seen in `target` itself (the probe then finds
    /// it there).
    fn remembered_repository(&self, target: &Reference, d: &Digest) -> Option<String> {
        let repos = (self.inner.locations.as_ref()?).repositories(&target.registry, d);
        if repos.contains(&target.repository) {
            return None;
        }
        repos
            .into_iter()
            .find(|from| self.mount_answer(&mount_key(target, from)) != Some(MountAnswer::Refuses))
    }

    /// How a remembered mount `key` was answered, as far as this client knows.
    fn mount_answer(&self, key: &MountKey) -> Option<MountAnswer> {
        self.inner.mount_sources.lock().unwrap().get(key).copied()
    }

    /// Mount `d` into `target` from `from`, a repository it was seen in: `None` when the
    /// registry refused the request (the credentials may not pull `from`, or it takes no
    /// mounts), for the caller to probe as if nothing were remembered.
    async fn mount_remembered(
        &self,
        target: &Reference,
        d: &Digest,
        from: &str,
    ) -> Result<Option<Opened>> {
        let key = mount_key(target, from);
        // Until one answer is known, the others wait for it rather than each be refused
        // (the first request's retries, if the registry fails it, included).
        let _first = match self.mount_answer(&key) {
            Some(MountAnswer::Answers) => None,
            Some(MountAnswer::Refuses) => return Ok(None),
            None => {
                let lock = (self.inner.mount_trials.lock().unwrap())
                    .entry(key.clone())
                    .or_default()
                    .clone();
                let guard = lock.lock_owned().await;
                match self.mount_answer(&key) {
                    Some(MountAnswer::Answers) => None,
                    Some(MountAnswer::Refuses) => return Ok(None),
                    None => Some(guard),
                }
            }
        };
        let answered = |a: MountAnswer| {
            (self.inner.mount_sources.lock().unwrap()).insert(key.clone(), a);
        };
        match self.mount_blob(target, d, from).await {
            Ok(None) => {
                answered(MountAnswer::Answers);
                // It was there: keep that place fresh in the memory too.
                if let Some(m) = &self.inner.locations {
                    m.remember(&target.registry, d, from);
                }
                Ok(Some(Opened::Done(BlobOutcome::Mounted)))
            }
            Ok(Some(session)) => {
                answered(MountAnswer::Answers);
                Ok(Some(Opened::Session(session)))
            }
            Err(e) if mount_refused(&e) => {
                tracing::debug!(registry = %target.registry, from, error = %e, "mounting from where the blob was seen was refused: probing instead");
                answered(MountAnswer::Refuses);
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Remember that `r`'s repository holds blob `d` (when this client keeps such a
    /// memory): a later push or copy to another repository of the registry mounts it.
    fn remember_blob(&self, r: &Reference, d: &Digest) {
        if let Some(m) = &self.inner.locations {
            m.remember(&r.registry, d, &r.repository);
        }
    }
}

fn mount_key(target: &Reference, from: &str) -> MountKey {
    (
        target.registry.clone(),
        target.repository.clone(),
        from.to_string(),
    )
}

/// Is `e` a registry's refusal of a mount (auth, or another client error) rather than a
/// failure to reach it? Then the upload goes the way it would without the mount.
fn mount_refused(e: &Error) -> bool {
    match e {
        Error::Unauthorized { .. } | Error::Forbidden { .. } | Error::Denied { .. } => true,
        Error::Http { status, .. } => (400..500).contains(status) && *status != 429,
        _ => false,
    }
}

/// What a download has written and hashed so far, over its attempts.
struct Fetched {
    hash: sha2::Sha256,
    n: u64,
    sent: crate::progress::Sent,
    /// Whether some of it came by a `Range` request (and so may not fit what came before).
    resumed: bool,
}

impl Fetched {
    fn new(sent: crate::progress::Sent) -> Self {
        use sha2::Digest as _;
        Self {
            hash: sha2::Sha256::new(),
            n: 0,
            sent,
            resumed: false,
        }
    }

    /// Forget what came so far: the registry sends the blob from its first byte again.
    fn restart(&mut self, tmp: &mut tempfile::NamedTempFile) -> std::io::Result<()> {
        use sha2::Digest as _;
        use std::io::Seek as _;
        tmp.as_file_mut().set_len(0)?;
        tmp.as_file_mut().rewind()?;
        self.hash = sha2::Sha256::new();
        self.n = 0;
        self.resumed = false;
        self.sent.restart();
        Ok(())
    }
}

/// A request into an upload session (a chunk, or the closing PUT; `doing` says which)
/// failed: an interrupted transfer, to be sent again into a fresh session (the registry
/// may have restarted, and its sessions with it, or it may have taken a request whose
/// answer was lost), after a HEAD asks whether the blob landed
/// ([`RegistryClient::retry_transfer`]).
fn session_failed(e: Error, d: &Digest, doing: &str) -> Error {
    match e {
        Error::GaveUp { last, .. } if last.is_transient() => Error::Interrupted {
            what: format!("blob {d}"),
            reason: format!("{doing} failed: {}", retry_reason(&last)),
        },
        e => e,
    }
}

/// What [`RegistryClient::open_upload`] found.
enum Opened {
    /// Nothing to send: the blob is there (or was mounted).
    Done(BlobOutcome),
    /// Send the blob into this upload session.
    Session(String),
}

impl RegistryClient {
    /// Make sure `dst` has blob `d` (`size` bytes), taken from `src` without holding it in
    /// memory: on the same registry a cross-repository mount (elsewhere one from the
    /// repository of `dst`'s registry it was last seen in), otherwise (or if the
    /// registry declines it) a stream into the upload session
    /// [`RegistryClient::open_upload`] opened. Interrupted streams are retried with a fresh
    /// download and upload; bad content never is.
    pub async fn copy_blob(
        &self,
        src: &Reference,
        dst: &Reference,
        d: &Digest,
        size: u64,
    ) -> Result<BlobOutcome> {
        // The probe that opens the session draws from the transfer's budget too.
        self.budgeted(async {
            let same_registry = (src.registry == dst.registry).then_some(src.repository.as_str());
            let session = match self.open_upload(dst, d, same_registry).await? {
                Opened::Done(outcome) => return Ok(outcome),
                Opened::Session(loc) => loc,
            };
            let what = format!("blob {d} of {}", src.name());
            self.retry_transfer(dst, d, size, &what, Some(session), |session| {
                self.stream_blob_into(src, dst, d, size, session)
            })
            .await?;
            Ok(BlobOutcome::Uploaded)
        })
        .await
    }

    /// Run a transfer of blob `d` into `dst`, again (with a fresh upload session) while it
    /// fails in a way worth retrying. `session` is an upload already opened for the first
    /// attempt. Before each retry a HEAD asks whether the blob landed after all (the
    /// answer to its last request may be what was lost).
    async fn retry_transfer<F, Fut>(
        &self,
        dst: &Reference,
        d: &Digest,
        size: u64,
        what: &str,
        mut session: Option<String>,
        mut transfer: F,
    ) -> Result<()>
    where
        F: FnMut(Option<String>) -> Fut,
        Fut: std::future::Future<Output = Result<()>>,
    {
        self.budgeted(async {
            loop {
                let e = match transfer(session.take()).await {
                    Err(e) if e.is_transient() => e,
                    r => return r,
                };
                let delay = self.retry_or_give_up(dst, what, e)?;
                tokio::time::sleep(delay).await;
                // Its requests draw from the transfer's budget: a HEAD that fails is
                // retried within it, and ends the transfer only once it is used up.
                if !self.has_blob_of_size(dst, d, size).await? {
                    continue;
                }
                tracing::debug!(what, "the blob landed although its upload seemed to fail");
                // Its bytes went through once: sent, not re-sent (the failed attempt
                // counted them as lost).
                add(&self.inner.counters.blob_uploads, 1);
                add(&self.inner.counters.upload_bytes, size);
                let resent = &self.inner.counters.resent_bytes;
                let _ = resent.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                    Some(n.saturating_sub(size))
                });
                self.progress(size);
                return Ok(());
            }
        })
        .await
        // Once per blob sent, whatever its retries.
        .inspect(|()| self.remember_blob(dst, d))
    }

    /// After transient error `e` of a transfer (`what`, on `r`'s registry): the pause before
    /// trying again (said on the terminal or stderr), or the error to end with once the
    /// retries are used up, saying how many requests over how long.
    fn retry_or_give_up(&self, r: &Reference, what: &str, mut e: Error) -> Result<Duration> {
        let retries = self.inner.opts.retries;
        let budget = Budget::current_or_new(&self.inner.opts);
        let (delay, backoff) = budget.with(|b| {
            let delay = match e {
                // The request counted this silence in the budget already: counting it again
                // would end the transfer at its first silence.
                Error::NoAnswer {
                    silence: Silence::Answer,
                    ..
                } => match b.silent >= SILENT_ATTEMPTS {
                    true => None,
                    false => {
                        let pause = b.next(retries);
                        b.last_silent = true;
                        pause
                    }
                },
                // A silence inside a body: no request counted it.
                Error::NoAnswer { attempts, .. } => b.next_after(attempts, retries),
                _ => b.next(retries),
            };
            (delay, b.clone())
        });
        let Some(delay) = delay else {
            // Say how often it was asked, over every attempt of the transfer.
            if let Error::NoAnswer { attempts, .. } = &mut e {
                *attempts = backoff.silent;
                return Err(e);
            }
            return Err(backoff.gave_up(what.to_string(), e));
        };
        tracing::debug!(what, attempt = backoff.attempt, error = %e, ?delay, "retrying an interrupted transfer");
        self.notice(r, what, &retry_reason(&e), &backoff, delay);
        Ok(delay)
    }

    /// Stream blob `d` (`size` bytes) from `src` into `dst` without holding it in memory:
    /// the download is the upload's body. The digest is checked on the way, before the last
    /// byte goes out, so a mismatch aborts the upload (and the destination registry checks
    /// it again). One attempt; [`RegistryClient::copy_blob`] retries.
    pub async fn stream_blob(
        &self,
        src: &Reference,
        dst: &Reference,
        d: &Digest,
        size: u64,
    ) -> Result<()> {
        self.stream_blob_into(src, dst, d, size, None).await?;
        self.remember_blob(dst, d);
        Ok(())
    }

    /// [`RegistryClient::stream_blob`] into an upload `session` already opened, or a new one.
    async fn stream_blob_into(
        &self,
        src: &Reference,
        dst: &Reference,
        d: &Digest,
        size: u64,
        session: Option<String>,
    ) -> Result<()> {
        let slot = self.transfer_slot().await;
        let get_url = format!("{}/v2/{}/blobs/{d}", self.base_url(src), src.repository);
        let scope = pull_scope(&src.repository);
        let get = self.send(src, &scope, Method::GET, &get_url, HeaderMap::new(), None);
        let (resp, loc) = match session {
            Some(loc) => (get.await?, loc),
            None => tokio::try_join!(get, self.start_upload(dst))?,
        };
        if !resp.status().is_success() {
            return Err(http_error(src, "GET", &get_url, resp.status(), resp).await);
        }
        let what = format!("blob {d} of {}", src.name());
        let source = crate::watch::Paced::new(reqwest::Body::from(resp), self.inner.opts.timeout);
        let n = match self
            .put_source(dst, &loc, d, size, &what, source, slot)
            .await
        {
            // The download paused for the timeout: the source is the silent one.
            (Err(_), verdict) if verdict.get() == Some(Err(StreamFailure::Stalled)) => {
                return Err(self.no_answer(src, &get_url, Silence::AnswerBody, 1));
            }
            (r, _) => r?,
        };
        add(&self.inner.counters.blob_downloads, 1);
        add(&self.inner.counters.download_bytes, n);
        self.remember_blob(src, d);
        Ok(())
    }

    /// Send `source` (`size` bytes that must hash to `d`) into upload session `loc`,
    /// verified on the way ([`VerifiedBody`]) and holding the transfer `slot` until its last
    /// byte; counted on the progress bar once it is in. Also returns what the body saw.
    #[allow(clippy::too_many_arguments)]
    async fn put_source<B>(
        &self,
        dst: &Reference,
        loc: &str,
        d: &Digest,
        size: u64,
        what: &str,
        source: B,
        slot: tokio::sync::OwnedSemaphorePermit,
    ) -> (Result<u64>, Verdict)
    where
        B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let sent = self.sent();
        let (body, verdict) = VerifiedBody::new(source, d.clone(), size);
        let body = reqwest::Body::wrap(body.holding(slot).counting(sent.counter()));
        let put = self.put_verified(dst, loc, d, body, &verdict, what, size);
        let n = put.await;
        if n.is_ok() {
            sent.keep();
        }
        (n, verdict)
    }

    /// Finish upload session `loc` with a streamed, verifying `body` in one PUT; the verdict
    /// says whether the bytes were right. Returns the size.
    #[allow(clippy::too_many_arguments)]
    async fn put_verified(
        &self,
        dst: &Reference,
        loc: &str,
        d: &Digest,
        body: reqwest::Body,
        verdict: &Verdict,
        what: &str,
        size: u64,
    ) -> Result<u64> {
        let loc = self.current_url(&dst.registry, loc);
        let sep = if loc.contains('?') { '&' } else { '?' };
        let put_url = format!("{loc}{sep}digest={d}");
        let scope = push_scope(&dst.repository, None);
        // The session may have waited for its turn past the token's renewal time.
        self.ensure_token(dst, &scope).await?;
        let watch = Watch::start();
        let mut req = self
            .inner
            .http
            .put(&put_url)
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .body(reqwest::Body::wrap(Watched::new(body, watch.clone())));
        let sent = self.auth_header(dst, &scope).await;
        if let Some(h) = &sent {
            req = req.header(header::AUTHORIZATION, h.clone());
        }
        add(&self.inner.counters.requests, 1);
        let put = self.exchange(req, &watch).await;
        let what = what.to_string();
        let n = match verdict.get() {
            Some(Ok(n)) => Some(n),
            Some(Err(StreamFailure::Mismatch { actual })) => {
                return Err(Error::DigestMismatch {
                    what,
                    expected: d.to_string(),
                    actual: actual.to_string(),
                });
            }
            Some(Err(StreamFailure::Short { received } | StreamFailure::Long { received })) => {
                return Err(Error::SizeMismatch {
                    what,
                    expected: size,
                    actual: received,
                });
            }
            Some(Err(StreamFailure::Source(reason))) => {
                return Err(Error::Interrupted { what, reason });
            }
            // The caller knows the source and says so (see `stream_blob_into`).
            Some(Err(StreamFailure::Stalled)) => {
                return Err(Error::Interrupted {
                    what,
                    reason: format!(
                        "its source sent nothing for {}",
                        crate::watch::secs(self.inner.opts.timeout)
                    ),
                });
            }
            // Nothing to hash (hyper need not poll an empty body): the digest says it all.
            None if size == 0 && *d == Digest::of(b"") => Some(0),
            None => None,
        };
        if let Ok(resp) = &put
            && resp.status() == StatusCode::UNAUTHORIZED
            && let Some(e) = self
                .renew_token(dst, &scope, sent.as_ref(), resp, &what)
                .await
        {
            return Err(e);
        }
        let n = match n {
            Some(n) => n,
            // The upload stopped before the whole blob went through.
            None => {
                return Err(match put {
                    Ok(resp) if resp.status() != StatusCode::CREATED => {
                        session_error(dst, d, "PUT", &put_url, resp).await
                    }
                    Ok(_) => Error::Interrupted {
                        what,
                        reason: "the destination answered before the whole blob was sent".into(),
                    },
                    Err(Failure::Silent) => self.no_answer(dst, &put_url, Silence::Upload, 1),
                    Err(Failure::Failed(e)) => Error::Interrupted {
                        what,
                        reason: format!(
                            "upload to {} stopped: {}",
                            dst.registry,
                            crate::error::reason(&e)
                        ),
                    },
                });
            }
        };
        let resp = put.map_err(|f| self.failed(dst, &put_url, f))?;
        if resp.status() != StatusCode::CREATED {
            return Err(session_error(dst, d, "PUT", &put_url, resp).await);
        }
        add(&self.inner.counters.blob_uploads, 1);
        add(&self.inner.counters.upload_bytes, n);
        Ok(n)
    }

    /// A streamed PUT refused with a 401 although its bearer token worked before: the token
    /// expired (an upload session opened ahead of its turn can wait past a token's
    /// lifetime, and a long upload can outlast it). Fetch a new one and say so with a
    /// transient error, so the transfer is sent again into a fresh session; `send` does the
    /// same for requests whose body can be replayed. `None` when there is nothing to renew
    /// (Basic auth, or the registry hands out the same token): the 401 stands.
    async fn renew_token(
        &self,
        dst: &Reference,
        scope: &str,
        sent: Option<&HeaderValue>,
        resp: &Response,
        what: &str,
    ) -> Option<Error> {
        if !sent?.as_bytes().starts_with(b"Bearer ") {
            return None;
        }
        let www = resp
            .headers()
            .get(header::WWW_AUTHENTICATE)?
            .to_str()
            .ok()?;
        // Another transfer may have renewed it meanwhile.
        if self.auth_header(dst, scope).await.as_ref() == sent
            && let Err(e) = self.authenticate(dst, scope, Some(www)).await
        {
            return Some(e);
        }
        let renewed = self.auth_header(dst, scope).await;
        (renewed.as_ref() != sent).then(|| Error::Interrupted {
            what: what.to_string(),
            reason: format!(
                "{} refused its bearer token (expired?); signed in again",
                dst.registry
            ),
        })
    }

    /// Make sure `dst` has blob `d` (`size` bytes) from the file at `path` (an OCI layout's
    /// blob or a freshly built layer), reading it as it goes up rather than into memory
    /// first; its digest is checked on the way. One request probes for the blob and opens
    /// the upload, or mounts it from where it was seen ([`RegistryClient::open_upload`]).
    /// Chunked (PATCH) when the options ask for chunks.
    pub async fn upload_blob_file(
        &self,
        dst: &Reference,
        d: &Digest,
        path: &std::path::Path,
        size: u64,
    ) -> Result<BlobOutcome> {
        // The probe that opens the session draws from the transfer's budget too.
        self.budgeted(async {
            let session = match self.open_upload(dst, d, None).await? {
                Opened::Done(outcome) => return Ok(outcome),
                Opened::Session(loc) => loc,
            };
            self.upload_file_into(dst, d, path, size, Some(session))
                .await?;
            Ok(BlobOutcome::Uploaded)
        })
        .await
    }

    /// Stream the file up into `session` (or a new upload), retried with fresh sessions.
    async fn upload_file_into(
        &self,
        dst: &Reference,
        d: &Digest,
        path: &std::path::Path,
        size: u64,
        session: Option<String>,
    ) -> Result<()> {
        let what = format!("blob {}", path.display());
        let blob = format!("blob {d}");
        self.retry_transfer(dst, d, size, &blob, session, |session| async {
            let slot = self.transfer_slot().await;
            let file = tokio::fs::File::open(path)
                .await
                .ctx(|| format!("opening {}", path.display()))?;
            if let Some(chunk) = self.inner.opts.chunk_size.filter(|c| *c > 0 && size > *c) {
                return self
                    .upload_file_chunked(dst, d, file, size, chunk, &what, session)
                    .await;
            }
            let loc = match session {
                Some(loc) => loc,
                None => self.start_upload(dst).await?,
            };
            let source = FileBody::new(file);
            self.put_source(dst, &loc, d, size, &what, source, slot)
                .await
                .0
                .map(|_| ())
        })
        .await
    }

    /// PATCH `file` up in `chunk`-byte pieces (one in memory at a time), hashing them, and
    /// finish with the digest only if it matched.
    #[allow(clippy::too_many_arguments)]
    async fn upload_file_chunked(
        &self,
        dst: &Reference,
        d: &Digest,
        mut file: tokio::fs::File,
        size: u64,
        chunk: u64,
        what: &str,
        session: Option<String>,
    ) -> Result<()> {
        use sha2::Digest as _;
        use tokio::io::AsyncReadExt as _;
        let scope = push_scope(&dst.repository, None);
        let mut loc = match session {
            Some(loc) => loc,
            None => self.start_upload(dst).await?,
        };
        let mut hasher = sha2::Sha256::new();
        let mut off = 0u64;
        let sent = self.sent();
        while off < size {
            let len = chunk.min(size - off);
            let mut buf = vec![0u8; len as usize];
            match file.read_exact(&mut buf).await {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    return Err(Error::SizeMismatch {
                        what: what.into(),
                        expected: size,
                        actual: off,
                    });
                }
                Err(e) => {
                    return Err(Error::Io {
                        context: format!("reading {what}"),
                        source: e,
                    });
                }
            }
            hasher.update(&buf);
            let mut h = HeaderMap::new();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            h.insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&format!("{off}-{}", off + len - 1)).expect("ascii"),
            );
            // Not retried into this session ([`RegistryClient::upload_blob_once`]).
            let chunk = Some(Bytes::from(buf));
            let resp = (self
                .send_with(dst, &scope, Method::PATCH, &loc, h, chunk, 0)
                .await)
                .map_err(|e| session_failed(e, d, "sending a chunk"))?;
            if resp.status() != StatusCode::ACCEPTED {
                return Err(session_error(dst, d, "PATCH", &loc, resp).await);
            }
            loc = self.location(dst, &loc, &resp)?;
            off += len;
            sent.add(len);
        }
        let mut extra = [0u8; 1];
        if file
            .read(&mut extra)
            .await
            .ctx(|| format!("reading {what}"))?
            > 0
        {
            return Err(Error::SizeMismatch {
                what: what.into(),
                expected: size,
                actual: size + 1,
            });
        }
        let actual = Digest::from_hasher(hasher);
        if actual != *d {
            // No final PUT: the upload never completes.
            return Err(Error::DigestMismatch {
                what: what.into(),
                expected: d.to_string(),
                actual: actual.to_string(),
            });
        }
        let sep = if loc.contains('?') { '&' } else { '?' };
        let url = format!("{loc}{sep}digest={d}");
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        let closing = self.send_with(dst, &scope, Method::PUT, &url, h, Some(Bytes::new()), 0);
        let resp = closing
            .await
            .map_err(|e| session_failed(e, d, "closing its upload"))?;
        if resp.status() != StatusCode::CREATED {
            return Err(session_error(dst, d, "PUT", &url, resp).await);
        }
        sent.keep();
        add(&self.inner.counters.blob_uploads, 1);
        add(&self.inner.counters.upload_bytes, size);
        Ok(())
    }
}

/// Why a request got no answer.
enum Failure {
    /// The registry said nothing for the timeout.
    Silent,
    Failed(reqwest::Error),
}

/// How many times a silent registry is asked: once more than the first, as a pooled
/// connection can die without a word and a fresh one then answers; more would only
/// multiply the wait (each attempt waits the whole timeout).
const SILENT_ATTEMPTS: u32 = 2;

/// Pauses between attempts: [`ClientOptions::retry_pause`], doubling up to [`MAX_PAUSE`],
/// each with up to a quarter more at random (many blobs failing at once then do not all
/// come back at the same instant), up to `retries` of them.
#[derive(Clone)]
struct Backoff {
    /// Retries so far.
    attempt: u32,
    /// Requests sent so far.
    requests: u32,
    /// Pauses so far, together (at most [`MAX_PAUSES`]).
    paused: Duration,
    /// Attempts that met silence.
    silent: u32,
    /// Whether the last failure was silence.
    last_silent: bool,
    first: Duration,
    started: std::time::Instant,
}

impl Backoff {
    fn new(opts: &ClientOptions) -> Self {
        Self {
            attempt: 0,
            requests: 0,
            paused: Duration::ZERO,
            silent: 0,
            last_silent: false,
            first: opts.retry_pause,
            started: std::time::Instant::now(),
        }
    }

    /// The pause before the next attempt, `None` when retries are used up.
    fn next(&mut self, retries: u32) -> Option<Duration> {
        self.next_at_least(retries, Duration::ZERO)
    }

    /// [`Backoff::next`], but no shorter than `asked` (a `Retry-After`); `None` too once
    /// the pauses add up to [`MAX_PAUSES`].
    fn next_at_least(&mut self, retries: u32, asked: Duration) -> Option<Duration> {
        self.last_silent = false;
        let room = MAX_PAUSES.saturating_sub(self.paused);
        if self.attempt >= retries || room.is_zero() {
            return None;
        }
        self.attempt += 1;
        let base = (self.first)
            .saturating_mul(1 << (self.attempt - 1).min(16))
            .min(MAX_PAUSE.max(self.first));
        let pause = (base + base.mul_f64(jitter())).max(asked).min(room);
        self.paused += pause;
        Some(pause)
    }

    /// The error to end with when the retries are used up after `last`.
    fn gave_up(&self, what: String, last: Error) -> Error {
        Error::GaveUp {
            what,
            requests: self.requests.max(1),
            elapsed: self.started.elapsed(),
            last: Box::new(last),
        }
    }

    /// [`Backoff::next`] after `silent` attempts more met silence.
    fn next_after(&mut self, silent: u32, retries: u32) -> Option<Duration> {
        self.silent += silent;
        if self.silent >= SILENT_ATTEMPTS {
            return None;
        }
        let pause = self.next(retries);
        self.last_silent = silent > 0;
        pause
    }

    fn next_after_silence(&mut self, retries: u32) -> Option<Duration> {
        self.next_after(1, retries)
    }
}

/// A fraction in [0, 0.25), different each time (no `rand` for this: the std hasher's
/// random keys are enough).
fn jitter() -> f64 {
    use std::hash::BuildHasher as _;
    let h = std::collections::hash_map::RandomState::new().hash_one(std::time::Instant::now());
    (h % 1000) as f64 / 4000.0
}

/// How often a wait for an answer is said to go on: every 30 s, or every half timeout if
/// that is shorter (so a short `HOIST_REGISTRY_TIMEOUT` still shows it once).
fn still_waiting_every(timeout: Duration) -> Duration {
    (timeout / 2).clamp(Duration::from_millis(100), Duration::from_secs(30))
}

/// `text` with each `sha256:<64 hex>` cut to 12 hex digits and `…`: enough to tell blobs
/// apart in a line about a retry.
fn short_digests(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find("sha256:") {
        let hex = &rest[i + 7..];
        let n = hex.bytes().take_while(u8::is_ascii_hexdigit).count();
        out.push_str(&rest[..i + 7]);
        if n == 64 {
            out.push_str(&hex[..12]);
            out.push('…');
        } else {
            out.push_str(&hex[..n]);
        }
        rest = &hex[n..];
    }
    out.push_str(rest);
    out
}

/// What a 503 or 429 asks to wait (`Retry-After: SECONDS`), at most [`MAX_RETRY_AFTER`].
fn retry_after(resp: &Response) -> Duration {
    (resp.headers().get(header::RETRY_AFTER))
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(Duration::ZERO, |s| {
            Duration::from_secs(s).min(MAX_RETRY_AFTER)
        })
}

/// Why a transfer is tried again, short (the notice names registry and blob).
fn retry_reason(e: &Error) -> String {
    match e {
        Error::Transport { source, .. } => crate::error::reason(source),
        Error::Http { status, .. } => format!("HTTP {status}"),
        Error::Interrupted { reason, .. } => reason.clone(),
        // Not the final error's words: the registry is named by the notice already, and
        // this silence *is* being retried.
        Error::NoAnswer {
            timeout, silence, ..
        } => format!("no answer within {}{silence}", crate::watch::secs(*timeout)),
        e => {
            let text = e.to_string();
            text.split_once('\n')
                .map_or(text.as_str(), |(t, _)| t)
                .to_string()
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlobOutcome {
    Present,
    Mounted,
    Uploaded,
}

fn pull_scope(repo: &str) -> String {
    format!("repository:{repo}:pull")
}

fn push_scope(repo: &str, from: Option<&str>) -> String {
    match from {
        Some(f) => format!("repository:{repo}:pull,push repository:{f}:pull"),
        None => format!("repository:{repo}:pull,push"),
    }
}

/// HEADs happen while pushing: ask for the push scope so one token covers the whole push.
fn push_or_pull(r: &Reference) -> String {
    push_scope(&r.repository, None)
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Parse `Bearer realm="…",service="…"` or `Basic realm="…"`.
fn parse_challenge(h: &str) -> Option<Challenge> {
    let (scheme, mut params) = challenge_params(h)?;
    match scheme.as_str() {
        "basic" => Some(Challenge::Basic),
        "bearer" => Some(Challenge::Bearer {
            realm: params.remove("realm")?,
            service: params.remove("service"),
        }),
        _ => None,
    }
}

/// A `WWW-Authenticate` challenge's scheme (lowercase) and parameters (keys lowercase):
/// `Bearer realm="…",service="…",scope="…",error="insufficient_scope"`.
fn challenge_params(h: &str) -> Option<(String, HashMap<String, String>)> {
    let (scheme, rest) = h.trim().split_once(' ').unwrap_or((h.trim(), ""));
    let mut params = HashMap::new();
    let mut s = rest.trim();
    while !s.is_empty() {
        let (k, after) = s.split_once('=')?;
        let after = after.trim_start();
        let (v, tail) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"')?;
            (&q[..end], &q[end + 1..])
        } else {
            after.split_once(',').map_or((after, ""), |(v, t)| (v, t))
        };
        params.insert(k.trim().to_ascii_lowercase(), v.to_string());
        s = tail.trim_start_matches([',', ' ']);
    }
    Some((scheme.to_ascii_lowercase(), params))
}

/// An upload session's request (`PATCH`, closing `PUT`) refused: a 404 means the registry
/// no longer knows the session (it restarted: distribution signs sessions with a
/// per-process secret), and a 416 that it holds other bytes: both an interrupted transfer
/// to send again into a fresh session; any other status as it is.
async fn session_error(
    r: &Reference,
    d: &Digest,
    method: &str,
    url: &str,
    resp: Response,
) -> Error {
    let status = resp.status();
    let e = http_error(r, method, url, status, resp).await;
    let why = match status {
        StatusCode::NOT_FOUND => "no longer knows its upload session (restarted?)",
        // A newer registry checks `Content-Range`: the session holds other bytes than
        // this client sent (an earlier request's answer lost on the way).
        StatusCode::RANGE_NOT_SATISFIABLE => "holds other bytes in its upload session",
        _ => return e,
    };
    Error::Interrupted {
        what: format!("blob {d}"),
        reason: format!("{} {why}: {}", r.registry, retry_reason(&e)),
    }
}

/// The `N` of a 416's `Content-Range: bytes */N`: how long the registry says the blob is.
fn unsatisfied_length(resp: &Response) -> Option<u64> {
    let range = resp.headers().get(header::CONTENT_RANGE)?.to_str().ok()?;
    range.trim().strip_prefix("bytes */")?.parse().ok()
}

async fn http_error(
    r: &Reference,
    method: &str,
    url: &str,
    status: StatusCode,
    resp: Response,
) -> Error {
    // An error's text is worth a short wait, not the whole timeout.
    let text = tokio::time::timeout(Duration::from_secs(5), resp.text()).await;
    let body = text.ok().and_then(|t| t.ok()).unwrap_or_default();
    let body = body.chars().take(500).collect::<String>();
    Error::Http {
        registry: r.registry.clone(),
        method: method.into(),
        url: url.into(),
        status: status.as_u16(),
        body: body.trim().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A silence being retried is said as one, not with the final error's "not retried"
    /// and the registry named a second time (the notice names it).
    #[test]
    fn a_retried_silence_is_said_as_retried() {
        let e = Error::NoAnswer {
            registry: "127.0.0.1:5450".into(),
            url: "http://127.0.0.1:5450/v2/x/blobs/sha256:44".into(),
            timeout: Duration::from_secs(6),
            silence: crate::error::Silence::AnswerBody,
            attempts: 1,
        };
        let why = retry_reason(&e);
        assert_eq!(
            why,
            "no answer within 6 s: it stopped sending in the middle of its answer"
        );
    }

    #[test]
    fn retry_notices_shorten_digests() {
        let d = format!("sha256:{}", "ab12".repeat(16));
        assert_eq!(
            short_digests(&format!("GET /v2/x/blobs/{d} and {d}; sha256:12")),
            "GET /v2/x/blobs/sha256:ab12ab12ab12… and sha256:ab12ab12ab12…; sha256:12"
        );
    }

    #[test]
    fn backoff_doubles_up_to_a_cap_with_jitter_and_stops() {
        let opts = ClientOptions {
            retry_pause: Duration::from_millis(250),
            ..Default::default()
        };
        let mut b = Backoff::new(&opts);
        let pauses: Vec<Duration> = std::iter::from_fn(|| b.next(6)).collect();
        let bases = [250, 500, 1000, 2000, 4000, 4000];
        assert_eq!(pauses.len(), bases.len());
        for (p, base) in pauses.iter().zip(bases) {
            let base = Duration::from_millis(base);
            assert!(*p >= base && *p < base + base / 4, "{p:?} for {base:?}");
        }
        b.requests = 7;
        match b.gave_up("GET /v2/x".into(), Error::Invalid("x".into())) {
            Error::GaveUp { requests, .. } => assert_eq!(requests, 7),
            e => panic!("{e:?}"),
        }
    }

    #[test]
    fn pauses_of_one_budget_add_up_to_a_cap_whatever_retry_after_asks() {
        let opts = ClientOptions {
            retry_pause: Duration::from_millis(250),
            ..Default::default()
        };
        let mut b = Backoff::new(&opts);
        let pauses: Vec<Duration> =
            std::iter::from_fn(|| b.next_at_least(10, MAX_RETRY_AFTER)).collect();
        assert_eq!(pauses.iter().sum::<Duration>(), MAX_PAUSES, "{pauses:?}");
        assert_eq!(pauses.len(), 2, "two 10 s Retry-Afters fill it: {pauses:?}");
        assert_eq!(b.next(10), None, "used up");
    }

    #[test]
    fn challenges() {
        match parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:x:pull""#,
        ) {
            Some(Challenge::Bearer { realm, service }) => {
                assert_eq!(realm, "https://auth.docker.io/token");
                assert_eq!(service.as_deref(), Some("registry.docker.io"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse_challenge(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        ));
        assert!(parse_challenge("Negotiate").is_none());
    }

    #[test]
    fn tokens_are_renewed_before_they_expire() {
        let now = std::time::Instant::now();
        let at = |expires_in| Token::new("t".into(), now, expires_in).refresh_at - now;
        assert_eq!(at(Some(300)), Duration::from_secs(290));
        assert_eq!(
            at(None),
            Duration::from_secs(50),
            "the spec's default: 60 s"
        );
        assert_eq!(at(Some(2)), Duration::from_secs(1));
        assert_eq!(at(Some(0)), Duration::from_secs(1), "at least 2 s to live");
        assert!(Token::new("t".into(), now, Some(0)).fresh());
        // No overflow on a lifetime no clock can hold.
        assert_eq!(at(Some(u64::MAX)), Duration::from_secs(86_400));
    }

    #[test]
    fn a_failed_renewal_holds_off_the_next_until_the_token_expires() {
        let now = std::time::Instant::now();
        // Due for renewal (asked 55 s ago, 60 s to live: refresh at 50 s, expiry at 60 s).
        let asked = now - Duration::from_secs(55);
        let mut t = Token::new("t".into(), asked, Some(60));
        assert!(!t.fresh());
        t.renewal_failed();
        assert!(
            t.fresh(),
            "the requests queued behind it use the token held"
        );
        assert!(t.refresh_at <= t.expires_at);
        // Expired already: nothing to hold off with.
        let mut old = Token::new("t".into(), now - Duration::from_secs(120), Some(60));
        old.renewal_failed();
        assert!(!old.fresh());
    }

    #[test]
    fn insecure_registries_take_an_http_url_but_not_https() {
        assert_eq!(insecure_registry("vm:5000").unwrap(), "vm:5000");
        assert_eq!(insecure_registry(" http://vm:5000/ ").unwrap(), "vm:5000");
        assert_eq!(insecure_registry("HTTP://vm").unwrap(), "vm");
        let e = insecure_registry("https://vm:5000")
            .unwrap_err()
            .to_string();
        assert!(e.contains("plain HTTP") && e.contains("--ca-file"), "{e}");
        let e = insecure_registry("http://vm:5000/v2/")
            .unwrap_err()
            .to_string();
        assert!(e.contains("expected HOST[:PORT]"), "{e}");
        let e = RegistryClient::new(ClientOptions {
            insecure: vec!["https://vm:5000".into()],
            ..Default::default()
        })
        .err()
        .unwrap()
        .to_string();
        assert!(e.contains("\"https://vm:5000\""), "{e}");
        let c = RegistryClient::new(ClientOptions {
            insecure: vec!["http://vm:5000/".into()],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            c.base_url(&Reference::parse("vm:5000/a:1").unwrap()),
            "http://vm:5000"
        );
    }

    #[test]
    fn insecure_only_loopback_or_named() {
        assert!(is_insecure("127.0.0.1:5000", &[]));
        assert!(is_insecure("localhost:5000", &[]));
        assert!(is_insecure("[::1]:5000", &[]));
        assert!(!is_insecure("ghcr.io", &[]));
        assert!(is_insecure("reg.local:5000", &["reg.local:5000".into()]));
    }
}
