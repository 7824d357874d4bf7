//! One test per kind of bad input: the message must name the file, the line
//! (and column) and the field, and nothing may panic.

use std::path::Path;

use hoist_config::{ConfigError, ErrorKind, Project, RenderOptions, render};

const MOLD: &str = "parameters:\n  - {name: image, type: string, required: true}\n  - {name: port, type: integer, default: 80}\n  - {name: replicas, type: integer, default: 1}\n";
const TEMPLATE: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {{ name }}\nspec:\n  containers:\n    - name: c\n      image: {{ image }}\n";

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

/// A valid base project; `files` add or replace files.
fn project(files: &[(&str, &str)]) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    write(root, "hoist.yaml", "name: t\nregistry: reg.local\n");
    write(root, "molds/web/mold.yaml", MOLD);
    write(root, "molds/web/pod.yaml", TEMPLATE);
    write(
        root,
        "services/a/service.yaml",
        "name: a\nmold: web\nimage:\n  layers:\n    - from: ./src\n      to: /src\n",
    );
    write(root, "services/a/src/main.txt", "hello");
    for (rel, text) in files {
        write(root, rel, text);
    }
    tmp
}

fn problems(files: &[(&str, &str)]) -> Vec<ConfigError> {
    let tmp = project(files);
    let p = Project::load(tmp.path()).expect("project loads");
    p.validate()
}

/// The single problem of `kind`, checked to name `file:line:` and `words`.
#[track_caller]
fn expect(
    problems: &[ConfigError],
    kind: ErrorKind,
    file_line: &str,
    words: &[&str],
) -> ConfigError {
    let matching: Vec<&ConfigError> = problems.iter().filter(|p| p.kind == kind).collect();
    assert_eq!(matching.len(), 1, "expected one {kind:?} in {problems:#?}");
    let e = matching[0].clone();
    let text = e.to_string();
    assert!(text.contains(file_line), "`{file_line}` not in: {text}");
    for w in words {
        assert!(text.contains(w), "`{w}` not in: {text}");
    }
    e
}

#[test]
fn valid_base_project_has_no_problems() {
    assert!(problems(&[]).is_empty(), "{:#?}", problems(&[]));
}

#[test]
fn yaml_syntax_error_names_file_line_column() {
    let p = problems(&[("services/b/service.yaml", "name: b\nenv: {A: 1\n")]);
    let e = expect(&p, ErrorKind::Syntax, "services/b/service.yaml:", &[]);
    let loc = e.location.expect("located");
    assert!(loc.line >= 3, "{loc:?}");
}

#[test]
fn unknown_field_suggests_the_right_one() {
    let p = problems(&[(
        "services/b/service.yaml",
        "name: b\nimage:\n  base: scratch\n  layers:\n    - from: ./x\n      too: /x\n",
    )]);
    let e = expect(
        &p,
        ErrorKind::UnknownField,
        "services/b/service.yaml:6:7:",
        &["`too`", "image.layers[0]"],
    );
    assert_eq!(e.help.as_deref(), Some("did you mean `to`?"));
}

#[test]
fn wrong_type_names_field_and_expected_type() {
    let p = problems(&[("services/b/service.yaml", "name: b\ndebug_port: lots\n")]);
    expect(
        &p,
        ErrorKind::WrongType,
        "services/b/service.yaml:2:",
        &["debug_port", "u16"],
    );
}

#[test]
fn wrong_parameter_type_points_at_the_value() {
    let p = problems(&[(
        "services/b/service.yaml",
        "name: b\nmold: web\nvalues:\n  image: x\n  replicas: two\n",
    )]);
    expect(
        &p,
        ErrorKind::WrongType,
        "services/b/service.yaml:5:3:",
        &["`replicas`", "an integer", "\"two\""],
    );
}

#[test]
fn service_without_name() {
    let p = problems(&[("services/b/service.yaml", "mold: web\n")]);
    expect(
        &p,
        ErrorKind::MissingField,
        "services/b/service.yaml:1:",
        &["`name`"],
    );
}

