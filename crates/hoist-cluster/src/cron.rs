//! CronJob schedules: the standard 5-field syntax Kubernetes accepts (robfig/cron's
//! standard parser): `minute hour day-of-month month day-of-week`, each a list of `*`,
//! `?`, `N`, `N-M`, with an optional `/step`; month and weekday names (`jan`, `mon`);
//! the descriptors `@yearly`, `@annually`, `@monthly`, `@weekly`, `@daily`, `@midnight`,
//! `@hourly`. When both day fields are restricted a day matches either (cron's rule).
//! Times are computed in UTC or in an IANA time zone (`spec.timeZone`, read from the
//! system's zoneinfo).

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CronError {
    #[error("expected exactly 5 fields (minute hour day-of-month month day-of-week), found {0}")]
    FieldCount(usize),
    #[error("{field}: {message}")]
    Field {
        field: &'static str,
        message: String,
    },
    #[error(
        "unrecognized descriptor {0:?} (expected @yearly, @annually, @monthly, @weekly, @daily, @midnight or @hourly)"
    )]
    Descriptor(String),
    #[error("cannot use TZ or CRON_TZ in schedule, use timeZone field instead")]
    TimeZoneInSchedule,
    #[error("unknown time zone {0:?}")]
    UnknownTimeZone(String),
}

struct FieldSpec {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MINUTE: FieldSpec = FieldSpec {
    name: "minute",
    min: 0,
    max: 59,
    names: &[],
};
const HOUR: FieldSpec = FieldSpec {
    name: "hour",
    min: 0,
    max: 23,
    names: &[],
};
const DOM: FieldSpec = FieldSpec {
    name: "day-of-month",
    min: 1,
    max: 31,
    names: &[],
};
const MONTH: FieldSpec = FieldSpec {
    name: "month",
    min: 1,
    max: 12,
    names: &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ],
};
const DOW: FieldSpec = FieldSpec {
    name: "day-of-week",
    min: 0,
    max: 6,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
};

/// A parsed schedule: one bit per allowed value of each field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    minutes: u64,
    hours: u64,
    dom: u64,
    months: u64,
    dow: u64,
    /// A day field was `*`/`?` (then both day fields must match, else either may).
    dom_star: bool,
    dow_star: bool,
    source: String,
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl Schedule {
    pub fn parse(spec: &str) -> Result<Schedule, CronError> {
        let trimmed = spec.trim();
        if trimmed.starts_with("TZ=") || trimmed.starts_with("CRON_TZ=") {
            return Err(CronError::TimeZoneInSchedule);
        }
        let expanded = if let Some(d) = trimmed.strip_prefix('@') {
            match d {
                "yearly" | "annually" => "0 0 1 1 *",
                "monthly" => "0 0 1 * *",
                "weekly" => "0 0 * * 0",
                "daily" | "midnight" => "0 0 * * *",
                "hourly" => "0 * * * *",
                _ => return Err(CronError::Descriptor(trimmed.to_string())),
            }
        } else {
            trimmed
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(CronError::FieldCount(fields.len()));
        }
        let (minutes, _) = parse_field(fields[0], &MINUTE)?;
        let (hours, _) = parse_field(fields[1], &HOUR)?;
        let (dom, dom_star) = parse_field(fields[2], &DOM)?;
        let (months, _) = parse_field(fields[3], &MONTH)?;
        let (dow, dow_star) = parse_field(fields[4], &DOW)?;
        Ok(Schedule {
            minutes,
            hours,
            dom,
            months,
            dow,
            dom_star,
            dow_star,
            source: trimmed.to_string(),
        })
    }

    fn day_matches(&self, dom: u32, dow: u32) -> bool {
        let d = self.dom & (1 << dom) != 0;
        let w = self.dow & (1 << dow) != 0;
        if self.dom_star || self.dow_star {
            d && w
        } else {
            d || w
        }
    }

    /// The first scheduled time strictly after `after` (Unix seconds), in `tz` (UTC when
    /// None); None if there is none within five years (e.g. `0 0 30 2 *`).
    pub fn next_after(&self, after: i64, tz: Option<&jiff::tz::TimeZone>) -> Option<i64> {
        let local = |t: i64| -> i64 {
            match tz {
                None => t,
                Some(tz) => jiff::Timestamp::from_second(t)
                    .map(|ts| t + i64::from(tz.to_offset(ts).seconds()))
                    .unwrap_or(t),
            }
        };
        // Local civil time as Unix-like seconds: walk days, then hours and minutes.
        let start_local = local(after);
        let first_day = start_local.div_euclid(86_400);
        for day in first_day..first_day + 366 * 5 {
            let (_, month, dom) = crate::clock::civil_from_days(day);
            let dow = (day + 4).rem_euclid(7) as u32; // 1970-01-01 was a Thursday.
            if self.months & (1 << month) == 0 || !self.day_matches(dom as u32, dow) {
                continue;
            }
            for h in 0..24 {
                if self.hours & (1 << h) == 0 {
                    continue;
                }
                for m in 0..60 {
                    if self.minutes & (1 << m) == 0 {
                        continue;
                    }
                    let civil = day * 86_400 + h * 3600 + m * 60;
                    for t in to_instants(civil, tz) {
                        if t > after {
                            return Some(t);
                        }
                    }
                }
            }
        }
        None
    }
}

