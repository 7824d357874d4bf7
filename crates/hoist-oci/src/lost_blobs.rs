//! A registry can lose blobs it accepted earlier in the same push: one whose storage is
//! wiped when it restarts (a dev registry on `emptyDir` or tmpfs). Its answer to the
//! manifest is then `MANIFEST_BLOB_UNKNOWN`, although every blob was sent. Running the
//! push again would work (it probes each blob), so the push does that part itself, once:
//! ask which blobs the registry lacks, send those again, and put the manifest again.

use crate::client::RegistryClient;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::manifest::{Parsed, RawManifest};
use crate::reference::Reference;

/// Put `raw` as `target`. If the registry refuses it for blobs it does not have, the
/// blobs the image refers to (config and layers) it lacks now, which the caller sends again
/// (from where the push took them) before [`put_again`]. An index refers to manifests,
/// which this does not send again: its refusal stands as the registry gave it.
/// (Two steps, not a callback: an async closure borrowing its arguments makes the
/// caller's future lose `Send`.)
pub(crate) async fn put_manifest(
    client: &RegistryClient,
    target: &Reference,
    raw: &RawManifest,
) -> Result<Put> {
    let blobs: Vec<(Digest, u64)> = match raw.parse()? {
        Parsed::Image(m) => {
            let mut seen = std::collections::HashSet::new();
            (std::iter::once(&m.config).chain(m.layers.iter()))
                .filter(|d| seen.insert(d.digest.clone()))
                .map(|d| (d.digest.clone(), d.size))
                .collect()
        }
        Parsed::Index(_) => vec![],
    };
    match client.put_manifest(target, raw).await {
        Err(e) if blobs_unknown(&e) && !blobs.is_empty() => {}
        done => return done.map(Put::Done),
    }
    let mut lacking = vec![];
    for (d, size) in &blobs {
        if !client.has_blob(target, d).await? {
            lacking.push((d.clone(), *size));
        }
    }
    let next = match lacking.len() {
        // It found them since (another push sent them?): the manifest may go up now.
        0 => "it has them all now; putting the manifest again".to_string(),
        n => format!("sending {} again", blob_count(n)),
    };
    client.say(format!(
        "registry {}: it refused the manifest of {target} for blobs it no longer has, though this push sent them or found them there (did it restart with empty storage?); {next}",
        target.registry,
    ));
    client.plan_bytes(lacking.iter().fold(0u64, |t, b| t.saturating_add(b.1)));
    Ok(Put::Lacking(lacking))
}

/// What the first manifest PUT came to.
pub(crate) enum Put {
    Done(Digest),
    /// Refused: these blobs are to be sent again, then [`put_again`].
    Lacking(Vec<(Digest, u64)>),
}

/// The second and last PUT of a manifest refused for blobs the registry lacked, once
/// `lacking` were sent again.
pub(crate) async fn put_again(
    client: &RegistryClient,
    target: &Reference,
    raw: &RawManifest,
    lacking: Vec<(Digest, u64)>,
) -> Result<Digest> {
    match client.put_manifest(target, raw).await {
        Err(e) if blobs_unknown(&e) => {
            let mut named = digests_named(&e);
            if named.is_empty() {
                named = lacking.into_iter().map(|(d, _)| d).collect();
            }
            Err(Error::BlobsLost {
                registry: target.registry.clone(),
                image: target.to_string(),
                count: blob_count(named.len()),
                blobs: (named.iter().map(|d| d.to_string()))
                    .collect::<Vec<_>>()
                    .join(", "),
            })
        }
        done => done,
    }
}

fn blob_count(n: usize) -> String {
    match n {
        1 => "1 blob".to_string(),
        n => format!("{n} blobs"),
    }
}

/// Is `e` a registry refusing a manifest because blobs it refers to are unknown
/// (`MANIFEST_BLOB_UNKNOWN`, or `BLOB_UNKNOWN` from some registries)?
pub(crate) fn blobs_unknown(e: &Error) -> bool {
    matches!(e, Error::Http { method, status: 400 | 404, body, .. }
        if method == "PUT" && body.contains("BLOB_UNKNOWN"))
}

/// The digests an error answer names as unknown (each error's `detail`), in order, once.
fn digests_named(e: &Error) -> Vec<Digest> {
    let Error::Http { body, .. } = e else {
        return vec![];
    };
    let Ok(doc) = serde_json::from_str::<serde_json::Value>(body) else {
        return vec![];
    };
    let errors = doc["errors"].as_array().cloned().unwrap_or_default();
    let mut named: Vec<Digest> = vec![];
    for err in errors {
        // distribution gives the digest as the detail; others wrap it in an object.
        let detail = match &err["detail"] {
            serde_json::Value::String(s) => Some(s.clone()),
            v => v["digest"].as_str().map(String::from),
        };
        if let Some(d) = detail.and_then(|s| Digest::parse(&s).ok())
            && !named.contains(&d)
        {
            named.push(d);
        }
    }
    named
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(status: u16, body: &str) -> Error {
        Error::Http {
            registry: "r".into(),
            method: "PUT".into(),
            url: "http://r/v2/x/manifests/v1".into(),
            status,
            body: body.into(),
        }
    }

    #[test]
    fn unknown_blobs_are_read_from_the_refusal() {
        let (a, b) = ("a".repeat(64), "b".repeat(64));
        let body = format!(
            r#"{{"errors":[{{"code":"MANIFEST_BLOB_UNKNOWN","message":"blob unknown to registry","detail":"sha256:{a}"}},{{"code":"MANIFEST_BLOB_UNKNOWN","detail":{{"digest":"sha256:{b}"}}}},{{"code":"MANIFEST_BLOB_UNKNOWN","detail":"sha256:{a}"}}]}}"#
        );
        let e = refused(400, &body);
        assert!(blobs_unknown(&e));
        let named: Vec<String> = digests_named(&e).iter().map(|d| d.to_string()).collect();
        assert_eq!(named, [format!("sha256:{a}"), format!("sha256:{b}")]);
        // A body cut short (hoist keeps 500 characters) names what it can: nothing here.
        assert!(digests_named(&refused(400, &body[..120])).is_empty());
    }

    #[test]
    fn other_refusals_are_not_about_lost_blobs() {
        assert!(!blobs_unknown(&refused(
            400,
            r#"{"errors":[{"code":"MANIFEST_INVALID"}]}"#
        )));
        assert!(!blobs_unknown(&refused(
            500,
            r#"{"errors":[{"code":"BLOB_UNKNOWN"}]}"#
        )));
        let get = Error::Http {
            registry: "r".into(),
            method: "GET".into(),
            url: "http://r/v2/x/blobs/sha256:0".into(),
            status: 404,
            body: r#"{"errors":[{"code":"BLOB_UNKNOWN"}]}"#.into(),
        };
        assert!(!blobs_unknown(&get));
    }
}
