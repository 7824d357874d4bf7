//! Append benchmark against a real local registry (no network, no downloads): a one-file
//! change appended onto a ~100 MB base already in the registry, pushed.
//!
//! Run: `cargo bench -p hoist-oci --bench oci` (prints a Markdown table). The copy
//! comparison with skopeo runs the `hoist` binary: `cargo bench -p hoist-cli --bench image_copy`.

#[path = "../tests/support/bench.rs"]
mod bench;
#[path = "../tests/support/registry.rs"]
mod registry;

use std::time::Instant;

use bench::{ms, stats};
use hoist_oci::build::{BuildOptions, BuildSpec, build_and_push};
use hoist_oci::client::{ClientOptions, RegistryClient};
use hoist_oci::{LayerSpec, Reference};
use registry::{Registry, pseudo_random, write_file};

async fn base_image(
    c: &RegistryClient,
    target: &Reference,
    layers: usize,
    layer_size: usize,
    tmp: &std::path::Path,
) {
    let mut specs = vec![];
    for i in 0..layers {
        let d = tmp.join(format!("layer{i}"));
        write_file(
            &d.join("blob.bin"),
            &pseudo_random(1000 + i as u64, layer_size),
            0o644,
        );
        specs.push(LayerSpec {
            from: d,
            to: format!("/data/{i}"),
            ..Default::default()
        });
    }
    let spec = BuildSpec {
        base: "scratch".into(),
        layers: specs,
        ..Default::default()
    };
    build_and_push(c, &spec, target, &BuildOptions::default())
        .await
        .expect("push base");
}

fn main() {
    // `cargo bench` passes `--bench`; nothing to filter. The runtime flavour hoist's
    // commands use (`hoist_oci::block_on`).
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let open = Registry::start(false);
    let tmp = tempfile::tempdir().unwrap();
    let c = RegistryClient::new(ClientOptions::default()).unwrap();

    let base = Reference::parse(&open.reference("bench/base:1")).unwrap();
    rt.block_on(base_image(
        &c,
        &base,
        4,
        25 * 1024 * 1024,
        &tmp.path().join("base"),
    ));
    let app = tmp.path().join("app");
    for i in 0..50 {
        write_file(
            &app.join(format!("static/f{i}.txt")),
            format!("file {i}\n").repeat(50).as_bytes(),
            0o644,
        );
    }
    write_file(&app.join("main.js"), b"console.log(0)\n", 0o644);
    let deps = tmp.path().join("deps");
    write_file(
        &deps.join("lib.bin"),
        &pseudo_random(7, 2 * 1024 * 1024),
        0o644,
    );
    let target = Reference::parse(&open.reference("bench/app:dev")).unwrap();
    let spec = BuildSpec {
        base: base.to_string(),
        layers: vec![
            LayerSpec {
                from: deps.clone(),
                to: "/deps".into(),
                ..Default::default()
            },
            LayerSpec {
                from: app.clone(),
                to: "/app".into(),
                ..Default::default()
            },
        ],
        cmd: Some(vec!["node".into(), "/app/main.js".into()]),
        ..Default::default()
    };
    rt.block_on(build_and_push(&c, &spec, &target, &BuildOptions::default()))
        .unwrap();
    let mut times = vec![];
    let mut uploaded = vec![];
    let mut layer_sizes = vec![];
    for round in 0..10 {
        write_file(
            &app.join("main.js"),
            format!("console.log({})\n", round + 1).as_bytes(),
            0o644,
        );
        let t = Instant::now();
        let rep = rt
            .block_on(build_and_push(&c, &spec, &target, &BuildOptions::default()))
            .unwrap();
        times.push(ms(t.elapsed()));
        assert_eq!(rep.layers_uploaded, 1);
        uploaded.push(rep.transfer.upload_bytes);
        let m = rt
            .block_on(c.get_manifest(&target))
            .unwrap()
            .image()
            .unwrap();
        layer_sizes.push(m.layers.last().unwrap().size + m.config.size);
    }
    let (lo, med, hi) = stats(&mut times);
    let row = format!(
        "| append: one-file change onto 100 MB base (4 layers) + 2 MB deps layer, push | {med:.1} ms | min {lo:.1} / max {hi:.1} ms; uploaded {} B/push = changed layer + config ({} B) |",
        uploaded[0], layer_sizes[0]
    );

    println!("load average at the end: {}", bench::load_average());
    println!("| benchmark | median | notes |\n|---|---|---|");
    println!("{row}");
}
