//! Docker schema 2 manifests to OCI media types, for images written into a user's OCI
//! layout: skopeo and umoci only read OCI-typed manifests from one (skopeo cannot find a
//! Docker-typed index.json entry by name; umoci refuses it as "not implemented").
//!
//! Only media types change, as with `skopeo copy` to `oci:` (containers/image's
//! `convertToManifestOCI1` and `ToOCI1Index`), with one difference: the config and layer
//! blobs are kept byte for byte (skopeo rewrites the config), so their digests stay and
//! nothing but manifests is written anew. A Docker image config is a superset of the OCI
//! one, which OCI readers parse. Every other field of a manifest (sizes, digests, urls,
//! annotations, platforms, fields hoist does not know) is kept as it is, in its order.

use serde_json::Value;

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::manifest::{RawManifest, media};

/// Layer media types of Docker schema 2 and their OCI equivalents. Docker schema 2 has no
/// zstd layer type; an OCI one found in a Docker manifest is kept ([`OCI_LAYERS`]).
pub const DOCKER_TO_OCI_LAYERS: &[(&str, &str)] = &[
    (media::DOCKER_LAYER_GZIP, media::OCI_LAYER_GZIP),
    (
        "application/vnd.docker.image.rootfs.diff.tar",
        media::OCI_LAYER_TAR,
    ),
    (
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    ),
    (
        "application/vnd.docker.image.rootfs.foreign.diff.tar",
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
    ),
];

/// The layer media types of the OCI image spec (v1.1): already OCI, kept as they are.
pub const OCI_LAYERS: &[&str] = &[
    media::OCI_LAYER_TAR,
    media::OCI_LAYER_GZIP,
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
];

/// `raw`, an image manifest, with OCI media types: the same manifest when it is OCI already,
/// else a new one (new bytes, new digest) whose config and layers are the same blobs. A
/// media type with no OCI equivalent is an error naming it.
pub fn image_to_oci(raw: &RawManifest) -> Result<RawManifest> {
    match raw.media_type.as_str() {
        media::OCI_MANIFEST => return Ok(raw.clone()),
        media::DOCKER_MANIFEST => {}
        other => return Err(unconvertible(raw, "the manifest", other)),
    }
    let mut v = parse(raw)?;
    v["mediaType"] = Value::from(media::OCI_MANIFEST);
    let config_type = field_type(raw, &v["config"], "the config")?;
    let config_type = match config_type {
        media::DOCKER_CONFIG | media::OCI_CONFIG => media::OCI_CONFIG,
        other => return Err(unconvertible(raw, "the config", other)),
    };
    v["config"]["mediaType"] = Value::from(config_type);
    let layers = match v.get_mut("layers") {
        Some(Value::Array(layers)) => layers,
        _ => return Err(malformed(raw, "no layers array")),
    };
    for (i, layer) in layers.iter_mut().enumerate() {
        let what = format!("layer {i}");
        let from = field_type(raw, layer, &what)?;
        let to = match DOCKER_TO_OCI_LAYERS.iter().find(|(d, _)| *d == from) {
            Some((_, oci)) => *oci,
            None if OCI_LAYERS.contains(&from) => continue,
            None => return Err(unconvertible(raw, &what, from)),
        };
        layer["mediaType"] = Value::from(to);
    }
    serialise(v, media::OCI_MANIFEST)
}

/// `raw`, an index or manifest list, as an OCI index whose entries point at `converted`
/// (source digest, its manifest as [`image_to_oci`] made it): each such entry gets the new
/// media type, digest and size, its platform, urls and annotations kept. The same index when
/// it is OCI and none of its entries changed. An entry left Docker-typed is an error.
pub fn index_to_oci(raw: &RawManifest, converted: &[(Digest, RawManifest)]) -> Result<RawManifest> {
    if !media::is_index(&raw.media_type) {
        return Err(unconvertible(raw, "the index", &raw.media_type));
    }
    let mut v = parse(raw)?;
    let mut changed = raw.media_type != media::OCI_INDEX;
    v["mediaType"] = Value::from(media::OCI_INDEX);
    let entries = match v.get_mut("manifests") {
        Some(Value::Array(entries)) => entries,
        _ => return Err(malformed(raw, "no manifests array")),
    };
    for (i, entry) in entries.iter_mut().enumerate() {
        let what = format!("entry {i}");
        let digest = entry.get("digest").and_then(Value::as_str).unwrap_or("");
        match converted.iter().find(|(d, _)| d.to_string() == digest) {
            Some((old, new)) if *old != new.digest => {
                entry["mediaType"] = Value::from(new.media_type.as_str());
                entry["digest"] = Value::from(new.digest.to_string());
                entry["size"] = Value::from(new.bytes.len() as u64);
                changed = true;
            }
            _ => {
                let t = field_type(raw, entry, &what)?;
                if !matches!(t, media::OCI_MANIFEST | media::OCI_INDEX) {
                    return Err(unconvertible(raw, &what, t));
                }
            }
        }
    }
    match changed {
        true => serialise(v, media::OCI_INDEX),
        false => Ok(raw.clone()),
    }
}

