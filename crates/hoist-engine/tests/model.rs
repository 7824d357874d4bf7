//! The engine's pure parts: which services a pass selects, the test-step environment,
//! the status table and event lines.

use std::path::Path;

use hoist_config::Project;
use hoist_engine::state::{Event, PortForward, Stamped, State};
use hoist_engine::{ci, plan, view};

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn project() -> (tempfile::TempDir, Project) {
    let tmp = tempfile::tempdir().unwrap();
    let r = tmp.path();
    write(r, "hoist.yaml", "name: p\n");
    write(r, "services/db/service.yaml", "name: db\nk8s: [k.yaml]\n");
    write(
        r,
        "services/db/k.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: db}\n",
    );
    write(
        r,
        "services/api/service.yaml",
        "name: api\nk8s: [k.yaml]\ndepends_on: [db]\n",
    );
    write(
        r,
        "services/api/k.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: api}\n",
    );
    write(
        r,
        "services/web/service.yaml",
        "name: web\nk8s: [k.yaml]\ndepends_on: [api]\n",
    );
    write(
        r,
        "services/web/k.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web}\n",
    );
    write(
        r,
        "services/solo/service.yaml",
        "name: solo\nk8s: [k.yaml]\n",
    );
    write(
        r,
        "services/solo/k.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: solo}\n",
    );
    let p = Project::load(r).unwrap();
    (tmp, p)
}

#[test]
fn a_pass_takes_what_the_wanted_services_depend_on_dependencies_first() {
    let (_t, p) = project();
    assert_eq!(
        plan::select(&p, &["web".into()]).unwrap(),
        ["db", "api", "web"]
    );
    let all = plan::select(&p, &[]).unwrap();
    assert_eq!(all.len(), 4);
    let pos = |n: &str| all.iter().position(|s| s == n).unwrap();
    assert!(pos("db") < pos("api") && pos("api") < pos("web"), "{all:?}");
    let err = plan::select(&p, &["wbe".into()]).unwrap_err().to_string();
    assert!(err.contains("wbe") && err.contains("web"), "{err}");
}

fn stamped(event: Event) -> Stamped {
    Stamped {
        at_ms: hoist_engine::state::now_ms(),
        event,
    }
}

#[test]
fn test_steps_see_forward_addresses_by_port_name_and_number() {
    let mut st = State::default();
    st.apply(&stamped(Event::SessionStarted {
        project: "shop".into(),
        context: "hoist".into(),
        namespace: "shop-dev".into(),
    }));
    st.apply(&stamped(Event::PortForward {
        service: "web-front".into(),
        forward: PortForward {
            name: "http".into(),
            remote: 8080,
            local: "127.0.0.1:18080".into(),
            connected: true,
        },
    }));
    let env = ci::test_env(&st);
    assert_eq!(env["HOIST_WEB_FRONT_HTTP_ADDR"], "127.0.0.1:18080");
    assert_eq!(env["HOIST_WEB_FRONT_8080_ADDR"], "127.0.0.1:18080");
    assert_eq!(env["HOIST_NAMESPACE"], "shop-dev");
}

#[test]
fn the_status_table_and_event_lines_say_what_happened() {
    let mut st = State::default();
    for e in [
        Event::BuildFinished {
            service: "web".into(),
            image: "r/web:h-1".into(),
            duration_ms: 40,
            already_there: false,
        },
        Event::Deployed {
            service: "web".into(),
            objects: 2,
            pruned: 0,
        },
        Event::Ready {
            service: "web".into(),
        },
        Event::BuildFailed {
            service: "api".into(),
            error: "layer source ./data does not exist\nmore".into(),
        },
    ] {
        st.apply(&stamped(e));
    }
    let table = view::status_table(&st, 0, false);
    assert!(table[0].starts_with("SERVICE"));
    let web = table.iter().find(|l| l.starts_with("web")).unwrap();
    assert!(web.contains("ready") && web.contains("ok"), "{web}");
    let api = table.iter().find(|l| l.starts_with("api")).unwrap();
    assert!(
        api.contains("FAILED") && api.contains("./data does not exist"),
        "{api}"
    );
    assert!(
        !api.contains("more"),
        "only the first line of an error: {api}"
    );

    let line = view::event_line(
        &stamped(Event::Log {
            service: "web".into(),
            line: hoist_engine::state::LogLine {
                at_ms: 0,
                pod: "p".into(),
                container: "c".into(),
                line: "GET /".into(),
            },
        }),
        5,
        false,
    )
    .unwrap();
    assert_eq!(line, "web   | GET /");
    let coloured = view::log_prefix("web", 3, true);
    assert!(
        coloured.starts_with("\x1b[") && coloured.contains("web |"),
        "{coloured:?}"
    );
    // A service keeps its colour.
    assert_eq!(view::colour_of("web"), view::colour_of("web"));

    // A change with no files to count (a live update falling back) says what happens,
    // not "0 file(s) changed".
    let fallback = stamped(Event::FilesChanged {
        service: "web".into(),
        paths: vec![],
        action: "rebuild (no running container)".into(),
    });
    let line = view::event_line(&fallback, 5, false).unwrap();
    assert_eq!(line, "web   | → rebuild (no running container)");
    let edited = stamped(Event::FilesChanged {
        service: "web".into(),
        paths: vec!["services/web/service.yaml".into()],
        action: "re-apply".into(),
    });
    let line = view::event_line(&edited, 5, false).unwrap();
    assert_eq!(line, "web   | 1 file(s) changed → re-apply");

    // A content tag found in place is reported as such, not as a build; JSON lines
    // carry the flag only when it is set.
    let there = stamped(Event::BuildFinished {
        service: "df".into(),
        image: "r/df:h-2".into(),
        duration_ms: 3,
        already_there: true,
    });
    let line = view::event_line(&there, 5, false).unwrap();
    assert_eq!(line, "df    | image r/df:h-2 already there");
    assert!(
        serde_json::to_string(&there.event)
            .unwrap()
            .contains("\"already_there\":true")
    );
    let built = Event::BuildFinished {
        service: "df".into(),
        image: "r/df:h-2".into(),
        duration_ms: 3,
        already_there: false,
    };
    assert!(
        !serde_json::to_string(&built)
            .unwrap()
            .contains("already_there")
    );
}