#[test]
fn invalid_kubernetes_name() {
    let p = problems(&[(
        "services/b/service.yaml",
        "# the b service\nname: My_Service\n",
    )]);
    let e = expect(
        &p,
        ErrorKind::InvalidName,
        "services/b/service.yaml:2:1:",
        &["My_Service", "lowercase"],
    );
    assert!(e.help.unwrap().contains("my-service"));
}

#[test]
fn duplicate_names_name_both_files() {
    let p = problems(&[("services/b/service.yaml", "\nname: a\n")]);
    let e = expect(
        &p,
        ErrorKind::DuplicateName,
        "services/b/service.yaml:2:1:",
        &["services/a/service.yaml"],
    );
    let first = e.related[0].to_string();
    assert!(first.contains("services/a/service.yaml:1:1:"), "{first}");
}

#[test]
fn missing_mold_suggests_existing_one() {
    let p = problems(&[("services/b/service.yaml", "name: b\nmold: wbe\n")]);
    let e = expect(
        &p,
        ErrorKind::MissingMold,
        "services/b/service.yaml:2:1:",
        &["`wbe`", "molds/wbe/mold.yaml"],
    );
    assert_eq!(e.help.as_deref(), Some("did you mean `web`?"));
}

#[test]
fn missing_required_mold_parameter() {
    // No image section, so nobody provides the required `image` parameter.
    let p = problems(&[("services/b/service.yaml", "name: b\nmold: web\n")]);
    expect(
        &p,
        ErrorKind::MissingParameter,
        "services/b/service.yaml:2:1:",
        &["`image`", "mold `web`"],
    );
}

#[test]
fn unknown_mold_parameter_suggests() {
    let p = problems(&[(
        "services/b/service.yaml",
        "name: b\nmold: web\nvalues:\n  image: x\n  replics: 2\n",
    )]);
    let e = expect(
        &p,
        ErrorKind::UnknownParameter,
        "services/b/service.yaml:5:3:",
        &["`replics`"],
    );
    assert_eq!(e.help.as_deref(), Some("did you mean `replicas`?"));
}

#[test]
fn template_error_names_template_file_and_line() {
    let p = problems(&[(
        "molds/web/pod.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {{ name }}\n  annotations:\n    x: {{ nosuchvalue.field }}\n",
    )]);
    expect(
        &p,
        ErrorKind::Template,
        "molds/web/pod.yaml:6:",
        &["undefined"],
    );
}

#[test]
fn template_syntax_error_names_template_file_and_line() {
    let p = problems(&[("molds/web/pod.yaml", "a: 1\nb: {% for %}\n")]);
    expect(
        &p,
        ErrorKind::Template,
        "molds/web/pod.yaml:2:",
        &["syntax error"],
    );
}

#[test]
fn template_output_that_is_not_yaml() {
    let p = problems(&[("molds/web/pod.yaml", "a: [\n")]);
    expect(
        &p,
        ErrorKind::Syntax,
        "molds/web/pod.yaml:",
        &["output of template"],
    );
}

#[test]
fn dependency_cycle_is_printed() {
    let p = problems(&[
        (
            "services/a/service.yaml",
            "name: a\nmold: web\ndepends_on: [b]\nimage: {}\n",
        ),
        ("services/b/service.yaml", "name: b\ndepends_on:\n  - c\n"),
        ("services/c/service.yaml", "name: c\ndepends_on: [a]\n"),
    ]);
    expect(
        &p,
        ErrorKind::Cycle,
        "services/a/service.yaml:3:14:",
        &["a → b → c → a"],
    );
}

#[test]
fn unknown_dependency_suggests() {
    let p = problems(&[("services/b/service.yaml", "name: b\ndepends_on:\n  - aa\n")]);
    let e = expect(
        &p,
        ErrorKind::UnknownDependency,
        "services/b/service.yaml:3:5:",
        &["`aa`"],
    );
    assert_eq!(e.help.as_deref(), Some("did you mean `a`?"));
}