/// `raw` as a JSON object: a manifest serde read from an array (`[2, null, …]`, which it
/// takes for a struct) has no fields to set.
fn parse(raw: &RawManifest) -> Result<Value> {
    let v: Value = serde_json::from_slice(&raw.bytes).map_err(|source| Error::Json {
        what: format!("manifest {}", raw.digest),
        source,
    })?;
    match v {
        Value::Object(_) => Ok(v),
        _ => Err(malformed(raw, "it is not a JSON object")),
    }
}

/// Whether an image written into `layout` gets OCI media types: in a user's layout, unless
/// `preserve_digests`; hoist's store finds images by the digests a registry gives them.
pub fn for_layout(layout: &crate::layout::OciLayout, preserve_digests: bool) -> bool {
    !preserve_digests && layout.owner() == crate::stored_blob::BlobOwner::User
}

/// The `mediaType` of descriptor `d` (`what` of `raw`).
fn field_type<'a>(raw: &RawManifest, d: &'a Value, what: &str) -> Result<&'a str> {
    d.get("mediaType")
        .and_then(Value::as_str)
        .ok_or_else(|| malformed(raw, &format!("{what} has no mediaType")))
}

/// Compact JSON, keys in the order read: the same input always gives the same bytes.
fn serialise(v: Value, media_type: &str) -> Result<RawManifest> {
    let bytes = serde_json::to_vec(&v).map_err(|source| Error::Json {
        what: "converted manifest".into(),
        source,
    })?;
    RawManifest::new(bytes, Some(media_type))
}

fn unconvertible(raw: &RawManifest, what: &str, media_type: &str) -> Error {
    Error::NoOciMediaType {
        manifest: raw.digest.to_string(),
        what: what.into(),
        media_type: media_type.into(),
    }
}