/// The instants a local civil time stands for: none in a DST gap (cron skips it), the
/// earlier one first when a DST fold repeats it.
fn to_instants(civil: i64, tz: Option<&jiff::tz::TimeZone>) -> Vec<i64> {
    let Some(tz) = tz else {
        return vec![civil];
    };
    let (y, mo, d) = crate::clock::civil_from_days(civil.div_euclid(86_400));
    let rem = civil.rem_euclid(86_400);
    let Ok(dt) = jiff::civil::DateTime::new(
        y as i16,
        mo as i8,
        d as i8,
        (rem / 3600) as i8,
        ((rem % 3600) / 60) as i8,
        0,
        0,
    ) else {
        return vec![];
    };
    match tz.to_ambiguous_timestamp(dt).offset() {
        jiff::tz::AmbiguousOffset::Unambiguous { offset } => {
            vec![civil - i64::from(offset.seconds())]
        }
        jiff::tz::AmbiguousOffset::Gap { .. } => vec![],
        jiff::tz::AmbiguousOffset::Fold { before, after } => {
            // Fires once: at the first occurrence.
            let _ = after;
            vec![civil - i64::from(before.seconds())]
        }
    }
}

/// Looks up an IANA time zone (`spec.timeZone`) in the system's zoneinfo.
pub fn time_zone(name: &str) -> Result<jiff::tz::TimeZone, CronError> {
    if name.is_empty() || name.contains("..") || name.starts_with('/') {
        return Err(CronError::UnknownTimeZone(name.to_string()));
    }
    jiff::tz::TimeZone::get(name).map_err(|_| CronError::UnknownTimeZone(name.to_string()))
}

/// Parses one field into a bit set; also says whether it was a bare `*`/`?`.
fn parse_field(expr: &str, spec: &FieldSpec) -> Result<(u64, bool), CronError> {
    let err = |message: String| CronError::Field {
        field: spec.name,
        message,
    };
    let mut bits = 0u64;
    let mut star = false;
    for part in expr.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => {
                let step: u32 = s
                    .parse()
                    .map_err(|_| err(format!("invalid step {s:?} in {part:?}")))?;
                if step == 0 {
                    return Err(err(format!("step of zero in {part:?}")));
                }
                (r, Some(step))
            }
            None => (part, None),
        };
        let (lo, hi) = if range == "*" || range == "?" {
            if step.is_none_or(|s| s == 1) {
                star = true;
            }
            (spec.min, spec.max)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a, spec).map_err(err)?, value(b, spec).map_err(err)?)
        } else {
            let v = value(range, spec).map_err(err)?;
            // `N/step` means `N-max/step`.
            (v, if step.is_some() { spec.max } else { v })
        };
        if lo > hi {
            return Err(err(format!(
                "beginning of range ({lo}) beyond end of range ({hi}) in {part:?}"
            )));
        }
        let mut v = lo;
        while v <= hi {
            bits |= 1 << v;
            v += step.unwrap_or(1);
        }
    }
    Ok((bits, star))
}