#[test]
fn missing_k8s_file_and_empty_glob() {
    let p = problems(&[(
        "services/b/service.yaml",
        "name: b\nk8s:\n  - extra.yaml\n  - k8s/*.yaml\n",
    )]);
    let missing: Vec<&ConfigError> = p
        .iter()
        .filter(|e| e.kind == ErrorKind::MissingFile)
        .collect();
    assert_eq!(missing.len(), 2, "{p:#?}");
    let a = missing[0].to_string();
    assert!(
        a.contains("services/b/service.yaml:3:") && a.contains("extra.yaml"),
        "{a}"
    );
    let b = missing[1].to_string();
    assert!(
        b.contains("services/b/service.yaml:4:") && b.contains("k8s/*.yaml"),
        "{b}"
    );
}

#[test]
fn layer_destination_escaping_the_image() {
    let p = problems(&[(
        "services/b/service.yaml",
        "name: b\nimage:\n  base: scratch\n  layers:\n    - from: /bin/sh\n      to: /a\n    - from: /bin/sh\n      to: ../etc\n",
    )]);
    expect(
        &p,
        ErrorKind::InvalidImage,
        "services/b/service.yaml:8:",
        &["layer destination `../etc` escapes the image root"],
    );
}

#[test]
fn image_base_that_is_no_reference() {
    let p = problems(&[(
        "services/b/service.yaml",
        "name: b\nimage:\n  base: Not A Ref\n",
    )]);
    expect(
        &p,
        ErrorKind::InvalidImage,
        "services/b/service.yaml:3:",
        &[
            "image base `Not A Ref`",
            "invalid repository path component",
        ],
    );
}

/// A bare base close to a service's name is taken for a typo, not looked up on Docker Hub;
/// a tag or a full name says a Docker Hub image is meant, and a far name is left alone.
#[test]
fn image_base_misspelling_a_service() {
    let files = |base: &str| {
        [
            (
                "services/api/service.yaml",
                "name: api\nimage:\n  base: scratch\n  layers: [{from: /bin/sh, to: /sh}]\n"
                    .to_string(),
            ),
            (
                "services/b/service.yaml",
                format!("name: b\nimage:\n  base: {base}\n"),
            ),
        ]
    };
    let run = |base: &str| {
        let f = files(base);
        problems(&[(f[0].0, f[0].1.as_str()), (f[1].0, f[1].1.as_str())])
    };
    let e = expect(
        &run("apii"),
        ErrorKind::InvalidImage,
        "services/b/service.yaml:3:",
        &[
            "image base `apii` is no service",
            "did you mean `api`?",
            "docker.io/library/apii",
        ],
    );
    assert!(e.help.unwrap_or_default().contains("`apii:latest`"));
    for fine in [
        "apii:latest",
        "docker.io/library/apii",
        "busybox",
        "api",
        "apixy",
    ] {
        assert!(run(fine).is_empty(), "{fine}: {:?}", run(fine));
    }
}

/// Env values, labels and image env are taken as written: read as typed YAML,
/// `GO_VERSION: 1.20` would reach the container as `1.2`, `0x1F` as `31`, `01234` as `1234`.
/// A null (`KEY:` or `KEY: ~`) is refused at its line, with the fix.
#[test]
fn env_scalars_keep_how_they_are_written() {
    let tmp = project(&[(
        "services/b/service.yaml",
        "name: b\nk8s: []\nenv:\n  PORT: 8080\n  QUOTED: \"1.20\"\n  GO_VERSION: 1.20\n  \
         MASK: 0x1F\n  ZIP: 01234\n  BIG: 1e3\n  FLAG: True\n  ANCHORED: &v 007\n  \
         AGAIN: *v\nimage:\n  base: scratch\n  env: {V: 1.10}\n  labels: {n: 0o17}\n  \
         layers: []\n",
    )]);
    let p = Project::load(tmp.path()).expect("project loads");
    assert!(p.validate().is_empty(), "{:?}", p.validate());
    let spec = &p.service("b").unwrap().spec;
    let env: Vec<(&str, &str)> = spec
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        env,
        [
            ("AGAIN", "007"),
            ("ANCHORED", "007"),
            ("BIG", "1e3"),
            ("FLAG", "True"),
            ("GO_VERSION", "1.20"),
            ("MASK", "0x1F"),
            ("PORT", "8080"),
            ("QUOTED", "1.20"),
            ("ZIP", "01234"),
        ]
    );
    let img = spec.image.as_ref().unwrap();
    assert_eq!(img.env["V"], "1.10");
    assert_eq!(img.labels["n"], "0o17");

    for value in ["", " ~", " null"] {
        let p = problems(&[(
            "services/b/service.yaml",
            &format!("name: b\nk8s: []\nenv:\n  PORT: 8080\n  GONE:{value}\n  LAST: x\n"),
        )]);
        expect(
            &p,
            ErrorKind::Syntax,
            "services/b/service.yaml:5:3",
            &["`GONE` has no value (YAML null)", "`GONE: \"\"`", "env"],
        );
    }
}

