//! The bearer-token flow against the REAL registry (Debian's docker-registry with token
//! auth), which verifies every token itself; only the token issuer is test code
//! (support/token_issuer.rs). Its policy: `admin` may do anything, `user` may pull and push
//! `team/*` but only pull `base/*`, anonymous may pull `public/*`.

mod support;

use std::path::Path;
use std::time::Duration;

use hoist_oci::auth::Credential;
use hoist_oci::build::{BuildOptions, BuildSpec, build_and_push};
use hoist_oci::client::{ClientOptions, RegistryClient};
use hoist_oci::{Digest, LayerSpec, Reference};
use support::registry::{Registry, pseudo_random, write_file};
use support::token_issuer::{Grant, SERVICE, TokenFields, TokenIssuer, grant};

const ADMIN: (&str, &str) = ("admin", "admin-secret");
const USER: (&str, &str) = ("user", "user-secret");

fn policy() -> Vec<Grant> {
    vec![
        grant(Some(ADMIN.0), "*", &["pull", "push"]),
        grant(Some(USER.0), "team/*", &["pull", "push"]),
        grant(Some(USER.0), "base/*", &["pull"]),
        grant(None, "public/*", &["pull"]),
    ]
}

/// The issuer and the real registry that trusts it.
fn token_registry() -> (TokenIssuer, Registry) {
    let issuer = TokenIssuer::start(&[ADMIN, USER], policy());
    let reg = Registry::start_token(
        &issuer.realm(),
        SERVICE,
        support::token_issuer::ISSUER,
        &issuer.cert_file,
    );
    (issuer, reg)
}

fn client_as(reg: &Registry, (user, pass): (&str, &str)) -> RegistryClient {
    let c = RegistryClient::new(ClientOptions::default()).unwrap();
    c.set_credential(
        &reg.addr,
        Credential::Basic {
            username: user.into(),
            password: pass.into(),
        },
    );
    c
}

fn r(s: &str) -> Reference {
    Reference::parse(s).unwrap()
}

fn layer(from: &Path, to: &str) -> LayerSpec {
    LayerSpec {
        from: from.into(),
        to: to.into(),
        ..Default::default()
    }
}

