//! Blobs mounted from where hoist saw them before ([`hoist_oci::blob_locations`]): a copy
//! or push to a registry that already holds a blob in another repository mounts it from
//! there rather than sending its bytes again. Real registries (Debian's docker-registry),
//! with open access and with token auth.

mod support;

use std::path::Path;

use hoist_oci::auth::Credential;
use hoist_oci::blob_locations::BlobLocations;
use hoist_oci::build::{BuildOptions, BuildSpec, build_and_push};
use hoist_oci::client::{ClientOptions, RegistryClient};
use hoist_oci::copy::{CopyOptions, CopyReport, Location, copy};
use hoist_oci::{Digest, LayerSpec, Reference};
use support::registry::{Registry, pseudo_random, write_file};
use support::token_issuer::{SERVICE, TokenIssuer, grant};

/// A client whose memory of blob locations is `memory`.
fn client(memory: &Path) -> RegistryClient {
    RegistryClient::new(ClientOptions {
        blob_locations: Some(memory.to_path_buf()),
        ..Default::default()
    })
    .unwrap()
}

fn r(s: &str) -> Reference {
    Reference::parse(s).unwrap()
}

fn loc(s: &str) -> Location {
    Location::Registry(r(s))
}

/// Push an image of `layers` pseudo-random layers (seeded by `seed`) on scratch as
/// `target`.
async fn push(c: &RegistryClient, target: &str, seed: u64, layers: usize, tmp: &Path) {
    let mut specs = vec![];
    for i in 0..layers {
        let d = tmp.join(format!("l{seed}-{i}"));
        let data = pseudo_random(seed * 100 + i as u64, 100_000 + i * 1000);
        write_file(&d.join(format!("f{i}.bin")), &data, 0o644);
        specs.push(LayerSpec {
            from: d,
            to: format!("/d{seed}-{i}"),
            ..Default::default()
        });
    }
    let spec = BuildSpec {
        base: "scratch".into(),
        layers: specs,
        ..Default::default()
    };
    build_and_push(c, &spec, &r(target), &BuildOptions::default())
        .await
        .unwrap();
}

/// The digests of the config and layers `image` names, from the registry.
async fn blobs_of(c: &RegistryClient, image: &str) -> Vec<Digest> {
    let m = c.get_manifest(&r(image)).await.unwrap();
    let m = m.image().unwrap();
    std::iter::once(&m.config)
        .chain(m.layers.iter())
        .map(|d| d.digest.clone())
        .collect()
}

async fn copied(c: &RegistryClient, from: &str, to: &str) -> CopyReport {
    copy(c, &loc(from), &loc(to), &CopyOptions::default())
        .await
        .unwrap()
}

/// Copy A → B/x/one, then A → B/x/two: the second copy mounts every blob from x/one
/// (remembered, as hoist did not come from there), sending no byte; a client with a fresh
/// memory uploads them all again; and the memory outlives the client (a new process).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_copy_mounts_from_where_the_first_put_the_blobs() {
    let (a, b) = (Registry::start(false), Registry::start(false));
    let tmp = tempfile::tempdir().unwrap();
    let memory = tmp.path().join("blob-locations");
    let src = a.reference("app:1");
    push(&client(&memory), &src, 1, 3, tmp.path()).await;

    let c = client(&memory);
    let one = copied(&c, &src, &b.reference("x/one:1")).await;
    assert_eq!((one.blobs_copied, one.blobs_mounted), (4, 0), "{one:?}");
    assert_eq!(b.blob_writes("x/one"), 4);

    let two = copied(&c, &src, &b.reference("x/two:1")).await;
    assert_eq!(
        (two.blobs_copied, two.blobs_mounted, two.bytes_copied),
        (0, 4, 0),
        "{two:?}"
    );
    assert_eq!(
        (two.transfer.mounts, two.transfer.upload_bytes),
        (4, 0),
        "{two:?}"
    );
    assert_eq!(b.blob_writes("x/two"), 0, "no blob byte went to x/two");
    assert_eq!(two.digest, one.digest);
    // The image is whole there: every blob reads back from x/two.
    let inspect = support::registry::skopeo(&[
        "inspect",
        "--tls-verify=false",
        &format!("docker://{}", b.reference("x/two:1")),
    ]);
    let inspect: serde_json::Value = serde_json::from_str(&inspect).unwrap();
    assert_eq!(inspect["Digest"], two.digest.to_string());
    let blobs = blobs_of(&c, &b.reference("x/two:1")).await;
    for d in &blobs {
        let bytes = c.get_blob(&r(&b.reference("x/two:1")), d).await.unwrap();
        d.verify(&bytes, "a mounted blob").unwrap();
    }

    // No memory: the same copy sends every blob again.
    let fresh = client(&tmp.path().join("other-memory"));
    let three = copied(&fresh, &src, &b.reference("x/three:1")).await;
    assert_eq!(
        (three.blobs_copied, three.blobs_mounted),
        (4, 0),
        "{three:?}"
    );
    assert_eq!(b.blob_writes("x/three"), 4);

    // The memory is on disk: a new client (another hoist process) mounts.
    let four = copied(&client(&memory), &src, &b.reference("x/four:1")).await;
    assert_eq!((four.blobs_copied, four.blobs_mounted), (0, 4), "{four:?}");
    // What it holds: the most recent repository first, at most four.
    let m = BlobLocations::new(&memory);
    assert_eq!(
        m.repositories(&b.addr, &blobs[1]),
        ["x/four", "x/two", "x/one"]
    );
    // And where the blobs came from on A.
    assert_eq!(m.repositories(&a.addr, &blobs[1]), ["app"]);
}

