//! Logs (`-v`, `HOIST_LOG`) go to stderr; into a file or a pipe they are plain text.

#[test]
fn logs_into_a_pipe_have_no_colour_codes() {
    let tmp = tempfile::tempdir().unwrap();
    // Nothing listens on port 1: the command fails fast (not retried) after logging what
    // it tried.
    let out = assert_cmd::Command::cargo_bin("hoist")
        .unwrap()
        .args(["-vv", "image", "inspect", "127.0.0.1:1/x:y"])
        .env("HOME", tmp.path())
        .env("DOCKER_CONFIG", tmp.path())
        .env("HOIST_REGISTRY_RETRIES", "0")
        .env_remove("HOIST_LOG")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("DEBUG"), "debug logs were written: {err}");
    assert!(!err.contains('\u{1b}'), "no ANSI escape codes: {err:?}");
}