fn value(s: &str, spec: &FieldSpec) -> Result<u32, String> {
    let lower = s.to_ascii_lowercase();
    let v = match spec.names.iter().position(|n| *n == lower) {
        Some(i) => i as u32 + spec.min,
        None => s.parse().map_err(|_| {
            if spec.names.is_empty() {
                format!("invalid value {s:?} (expected a number)")
            } else {
                format!(
                    "invalid value {s:?} (expected a number or one of {})",
                    spec.names.join(", ")
                )
            }
        })?,
    };
    if v < spec.min || v > spec.max {
        return Err(format!(
            "value {v} out of range [{}, {}]",
            spec.min, spec.max
        ));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{format_rfc3339, parse_rfc3339};

    fn next(spec: &str, after: &str) -> String {
        let s = Schedule::parse(spec).unwrap();
        format_rfc3339(s.next_after(parse_rfc3339(after).unwrap(), None).unwrap())
    }

    #[test]
    fn standard_fields_steps_ranges_and_names() {
        assert_eq!(
            next("* * * * *", "2026-11-23T10:00:30Z"),
            "2026-11-23T10:01:00Z"
        );
        assert_eq!(
            next("* * * * *", "2026-11-23T10:00:00Z"),
            "2026-11-23T10:01:00Z"
        );
        assert_eq!(
            next("*/15 * * * *", "2026-11-23T10:16:00Z"),
            "2026-11-23T10:30:00Z"
        );
        assert_eq!(
            next("5/20 * * * *", "2026-11-23T10:46:00Z"),
            "2026-11-23T11:05:00Z"
        );
        assert_eq!(
            next("0 9-17/4 * * *", "2026-11-23T13:00:00Z"),
            "2026-11-23T17:00:00Z"
        );
        assert_eq!(
            next("30 2 * * mon-fri", "2026-11-21T00:00:00Z"),
            "2026-11-23T02:30:00Z"
        );
        assert_eq!(
            next("0 0 1 jan,JUL *", "2026-02-01T00:00:00Z"),
            "2026-07-01T00:00:00Z"
        );
        // Year wrap and a leap day.
        assert_eq!(
            next("0 0 29 2 *", "2026-03-01T00:00:00Z"),
            "2028-02-29T00:00:00Z"
        );
    }

    #[test]
    fn descriptors_expand_to_their_schedules() {
        assert_eq!(
            next("@hourly", "2026-11-23T10:00:00Z"),
            "2026-11-23T11:00:00Z"
        );
        assert_eq!(
            next("@daily", "2026-11-23T10:00:00Z"),
            "2026-11-24T00:00:00Z"
        );
        assert_eq!(
            next("@midnight", "2026-11-23T10:00:00Z"),
            "2026-11-24T00:00:00Z"
        );
        // 2026-11-23 is a Monday: the next Sunday midnight is the 29th.
        assert_eq!(
            next("@weekly", "2026-11-23T10:00:00Z"),
            "2026-11-29T00:00:00Z"
        );
        assert_eq!(
            next("@monthly", "2026-11-23T10:00:00Z"),
            "2026-12-01T00:00:00Z"
        );
        assert_eq!(
            next("@yearly", "2026-11-23T10:00:00Z"),
            "2027-01-01T00:00:00Z"
        );
        assert_eq!(
            next("@annually", "2026-11-23T10:00:00Z"),
            "2027-01-01T00:00:00Z"
        );
    }

    #[test]
    fn restricted_day_fields_match_either_day() {
        // The 1st of the month or any Friday (2026-11-27 is a Friday).
        assert_eq!(
            next("0 0 1 * fri", "2026-11-23T00:00:00Z"),
            "2026-11-27T00:00:00Z"
        );
        assert_eq!(
            next("0 0 1 * fri", "2026-11-28T00:00:00Z"),
            "2026-12-01T00:00:00Z"
        );
        // With `*` in one day field, only the other one counts.
        assert_eq!(
            next("0 0 * * fri", "2026-11-28T00:00:00Z"),
            "2026-12-04T00:00:00Z"
        );
        // A stepped star restricts: both fields are then ORed (robfig/cron).
        assert_eq!(
            next("0 0 */10 * sun", "2026-11-23T00:00:00Z"),
            "2026-11-29T00:00:00Z"
        );
    }

    #[test]
    fn impossible_dates_have_no_next_time() {
        let s = Schedule::parse("0 0 30 2 *").unwrap();
        assert_eq!(s.next_after(0, None), None);
    }

    #[test]
    fn bad_schedules_say_what_is_wrong() {
        let e = |s: &str| Schedule::parse(s).unwrap_err().to_string();
        assert!(
            e("* * * *").contains("exactly 5 fields"),
            "{}",
            e("* * * *")
        );
        assert!(e("60 * * * *").contains("minute: value 60 out of range [0, 59]"));
        assert!(e("* * * foo *").contains("month: invalid value \"foo\""));
        assert!(e("*/0 * * * *").contains("step of zero"));
        assert!(e("5-1 * * * *").contains("beyond end of range"));
        assert!(e("* * * * 7").contains("day-of-week: value 7 out of range"));
        assert!(e("@every 5m").contains("unrecognized descriptor"));
        assert_eq!(
            Schedule::parse("CRON_TZ=UTC * * * * *").unwrap_err(),
            CronError::TimeZoneInSchedule
        );
    }

    #[test]
    fn time_zones_shift_the_schedule_and_skip_dst_gaps() {
        let Ok(berlin) = time_zone("Europe/Berlin") else {
            eprintln!("SKIPPED: no zoneinfo for Europe/Berlin on this machine");
            return;
        };
        let s = Schedule::parse("0 9 * * *").unwrap();
        let t = s
            .next_after(
                parse_rfc3339("2026-11-23T00:00:00Z").unwrap(),
                Some(&berlin),
            )
            .unwrap();
        // CET is UTC+1 in November.
        assert_eq!(format_rfc3339(t), "2026-11-23T08:00:00Z");
        // 02:30 does not exist on 2026-03-29 in Berlin: the next one is a day later.
        let s = Schedule::parse("30 2 * * *").unwrap();
        let t = s
            .next_after(
                parse_rfc3339("2026-03-28T12:00:00Z").unwrap(),
                Some(&berlin),
            )
            .unwrap();
        assert_eq!(format_rfc3339(t), "2026-03-30T00:30:00Z");
        assert!(matches!(
            time_zone("Mars/Olympus"),
            Err(CronError::UnknownTimeZone(_))
        ));
    }
}
