//! Retries against a real registry behind a loopback fault proxy: a download cut in the
//! middle is resumed (or restarted) and still verified, 503s while a registry restarts are
//! waited out, an upload whose closing answer is lost is retried from a fresh session, and a
//! registry that stays down fails with a message that says how hard hoist tried.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use hoist_oci::build::{BuildOptions, BuildSpec, build_and_push};
use hoist_oci::client::{ClientOptions, RegistryClient};
use hoist_oci::{
    CopyOptions, Digest, Error, LayerSpec, LocalStore, Location, Platform, Reference, copy,
};
use support::fault_proxy::{FaultProxy, Faults, Hook};
use support::registry::{Registry, pseudo_random, write_file};

/// A client with the default number of retries but short pauses, so tests stay fast.
fn quick_client() -> RegistryClient {
    RegistryClient::new(ClientOptions {
        retries: 5,
        retry_pause: Duration::from_millis(20),
        ..Default::default()
    })
    .unwrap()
}

fn r(s: &str) -> Reference {
    Reference::parse(s).unwrap()
}

/// Push scratch + one layer of `size` incompressible bytes to `addr`; the image's manifest.
async fn push_image(c: &RegistryClient, addr: &str, repo_tag: &str, size: usize, tmp: &Path) {
    let d = tmp.join(repo_tag.replace([':', '/'], "_"));
    write_file(&d.join("data.bin"), &pseudo_random(7, size), 0o644);
    let spec = BuildSpec {
        base: "scratch".into(),
        layers: vec![LayerSpec {
            from: d,
            to: "/data".into(),
            ..Default::default()
        }],
        ..Default::default()
    };
    build_and_push(
        c,
        &spec,
        &r(&format!("{addr}/{repo_tag}")),
        &BuildOptions::default(),
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_cut_mid_body_is_resumed_and_verified() {
    let reg = Registry::start(false);
    let tmp = tempfile::tempdir().unwrap();
    push_image(
        &quick_client(),
        &reg.addr,
        "cut/img:v1",
        3 << 20,
        tmp.path(),
    )
    .await;
    let proxy = FaultProxy::start(
        &reg.addr,
        Faults {
            cut_after: 1 << 20,
            cuts: 1,
            ..Default::default()
        },
    );
    let c = quick_client();
    let image = r(&format!("{}/cut/img:v1", proxy.addr));
    let store = LocalStore::open(tmp.path().join("store")).unwrap();
    let pulled = store
        .pull_image(&c, &image, &Platform::linux_amd64(), false)
        .await
        .expect("a pull survives one cut connection");
    assert_eq!(
        proxy.cuts_done(),
        1,
        "the proxy cut the layer's download once"
    );
    let layer = &pulled.image.manifest.layers[0];
    let bytes = std::fs::read(store.blob_path(&layer.digest)).unwrap();
    assert_eq!(
        Digest::of(&bytes),
        layer.digest,
        "the stored layer is whole"
    );
    let moved = c.counters();
    assert_eq!(moved.retries, 1, "{moved:?}");
    // distribution honours `Range` for blobs: only the missing part came again.
    assert_eq!(moved.resent_bytes, 0, "{moved:?}");
    assert_eq!(
        moved.download_bytes,
        bytes.len() as u64 + pulled.image.manifest.config.size
    );
    let blobs = std::fs::read_dir(store.layout().root().join("blobs/sha256")).unwrap();
    let names: Vec<String> = blobs
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().all(|n| !n.starts_with('.')),
        "no temp file left: {names:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_cut_twice_resumes_or_restarts() {
    let reg = Registry::start(false);
    let tmp = tempfile::tempdir().unwrap();
    let c = quick_client();
    push_image(&c, &reg.addr, "cut/img:v1", 2 << 20, tmp.path()).await;
    let m = c
        .get_manifest(&r(&format!("{}/cut/img:v1", reg.addr)))
        .await
        .unwrap();
    let layer = m.image().unwrap().layers[0].clone();
    // Cut twice: with `Range` honoured each attempt resumes where the last stopped; with
    // it ignored (200), each starts over and the file is rewritten from its first byte.
    for ignore_range in [false, true] {
        let proxy = FaultProxy::start(
            &reg.addr,
            Faults {
                cut_after: 700 << 10,
                cuts: 2,
                ignore_range,
                ..Default::default()
            },
        );
        let c = quick_client();
        let dest = tmp.path().join(format!("blob-{ignore_range}"));
        let n = c
            .download_blob_to(
                &r(&format!("{}/cut/img:v1", proxy.addr)),
                &layer.digest,
                layer.size,
                &dest,
            )
            .await
            .unwrap();
        assert_eq!(proxy.cuts_done(), 2);
        assert_eq!(n, layer.size);
        assert_eq!(Digest::of(&std::fs::read(&dest).unwrap()), layer.digest);
        let moved = c.counters();
        assert_eq!((moved.retries, moved.download_bytes), (2, layer.size));
        if ignore_range {
            // Each cut attempt got the 700 KiB (less the answer's head) that came again.
            assert!(moved.resent_bytes > 2 * (600 << 10), "{moved:?}");
        } else {
            assert_eq!(moved.resent_bytes, 0, "{moved:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_answering_503_four_times_is_waited_for() {
    let reg = Registry::start(false);
    let tmp = tempfile::tempdir().unwrap();
    // Push: the first 4 requests (the first blob probes) get 503 and a closed connection.
    let proxy = FaultProxy::start(
        &reg.addr,
        Faults {
            unavailable: 4,
            ..Default::default()
        },
    );
    let c = quick_client();
    let started = Instant::now();
    push_image(&c, &proxy.addr, "busy/img:v1", 64 << 10, tmp.path()).await;
    assert_eq!(proxy.unavailable_done(), 4);
    assert!(c.counters().retries >= 4, "{:?}", c.counters());
    assert!(started.elapsed() < Duration::from_secs(10));
    // Pull: the same, and `Retry-After: 1` is waited for (once per 503, bounded).
    let proxy = FaultProxy::start(
        &reg.addr,
        Faults {
            unavailable: 4,
            retry_after: Some(1),
            ..Default::default()
        },
    );
    let c = quick_client();
    let store = LocalStore::open(tmp.path().join("store")).unwrap();
    let started = Instant::now();
    store
        .pull_image(
            &c,
            &r(&format!("{}/busy/img:v1", proxy.addr)),
            &Platform::linux_amd64(),
            false,
        )
        .await
        .expect("a pull waits for a registry that answers 503 four times");
    assert_eq!(proxy.unavailable_done(), 4);
    // The manifest request met all 4 (pull starts with it, alone): 4 pauses of >= 1 s.
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(4),
        "Retry-After was not honoured: {took:?}"
    );
    assert!(took < Duration::from_secs(15), "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_whose_closing_answer_is_lost_is_not_lost() {
    let reg = Registry::start(false);
    let target = r(&format!("{}/lost/answer:v1", reg.addr));
    // A blob sent from memory (an image config is), then one in PATCH chunks from a file:
    // the registry commits each, the proxy drops the answer to the closing PUT.
    for chunked in [false, true] {
        let proxy = FaultProxy::start(
            &reg.addr,
            Faults {
                lost_closing_answers: 1,
                ..Default::default()
            },
        );
        let c = RegistryClient::new(ClientOptions {
            retry_pause: Duration::from_millis(20),
            chunk_size: chunked.then_some(64 << 10),
            ..Default::default()
        })
        .unwrap();
        let via = r(&format!("{}/lost/answer:v1", proxy.addr));
        let data = pseudo_random(chunked as u64 + 11, 200 << 10);
        let d = Digest::of(&data);
        if chunked {
            let tmp = tempfile::tempdir().unwrap();
            let path = tmp.path().join("blob");
            std::fs::write(&path, &data).unwrap();
            c.upload_blob_file(&via, &d, &path, data.len() as u64)
                .await
                .expect("a chunked upload survives a lost closing answer");
        } else {
            c.upload_blob(&via, &d, data.clone().into(), None)
                .await
                .expect("an upload survives a lost closing answer");
        }
        assert_eq!(proxy.lost_closing_answers_done(), 1, "chunked: {chunked}");
        assert!(quick_client().has_blob(&target, &d).await.unwrap());
        assert_eq!(c.counters().retries, 1, "chunked: {chunked}");
    }
}

/// A chunk (PATCH) whose answer is lost after the registry appended it: sent again into
/// the same session, distribution 2.x would append it twice (it ignores `Content-Range`)
/// and refuse the closing PUT (DIGEST_INVALID). It is sent again into a fresh session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_chunk_whose_answer_is_lost_goes_again_into_a_fresh_session() {
    let reg = Registry::start(false);
    let target = r(&format!("{}/lost/chunk:v1", reg.addr));
    for from_file in [false, true] {
        let proxy = FaultProxy::start(
            &reg.addr,
            Faults {
                lost_patch_answers: 1,
                ..Default::default()
            },
        );
        let c = RegistryClient::new(ClientOptions {
            retry_pause: Duration::from_millis(20),
            chunk_size: Some(64 << 10),
            ..Default::default()
        })
        .unwrap();
        let via = r(&format!("{}/lost/chunk:v1", proxy.addr));
        let data = pseudo_random(from_file as u64 + 21, 200 << 10);
        let d = Digest::of(&data);
        let sent = if from_file {
            let tmp = tempfile::tempdir().unwrap();
            let path = tmp.path().join("blob");
            std::fs::write(&path, &data).unwrap();
            c.upload_blob_file(&via, &d, &path, data.len() as u64)
                .await
                .map(|_| ())
        } else {
            c.upload_blob(&via, &d, data.clone().into(), None).await
        };
        sent.unwrap_or_else(|e| panic!("from a file: {from_file}: {e}"));
        assert_eq!(
            proxy.lost_patch_answers_done(),
            1,
            "from a file: {from_file}"
        );
        assert_eq!(
            quick_client().get_blob(&target, &d).await.unwrap().len(),
            data.len()
        );
        assert_eq!(c.counters().retries, 1, "from a file: {from_file}");
    }
}

/// An upload whose closing answer was lost but which landed takes back only its own bytes
/// from the re-sent count: a download that really started over keeps its re-sent bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_landed_upload_takes_back_only_its_own_resent_bytes() {
    let reg = Registry::start(false);
    let direct = r(&format!("{}/count/resent:v1", reg.addr));
    let big = pseudo_random(31, 300 << 10);
    let big_d = Digest::of(&big);
    quick_client()
        .upload_blob(&direct, &big_d, big.clone().into(), None)
        .await
        .unwrap();
    let proxy = FaultProxy::start(
        &reg.addr,
        Faults {
            cut_after: 100 << 10,
            cuts: 1,
            ignore_range: true,
            lost_closing_answers: 1,
            ..Default::default()
        },
    );
    let c = quick_client();
    let via = r(&format!("{}/count/resent:v1", proxy.addr));
    let tmp = tempfile::tempdir().unwrap();
    c.download_blob_to(&via, &big_d, big.len() as u64, &tmp.path().join("big"))
        .await
        .unwrap();
    assert_eq!(proxy.cuts_done(), 1);
    let restarted = c.counters().resent_bytes;
    assert!(
        restarted > 50 << 10,
        "the download started over: {restarted}"
    );
    let small = pseudo_random(32, 50 << 10);
    let small_d = Digest::of(&small);
    c.upload_blob(&via, &small_d, small.clone().into(), None)
        .await
        .unwrap();
    assert_eq!(proxy.lost_closing_answers_done(), 1);
    let after = c.counters();
    assert_eq!(after.resent_bytes, restarted, "{after:?}");
    assert_eq!(after.upload_bytes, small.len() as u64, "{after:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_that_stays_down_fails_saying_how_long_it_was_tried() {
    // A port nobody listens on: every connection is refused.
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let c = quick_client();
    let started = Instant::now();
    let e = c
        .get_manifest(&r(&format!("{addr}/down/img:v1")))
        .await
        .unwrap_err();
    let took = started.elapsed();
    match &e {
        Error::GaveUp { requests, last, .. } => {
            assert_eq!(*requests, 6);
            assert!(matches!(**last, Error::Transport { .. }), "{last}");
        }
        e => panic!("expected GaveUp, got {e:?}"),
    }
    let said = e.to_string();
    assert!(said.contains("Connection refused"), "{said}");
    assert!(
        said.contains("gave up on GET /v2/down/img/manifests/v1 after 6 requests over"),
        "{said}"
    );
    assert!(said.contains("is the registry running?"), "{said}");
    assert!(said.contains("HOIST_REGISTRY_RETRIES=N"), "{said}");
    // 5 pauses of 20, 40, 80, 160, 320 ms (+ up to a quarter): the budget was used.
    assert!(took >= Duration::from_millis(620), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_session_the_registry_forgot_is_replaced() {
    // A registry that restarted forgets its sessions (404 to PATCH and PUT on them): the
    // session opened before is one it never knew here.
    let reg = Registry::start(false);
    let r = r(&format!("{}/forgot/session:v1", reg.addr));
    let gone = format!(
        "http://{}/v2/forgot/session/blobs/uploads/3f0f6f1e-1111-4222-8333-444455556666?_state=gone",
        reg.addr
    );
    for chunk_size in [None, Some(64 << 10)] {
        let c = RegistryClient::new(ClientOptions {
            retry_pause: Duration::from_millis(20),
            chunk_size,
            ..Default::default()
        })
        .unwrap();
        let data = pseudo_random(chunk_size.unwrap_or(1), 200 << 10);
        let d = Digest::of(&data);
        c.upload_blob(&r, &d, data.into(), Some(gone.clone()))
            .await
            .expect("sent again into a fresh session");
        assert!(c.has_blob(&r, &d).await.unwrap());
        assert_eq!(c.counters().retries, 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_restarting_at_the_start_of_a_pull_and_during_an_upload_is_waited_for() {
    let mut reg = Registry::start(false);
    let tmp = tempfile::tempdir().unwrap();
    push_image(
        &quick_client(),
        &reg.addr,
        "restart/img:v1",
        256 << 10,
        tmp.path(),
    )
    .await;
    let image = r(&format!("{}/restart/img:v1", reg.addr));

    // Down for 2 s as the pull starts (refused connections): the default pauses (0.25,
    // 0.5, 1, 2 s …) outlast it.
    reg.kill();
    let c = RegistryClient::new(ClientOptions::default()).unwrap();
    let store = LocalStore::open(tmp.path().join("store")).unwrap();
    let pull = {
        let (c, store, image) = (c.clone(), store.clone(), image.clone());
        tokio::spawn(async move {
            store
                .pull_image(&c, &image, &Platform::linux_amd64(), false)
                .await
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    reg.restart();
    let pulled = pull
        .await
        .unwrap()
        .expect("the pull waited for the registry");
    assert!(c.counters().retries >= 3, "{:?}", c.counters());
    let layer = &pulled.image.manifest.layers[0];
    let bytes = std::fs::read(store.blob_path(&layer.digest)).unwrap();
    assert_eq!(Digest::of(&bytes), layer.digest);

    // Restarted between opening an upload session and sending into it: the session is
    // gone (404), the blob goes into a fresh one.
    let c = quick_client();
    let data = pseudo_random(99, 100 << 10);
    let d = Digest::of(&data);
    let session = c
        .probe_upload(&image, &d)
        .await
        .unwrap()
        .expect("a session");
    reg.restart();
    c.upload_blob(&image, &d, data.into(), Some(session))
        .await
        .expect("sent again into a fresh session");
    assert!(c.has_blob(&image, &d).await.unwrap());
    assert_eq!(c.counters().retries, 1);
}

/// Empty a registry's storage, as a restart on an `emptyDir` or tmpfs does.
fn wipe(storage: &Path) {
    match std::fs::remove_dir_all(storage) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => panic!("wiping {storage:?}: {e}"),
        _ => {}
    }
}

/// A fault proxy that runs `at_put` before each manifest PUT (with its number), counting
/// the calls.
fn proxy_at_manifest_put(
    target: &str,
    at_put: impl Fn(u32) + Send + Sync + 'static,
) -> (FaultProxy, std::sync::Arc<std::sync::atomic::AtomicU32>) {
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let counted = calls.clone();
    let hook = Hook(std::sync::Arc::new(move |n| {
        counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        at_put(n)
    }));
    let proxy = FaultProxy::start(
        target,
        Faults {
            before_manifest_put: Some(hook),
            ..Default::default()
        },
    );
    (proxy, calls)
}

/// Every blob of `image` (config and layers), read from the registry itself.
async fn assert_complete(c: &RegistryClient, image: &Reference) {
    let raw = c.get_manifest(image).await.expect("the manifest is there");
    let m = raw.image().unwrap();
    for d in std::iter::once(&m.config).chain(m.layers.iter()) {
        assert!(
            c.has_blob(image, &d.digest).await.unwrap(),
            "{} lacks {}",
            image,
            d.digest
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_restarted_with_empty_storage_before_the_manifest_gets_the_blobs_again() {
    // The registry restarts with its storage wiped after it accepted every blob, just
    // as the manifest goes up: the push sends the blobs again and puts the manifest again.
    let reg = std::sync::Arc::new(std::sync::Mutex::new(Registry::start(false)));
    let (addr, storage) = {
        let r = reg.lock().unwrap();
        (r.addr.clone(), r.storage())
    };
    let in_hook = reg.clone();
    let (proxy, calls) = proxy_at_manifest_put(&addr, move |n| {
        if n == 0 {
            let mut r = in_hook.lock().unwrap();
            r.kill();
            wipe(&storage);
            r.restart();
        }
    });
    let tmp = tempfile::tempdir().unwrap();
    let layers = (0..2)
        .map(|i| {
            let d = tmp.path().join(format!("l{i}"));
            write_file(
                &d.join("data.bin"),
                &pseudo_random(40 + i, 300 << 10),
                0o644,
            );
            LayerSpec {
                from: d,
                to: format!("/data{i}"),
                ..Default::default()
            }
        })
        .collect();
    let spec = BuildSpec {
        base: "scratch".into(),
        layers,
        ..Default::default()
    };
    let c = quick_client();
    let target = r(&format!("{}/wiped/img:v1", proxy.addr));
    let rep = tokio::time::timeout(
        Duration::from_secs(60),
        build_and_push(&c, &spec, &target, &BuildOptions::default()),
    )
    .await
    .expect("the push ends")
    .expect("the push sent the lost blobs again");
    assert!(
        calls.load(std::sync::atomic::Ordering::SeqCst) >= 2,
        "the manifest went up twice"
    );
    // Two layers and the config, each sent twice.
    assert_eq!(rep.transfer.blob_uploads, 6, "{:?}", rep.transfer);
    assert_complete(&c, &r(&format!("{addr}/wiped/img:v1"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_send_blobs_the_registry_lost_again_or_say_which_it_still_lacks() {
    let src = Registry::start(false);
    let dst = Registry::start(false);
    let tmp = tempfile::tempdir().unwrap();
    push_image(
        &quick_client(),
        &src.addr,
        "src/img:v1",
        200 << 10,
        tmp.path(),
    )
    .await;
    let source: Location = format!("{}/src/img:v1", src.addr).parse().unwrap();
    let layout: Location = format!("oci:{}:img", tmp.path().join("layout").display())
        .parse()
        .unwrap();
    let opts = CopyOptions::default();
    copy(&quick_client(), &source, &layout, &opts)
        .await
        .unwrap();

    // The first manifest PUT of each copy finds the destination's storage empty.
    let storage = dst.storage();
    let (proxy, _) = proxy_at_manifest_put(&dst.addr, move |n| {
        if n % 2 == 0 {
            wipe(&storage)
        }
    });
    for (from, repo) in [(&source, "from-registry"), (&layout, "from-layout")] {
        let to: Location = format!("{}/{repo}/img:v1", proxy.addr).parse().unwrap();
        let c = quick_client();
        let rep = tokio::time::timeout(Duration::from_secs(60), copy(&c, from, &to, &opts))
            .await
            .expect("the copy ends")
            .unwrap_or_else(|e| panic!("{from} -> {to}: {e}"));
        assert_eq!(rep.transfer.manifest_puts, 1, "{from}: {:?}", rep.transfer);
        assert_eq!(
            rep.transfer.blob_uploads, 4,
            "{from}: sent twice: {:?}",
            rep.transfer
        );
        assert_complete(&c, &r(&format!("{}/{repo}/img:v1", dst.addr))).await;
    }

    // Storage wiped before every manifest PUT: sent again once, then a clear error.
    let storage = dst.storage();
    let (proxy, calls) = proxy_at_manifest_put(&dst.addr, move |_| wipe(&storage));
    let to: Location = format!("{}/again/img:v1", proxy.addr).parse().unwrap();
    let c = quick_client();
    let e = tokio::time::timeout(Duration::from_secs(60), copy(&c, &source, &to, &opts))
        .await
        .expect("the copy ends")
        .expect_err("the registry keeps losing the blobs");
    assert_eq!(
        calls.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "one more try, not more"
    );
    assert!(matches!(e, Error::BlobsLost { .. }), "{e:?}");
    let msg = e.to_string();
    let raw = c
        .get_manifest(&r(&format!("{}/src/img:v1", src.addr)))
        .await
        .unwrap();
    let m = raw.image().unwrap();
    for d in std::iter::once(&m.config).chain(m.layers.iter()) {
        assert!(
            msg.contains(&d.digest.to_string()),
            "names {}: {msg}",
            d.digest
        );
    }
    assert!(
        msg.contains("does not have 2 blobs")
            && msg.contains("\nhint: ")
            && !msg.contains("unexpected HTTP"),
        "{msg}"
    );
}