/// Registries A and B, and an image of two layers (seeded by `seed`) pushed to A as
/// `app:1`; its source reference and blob digests.
async fn two_registries_and_an_image(
    seed: u64,
    tmp: &Path,
) -> (Registry, Registry, String, Vec<Digest>) {
    let (a, b) = (Registry::start(false), Registry::start(false));
    let src = a.reference("app:1");
    push(&client(&tmp.join("m0")), &src, seed, 2, tmp).await;
    let blobs = blobs_of(&client(&tmp.join("m0")), &src).await;
    (a, b, src, blobs)
}

/// A memory at `memory` that names `repo` of `registry` for each of `blobs`, as someone
/// else's file could.
fn remember_by_hand(memory: &Path, registry: &str, blobs: &[Digest], repo: &str) {
    for d in blobs {
        let path = BlobLocations::new(memory).path(registry, d);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, format!("{repo}\n")).unwrap();
    }
}

/// A remembered repository that does not hold the blob (cleaned up since, or a file
/// someone wrote) costs one request per blob: the HEAD that asks the target first (a
/// mount never looks there); the mount's 202 opens the session the blob is uploaded into.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_memory_costs_one_head_per_blob() {
    let tmp = tempfile::tempdir().unwrap();
    let (_a, b, src, blobs) = two_registries_and_an_image(2, tmp.path()).await;

    // The baseline: nothing remembered.
    let plain = client(&tmp.path().join("m1"));
    let base = copied(&plain, &src, &b.reference("x/base:1")).await;
    assert_eq!((base.blobs_copied, base.blobs_mounted), (3, 0), "{base:?}");

    let stale = tmp.path().join("m2");
    remember_by_hand(&stale, &b.addr, &blobs, "x/nothere");
    let rep = copied(&client(&stale), &src, &b.reference("x/other:1")).await;
    assert_eq!((rep.blobs_copied, rep.blobs_mounted), (3, 0), "{rep:?}");
    assert_eq!(rep.transfer.mounts_declined, 3, "{rep:?}");
    assert_eq!(
        rep.transfer.requests,
        base.transfer.requests + 3,
        "a HEAD per blob more than without the memory: {rep:?} vs {base:?}"
    );
    let asked = b.log().matches("&from=x/nothere HTTP/").count();
    assert_eq!(asked, 3, "one mount from x/nothere per blob:\n{}", b.log());
    // x/other is remembered first now.
    assert_eq!(
        BlobLocations::new(&stale).repositories(&b.addr, &blobs[0]),
        ["x/other", "x/nothere"]
    );
}

/// A target that holds the blobs already (pushed there by someone else, so not in this
/// memory) is neither sent them again nor told they were mounted, whether the remembered
/// repository holds them (a mount would take) or not (a mount would open an upload).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_that_has_the_blobs_is_not_sent_them_whatever_is_remembered() {
    let tmp = tempfile::tempdir().unwrap();
    let (_a, b, src, blobs) = two_registries_and_an_image(5, tmp.path()).await;
    // Someone else's copies: the target, and another repository, hold the blobs.
    let other = client(&tmp.path().join("theirs"));
    copied(&other, &src, &b.reference("x/target:1")).await;
    copied(&other, &src, &b.reference("x/other:1")).await;
    let writes = b.blob_writes("x/target");

    for remembered in ["x/gone", "x/other"] {
        let memory = tmp
            .path()
            .join(format!("mine-{}", remembered.replace('/', "-")));
        remember_by_hand(&memory, &b.addr, &blobs, remembered);
        let rep = copied(&client(&memory), &src, &b.reference("x/target:1")).await;
        assert_eq!(
            (rep.blobs_copied, rep.blobs_mounted, rep.blobs_skipped),
            (0, 0, 3),
            "remembering {remembered}: {rep:?}"
        );
        assert_eq!(rep.transfer.upload_bytes, 0, "{rep:?}");
        assert_eq!(b.blob_writes("x/target"), writes, "nothing sent again");
    }
}

