//! What the user sees, as text: a status table of the [`State`] and one line per
//! [`Event`] for plain streams. Pure functions; the CLI decides where they go.

use crate::state::{Event, Phase, Ready, Stamped, State, now_ms};

/// ANSI colours given to services in turn (by name hash, so a service keeps its colour).
const COLOURS: &[u8] = &[36, 32, 33, 35, 34, 96, 92, 93, 95, 94];

pub fn colour_of(service: &str) -> u8 {
    let h = service
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(b as u32));
    COLOURS[(h as usize) % COLOURS.len()]
}

fn paint(s: &str, code: u8, colour: bool) -> String {
    if colour {
        format!("\x1b[{code}m{s}\x1b[0m")
    } else {
        s.to_string()
    }
}

/// `web   | line` with the prefix padded to `width` and coloured per service.
pub fn log_prefix(service: &str, width: usize, colour: bool) -> String {
    paint(&format!("{service:<width$} |"), colour_of(service), colour)
}

fn phase(p: Phase) -> &'static str {
    match p {
        Phase::Pending => "…",
        Phase::Running => "running",
        Phase::Done => "ok",
        Phase::Failed => "FAILED",
        Phase::Skipped => "-",
    }
}

fn ago(at: u64) -> String {
    let s = now_ms().saturating_sub(at) / 1000;
    match s {
        0..=59 => format!("{s}s ago"),
        60..=3599 => format!("{}m ago", s / 60),
        _ => format!("{}h ago", s / 3600),
    }
}

/// The status table: service, build, deploy, ready, ports, last change, error.
pub fn status_table(state: &State, width: usize, colour: bool) -> Vec<String> {
    let mut out = vec![format!(
        "{:<18} {:<8} {:<8} {:<10} {:<22} {:<28} {}",
        "SERVICE", "BUILD", "DEPLOY", "READY", "PORTS", "LAST CHANGE", "ERROR"
    )];
    for (name, s) in &state.services {
        let ready = match s.ready {
            Ready::Unknown => "…".to_string(),
            Ready::Waiting => "waiting".into(),
            Ready::Ready => "ready".into(),
            Ready::Failed => "FAILED".into(),
        };
        let ports = s
            .ports
            .iter()
            .map(|p| {
                let port = p.local.rsplit(':').next().unwrap_or(&p.local);
                format!("{port}→{}{}", p.remote, if p.connected { "" } else { "!" })
            })
            .collect::<Vec<_>>()
            .join(",");
        let last = s
            .last_change
            .as_ref()
            .map(|(at, what)| format!("{what} ({})", ago(*at)))
            .unwrap_or_default();
        let error = s
            .error
            .as_deref()
            .and_then(|e| e.lines().next())
            .unwrap_or("");
        let mut line = format!(
            "{} {:<8} {:<8} {:<10} {:<22} {:<28} {}",
            paint(&format!("{name:<18}"), colour_of(name), colour),
            phase(s.build),
            phase(s.deploy),
            ready,
            ports,
            last,
            error
        );
        if width > 0 && !colour && line.chars().count() > width {
            line = line.chars().take(width).collect();
        }
        out.push(line);
    }
    for e in &state.errors {
        out.push(format!("error: {}", e.lines().next().unwrap_or("")));
    }
    out
}

