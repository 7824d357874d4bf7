//! A large layer is built, stored and pushed with bounded memory: the gzip'd tar goes to a
//! temp file and is streamed from there, never held whole. Measured with a counting global
//! allocator (this test binary only), so the test fails if any step buffers the layer.
//! Also: no temp file outlives a build, a store or a push, nor a failed build.

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use hoist_oci::build::{BuildOptions, BuildSpec, build_and_push, build_to_store};
use hoist_oci::client::{ClientOptions, RegistryClient};
use hoist_oci::layer::TEMP_PREFIX;
use hoist_oci::{Digest, LayerBuilder, LayerSpec, LocalStore, Reference};
use support::registry::{Registry, pseudo_random};

/// Counts live heap bytes and their high-water mark.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                let grow = new_size - layout.size();
                let now = LIVE.fetch_add(grow, Ordering::Relaxed) + grow;
                PEAK.fetch_max(now, Ordering::Relaxed);
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// The counters are process-wide: the tests of this binary take turns.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Peak heap growth (bytes above the live total at the start) while `f` runs.
fn peak_growth<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let out = f();
    let grew = PEAK.load(Ordering::Relaxed).saturating_sub(base);
    eprintln!("peak heap growth: {grew} bytes");
    (out, grew)
}

const LAYER: usize = 64 << 20;
/// Well below the layer: buffers (256 KiB file writer, compressor state, HTTP chunks) only.
const BOUND: usize = 8 << 20;

/// 64 MiB of incompressible bytes in `dir/model.bin`, written 1 MiB at a time, as a
/// layer putting it at `to`.
fn big_file(dir: &Path, to: &str) -> LayerSpec {
    let path = dir.join("model.bin");
    let mut f = std::fs::File::create(&path).unwrap();
    for i in 0..(LAYER >> 20) {
        f.write_all(&pseudo_random(i as u64 + 1, 1 << 20)).unwrap();
    }
    LayerSpec {
        from: path,
        to: to.into(),
        ..Default::default()
    }
}

fn temp_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(TEMP_PREFIX) || n.starts_with(".tmp"))
                .collect()
        })
        .unwrap_or_default()
}

/// Stream a file through sha256 (the test must not hold the layer either).
fn digest_of_file(path: &Path) -> (Digest, u64) {
    let mut w = hoist_oci::digest::HashingWriter::new(std::io::sink());
    std::io::copy(&mut std::fs::File::open(path).unwrap(), &mut w).unwrap();
    let (_, d, n) = w.finish();
    (d, n)
}

#[test]
fn large_layer_is_built_stored_and_pushed_with_bounded_memory() {
    let _turn = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let spec = big_file(tmp.path(), "/models/model.bin");

    // 1. Build: into a temp file, hashed on the way.
    let build_dir = tmp.path().join("build");
    let (layer, grew) = peak_growth(|| {
        LayerBuilder::new()
            .add(&spec)
            .unwrap()
            .build_in(&build_dir)
            .unwrap()
    });
    assert!(
        layer.size > LAYER as u64,
        "incompressible data: {}",
        layer.size
    );
    assert!(
        grew < BOUND,
        "building a {LAYER}-byte layer grew the heap by {grew} bytes (bound {BOUND})"
    );
    assert_eq!(
        digest_of_file(layer.path()),
        (layer.digest.clone(), layer.size)
    );
    let first = (layer.digest.clone(), layer.diff_id.clone());
    drop(layer);
    assert_eq!(temp_files(&build_dir), Vec::<String>::new());

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let client = RegistryClient::new(ClientOptions::default()).unwrap();
    let image = BuildSpec {
        base: "scratch".into(),
        layers: vec![spec],
        ..Default::default()
    };

    // 2. Into the local store: built in its blob directory, linked into place.
    let store = LocalStore::open(tmp.path().join("store")).unwrap();
    let name = Reference::parse("localhost:5000/model:1").unwrap();
    let (img, grew) = peak_growth(|| {
        rt.block_on(build_to_store(
            &client,
            &image,
            &store,
            &name,
            &BuildOptions::default(),
        ))
        .unwrap()
    });
    assert!(
        grew < BOUND,
        "building into the store grew the heap by {grew} bytes (bound {BOUND})"
    );
    let stored = &img.manifest.layers[0];
    assert_eq!(
        (stored.digest.clone(), img.config.rootfs.diff_ids[0].clone()),
        first,
        "same input, same layer digest and diff_id"
    );
    assert_eq!(
        digest_of_file(&store.blob_path(&stored.digest)),
        (stored.digest.clone(), stored.size)
    );
    assert_eq!(temp_files(&store.layout().blob_dir()), Vec::<String>::new());

    // 3. Pushed to a real registry: streamed from the temp file.
    let reg = Registry::start(false);
    let target = Reference::parse(&reg.reference("big/model:1")).unwrap();
    let push_tmp = tmp.path().join("push-tmp");
    let opts = BuildOptions {
        temp_dir: Some(push_tmp.clone()),
        ..Default::default()
    };
    let (rep, grew) = peak_growth(|| {
        rt.block_on(build_and_push(&client, &image, &target, &opts))
            .unwrap()
    });
    assert_eq!(rep.layers_uploaded, 1);
    assert!(rep.transfer.upload_bytes > LAYER as u64);
    assert!(
        grew < BOUND,
        "building and pushing grew the heap by {grew} bytes (bound {BOUND})"
    );
    let blob = reg.blob_file(first.0.hex());
    assert_eq!(
        digest_of_file(&blob).0,
        first.0,
        "the registry holds the layer"
    );
    assert_eq!(temp_files(&push_tmp), Vec::<String>::new());
}

