//! `hoist validate` checks image references in service.yaml (hoist-config), and the image
//! commands parse them (hoist-oci). The two crates do not depend on each other, so each has
//! the grammar; this test, which sees both, keeps their answers the same.

use hoist_config::names::image_reference_problem;
use hoist_oci::Reference;

#[test]
fn config_and_images_agree_on_what_a_reference_is() {
    let digest = format!("sha256:{}", "a".repeat(64));
    let long_tag = format!("x:{}", "t".repeat(129));

    let cases = [
        "busybox",
        "busybox:1.36",
        "library/busybox:latest",
        "docker.io/library/busybox",
        "localhost/app",
        "localhost:5000/team/app:v1",
        "127.0.0.1:5000/a/b:c",
        "[::1]:5000/a:b",
        "registry.example.com/team/base:v2",
        "a.b/c_d-e/f__g---h:T_1.0-rc",
        &format!("app@{digest}"),
        &format!("host:1/app:v1@{digest}"),
        "",
        "   ",
        "Not A Ref",
        "UPPER/case:1",
        "https://x/y",
        "app:",
        "app:-bad",
        ":tag",
        "host:99999/app",
        "host:/app",
        "[::1/app",
        "a//b",
        "/app",
        "app/",
        "a..b",
        "a___b",
        "-app",
        "app@sha256:abc",
        "app@md5:00",
        &long_tag,
        "ho st/app",
        "busybox ",
        " ghcr.io/x:1",
        "app:1\n",
        "é/app",
        "app:é",
        "localhost:5000//x",
        &"a".repeat(247),
        &"a".repeat(248),
        &format!("host:1/{}", "a".repeat(255)),
        &format!("host:1/{}", "a".repeat(256)),
        &format!("team/{}", "a".repeat(250)),
        &format!("team/{}", "a".repeat(251)),
    ];
    for s in cases {
        let config = image_reference_problem(s);
        let images = Reference::parse(s);
        assert_eq!(
            config.is_none(),
            images.is_ok(),
            "{s:?}: hoist-config says {config:?}, hoist-oci says {images:?}"
        );
    }
}
