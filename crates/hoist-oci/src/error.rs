//! One error type for the crate: every variant says what was wrong and, where it helps, what to do.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid image reference {input:?}: {reason}")]
    InvalidReference { input: String, reason: String },
    #[error("invalid digest {input:?}: expected `sha256:` followed by 64 lowercase hex characters")]
    InvalidDigest { input: String },
    // Every writer stores an image's manifest last, after all its blobs verified, and a
    // blob lands only once verified: so the bad one is not stored and no manifest is, but
    // blobs that verified before it are kept (a re-run does not fetch them again).
    #[error(
        "digest mismatch for {what}: expected {expected}, got {actual}; it was not stored, nor was the image's manifest (blobs that verified before it are kept)"
    )]
    DigestMismatch {
        what: String,
        expected: String,
        actual: String,
    },
    /// A stored blob failed its check on a read ([`crate::stored_blob::StoredBlob`]).
    #[error("blob {digest} is corrupt ({}): {reason}; {}", .path.display(), corrupt_fate(.fate, .path, .image.as_deref()))]
    CorruptBlob {
        digest: String,
        path: PathBuf,
        reason: String,
        fate: CorruptFate,
        /// The image it was read for, when the reader knows ([`Error::in_image`]).
        image: Option<String>,
    },
    /// A stored blob whose bytes match its digest but not the size its descriptor gives:
    /// the manifest is wrong, not the blob, so it is kept (other images may share it).
    #[error(
        "blob {digest} ({}) is {actual} bytes and matches its digest, but {} gives its size as {descriptor}: the manifest is wrong; the blob was kept\nhint: fix what wrote that manifest, then build or push the image again",
        .path.display(),
        .image.as_deref().map_or("its descriptor".to_string(), |i| format!("the manifest of {i}"))
    )]
    BlobSizeWrong {
        digest: String,
        path: PathBuf,
        descriptor: u64,
        actual: u64,
        /// The image it was read for, when the reader knows ([`Error::in_image`]).
        image: Option<String>,
    },
    /// A pulled blob is not the size its image's manifest gives: the manifest is wrong (or
    /// the registry is), so nothing of it is stored under that manifest.
    #[error(
        "the manifest of {image} gives size {descriptor} for blob {digest}, but {}; the blob was not stored, nor was the image\nhint: push the image again with a manifest that gives each blob's real size",
        match .actual {
            Some(n) => format!("the blob is {n} bytes and matches its digest: the manifest is wrong"),
            None => "the registry sent more than that".to_string(),
        }
    )]
    ManifestSizeWrong {
        image: String,
        digest: String,
        descriptor: u64,
        /// The blob's real size; `None` when the download stopped once it was too long.
        actual: Option<u64>,
    },
    #[error("size mismatch for {what}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        what: String,
        expected: u64,
        actual: u64,
    },
    #[error(
        "manifest unknown: repository {repository:?} on {registry} has no tag or digest {reference:?}"
    )]
    ManifestUnknown {
        registry: String,
        repository: String,
        reference: String,
    },
    #[error(
        "{}{registry} {} (HTTP 401 on {}); {lookup}\nhint: run `hoist registry login {registry}`",
        if *.token_server { "the token server of " } else { "" },
        if *.sent { "refused the credentials" } else { "requires credentials" },
        without_query(.url)
    )]
    Unauthorized {
        registry: String,
        url: String,
        /// Where credentials were looked up, and what was found.
        lookup: String,
        /// Whether the refused request carried credentials.
        sent: bool,
        /// Refused by the registry's token server (`url` is its realm), not the registry.
        token_server: bool,
    },
    /// The credentials were accepted, but the token the registry's token server gave for
    /// them lacks access the request needs (`insufficient_scope`): asking again is no use.
    #[error(
        "{registry} denied the request: it needs {}, which the registry's token server did not grant to these credentials (HTTP 401 insufficient_scope on {}); {lookup}\nhint: the credentials were accepted but may not do this: check the repository's name (registries such as Docker Hub answer so for one that does not exist), ask for that access, or use an account that has it",
        describe_scope(.scope),
        without_query(.url)
    )]
    Denied {
        registry: String,
        url: String,
        /// The scope the registry said the request needs (`repository:NAME:ACTIONS`, space-separated).
        scope: String,
        lookup: String,
    },
    #[error("{registry} denied access (HTTP 403 on {}); {lookup}", without_query(.url))]
    Forbidden {
        registry: String,
        url: String,
        lookup: String,
    },
    #[error(
        "registry {registry}: unexpected HTTP {status} for {method} {}{}\nhint: hoist does not retry this answer; the registry's log says why it gave it",
        without_query(.url),
        if .body.is_empty() { String::new() } else { format!(": {}", .body) }
    )]
    Http {
        registry: String,
        method: String,
        url: String,
        status: u16,
        body: String,
    },
    #[error("cannot reach registry {registry} ({}): {}{}", without_query(.url), reason(.source), tls_hint(.source, .registry))]
    Transport {
        registry: String,
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error(
        "the registry at {registry} did not answer within {} ({}){}; {}\nhint: {}=SECONDS sets how long hoist waits (default {})",
        crate::watch::secs(*.timeout),
        without_query(.url),
        .silence,
        tries(*.attempts),
        crate::watch::TIMEOUT_ENV,
        crate::watch::secs(crate::watch::DEFAULT_TIMEOUT)
    )]
    NoAnswer {
        registry: String,
        url: String,
        timeout: std::time::Duration,
        silence: Silence,
        /// How many times it was asked.
        attempts: u32,
    },
    #[error("transfer of {what} was interrupted: {reason}")]
    Interrupted { what: String, reason: String },
    /// A request or transfer that failed in a way worth retrying, every time it was tried.
    #[error(
        "{}; gave up on {what} after {} over {}\nhint: is the registry running? {}=N sets how often hoist retries (default {})",
        gave_up_reason(.last),
        if *.requests == 1 { "1 request".to_string() } else { format!("{} requests", .requests) },
        crate::watch::secs(*.elapsed),
        crate::client::RETRIES_ENV,
        crate::client::DEFAULT_RETRIES
    )]
    GaveUp {
        /// What was being fetched or sent: a blob, a manifest, a request.
        what: String,
        /// Every request sent for it, retries inside retries included.
        requests: u32,
        elapsed: std::time::Duration,
        /// The last attempt's error (not `source`: its text is part of this one's).
        last: Box<Error>,
    },
    /// The registry refused a manifest for blobs it lacks, again after they were sent
    /// again ([`crate::lost_blobs`]).
    #[error(
        "registry {registry} refused the manifest of {image}: it does not have {count} ({blobs}), though hoist sent the blobs it lacked again after a first refusal\nhint: the registry is losing blobs while hoist pushes (restarting with empty storage, or garbage collection running); check its storage and logs, then push again"
    )]
    BlobsLost {
        registry: String,
        image: String,
        /// `3 blobs`.
        count: String,
        /// Their digests, comma-separated.
        blobs: String,
    },
    /// A Docker-typed manifest bound for an OCI layout holds a media type with no OCI
    /// equivalent ([`crate::convert`]).
    #[error(
        "cannot convert manifest {manifest} to OCI media types for an OCI layout: {what} has media type {media_type:?}, which has no OCI equivalent\nhint: --preserve-digests stores the manifest as it is, with its Docker media types"
    )]
    NoOciMediaType {
        manifest: String,
        what: String,
        media_type: String,
    },
    #[error("unsupported media type {media_type:?} for {what}")]
    UnsupportedMediaType { what: String, media_type: String },
    #[error("no image for platform {wanted} in the index of {reference}; available: {available}")]
    NoMatchingPlatform {
        reference: String,
        wanted: String,
        available: String,
    },
    #[error("invalid platform {input:?}: expected OS/ARCH[/VARIANT], e.g. linux/amd64")]
    InvalidPlatform { input: String },
    #[error("{what} is an image for {have} only, not {wanted} (it is no multi-platform index)")]
    PlatformMismatch {
        what: String,
        wanted: String,
        have: String,
    },
    #[error(
        "{what} is not a container image: its config is {config_type:?} (an OCI artifact such as a Helm chart or a signature); `hoist image copy` can still move it as it is"
    )]
    NotAnImage { what: String, config_type: String },
    #[error("layer source {path} does not exist")]
    MissingSource { path: PathBuf },
    #[error("layer source {path} is a symlink to {target}, which does not exist")]
    DanglingSource { path: PathBuf, target: PathBuf },
    #[error("layer destination {dest:?} escapes the image root (`..` is not allowed)")]
    DestinationEscapes { dest: String },
    #[error("invalid glob {pattern:?} in {origin}: {reason}")]
    InvalidGlob {
        pattern: String,
        origin: String,
        reason: String,
    },
    #[error("invalid JSON in {what}: {source}")]
    Json {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("docker config {path}: {reason}")]
    DockerConfig { path: PathBuf, reason: String },
    #[error("credential helper docker-credential-{helper} failed for {registry}: {reason}")]
    CredentialHelper {
        helper: String,
        registry: String,
        reason: String,
    },
    #[error("TLS setup: {0}")]
    Tls(String),
    #[error("image {reference} not found in the local store at {store}")]
    NotInStore { reference: String, store: PathBuf },
    #[error("invalid OCI layout at {path}: {reason}")]
    InvalidLayout { path: PathBuf, reason: String },
    /// A valid layout without the image asked for, or with several when none was named.
    #[error("OCI layout {path}: {reason}")]
    LayoutLookup { path: PathBuf, reason: String },
    #[error(
        "no container builder found for Dockerfile builds: install one of `docker` (with buildx), `buildah` or `podman` (e.g. `apt-get install buildah`)"
    )]
    NoBuilder,
    #[error("{builder} failed ({status}) building {dockerfile}:\n{stderr}")]
    BuilderFailed {
        builder: String,
        status: String,
        dockerfile: PathBuf,
        stderr: String,
    },
    /// Ctrl-C or SIGTERM (`by`, when a signal is what stopped it) stopped `what`; what it
    /// had started (temp files, transfers) was dropped.
    #[error("interrupted: {what} was cancelled")]
    Cancelled {
        what: String,
        by: Option<crate::StopSignal>,
    },
    #[error("{0}")]
    Invalid(String),
}