/// A build that fails (here: a missing base) leaves no temp file behind, in the store's blob
/// directory nor in the push temp directory, even though its layers were already built.
#[test]
fn failed_builds_leave_no_temp_files() {
    let _turn = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("app")).unwrap();
    std::fs::write(tmp.path().join("app/a.txt"), pseudo_random(7, 1 << 20)).unwrap();
    let reg = Registry::start(false);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = RegistryClient::new(ClientOptions::default()).unwrap();
    let image = BuildSpec {
        base: reg.reference("nothing/here:1"),
        layers: vec![LayerSpec {
            from: tmp.path().join("app"),
            to: "/app".into(),
            ..Default::default()
        }],
        ..Default::default()
    };
    let store = LocalStore::open(tmp.path().join("store")).unwrap();
    let name = Reference::parse("localhost:5000/app:1").unwrap();
    let err = rt
        .block_on(build_to_store(
            &client,
            &image,
            &store,
            &name,
            &BuildOptions::default(),
        ))
        .unwrap_err()
        .to_string();
    assert!(err.contains("nothing/here"), "{err}");
    assert_eq!(temp_files(&store.layout().blob_dir()), Vec::<String>::new());

    let push_tmp = tmp.path().join("push-tmp");
    let target = Reference::parse(&reg.reference("app/x:1")).unwrap();
    let opts = BuildOptions {
        temp_dir: Some(push_tmp.clone()),
        ..Default::default()
    };
    assert!(
        rt.block_on(build_and_push(&client, &image, &target, &opts))
            .is_err()
    );
    assert_eq!(temp_files(&push_tmp), Vec::<String>::new());
}

/// Wait (bounded) until `dir` holds a layer temp file, or no longer does.
fn wait_for_temp_files(dir: &Path, present: bool) -> std::time::Duration {
    let start = std::time::Instant::now();
    while temp_files(dir).is_empty() == present {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(20),
            "temp files in {} still {}: {:?}",
            dir.display(),
            if present { "absent" } else { "present" },
            temp_files(dir)
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    start.elapsed()
}

/// Cancelling a build stops it with an error (not a finished layer) and removes its file;
/// dropping a build future (what Ctrl-C does) cancels its layer builds the same way.
#[test]
fn cancelled_builds_stop_and_remove_their_temp_files() {
    let _turn = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let spec = big_file(tmp.path(), "/model.bin");

    let dir = tmp.path().join("cancel");
    let cancel = std::sync::atomic::AtomicBool::new(false);
    let mut b = LayerBuilder::new();
    b.add(&spec).unwrap();
    let err = std::thread::scope(|s| {
        let build = s.spawn(|| b.build_in_cancellable(&dir, &cancel));
        // Started writing: a finished build would return Ok instead.
        wait_for_temp_files(&dir, true);
        cancel.store(true, Ordering::Relaxed);
        build.join().unwrap().unwrap_err()
    });
    assert!(
        matches!(err, hoist_oci::Error::Cancelled { .. }),
        "a cancelled build fails as cancelled, got: {err}"
    );
    assert!(err.to_string().contains("model.bin was cancelled"), "{err}");
    assert_eq!(temp_files(&dir), Vec::<String>::new());

    // The future of a whole build dropped while its layer is being written.
    let push_tmp = tmp.path().join("push-tmp");
    let opts = BuildOptions {
        temp_dir: Some(push_tmp.clone()),
        ..Default::default()
    };
    let image = BuildSpec {
        base: "scratch".into(),
        layers: vec![spec],
        ..Default::default()
    };
    let client = RegistryClient::new(ClientOptions::default()).unwrap();
    // Never contacted: the build is dropped before anything is pushed.
    let target = Reference::parse("127.0.0.1:9/never/pushed:1").unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let build = build_and_push(&client, &image, &target, &opts);
        tokio::pin!(build);
        loop {
            tokio::select! {
                r = &mut build => panic!("the build finished before it could be dropped: {r:?}"),
                _ = tokio::time::sleep(std::time::Duration::from_millis(2)) => {
                    if !temp_files(&push_tmp).is_empty() {
                        break;
                    }
                }
            }
        }
    });
    let took = wait_for_temp_files(&push_tmp, false);
    eprintln!("temp file removed {took:?} after the build was dropped");
}
