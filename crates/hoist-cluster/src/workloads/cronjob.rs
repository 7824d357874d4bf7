//! CronJob → Jobs on a schedule, as Kubernetes' CronJob controller: the most recent
//! missed time since `lastScheduleTime` (or creation) starts one Job named
//! `<cronjob>-<scheduled minutes since the epoch>` (so a time is never run twice), within
//! `startingDeadlineSeconds`; `concurrencyPolicy` Allow / Forbid / Replace; `suspend`;
//! finished Jobs beyond `successfulJobsHistoryLimit` / `failedJobsHistoryLimit` removed
//! oldest first; status `active`, `lastScheduleTime`, `lastSuccessfulTime`. The time
//! comes from a [`Clock`], so tests drive schedules without waiting.

use serde_json::{Value, json};

use super::{
    condition_true, create, delete, int, ns_of, owned_by, owner_ref, uid_of, update_status,
};
use crate::app::App;
use crate::clock::{Clock, format_rfc3339, parse_rfc3339};
use crate::cron::{Schedule, time_zone};
use crate::kubelet::events;
use crate::objects;
use crate::status::ApiResult;

const COMPONENT: &str = "cronjob-controller";
/// Like Kubernetes: more missed times than this and the controller says so (it still
/// starts the most recent one).
const TOO_MANY_MISSED: usize = 100;

pub fn pass(app: &App, clock: &dyn Clock) -> ApiResult<()> {
    let (cronjobs, _) = app.store.list_shared("batch/cronjobs", None);
    if cronjobs.is_empty() {
        return Ok(());
    }
    for cj in &cronjobs {
        if !objects::is_deleting(cj) {
            cron_job(app, cj, clock.now())?;
        }
    }
    Ok(())
}

fn event(app: &App, cj: &Value, type_: &str, reason: &str, message: &str) {
    events::record(app, cj, None, type_, reason, message, COMPONENT);
}

fn finished(job: &Value) -> Option<bool> {
    if condition_true(job, "Complete") {
        Some(true)
    } else if condition_true(job, "Failed") {
        Some(false)
    } else {
        None
    }
}

fn time_of(job: &Value, ptr: &str) -> i64 {
    job.pointer(ptr)
        .and_then(Value::as_str)
        .and_then(parse_rfc3339)
        .unwrap_or(0)
}