/// What became of a blob that failed its check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CorruptFate {
    /// Removed from hoist's store: the next pull fetches it again.
    Removed,
    /// Already replaced (or removed) by another process when it was to be removed.
    Replaced,
    /// In a user's own layout: left as it is.
    LeftInUserLayout,
    /// Removing it from hoist's store failed (why).
    RemoveFailed(String),
}

fn corrupt_fate(fate: &CorruptFate, path: &std::path::Path, image: Option<&str>) -> String {
    let image = image.unwrap_or("IMAGE");
    match fate {
        CorruptFate::Removed => format!(
            "it was removed from hoist's image store\nhint: `hoist image pull {image}` (or the build that stored the image) fetches just that blob again; then run this command again"
        ),
        CorruptFate::Replaced => format!(
            "another process has replaced or removed it meanwhile\nhint: run the command again (after `hoist image pull {image}` if the blob is missing)"
        ),
        CorruptFate::LeftInUserLayout => format!(
            "it was left in place: this layout is not hoist's store\nhint: delete {} and copy the image into the layout again",
            path.display()
        ),
        CorruptFate::RemoveFailed(why) => format!(
            "removing it from hoist's image store failed: {why}\nhint: delete {} by hand, then `hoist image pull {image}` fetches it again",
            path.display()
        ),
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where a registry went silent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Silence {
    /// No answer to a request (after its body, if any, was sent).
    Answer,
    /// In the middle of its answer's body.
    AnswerBody,
    /// It stopped taking an upload's body.
    Upload,
}

impl std::fmt::Display for Silence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Silence::Answer => "",
            Silence::AnswerBody => ": it stopped sending in the middle of its answer",
            Silence::Upload => ": it stopped taking the upload",
        })
    }
}