/// A service.yaml that does not load is reported once, by its own error: the services
/// naming it (`depends_on`, `base:`) are not told that it does not exist, nor offered
/// another name for it.
#[test]
fn a_service_that_does_not_load_is_not_unknown_to_the_others() {
    let p = problems(&[
        (
            "services/api/service.yaml",
            "name: api\nk8s: []\nenv: {V: ~}\nimage:\n  base: scratch\n",
        ),
        (
            "services/api2/service.yaml",
            "name: api2\nk8s: []\nimage:\n  base: api\n",
        ),
        (
            "services/web/service.yaml",
            "name: web\nk8s: []\ndepends_on: [api]\n",
        ),
    ]);
    assert_eq!(p.len(), 1, "{p:#?}");
    assert!(
        p[0].to_string().contains("services/api/service.yaml:3"),
        "{}",
        p[0]
    );
}

#[test]
fn image_base_that_is_an_oci_layout() {
    // Even `oci:tag`, which reads as Docker Hub's `library/oci`: hoist means a layout by it.
    for base in ["oci:../base", "oci:base"] {
        let p = problems(&[(
            "services/b/service.yaml",
            &format!("name: b\nimage:\n  base: \"{base}\"\n"),
        )]);
        let e = expect(
            &p,
            ErrorKind::InvalidImage,
            "services/b/service.yaml:3:",
            &[&format!("image base `{base}` is an OCI layout")],
        );
        let help = e.help.unwrap_or_default();
        assert!(help.contains("hoist image copy oci:DIR"), "{help}");
    }
}

#[test]
fn registry_that_cannot_start_an_image_name() {
    let p = problems(&[("hoist.yaml", "name: t\nregistry: http://localhost:5000\n")]);
    expect(
        &p,
        ErrorKind::WrongType,
        "hoist.yaml:2:",
        &["registry `http://localhost:5000`", "URL scheme"],
    );
    // The settings file's wins, and is checked the same way.
    let p = problems(&[("hoist-settings.yaml", "registry: localhost:99999\n")]);
    expect(
        &p,
        ErrorKind::WrongType,
        "hoist-settings.yaml:1:",
        &["registry `localhost:99999`", "invalid registry host"],
    );
    for fine in [
        "localhost:5000",
        "localhost:5000/",
        "registry.example.com/team",
        "myorg",
    ] {
        let p = problems(&[("hoist.yaml", &format!("name: t\nregistry: \"{fine}\"\n"))]);
        assert!(p.is_empty(), "{fine}: {p:#?}");
    }
}

#[test]
fn missing_layer_source() {
    let p = problems(&[(
        "services/b/service.yaml",
        "name: b\nimage:\n  base: scratch\n  layers:\n    - from: /bin/sh\n      to: /a\n    - from: ./nope\n      to: /b\n",
    )]);
    expect(
        &p,
        ErrorKind::MissingFile,
        "services/b/service.yaml:7:",
        &["layer source", "nope"],
    );
}