/// One readable line for an event (`None` for events not worth a line).
pub fn event_line(ev: &Stamped, width: usize, colour: bool) -> Option<String> {
    use Event::*;
    let svc = |s: &str| log_prefix(s, width, colour);
    Some(match &ev.event {
        SessionStarted {
            project,
            context,
            namespace,
        } => format!("hoist: project {project} → context {context}, namespace {namespace}"),
        ServiceAdded { .. } | BuildSkipped { .. } | DeployStarted { .. } | TestStarted { .. } => {
            return None;
        }
        ServiceRemoved { service } => format!("{} removed", svc(service)),
        BuildStarted { service } => format!("{} building image", svc(service)),
        BuildFinished {
            service,
            image,
            already_there: true,
            ..
        } => format!("{} image {image} already there", svc(service)),
        BuildFinished {
            service,
            image,
            duration_ms,
            ..
        } => format!("{} built {image} in {duration_ms} ms", svc(service)),
        BuildFailed { service, error } => format!("{} build FAILED: {error}", svc(service)),
        Blocked { service, on } => format!("{} waiting for {}", svc(service), on.join(", ")),
        Deployed {
            service,
            objects,
            pruned,
        } => format!(
            "{} applied {objects} object(s){}",
            svc(service),
            if *pruned > 0 {
                format!(", pruned {pruned}")
            } else {
                String::new()
            }
        ),
        DeployFailed { service, error } => format!("{} deploy FAILED: {error}", svc(service)),
        Ready { service } => format!("{} ready", svc(service)),
        NotReady {
            service,
            failed,
            reason,
        } => format!(
            "{} {}: {}",
            svc(service),
            if *failed { "FAILED" } else { "not ready" },
            reason.trim_end()
        ),
        PortForward { service, forward } => format!(
            "{} port-forward {} → {} {}",
            svc(service),
            forward.local,
            forward.remote,
            if forward.connected {
                "open"
            } else {
                "reconnecting"
            }
        ),
        Log { service, line } => format!("{} {}", svc(service), line.line),
        FilesChanged {
            service,
            paths,
            action,
        } if paths.is_empty() => format!("{} → {action}", svc(service)),
        FilesChanged {
            service,
            paths,
            action,
        } => format!(
            "{} {} file(s) changed → {action}",
            svc(service),
            paths.len()
        ),
        LiveUpdated {
            service,
            files,
            duration_ms,
        } => format!(
            "{} live update: {files} file(s) in {duration_ms} ms",
            svc(service)
        ),
        LiveUpdateFailed { service, error } => {
            format!("{} live update FAILED: {error}", svc(service))
        }
        ConfigError { service, error } => match service {
            Some(s) => format!("{} configuration error: {error}", svc(s)),
            None => format!("configuration error: {error}"),
        },
        Error { service, error } => match service {
            Some(s) => format!("{} error: {error}", svc(s)),
            None => format!("error: {error}"),
        },
        TestFinished { result } => format!(
            "test {} {} in {} ms",
            result.name,
            if result.ok { "passed" } else { "FAILED" },
            result.duration_ms
        ),
    })
}

/// How far a service that is not ready got.
pub fn progress(s: &crate::state::ServiceState) -> &'static str {
    match (s.build, s.deploy, s.ready) {
        (_, _, Ready::Failed) => "failed",
        (Phase::Failed, _, _) => "build failed",
        (_, Phase::Failed, _) => "deploy failed",
        (Phase::Running, _, _) => "was building",
        (_, Phase::Running, _) => "was being applied",
        (_, Phase::Done, _) => "was not ready yet",
        _ => "not started",
    }
}

/// What `hoist up` says when Ctrl-C ends it: how far each service got.
/// `interrupted`: the first pass had not finished.
pub fn stopped_summary(state: &State, interrupted: bool) -> String {
    let (ready, not_ready) = how_far(state);
    let others: Vec<String> = not_ready
        .iter()
        .map(|(n, p)| format!("{n} ({p})"))
        .collect();
    let mut out = format!(
        "hoist: {}; {} of {} service(s) ready",
        if interrupted {
            "interrupted before every service was up"
        } else {
            "stopped"
        },
        ready.len(),
        state.services.len()
    );
    if !ready.is_empty() {
        out.push_str(&format!(" ({})", ready.join(", ")));
    }
    if !others.is_empty() {
        out.push_str(&format!("; not ready: {}", others.join(", ")));
    }
    out.push_str(".\nWhat was applied keeps running; remove it with `hoist down`.");
    out
}

/// The ready services, and how far each other one got ([`progress`]), in name order:
/// what a stopped session reports, as text or JSON.
pub fn how_far(state: &State) -> (Vec<&str>, Vec<(&str, &'static str)>) {
    let (mut ready, mut others) = (Vec::new(), Vec::new());
    for (n, s) in &state.services {
        if s.ready == Ready::Ready {
            ready.push(n.as_str());
        } else {
            others.push((n.as_str(), progress(s)));
        }
    }
    (ready, others)
}

#[cfg(test)]
mod summary_tests {
    use super::*;
    use crate::state::ServiceState;

    #[test]
    fn stopped_summary_names_how_far_each_service_got() {
        let mut st = State::default();
        let api = ServiceState {
            build: Phase::Done,
            deploy: Phase::Done,
            ready: Ready::Ready,
            ..Default::default()
        };
        st.services.insert("api".into(), api);
        let web = ServiceState {
            build: Phase::Running,
            ..Default::default()
        };
        st.services.insert("web".into(), web);
        st.services.insert("worker".into(), ServiceState::default());
        let s = stopped_summary(&st, true);
        assert_eq!(
            s,
            "hoist: interrupted before every service was up; 1 of 3 service(s) ready (api); \
             not ready: web (was building), worker (not started).\n\
             What was applied keeps running; remove it with `hoist down`."
        );
        assert!(stopped_summary(&st, false).starts_with("hoist: stopped; 1 of 3"));
    }
}
