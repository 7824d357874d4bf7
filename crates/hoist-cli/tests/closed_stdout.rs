//! Output into a pipe nobody reads any more (`hoist render | head`): the command is not
//! cut short by a panic; it ends with its own status. Output that cannot be written for
//! another reason (a full disk) is an error, never a silent cut.

use std::process::{Command, Stdio};

/// A pipe whose reading end is already closed: every write to it fails at once.
fn closed_pipe() -> Stdio {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    Stdio::from(writer)
}

#[test]
fn a_closed_stdout_is_no_panic() {
    let shop = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/shop");
    for args in [
        &["-C", shop, "render"][..],
        &["-C", shop, "services"],
        &["completions", "bash"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_hoist"))
            .args(args)
            .stdout(closed_pipe())
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && !stderr.contains("panicked"),
            "hoist {args:?}: {:?}\n{stderr}",
            out.status
        );
    }
}

#[test]
fn a_full_disk_under_stdout_is_an_error() {
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hoist"))
        .args(["completions", "bash"])
        .stdout(full)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot write to standard output") && !stderr.contains("panicked"),
        "{stderr}"
    );
}