/// The last failure of a retried request, without its own hint (the retry hint follows),
/// and without calling a status the client knows how to treat "unexpected".
fn gave_up_reason(last: &Error) -> String {
    match last {
        Error::Http {
            registry,
            method,
            url,
            status,
            body,
        } => {
            let body = if body.is_empty() {
                String::new()
            } else {
                format!(": {body}")
            };
            format!(
                "registry {registry} answered HTTP {status} to {method} {}{body}",
                without_query(url)
            )
        }
        e => {
            let text = e.to_string();
            text.split_once("\nhint:")
                .map_or(text.as_str(), |(t, _)| t)
                .to_string()
        }
    }
}

fn tries(attempts: u32) -> String {
    match attempts {
        0 | 1 => "not retried".into(),
        n => format!("asked {n} times, waiting that long each time"),
    }
}

impl Error {
    /// A stored blob's error (corrupt, or under a wrong size), naming `image` (what it was
    /// read for) unless it names one already; any other error as it is.
    pub fn in_image(mut self, image: &str) -> Self {
        if let Error::CorruptBlob {
            image: named @ None,
            ..
        }
        | Error::BlobSizeWrong {
            image: named @ None,
            ..
        } = &mut self
        {
            *named = Some(image.to_string());
        }
        self
    }

    /// Worth trying again: a dropped or refused connection, an interrupted stream, a server
    /// error or throttling. Not: bad content, auth, or other client errors.
    pub fn is_transient(&self) -> bool {
        match self {
            // A certificate or handshake failure is the same the next time.
            Error::Transport { source, .. } => !is_tls_failure(source),
            Error::Interrupted { .. } | Error::NoAnswer { .. } => true,
            Error::Http { status, .. } => *status >= 500 || *status == 429,
            // Its retries are used up: retrying it again would multiply the wait.
            Error::GaveUp { .. } => false,
            _ => false,
        }
    }
}

