//! The time stamp of reproducible output: `SOURCE_DATE_EPOCH`
//! (<https://reproducible-builds.org/specs/source-date-epoch/>) is every layer entry's
//! mtime and the image config's `created`, so the content tag hashes it too.

/// 2000-01-01T00:00:00Z: a fixed, plausible mtime when `SOURCE_DATE_EPOCH` is unset.
pub const DEFAULT_EPOCH: u64 = 946_684_800;

/// The variable's name.
pub const SOURCE_DATE_EPOCH: &str = "SOURCE_DATE_EPOCH";

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error(
    "SOURCE_DATE_EPOCH={value:?} is not a time: expected a non-negative whole number of seconds since 1970-01-01 (e.g. `SOURCE_DATE_EPOCH=$(git log -1 --format=%ct)`), or unset it"
)]
pub struct InvalidEpoch {
    pub value: String,
}

/// The effective epoch: `SOURCE_DATE_EPOCH` when it is set and not empty, else
/// [`DEFAULT_EPOCH`]; a value that is not a non-negative integer is an error (silently
/// using another time would give another image under a name that promises this one).
pub fn source_date_epoch() -> Result<u64, InvalidEpoch> {
    parse_epoch(std::env::var_os(SOURCE_DATE_EPOCH).map(|v| v.to_string_lossy().into_owned()))
}

fn parse_epoch(value: Option<String>) -> Result<u64, InvalidEpoch> {
    match value {
        None => Ok(DEFAULT_EPOCH),
        Some(v) if v.trim().is_empty() => Ok(DEFAULT_EPOCH),
        Some(v) => {
            let t = v.trim();
            // `u64::from_str` takes a leading `+`; the spec asks for digits only.
            if t.bytes().all(|b| b.is_ascii_digit()) {
                t.parse().map_err(|_| InvalidEpoch { value: v.clone() })
            } else {
                Err(InvalidEpoch { value: v })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_parse_or_name_the_bad_value() {
        let p = |v: &str| parse_epoch(Some(v.to_string()));
        assert_eq!(parse_epoch(None), Ok(DEFAULT_EPOCH));
        assert_eq!(p(""), Ok(DEFAULT_EPOCH));
        assert_eq!(p("1700000000"), Ok(1_700_000_000));
        assert_eq!(p(" 0 "), Ok(0));
        for bad in ["garbage", "-5", "+5", "1.5", "99999999999999999999999"] {
            let e = p(bad).unwrap_err();
            assert!(
                e.to_string()
                    .starts_with(&format!("SOURCE_DATE_EPOCH={bad:?} is not a time")),
                "{e}"
            );
        }
    }
}