fn cron_job(app: &App, cj: &Value, now: i64) -> ApiResult<()> {
    let ns = ns_of(cj);
    let name = objects::name_of(cj);
    let (jobs, _) = app.store.list_shared("batch/jobs", Some(ns));
    let mine: Vec<&Value> = owned_by(&jobs, uid_of(cj))
        .into_iter()
        .filter(|j| !objects::is_deleting(j))
        .collect();
    let mut status = cj
        .get("status")
        .cloned()
        .filter(Value::is_object)
        .unwrap_or(json!({}));
    // Finished jobs: remember the last success, tell once, keep the history short.
    let mut last_success = time_of(cj, "/status/lastSuccessfulTime");
    for j in &mine {
        if finished(j) == Some(true) {
            let done = time_of(j, "/status/completionTime");
            if done > last_success {
                last_success = done;
                event(
                    app,
                    cj,
                    "Normal",
                    "SawCompletedJob",
                    &format!(
                        "Saw completed job: {}, condition: Complete",
                        objects::name_of(j)
                    ),
                );
            }
        }
    }
    if last_success > 0 {
        status["lastSuccessfulTime"] = json!(format_rfc3339(last_success));
    }
    for (ok, limit) in [
        (true, int(cj, "/spec/successfulJobsHistoryLimit", 3)),
        (false, int(cj, "/spec/failedJobsHistoryLimit", 1)),
    ] {
        let mut done: Vec<&&Value> = mine.iter().filter(|j| finished(j) == Some(ok)).collect();
        let limit = limit.max(0) as usize;
        if done.len() > limit {
            done.sort_by_key(|j| {
                (
                    time_of(j, "/status/startTime"),
                    objects::meta_str(j, "creationTimestamp")
                        .unwrap_or("")
                        .to_string(),
                )
            });
            for j in &done[..done.len() - limit] {
                delete(app, "jobs", "batch", ns, objects::name_of(j))?;
                event(
                    app,
                    cj,
                    "Normal",
                    "SuccessfulDelete",
                    &format!("Deleted job {}", objects::name_of(j)),
                );
            }
        }
    }
    let mut active: Vec<Value> = mine
        .iter()
        .filter(|j| finished(j).is_none())
        .map(|j| (*j).clone())
        .collect();
    let scheduled = schedule_due(app, cj, now)?;
    if let Some(t) = scheduled {
        let policy = cj
            .pointer("/spec/concurrencyPolicy")
            .and_then(Value::as_str)
            .unwrap_or("Allow");
        let job_name = format!("{name}-{}", t / 60);
        let already = mine.iter().any(|j| objects::name_of(j) == job_name);
        if already {
            status["lastScheduleTime"] = json!(format_rfc3339(t));
        } else if policy == "Forbid" && !active.is_empty() {
            // Kubernetes leaves lastScheduleTime alone: the time runs once the active job
            // ends, if still within startingDeadlineSeconds.
            event(
                app,
                cj,
                "Normal",
                "JobAlreadyActive",
                "Not starting job because prior execution is running and concurrency policy is Forbid",
            );
        } else {
            if policy == "Replace" {
                for j in active.drain(..) {
                    delete(app, "jobs", "batch", ns, objects::name_of(&j))?;
                    event(
                        app,
                        cj,
                        "Normal",
                        "SuccessfulDelete",
                        &format!("Deleted job {}", objects::name_of(&j)),
                    );
                }
            }
            match create_job(app, cj, &job_name, t) {
                Ok(job) => {
                    event(
                        app,
                        cj,
                        "Normal",
                        "SuccessfulCreate",
                        &format!("Created job {job_name}"),
                    );
                    status["lastScheduleTime"] = json!(format_rfc3339(t));
                    active.push(job);
                }
                Err(e) => {
                    event(
                        app,
                        cj,
                        "Warning",
                        "FailedCreate",
                        &format!("Error creating job: {e}"),
                    );
                    return Err(e);
                }
            }
        }
    }
    let refs: Vec<Value> = active
        .iter()
        .map(|j| {
            json!({
                "apiVersion": "batch/v1", "kind": "Job", "namespace": ns,
                "name": objects::name_of(j), "uid": uid_of(j),
                "resourceVersion": objects::meta_str(j, "resourceVersion").unwrap_or(""),
            })
        })
        .collect();
    if refs.is_empty() {
        status.as_object_mut().map(|o| o.remove("active"));
    } else {
        status["active"] = json!(refs);
    }
    update_status(app, "batch/cronjobs", cj, status)
}

/// The scheduled time to start now, if any: the most recent one after the last scheduled
/// time (or creation) that is not past `now`, nor older than `startingDeadlineSeconds`.
fn schedule_due(app: &App, cj: &Value, now: i64) -> ApiResult<Option<i64>> {
    if cj.pointer("/spec/suspend").and_then(Value::as_bool) == Some(true) {
        return Ok(None);
    }
    let spec = cj
        .pointer("/spec/schedule")
        .and_then(Value::as_str)
        .unwrap_or("");
    let schedule = match Schedule::parse(spec) {
        Ok(s) => s,
        Err(e) => {
            warn_once(
                app,
                cj,
                "InvalidSchedule",
                &format!("invalid schedule: {spec}: {e}"),
            );
            return Ok(None);
        }
    };
    let tz = match cj.pointer("/spec/timeZone").and_then(Value::as_str) {
        Some(name) => match time_zone(name) {
            Ok(tz) => Some(tz),
            Err(e) => {
                warn_once(app, cj, "UnknownTimeZone", &e.to_string());
                return Ok(None);
            }
        },
        None => None,
    };
    let created = objects::meta_str(cj, "creationTimestamp")
        .and_then(parse_rfc3339)
        .unwrap_or(now);
    let mut since = cj
        .pointer("/status/lastScheduleTime")
        .and_then(Value::as_str)
        .and_then(parse_rfc3339)
        .unwrap_or(created);
    let deadline = cj
        .pointer("/spec/startingDeadlineSeconds")
        .and_then(Value::as_i64);
    if let Some(d) = deadline {
        // Times older than the deadline could not start anyway.
        since = since.max(now - d);
    }
    let mut latest = None;
    let mut missed = 0usize;
    let mut t = since;
    while let Some(next) = schedule.next_after(t, tz.as_ref()) {
        if next > now {
            break;
        }
        latest = Some(next);
        missed += 1;
        t = next;
        if missed > TOO_MANY_MISSED * 10 {
            // Far behind (e.g. a long-stopped cluster): jump to the end of the window.
            t = now - 3600;
        }
    }
    if missed > TOO_MANY_MISSED {
        warn_once(
            app,
            cj,
            "TooManyMissedTimes",
            "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or check clock skew",
        );
    }
    let Some(latest) = latest else {
        return Ok(None);
    };
    if let Some(d) = deadline
        && latest < now - d
    {
        event(
            app,
            cj,
            "Warning",
            "MissSchedule",
            &format!(
                "Missed scheduled time to start a job: {}",
                format_rfc3339(latest)
            ),
        );
        return Ok(None);
    }
    Ok(Some(latest))
}