/// Attach a human context to an `io::Error`.
pub(crate) trait IoContext<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Io {
            context: context(),
            source,
        })
    }
}

/// What went wrong with a request, on one line. reqwest's own text repeats the URL and
/// wraps the reason in generic layers ("client error (Connect)", "tcp connect error"); the
/// innermost cause says what happened (connection refused, unknown certificate issuer, no
/// such host, …), and the error's kind says when.
pub(crate) fn reason(e: &reqwest::Error) -> String {
    let mut root: &dyn std::error::Error = e;
    while let Some(next) = root.source() {
        root = next;
    }
    let when = if e.is_connect() {
        "cannot connect"
    } else if e.is_timeout() {
        "timed out"
    } else if e.is_body() || e.is_decode() {
        "the connection broke during the transfer"
    } else {
        "the request failed"
    };
    if std::ptr::addr_eq(root, e as &dyn std::error::Error) {
        // reqwest's own text ends with the URL, query and all; the error names it already.
        let text = e.to_string();
        let text = text
            .split_once(" for url (")
            .map_or(text.as_str(), |(t, _)| t);
        format!("{when}: {text}")
    } else {
        format!("{when}: {root}")
    }
}

/// What to do about a TLS failure whose cause says it: a certificate from an unknown CA
/// wants `--ca-file`; a server that answers a TLS handshake with plain HTTP is an HTTP
/// registry, to be named insecure. Empty for any other failure.
pub(crate) fn tls_hint(e: &reqwest::Error, registry: &str) -> String {
    match rustls_cause(e) {
        Some(rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)) => {
            format!(
                "\nhint: the certificate of {registry} is signed by a CA this machine does not trust; pass that CA's certificate (PEM) with `--ca-file FILE`"
            )
        }
        Some(rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType)) => {
            format!(
                "\nhint: {registry} seems to speak plain HTTP, not HTTPS; if so, name it with `--insecure-registry {registry}` (or HOIST_INSECURE_REGISTRIES={registry})"
            )
        }
        _ => String::new(),
    }
}