/// Layers pushed to one repository of a registry mount into another: a build pushed to
/// `team/a`, then the same layers to `team/b`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_mounts_layers_pushed_to_another_repository() {
    let reg = Registry::start(false);
    let tmp = tempfile::tempdir().unwrap();
    let memory = tmp.path().join("memory");
    let c = client(&memory);
    push(&c, &reg.reference("team/a:1"), 3, 2, tmp.path()).await;
    let spec = |dir: &Path| BuildSpec {
        base: "scratch".into(),
        layers: (0..2)
            .map(|i| LayerSpec {
                from: dir.join(format!("l3-{i}")),
                to: format!("/d3-{i}"),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let rep = build_and_push(
        &client(&memory),
        &spec(tmp.path()),
        &r(&reg.reference("team/b:1")),
        &BuildOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!((rep.layers_uploaded, rep.layers_mounted), (0, 2), "{rep:?}");
    // At most the config went up (the same bytes when the build is reproducible).
    assert!(rep.transfer.upload_bytes < 10_000, "{rep:?}");
    assert_eq!(reg.blob_writes("team/b") as u64, rep.transfer.blob_uploads);
}

const ADMIN: (&str, &str) = ("admin", "admin-secret");
const USER: (&str, &str) = ("user", "user-secret");

fn token_client(memory: &Path, reg: &Registry, (user, pass): (&str, &str)) -> RegistryClient {
    let c = client(memory);
    c.set_credential(
        &reg.addr,
        Credential::Basic {
            username: user.into(),
            password: pass.into(),
        },
    );
    c
}

/// Token auth: the mount from the remembered repository asks for pull on it in the same
/// token. Where the user may pull it, the blobs mount; where the token server leaves that
/// out (the user may not pull `secret/*`), the copy uploads the blobs as if nothing were
/// remembered, and asks about that repository only until the first refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_tokens_a_repository_the_user_may_not_pull_is_not_mounted_from() {
    let issuer = TokenIssuer::start(
        &[ADMIN, USER],
        vec![
            grant(Some(ADMIN.0), "*", &["pull", "push"]),
            grant(Some(USER.0), "team/*", &["pull", "push"]),
        ],
    );
    let b = Registry::start_token(
        &issuer.realm(),
        SERVICE,
        support::token_issuer::ISSUER,
        &issuer.cert_file,
    );
    let a = Registry::start(false);
    let tmp = tempfile::tempdir().unwrap();
    let memory = tmp.path().join("memory");
    let src = a.reference("app:1");
    push(&client(&memory), &src, 4, 3, tmp.path()).await;

    // The admin puts the image in secret/app: remembered there.
    let admin = token_client(&memory, &b, ADMIN);
    let first = copied(&admin, &src, &b.reference("secret/app:1")).await;
    assert_eq!(first.blobs_copied, 4, "{first:?}");

    // The user may push team/two but not pull secret/app: uploaded, not failed.
    issuer.clear_queries();
    let user = token_client(&memory, &b, USER);
    let two = copied(&user, &src, &b.reference("team/two:1")).await;
    assert_eq!((two.blobs_copied, two.blobs_mounted), (4, 0), "{two:?}");
    assert_eq!(two.digest, first.digest);
    let asked_secret = (issuer.queries().iter())
        .filter(|q| q.scopes.iter().any(|s| s.contains("secret/app")))
        .count();
    assert!(
        asked_secret >= 1,
        "the mount from secret/app was tried: {:?}",
        issuer.queries()
    );
    let granted_secret = (issuer.queries().iter())
        .flat_map(|q| q.granted.clone())
        .any(|(repo, actions)| repo == "secret/app" && !actions.is_empty());
    assert!(!granted_secret, "{:?}", issuer.queries());
    // Refused for the first blob (asked again once after a fresh token), and not
    // asked for the others.
    let refused = (b.log().lines())
        .filter(|l| {
            l.contains("/v2/team/two/blobs/uploads/?mount=")
                && l.contains("&from=secret/app HTTP/1.1\" 401")
        })
        .count();
    assert!(
        (1..=2).contains(&refused),
        "{refused} refused mounts:\n{}",
        b.log()
    );

    // team/two is remembered now, and the user may pull it: the next copy mounts.
    let three = copied(&user, &src, &b.reference("team/three:1")).await;
    assert_eq!(
        (three.blobs_copied, three.blobs_mounted),
        (0, 4),
        "{three:?}"
    );
    assert_eq!(b.blob_writes("team/three"), 0);
}