/// A warning event, recorded only when the last event of that reason is not already it
/// (the pass runs every couple of seconds).
fn warn_once(app: &App, cj: &Value, reason: &str, message: &str) {
    let seen = app
        .store
        .list("/events", Some(ns_of(cj)))
        .map(|(evs, _)| {
            evs.iter().any(|e| {
                e.pointer("/involvedObject/uid").and_then(Value::as_str) == Some(uid_of(cj))
                    && e["reason"] == reason
                    && e["message"] == message
            })
        })
        .unwrap_or(false);
    if !seen {
        event(app, cj, "Warning", reason, message);
    }
}

/// A Job from the CronJob's `jobTemplate`, owned by it, stamped with its scheduled time.
pub(super) fn create_job(app: &App, cj: &Value, name: &str, scheduled: i64) -> ApiResult<Value> {
    let ns = ns_of(cj);
    let template = cj
        .pointer("/spec/jobTemplate")
        .cloned()
        .unwrap_or(json!({}));
    let mut meta = template
        .get("metadata")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    meta.insert("name".into(), json!(name));
    meta.insert("namespace".into(), json!(ns));
    let mut annotations = meta
        .get("annotations")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    annotations.insert(
        "batch.kubernetes.io/cronjob-scheduled-timestamp".into(),
        json!(format_rfc3339(scheduled)),
    );
    meta.insert("annotations".into(), Value::Object(annotations));
    meta.insert(
        "ownerReferences".into(),
        json!([owner_ref(cj, "batch/v1", "CronJob")]),
    );
    let job = json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": meta,
        "spec": template.get("spec").cloned().unwrap_or(json!({})),
    });
    create(app, "batch", "jobs", ns, job)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicI64, Ordering};

    use super::*;
    use crate::storage::{Store, Write};

    /// A clock the test sets (the controller never reads the real time).
    struct FakeClock(AtomicI64);

    impl Clock for FakeClock {
        fn now(&self) -> i64 {
            self.0.load(Ordering::SeqCst)
        }
    }

    impl FakeClock {
        fn set(&self, t: i64) {
            self.0.store(t, Ordering::SeqCst);
        }
    }

    struct Fixture {
        _dir: tempfile::TempDir,
        app: Arc<App>,
        clock: FakeClock,
    }

    impl Fixture {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open(&dir.path().join("db.sqlite")).unwrap();
            Fixture {
                app: App::new(store).unwrap(),
                _dir: dir,
                clock: FakeClock(AtomicI64::new(0)),
            }
        }

        /// Creates CronJob `name` (schedule every 5 minutes plus `spec`); returns its first
        /// scheduled time after creation.
        fn cronjob(&self, name: &str, spec: Value) -> i64 {
            let mut full = json!({
                "schedule": "*/5 * * * *",
                "jobTemplate": {"spec": {"template": {"spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "c", "image": "busybox"}]}}}},
            });
            for (k, v) in spec.as_object().unwrap() {
                full[k] = v.clone();
            }
            let cj = json!({"apiVersion": "batch/v1", "kind": "CronJob",
                            "metadata": {"name": name}, "spec": full});
            let cj = create(&self.app, "batch", "cronjobs", "default", cj).unwrap();
            let created = parse_rfc3339(objects::meta_str(&cj, "creationTimestamp").unwrap());
            Schedule::parse(cj["spec"]["schedule"].as_str().unwrap())
                .unwrap()
                .next_after(created.unwrap(), None)
                .unwrap()
        }

        fn run_at(&self, t: i64) {
            self.clock.set(t);
            pass(&self.app, &self.clock).unwrap();
        }

        fn jobs(&self) -> Vec<Value> {
            let (mut jobs, _) = self.app.store.list("batch/jobs", Some("default")).unwrap();
            jobs.retain(|j| !objects::is_deleting(j));
            jobs.sort_by_key(|j| objects::name_of(j).to_string());
            jobs
        }

        fn names(&self) -> Vec<String> {
            self.jobs()
                .iter()
                .map(|j| objects::name_of(j).to_string())
                .collect()
        }

        fn cj(&self, name: &str) -> Value {
            self.app
                .store
                .get("batch/cronjobs", "default", name)
                .unwrap()
                .unwrap()
        }

        /// Marks a job finished at `at` as the Job controller would.
        fn finish(&self, job: &str, ok: bool, at: i64) {
            let w = self
                .app
                .store
                .write("batch/jobs", "default", job, |cur| {
                    let mut new = cur.unwrap().clone();
                    let type_ = if ok { "Complete" } else { "Failed" };
                    new["status"] = json!({
                        "startTime": format_rfc3339(at - 1),
                        "conditions": [{"type": type_, "status": "True"}],
                    });
                    if ok {
                        new["status"]["completionTime"] = json!(format_rfc3339(at));
                    }
                    Ok(Write::Put(new))
                })
                .unwrap();
            let _ = w;
        }

        fn events(&self, reason: &str) -> Vec<String> {
            let (evs, _) = self.app.store.list("/events", Some("default")).unwrap();
            evs.iter()
                .filter(|e| e["reason"] == reason)
                .map(|e| e["message"].as_str().unwrap_or("").to_string())
                .collect()
        }
    }

    #[test]
    fn one_job_per_scheduled_time_named_after_it_and_never_twice() {
        let f = Fixture::new();
        let first = f.cronjob("tick", json!({}));
        f.run_at(first - 1);
        assert!(f.jobs().is_empty());
        f.run_at(first + 3);
        let name = format!("tick-{}", first / 60);
        assert_eq!(f.names(), std::slice::from_ref(&name));
        let job = &f.jobs()[0];
        assert_eq!(
            job["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"],
            format_rfc3339(first)
        );
        assert_eq!(job["metadata"]["ownerReferences"][0]["kind"], "CronJob");
        assert_eq!(job["spec"]["template"]["spec"]["restartPolicy"], "Never");
        let cj = f.cj("tick");
        assert_eq!(cj["status"]["lastScheduleTime"], format_rfc3339(first));
        assert_eq!(cj["status"]["active"][0]["name"], name.as_str());
        // The same time again, or a minute later: nothing new.
        f.run_at(first + 3);
        f.run_at(first + 60);
        assert_eq!(f.jobs().len(), 1);
        // Three missed times: only the most recent one runs (Allow: next to the active one).
        f.run_at(first + 900 + 10);
        assert_eq!(f.names(), [name, format!("tick-{}", (first + 900) / 60)]);
        assert_eq!(f.events("SuccessfulCreate").len(), 2);
    }

    #[test]
    fn forbid_waits_for_the_active_job_and_replace_replaces_it() {
        let f = Fixture::new();
        let first = f.cronjob("forbid", json!({"concurrencyPolicy": "Forbid"}));
        f.run_at(first + 1);
        let a = f.names()[0].clone();
        f.run_at(first + 301);
        assert_eq!(
            f.names(),
            std::slice::from_ref(&a),
            "Forbid started a second job"
        );
        assert!(!f.events("JobAlreadyActive").is_empty());
        assert_eq!(
            f.cj("forbid")["status"]["lastScheduleTime"],
            format_rfc3339(first)
        );
        // Once it finished, the waiting time runs.
        f.finish(&a, true, first + 302);
        f.run_at(first + 303);
        assert_eq!(f.names(), [a, format!("forbid-{}", (first + 300) / 60)]);
        let cj = f.cj("forbid");
        assert_eq!(
            cj["status"]["lastSuccessfulTime"],
            format_rfc3339(first + 302)
        );
        assert_eq!(cj["status"]["active"].as_array().unwrap().len(), 1);

        let f = Fixture::new();
        let first = f.cronjob("replace", json!({"concurrencyPolicy": "Replace"}));
        f.run_at(first + 1);
        let a = f.names()[0].clone();
        f.run_at(first + 301);
        assert_eq!(f.names(), [format!("replace-{}", (first + 300) / 60)]);
        assert!(f.events("SuccessfulDelete").iter().any(|m| m.contains(&a)));
    }

    #[test]
    fn suspended_cronjobs_and_missed_deadlines_start_nothing() {
        let f = Fixture::new();
        let first = f.cronjob("paused", json!({"suspend": true}));
        f.run_at(first + 1);
        assert!(f.jobs().is_empty());

        let f = Fixture::new();
        let first = f.cronjob("late", json!({"startingDeadlineSeconds": 60}));
        // Two minutes late for `first`: past its deadline, so it is skipped.
        f.run_at(first + 120);
        assert!(f.jobs().is_empty());
        // The next time, on time.
        f.run_at(first + 300 + 30);
        assert_eq!(f.names(), [format!("late-{}", (first + 300) / 60)]);
    }

    #[test]
    fn history_limits_keep_the_newest_finished_jobs() {
        let f = Fixture::new();
        let first = f.cronjob(
            "hist",
            json!({"successfulJobsHistoryLimit": 1, "failedJobsHistoryLimit": 1}),
        );
        for i in 0..3 {
            f.run_at(first + i * 300 + 1);
        }
        let names = f.names();
        assert_eq!(names.len(), 3);
        f.finish(&names[0], true, first + 10);
        f.finish(&names[1], false, first + 310);
        f.finish(&names[2], true, first + 610);
        f.run_at(first + 620);
        assert_eq!(f.names(), [names[1].clone(), names[2].clone()]);
        let cj = f.cj("hist");
        assert_eq!(
            cj["status"]["lastSuccessfulTime"],
            format_rfc3339(first + 610)
        );
        assert!(cj["status"].get("active").is_none(), "{}", cj["status"]);
    }

    #[test]
    fn time_zones_move_the_schedule() {
        if crate::cron::time_zone("Asia/Tokyo").is_err() {
            eprintln!("SKIPPED: no zoneinfo for Asia/Tokyo on this machine");
            return;
        }
        let f = Fixture::new();
        f.cronjob(
            "tz",
            json!({"schedule": "0 9 * * *", "timeZone": "Asia/Tokyo"}),
        );
        // 09:00 in Tokyo (UTC+9, no DST) is midnight UTC.
        let created = parse_rfc3339(objects::meta_str(&f.cj("tz"), "creationTimestamp").unwrap());
        let expected = Schedule::parse("0 0 * * *")
            .unwrap()
            .next_after(created.unwrap(), None)
            .unwrap();
        f.run_at(expected - 1);
        assert!(f.jobs().is_empty(), "{:?}", f.names());
        f.run_at(expected + 1);
        assert_eq!(f.names(), [format!("tz-{}", expected / 60)]);
    }

    #[test]
    fn stored_bad_schedules_are_reported_once_not_run() {
        let f = Fixture::new();
        // Stored before validation existed (the API server now refuses such a schedule).
        let cj = json!({"apiVersion": "batch/v1", "kind": "CronJob",
            "metadata": {"name": "bad", "namespace": "default", "uid": "u1",
                         "creationTimestamp": format_rfc3339(crate::clock::unix_now())},
            "spec": {"schedule": "61 * * * *", "jobTemplate": {"spec": {}}}});
        f.app
            .store
            .write("batch/cronjobs", "default", "bad", |_| {
                Ok(Write::Put(cj.clone()))
            })
            .unwrap();
        f.run_at(crate::clock::unix_now() + 7200);
        f.run_at(crate::clock::unix_now() + 7300);
        assert!(f.jobs().is_empty());
        let warnings = f.events("InvalidSchedule");
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains("minute: value 61 out of range"),
            "{warnings:?}"
        );
    }
}