fn malformed(raw: &RawManifest, why: &str) -> Error {
    Error::Invalid(format!(
        "cannot convert manifest {} to OCI media types: {why}",
        raw.digest
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_written_as_an_array_is_an_error_not_a_panic() {
        // serde reads a struct from an array, so these pass as manifests.
        let m = RawManifest::new(
            br#"[2,"application/vnd.docker.distribution.manifest.v2+json",{"mediaType":"application/vnd.docker.container.image.v1+json","size":1,"digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000"},[]]"#.to_vec(),
            Some(media::DOCKER_MANIFEST),
        )
        .unwrap();
        let e = image_to_oci(&m).unwrap_err().to_string();
        assert!(e.contains("not a JSON object"), "{e}");
        let list = "application/vnd.docker.distribution.manifest.list.v2+json";
        let l = RawManifest::new(format!(r#"[2,"{list}",[]]"#).into_bytes(), Some(list)).unwrap();
        let e = index_to_oci(&l, &[]).unwrap_err().to_string();
        assert!(e.contains("not a JSON object"), "{e}");
    }

    fn raw(json: &str) -> RawManifest {
        RawManifest::new(json.as_bytes().to_vec(), None).unwrap()
    }

    fn docker_image(layer_types: &[&str]) -> String {
        let layers: Vec<String> = (layer_types.iter().enumerate())
            .map(|(i, t)| {
                format!(
                    r#"{{"mediaType":"{t}","size":{i},"digest":"sha256:{:064x}","urls":["https://x/{i}"]}}"#,
                    i + 1
                )
            })
            .collect();
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","size":7,"digest":"sha256:{:064x}"}},"layers":[{}],"annotations":{{"k":"v"}}}}"#,
            media::DOCKER_MANIFEST,
            media::DOCKER_CONFIG,
            99,
            layers.join(",")
        )
    }

    #[test]
    fn every_docker_layer_type_maps_and_nothing_else_changes() {
        let from: Vec<&str> = DOCKER_TO_OCI_LAYERS.iter().map(|(d, _)| *d).collect();
        let src = raw(&docker_image(&from));
        let out = image_to_oci(&src).unwrap();
        assert_eq!(out.media_type, media::OCI_MANIFEST);
        assert_ne!(out.digest, src.digest);
        let to: Vec<&str> = DOCKER_TO_OCI_LAYERS.iter().map(|(_, o)| *o).collect();
        let expected = docker_image(&to)
            .replace(media::DOCKER_MANIFEST, media::OCI_MANIFEST)
            .replace(media::DOCKER_CONFIG, media::OCI_CONFIG);
        // Byte for byte: key order, sizes, digests, urls and annotations as they were.
        assert_eq!(String::from_utf8(out.bytes.clone()).unwrap(), expected);
        assert_eq!(out.digest, Digest::of(expected.as_bytes()));
        assert_eq!(
            image_to_oci(&src).unwrap().bytes,
            out.bytes,
            "deterministic"
        );
        let (a, b) = (src.image().unwrap(), out.image().unwrap());
        assert_eq!(a.config.digest, b.config.digest);
        let digests = |m: &crate::ImageManifest| -> Vec<_> {
            m.layers
                .iter()
                .map(|l| (l.digest.clone(), l.size))
                .collect()
        };
        assert_eq!(digests(&a), digests(&b));
        assert_eq!(
            b.layers
                .iter()
                .map(|l| l.media_type.as_str())
                .collect::<Vec<_>>(),
            [
                "application/vnd.oci.image.layer.v1.tar+gzip",
                "application/vnd.oci.image.layer.v1.tar",
                "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
                "application/vnd.oci.image.layer.nondistributable.v1.tar",
            ]
        );
    }

    #[test]
    fn oci_layer_types_in_a_docker_manifest_stay_and_oci_manifests_are_untouched() {
        let src = raw(&docker_image(&[
            "application/vnd.oci.image.layer.v1.tar+zstd",
            media::DOCKER_LAYER_GZIP,
        ]));
        let out = image_to_oci(&src).unwrap().image().unwrap();
        assert_eq!(
            out.layers[0].media_type,
            "application/vnd.oci.image.layer.v1.tar+zstd"
        );
        assert_eq!(out.layers[1].media_type, media::OCI_LAYER_GZIP);
        // An OCI manifest is what it is (an artifact's own types included): same bytes.
        let artifact = raw(
            &docker_image(&["application/vnd.cncf.helm.chart.content.v1.tar+gzip"])
                .replace(media::DOCKER_MANIFEST, media::OCI_MANIFEST),
        );
        let same = image_to_oci(&artifact).unwrap();
        assert_eq!((same.bytes, same.digest), (artifact.bytes, artifact.digest));
    }

    #[test]
    fn an_unknown_media_type_is_an_error_naming_it() {
        let src = raw(&docker_image(&[
            media::DOCKER_LAYER_GZIP,
            "application/vnd.docker.image.rootfs.diff.tar.zstd",
        ]));
        let e = image_to_oci(&src).unwrap_err().to_string();
        assert!(
            e.contains(&src.digest.to_string())
                && e.contains("layer 1")
                && e.contains("\"application/vnd.docker.image.rootfs.diff.tar.zstd\"")
                && e.contains("--preserve-digests"),
            "{e}"
        );
        let plugin = raw(&docker_image(&[]).replace(
            media::DOCKER_CONFIG,
            "application/vnd.docker.plugin.v1+json",
        ));
        let e = image_to_oci(&plugin).unwrap_err().to_string();
        assert!(
            e.contains("the config") && e.contains("application/vnd.docker.plugin.v1+json"),
            "{e}"
        );
    }

    #[test]
    fn a_manifest_list_becomes_an_index_of_the_converted_images() {
        let (amd, arm) = (
            raw(&docker_image(&[media::DOCKER_LAYER_GZIP])),
            raw(&docker_image(&[
                media::DOCKER_LAYER_GZIP,
                media::DOCKER_LAYER_GZIP,
            ])),
        );
        let entry = |m: &RawManifest, arch: &str| {
            format!(
                r#"{{"mediaType":"{}","size":{},"digest":"{}","platform":{{"architecture":"{arch}","os":"linux","features":["sse4"]}}}}"#,
                m.media_type,
                m.bytes.len(),
                m.digest
            )
        };
        let list = raw(&format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[{},{}]}}"#,
            media::DOCKER_LIST,
            entry(&amd, "amd64"),
            entry(&arm, "arm64")
        ));
        let converted: Vec<_> = [&amd, &arm]
            .map(|m| (m.digest.clone(), image_to_oci(m).unwrap()))
            .into();
        let out = index_to_oci(&list, &converted).unwrap();
        assert_eq!(out.media_type, media::OCI_INDEX);
        let expected = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[{},{}]}}"#,
            media::OCI_INDEX,
            entry(&converted[0].1, "amd64"),
            entry(&converted[1].1, "arm64")
        );
        assert_eq!(String::from_utf8(out.bytes.clone()).unwrap(), expected);
        let crate::manifest::Parsed::Index(idx) = out.parse().unwrap() else {
            panic!("an index")
        };
        assert_eq!(idx.manifests[1].digest, converted[1].1.digest);
        assert_eq!(idx.manifests[1].size, converted[1].1.bytes.len() as u64);

        // A child not converted is an error, not a Docker entry in an OCI index.
        let e = index_to_oci(&list, &converted[..1])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("entry 1") && e.contains(media::DOCKER_MANIFEST),
            "{e}"
        );
        // An OCI index of OCI images: the same bytes.
        let oci = raw(&format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[{}]}}"#,
            media::OCI_INDEX,
            entry(&converted[0].1, "amd64")
        ));
        let same = [(converted[0].1.digest.clone(), converted[0].1.clone())];
        assert_eq!(index_to_oci(&oci, &same).unwrap().bytes, oci.bytes);
    }
}