#[test]
fn bad_globs_in_a_layer_and_its_ignore_file() {
    let p = problems(&[
        (
            "services/b/service.yaml",
            "name: b\nimage:\n  base: scratch\n  layers:\n    - from: ./web\n      to: /www\n      include: [\"*\", \"!*.md\"]\n",
        ),
        ("services/b/web/.dockerignore", "ok.txt\nfoo[\n"),
    ]);
    let texts: Vec<String> = p.iter().map(|e| e.to_string()).collect();
    assert_eq!(texts.len(), 2, "{texts:#?}");
    assert!(
        texts
            .iter()
            .any(|t| t.contains("services/b/service.yaml:5:")
                && t.contains("invalid glob \"foo[\"")
                && t.contains(".dockerignore")),
        "{texts:#?}"
    );
    assert!(
        texts
            .iter()
            .any(|t| t.contains("services/b/service.yaml:7:")
                && t.contains("\"!*.md\" in `include`")
                && t.contains("exclude lists only")),
        "{texts:#?}"
    );
}

#[test]
fn image_workdir_and_env_names() {
    let p = problems(&[(
        "services/b/service.yaml",
        "name: b\nimage:\n  base: scratch\n  workdir: app\n  env:\n    \"BAD KEY\": x\n    GOOD: y\n",
    )]);
    let workdir: Vec<_> = p
        .iter()
        .filter(|e| e.to_string().contains("workdir"))
        .collect();
    assert_eq!(workdir.len(), 1, "{p:#?}");
    let text = workdir[0].to_string();
    assert!(
        text.contains("services/b/service.yaml:4:") && text.contains("must be an absolute path"),
        "{text}"
    );
    assert_eq!(workdir[0].help.as_deref(), Some("workdir: /app"));
    let env: Vec<_> = p
        .iter()
        .filter(|e| e.to_string().contains("env name"))
        .collect();
    assert_eq!(env.len(), 1, "{p:#?}");
    let text = env[0].to_string();
    assert!(
        text.contains("services/b/service.yaml:6:") && text.contains("\"BAD KEY\""),
        "{text}"
    );
}

#[test]
fn dangling_symlink_as_layer_source() {
    let tmp = project(&[(
        "services/b/service.yaml",
        "name: b\nimage:\n  base: scratch\n  layers:\n    - from: ./dist\n      to: /www\n",
    )]);
    std::os::unix::fs::symlink("build/out", tmp.path().join("services/b/dist")).unwrap();
    let p = Project::load(tmp.path()).unwrap().validate();
    expect(
        &p,
        ErrorKind::MissingFile,
        "services/b/service.yaml:5:",
        &[
            "layer source (a symlink to build/out)",
            "dist",
            "does not exist",
        ],
    );
}

#[test]
fn dockerfile_and_layers_together_is_an_error() {
    let p = problems(&[
        ("services/b/Dockerfile", "FROM scratch\n"),
        (
            "services/b/service.yaml",
            "name: b\nimage:\n  base: busybox\n  dockerfile: Dockerfile\n",
        ),
    ]);
    expect(
        &p,
        ErrorKind::InvalidImage,
        "services/b/service.yaml:4:",
        &["dockerfile"],
    );
}

#[test]
fn settings_file_naming_unknown_service() {
    let p = problems(&[(
        "hoist-settings.yaml",
        "disabled: [a, bb]\nservices:\n  aa: {replicas: 2}\n",
    )]);
    let unknown: Vec<String> = p
        .iter()
        .filter(|e| e.kind == ErrorKind::UnknownService)
        .map(ToString::to_string)
        .collect();
    assert_eq!(unknown.len(), 2, "{p:#?}");
    assert!(
        unknown[0].contains("hoist-settings.yaml:1:15:") && unknown[0].contains("`bb`"),
        "{}",
        unknown[0]
    );
    assert!(
        unknown[1].contains("hoist-settings.yaml:3:3:") && unknown[1].contains("`aa`"),
        "{}",
        unknown[1]
    );
}