/// The rustls error behind `e`, if one is. An io::Error's `source()` skips the error it
/// wraps (and the TLS stack wraps io::Errors in io::Errors): those are opened too.
/// Whether `e` failed in TLS (a certificate, a handshake): trying again will not help.
pub(crate) fn is_tls_failure(e: &reqwest::Error) -> bool {
    rustls_cause(e).is_some()
}

fn rustls_cause<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    if let Some(t) = e.downcast_ref::<rustls::Error>() {
        return Some(t);
    }
    if let Some(inner) = e
        .downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
        && let Some(t) = rustls_cause(inner)
    {
        return Some(t);
    }
    rustls_cause(e.source()?)
}

/// A URL without its query: upload URLs carry long opaque state there (`_state=…`,
/// `mount=…`) that says nothing to a person reading why a registry is unreachable.
pub(crate) fn without_query(url: &str) -> &str {
    url.split_once('?').map_or(url, |(path, _)| path)
}

/// `repository:team/app:pull,push` as `pull,push access to repository team/app`; several
/// scopes joined with "and"; anything else as it is.
fn describe_scope(scope: &str) -> String {
    let one = |s: &str| match s.split_once(':').and_then(|(kind, rest)| {
        let (name, actions) = rest.rsplit_once(':')?;
        Some((kind, name, actions))
    }) {
        Some((kind, name, actions)) => {
            // Distribution lists them in map order: sorted, the same message every time.
            let mut actions: Vec<&str> = actions.split(',').collect();
            actions.sort_unstable();
            format!("{} access to {kind} {name}", actions.join(","))
        }
        None => format!("access {s:?}"),
    };
    let parts: Vec<String> = scope.split_whitespace().map(one).collect();
    if parts.is_empty() {
        "access".into()
    } else {
        parts.join(" and ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unreachable_registry_is_named_without_the_query() {
        let url = "http://127.0.0.1:1/v2/x/y/blobs/uploads/?mount=sha256:ab&from=x/y";
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(crate::tls::client_config(vec![]).unwrap())
            .build()
            .unwrap();
        let source = http.post(url).send().await.unwrap_err();
        let e = Error::Transport {
            registry: "127.0.0.1:1".into(),
            url: url.into(),
            source,
        };
        let said = e.to_string();
        assert!(
            said.starts_with(
                "cannot reach registry 127.0.0.1:1 (http://127.0.0.1:1/v2/x/y/blobs/uploads/): cannot connect: "
            ),
            "{said}"
        );
    }

    #[test]
    fn giving_up_says_how_often_how_long_for_what_and_what_to_do() {
        let e = Error::GaveUp {
            what: "POST /v2/a/b/blobs/uploads/ for blob sha256:ab".into(),
            requests: 6,
            elapsed: std::time::Duration::from_millis(8640),
            last: Box::new(Error::Http {
                registry: "127.0.0.1:5000".into(),
                method: "POST".into(),
                url: "http://127.0.0.1:5000/v2/a/b/blobs/uploads/?mount=x".into(),
                status: 503,
                body: "busy".into(),
            }),
        };
        assert_eq!(
            e.to_string(),
            "registry 127.0.0.1:5000 answered HTTP 503 to POST http://127.0.0.1:5000/v2/a/b/blobs/uploads/: busy; \
             gave up on POST /v2/a/b/blobs/uploads/ for blob sha256:ab after 6 requests over 8.6 s\n\
             hint: is the registry running? HOIST_REGISTRY_RETRIES=N sets how often hoist retries (default 5)"
        );
        assert!(!e.is_transient(), "its retries are used up");
    }
}