/// Build `layers` files of `size` pseudo-random bytes (seeded by `seed`) on `base` and
/// push the image as `target`.
async fn push(
    c: &RegistryClient,
    base: &str,
    target: &Reference,
    seed: u64,
    layers: usize,
    size: usize,
    tmp: &Path,
) -> hoist_oci::Result<hoist_oci::build::PushReport> {
    let mut specs = vec![];
    for i in 0..layers {
        let d = tmp.join(format!("l{seed}-{i}"));
        write_file(
            &d.join(format!("f{i}.bin")),
            &pseudo_random(seed * 100 + i as u64, size),
            0o644,
        );
        specs.push(layer(&d, &format!("/d{seed}-{i}")));
    }
    let spec = BuildSpec {
        base: base.into(),
        layers: specs,
        ..Default::default()
    };
    build_and_push(c, &spec, target, &BuildOptions::default()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_pull_and_cross_repository_mount_with_tokens() {
    let (issuer, reg) = token_registry();
    let tmp = tempfile::tempdir().unwrap();
    let admin = client_as(&reg, ADMIN);
    let base = r(&reg.reference("base/os:1"));
    push(&admin, "scratch", &base, 1, 2, 200_000, tmp.path())
        .await
        .unwrap();

    issuer.clear_queries();
    let user = client_as(&reg, USER);
    let target = r(&reg.reference("team/app:1"));
    let rep = push(&user, &base.to_string(), &target, 2, 1, 1000, tmp.path())
        .await
        .unwrap();
    assert_eq!(rep.layers_mounted, 2, "{rep:?}");
    assert_eq!(rep.transfer.mounts, 2, "{rep:?}");
    assert_eq!(
        rep.transfer.blob_uploads, 2,
        "new layer + config only: {rep:?}"
    );
    assert!(
        rep.transfer.upload_bytes < 10_000,
        "no base layer bytes went up: {rep:?}"
    );
    // The registry's side: blob data came into team/app twice (new layer, config), and
    // each base layer was mounted (201 to a POST with mount=).
    let log = reg.log();
    let lines = |method: &str, uri: &str, status: &str| {
        (log.lines())
            .filter(|l| {
                l.contains("msg=\"response completed\"")
                    && l.contains(&format!(" http.request.method={method} "))
                    && l.contains("http.request.uri=\"/v2/team/app/blobs/uploads/")
                    && l.contains(uri)
                    && l.contains(&format!(" http.response.status={status} "))
            })
            .count()
    };
    assert_eq!(lines("PUT", "digest=", "201"), 2, "{log}");
    assert_eq!(lines("POST", "&from=base/os\"", "201"), 2, "{log}");
    let queries = issuer.queries();
    assert!(
        queries.iter().all(|q| q.service.as_deref() == Some(SERVICE)
            && q.user.as_deref() == Some(USER.0)
            && q.account.as_deref() == Some(USER.0)
            && q.status == 200),
        "{queries:#?}"
    );
    // The mount asked for push on the target and pull on the source in one token, and
    // got both.
    let mount = queries
        .iter()
        .find(|q| q.scopes.len() > 1)
        .unwrap_or_else(|| panic!("no token asked for a mount's two scopes: {queries:#?}"));
    assert_eq!(
        mount.scopes,
        ["repository:team/app:pull,push", "repository:base/os:pull"],
        "{queries:#?}"
    );
    assert_eq!(
        mount.granted,
        [
            ("team/app".to_string(), vec!["pull".into(), "push".into()]),
            ("base/os".to_string(), vec!["pull".into()]),
        ]
    );
    // Tokens are cached per scope: one per distinct scope, however many requests.
    let mut scopes: Vec<_> = queries.iter().map(|q| q.scopes.join(" ")).collect();
    let n = scopes.len();
    scopes.sort();
    scopes.dedup();
    assert_eq!(
        scopes.len(),
        n,
        "a scope's token fetched twice: {queries:#?}"
    );

    // Pull it back: the manifest and every blob, verified.
    issuer.clear_queries();
    let reader = client_as(&reg, USER);
    let raw = reader.get_manifest(&target).await.unwrap();
    assert_eq!(raw.digest, rep.digest);
    let m: hoist_oci::manifest::ImageManifest = serde_json::from_slice(&raw.bytes).unwrap();
    for d in std::iter::once(&m.config).chain(&m.layers) {
        let b = reader.get_blob(&target, &d.digest).await.unwrap();
        assert_eq!(Digest::of(&b), d.digest);
    }
    let queries = issuer.queries();
    assert_eq!(queries.len(), 1, "{queries:#?}");
    assert_eq!(queries[0].scopes, ["repository:team/app:pull"]);

    // Six requests at once for a scope without a token yet: one token fetch before they
    // go out (the challenge is known), not one each after a 401 each.
    issuer.clear_queries();
    let other = r(&reg.reference("team/other:1"));
    let mut probes = tokio::task::JoinSet::new();
    for _ in 0..6 {
        let (c, other, d) = (reader.clone(), other.clone(), m.config.digest.clone());
        probes.spawn(async move { c.has_blob(&other, &d).await });
    }
    for found in probes.join_all().await {
        assert!(!found.unwrap());
    }
    let queries = issuer.queries();
    assert_eq!(queries.len(), 1, "{queries:#?}");
    assert_eq!(queries[0].scopes, ["repository:team/other:pull,push"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_the_policy_denies_says_what_was_denied_where() {
    let (issuer, reg) = token_registry();
    let tmp = tempfile::tempdir().unwrap();
    let user = client_as(&reg, USER);
    let target = r(&reg.reference("base/mine:1"));
    let e = push(&user, "scratch", &target, 3, 1, 1000, tmp.path())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(&format!(
            "{} denied the request: it needs pull,push access to repository base/mine, which the registry's token server did not grant",
            reg.addr
        )) && e.contains("insufficient_scope")
            && e.contains("credentials given on the command line")
            && !e.contains("hoist registry login"),
        "{e}"
    );
    let q = issuer.queries();
    assert!(
        q.iter()
            .any(|q| q.scopes == ["repository:base/mine:pull,push"]
                && q.granted == [("base/mine".to_string(), vec!["pull".to_string()])]),
        "{q:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_at_the_token_endpoint_says_where_credentials_came_from() {
    let (issuer, reg) = token_registry();
    let c = client_as(&reg, (USER.0, "wrong"));
    let target = r(&reg.reference("team/app:1"));
    let e = c.get_manifest(&target).await.unwrap_err().to_string();
    assert!(
        e.contains("refused the credentials (HTTP 401")
            && e.contains("credentials given on the command line"),
        "{e}"
    );
    assert!(e.contains(&issuer.realm()), "names the token endpoint: {e}");
    // No credentials: the anonymous token opens nothing private, and the error says
    // credentials are missing, not refused.
    let anonymous = RegistryClient::new(ClientOptions::default()).unwrap();
    let e = anonymous
        .get_manifest(&target)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("requires credentials (HTTP 401"), "{e}");
}

/// Push, wait past the tokens' lifetime, push and pull again with the same client.
async fn push_wait_push(issuer: &TokenIssuer, reg: &Registry) {
    let tmp = tempfile::tempdir().unwrap();
    let user = client_as(reg, USER);
    let target = r(&reg.reference("team/app:1"));
    push(&user, "scratch", &target, 4, 1, 1000, tmp.path())
        .await
        .unwrap();
    let issued = issuer.issued();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let target2 = r(&reg.reference("team/app:2"));
    let rep = push(&user, "scratch", &target2, 5, 1, 1000, tmp.path())
        .await
        .unwrap();
    let raw = user.get_manifest(&target2).await.unwrap();
    assert_eq!(raw.digest, rep.digest);
    assert!(
        issuer.issued() > issued,
        "no new token after the old expired"
    );
}

/// What the registry logs when it refuses an expired token.
const EXPIRED: &str = "token not to be used after";

/// Tokens that live 2 s (`expires_in` says so): hoist fetches new ones before they expire
/// instead of sending them to be refused. Only `access_token` in the answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_renewed_before_their_expires_in() {
    let (issuer, reg) = token_registry();
    issuer.set_lifetime(Duration::from_secs(2));
    issuer.set_fields(TokenFields::AccessTokenOnly);
    push_wait_push(&issuer, &reg).await;
    let log = reg.log();
    assert!(
        !log.contains(EXPIRED),
        "the registry refused an expired token:\n{log}"
    );
}

/// Tokens the registry stops accepting after 2 s though `expires_in` says 300 (revoked,
/// or a skewed clock): refused with a 401, which hoist answers with a new token. Only
/// `token` in the answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_refused_before_its_expires_in_is_fetched_again() {
    let (issuer, reg) = token_registry();
    issuer.set_lifetime_telling(Duration::from_secs(2), Duration::from_secs(300));
    issuer.set_fields(TokenFields::TokenOnly);
    push_wait_push(&issuer, &reg).await;
    let log = reg.log();
    assert!(log.contains(EXPIRED), "no token was refused:\n{log}");
}

/// Renewal is early, so a token server that cannot be reached then is no failure while
/// the token held is still good: here `expires_in` says 2 s (renewed after 1), the
/// registry accepts it for 300, and the issuer is gone when hoist next needs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_renewal_keeps_the_token_held() {
    let (issuer, reg) = token_registry();
    issuer.set_lifetime_telling(Duration::from_secs(300), Duration::from_secs(2));
    let tmp = tempfile::tempdir().unwrap();
    let user = client_as(&reg, USER);
    let target = r(&reg.reference("team/app:1"));
    let rep = push(&user, "scratch", &target, 8, 1, 1000, tmp.path())
        .await
        .unwrap();
    // A token for the pull scope, held from here on.
    assert_eq!(user.get_manifest(&target).await.unwrap().digest, rep.digest);
    drop(issuer);
    // Past its renewal time.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let again = user.get_manifest(&target).await.unwrap();
    assert_eq!(again.digest, rep.digest);
}

/// An identity token (what `docker login` stores as `identitytoken` for some registries)
/// is exchanged at the token server by the OAuth2 form (`POST`, `grant_type=
/// refresh_token`), with the scopes hoist needs; one the server does not know is refused
/// there, and the error says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_tokens_are_exchanged_by_the_oauth2_form() {
    let (issuer, reg) = token_registry();
    issuer.add_refresh_token("idt-user", USER.0);
    let tmp = tempfile::tempdir().unwrap();
    let c = RegistryClient::new(ClientOptions::default()).unwrap();
    c.set_credential(&reg.addr, Credential::IdentityToken("idt-user".into()));
    let target = r(&reg.reference("team/app:1"));
    let rep = push(&c, "scratch", &target, 6, 1, 1000, tmp.path())
        .await
        .unwrap();
    assert_eq!(c.get_manifest(&target).await.unwrap().digest, rep.digest);
    let queries = issuer.queries();
    assert!(
        queries.iter().all(|q| q.method == "POST"
            && q.user.as_deref() == Some(USER.0)
            && q.service.as_deref() == Some(SERVICE)
            && q.status == 200),
        "{queries:#?}"
    );
    assert!(
        queries
            .iter()
            .any(|q| q.scopes == ["repository:team/app:pull,push"]),
        "{queries:#?}"
    );
    // The policy still holds for the account behind it.
    let e = push(
        &c,
        "scratch",
        &r(&reg.reference("base/x:1")),
        7,
        1,
        10,
        tmp.path(),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, hoist_oci::Error::Denied { .. }), "{e}");

    let stale = RegistryClient::new(ClientOptions::default()).unwrap();
    stale.set_credential(&reg.addr, Credential::IdentityToken("revoked".into()));
    let e = stale.get_manifest(&target).await.unwrap_err().to_string();
    assert!(
        e.starts_with(&format!(
            "the token server of {} refused the credentials (HTTP 401 on {})",
            reg.addr,
            issuer.realm()
        )),
        "{e}"
    );
}

/// The harness proves nothing unless the registry really checks tokens: one signed by a
/// key its rootcertbundle does not hold is refused, and its log says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registry_refuses_tokens_it_cannot_verify() {
    let trusted = TokenIssuer::start(&[USER], policy());
    let impostor = TokenIssuer::start(&[USER], policy());
    // Tokens come from the impostor; the registry trusts the other issuer's certificate.
    let reg = Registry::start_token(
        &impostor.realm(),
        SERVICE,
        support::token_issuer::ISSUER,
        &trusted.cert_file,
    );
    let c = client_as(&reg, USER);
    let e = c
        .get_manifest(&r(&reg.reference("team/app:1")))
        .await
        .unwrap_err();
    assert!(matches!(e, hoist_oci::Error::Unauthorized { .. }), "{e}");
    assert!(impostor.issued() > 0);
    let log = reg.log();
    assert!(log.contains("unable to verify certificate chain"), "{log}");
}