#[test]
fn broken_hoist_yaml_fails_load_with_location() {
    let tmp = project(&[("hoist.yaml", "name: t\nregistyr: x\n")]);
    let e = Project::load(tmp.path()).unwrap_err();
    assert_eq!(e.kind, ErrorKind::UnknownField);
    assert!(e.to_string().contains("hoist.yaml:2:1:"), "{e}");
    assert_eq!(e.help.as_deref(), Some("did you mean `registry`?"));
}

#[test]
fn validate_reports_every_problem_at_once_and_render_refuses() {
    let tmp = project(&[
        ("services/b/service.yaml", "name: B\n"),
        ("services/c/service.yaml", "name: c\nmold: nope\n"),
        ("services/d/service.yaml", "name: d\nfoo: 1\n"),
        ("services/e/service.yaml", "name: e\ndepends_on: [zz]\n"),
    ]);
    let p = Project::load(tmp.path()).unwrap();
    let kinds: Vec<ErrorKind> = p.validate().iter().map(|e| e.kind).collect();
    for k in [
        ErrorKind::InvalidName,
        ErrorKind::MissingMold,
        ErrorKind::UnknownField,
        ErrorKind::UnknownDependency,
    ] {
        assert!(kinds.contains(&k), "{k:?} missing from {kinds:?}");
    }
    let err = render(&p, &RenderOptions::default()).unwrap_err();
    assert_eq!(err.0.len(), kinds.len());
}

#[test]
fn unknown_service_in_render_and_set() {
    let tmp = project(&[]);
    let p = Project::load_with(tmp.path(), &["services.x.port=1".parse().unwrap()]).unwrap();
    let e = p.validate();
    assert_eq!(e.len(), 1);
    assert!(e[0].message.contains("--set names service `x`"), "{}", e[0]);
    let p = Project::load(tmp.path()).unwrap();
    let err = render(
        &p,
        &RenderOptions {
            services: vec!["b".into()],
            tag: None,
        },
    )
    .unwrap_err();
    assert!(err.to_string().contains("no service named `b`"), "{err}");
    assert_eq!(err.0[0].help.as_deref(), Some("did you mean `a`?"));
}

#[test]
fn mangled_manifests_never_panic() {
    // Every single-character corruption of a realistic manifest is either
    // accepted or reported with a location inside the file.
    let base = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/shop/services/api/service.yaml"),
    )
    .unwrap();
    let chars: Vec<char> = base.chars().collect();
    let tmp = project(&[]);
    let mut checked = 0;
    for i in (0..chars.len()).step_by(7) {
        for c in [':', '-', '[', '{', '"', '\t', 'é', '\n', ' ', '#'] {
            let mut m = chars.clone();
            m[i] = c;
            let text: String = m.into_iter().collect();
            write(tmp.path(), "services/b/service.yaml", &text);
            let p = Project::load(tmp.path()).unwrap();
            for e in p.validate() {
                if let Some(l) = &e.location {
                    assert!(l.line >= 1 && l.column >= 1, "{e}");
                }
                let _ = format!("{:?}", miette::Report::new(e));
            }
            checked += 1;
        }
    }
    assert!(checked > 50);
}

#[test]
fn image_base_cycle_is_printed() {
    let p = problems(&[
        ("services/b/service.yaml", "name: b\nimage:\n  base: c\n"),
        ("services/c/service.yaml", "name: c\nimage:\n  base: b\n"),
    ]);
    let cycles: Vec<String> = p
        .iter()
        .filter(|e| e.kind == ErrorKind::Cycle)
        .map(ToString::to_string)
        .collect();
    assert_eq!(cycles.len(), 2, "{p:#?}");
    assert!(
        cycles[0].contains("services/b/service.yaml:3:3:") && cycles[0].contains("b → c → b"),
        "{}",
        cycles[0]
    );
}

#[test]
fn invalid_image_name() {
    let p = problems(&[(
        "services/b/service.yaml",
        "name: b\nimage:\n  name: Shop/B:latest\n",
    )]);
    expect(
        &p,
        ErrorKind::InvalidName,
        "services/b/service.yaml:3:3:",
        &["Shop/B:latest", "repository"],
    );
}

