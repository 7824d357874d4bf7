//! Which services a pass brings up: the ones asked for plus everything they depend on.

use std::collections::BTreeSet;

use hoist_config::Project;

use crate::error::EngineError;

/// The enabled services named (all when empty), with their `depends_on` closure,
/// in a stable dependency-first order. Unknown names are an error naming the known ones.
pub fn select(project: &Project, wanted: &[String]) -> Result<Vec<String>, EngineError> {
    let mut roots: Vec<String> = Vec::new();
    if wanted.is_empty() {
        roots.extend(project.enabled_services().map(|s| s.name.clone()));
    } else {
        for w in wanted {
            if project.service(w).is_none() {
                return Err(EngineError::UnknownService {
                    name: w.clone(),
                    known: project.services.iter().map(|s| s.name.clone()).collect(),
                });
            }
            roots.push(w.clone());
        }
    }
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for r in roots {
        visit(project, &r, &mut seen, &mut out, 0);
    }
    Ok(out)
}

fn visit(
    project: &Project,
    name: &str,
    seen: &mut BTreeSet<String>,
    out: &mut Vec<String>,
    depth: usize,
) {
    // Cycles are reported by validation; the depth bound only keeps this total.
    if depth > 64 || !seen.insert(name.to_string()) {
        return;
    }
    let Some(svc) = project.service(name) else {
        return;
    };
    for d in &svc.spec.depends_on {
        visit(project, d, seen, out, depth + 1);
    }
    if let Some(base) = project.base_service(svc) {
        visit(project, &base.name, seen, out, depth + 1);
    }
    out.push(name.to_string());
}