#[test]
fn missing_nested_field_points_at_its_mapping() {
    let p = problems(&[(
        "services/b/service.yaml",
        "name: b\nimage:\n  base: scratch\n  layers:\n    - from: ./x\n",
    )]);
    expect(
        &p,
        ErrorKind::MissingField,
        "services/b/service.yaml:5:7:",
        &["`to`", "image.layers[0]"],
    );
}

#[test]
fn image_path_and_test_step_problems_are_located_in_hoist_yaml() {
    let p = problems(&[(
        "hoist.yaml",
        "name: t\nregistry: reg.local\nimage_paths:\n  - kind: Function\n    path: spec..image\ntests:\n  - name: smoke\n    run: 'true'\n    timeout: 5 parsecs\n  - name: smoke\n    run: ''\n",
    )]);
    let path_err: Vec<String> = p
        .iter()
        .filter(|e| e.kind == ErrorKind::WrongType && e.to_string().contains("image_paths"))
        .map(|e| e.to_string())
        .collect();
    assert_eq!(path_err.len(), 1, "{p:#?}");
    assert!(path_err[0].contains("hoist.yaml:5:"), "{}", path_err[0]);
    assert!(
        path_err[0].contains("is not a field name"),
        "{}",
        path_err[0]
    );
    expect(&p, ErrorKind::DuplicateName, "hoist.yaml:10:", &["smoke"]);
    expect(
        &p,
        ErrorKind::MissingField,
        "hoist.yaml:11:",
        &["`run` is empty"],
    );
    let timeouts: Vec<_> = p
        .iter()
        .filter(|e| e.to_string().contains("timeout"))
        .collect();
    assert_eq!(timeouts.len(), 1, "{p:#?}");
    assert!(
        timeouts[0].to_string().contains("hoist.yaml:9:"),
        "{}",
        timeouts[0]
    );
}

#[test]
fn image_paths_and_env_values_get_the_built_reference() {
    let tmp = project(&[
        (
            "hoist.yaml",
            "name: t\nregistry: reg.local\nimage_paths:\n  - {kind: Function, path: spec.image}\n  - {kind: Pipeline, path: 'spec.steps[].image'}\n",
        ),
        (
            "services/a/k8s.yaml",
            "apiVersion: x.dev/v1\nkind: Function\nmetadata: {name: f}\nspec: {image: a}\n---\napiVersion: x.dev/v1\nkind: Pipeline\nmetadata: {name: p}\nspec:\n  steps:\n    - {image: a}\n    - {image: busybox}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: launcher}\nspec:\n  containers:\n    - name: c\n      image: busybox\n      env:\n        - {name: WORKER_IMAGE, value: a}\n        - {name: OTHER, value: keep}\n",
        ),
        (
            "services/a/service.yaml",
            "name: a\nmold: web\nk8s: [k8s.yaml]\nimage:\n  layers:\n    - from: ./src\n      to: /src\n",
        ),
    ]);
    let p = Project::load(tmp.path()).unwrap();
    let objs = render(
        &p,
        &RenderOptions {
            services: vec![],
            tag: Some("t1".into()),
        },
    )
    .unwrap();
    let find = |kind: &str, name: &str| {
        objs.iter()
            .find(|o| o.kind() == kind && o.name() == name)
            .unwrap()
            .object
            .clone()
    };
    assert_eq!(find("Function", "f")["spec"]["image"], "reg.local/a:t1");
    let steps = find("Pipeline", "p")["spec"]["steps"].clone();
    assert_eq!(steps[0]["image"], "reg.local/a:t1");
    assert_eq!(steps[1]["image"], "busybox");
    let env = find("Pod", "launcher")["spec"]["containers"][0]["env"].clone();
    assert_eq!(env[0]["value"], "reg.local/a:t1");
    assert_eq!(env[1]["value"], "keep");
}
