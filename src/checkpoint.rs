//! Checkpoints: safetensors (SPEC §4), written by hand. Layout: u64 little-endian header length N,
//! N bytes of JSON header (padded with spaces to a multiple of 8), then the raw little-endian f32
//! data of every tensor back to back. `__metadata__` holds format, format_version, config,
//! features and targets (all strings, as safetensors requires).

use crate::io::write_atomic;
use crate::model::Config;
use crate::{Error, Result};
use serde_json::{json, Map, Value};
use std::path::Path;

pub use crate::params::HostTensors;

/// A model checkpoint held on the host.
#[derive(Clone, Debug)]
pub struct Checkpoint {
    pub config: Config,
    pub features: Vec<String>,
    pub targets: Vec<String>,
    pub tensors: HostTensors,
    /// The head blend folded into output 0 (`train --head-blend`, src/train/blend.rs): weights per
    /// target, stored as `__metadata__.head_blend` for people and tools to read. None: output 0 is
    /// target 0's head alone.
    pub head_blend: Option<Vec<f32>>,
}

/// Serialises tensors with string metadata as safetensors bytes.
pub fn to_bytes(
    tensors: &[(String, Vec<usize>, Vec<f32>)],
    metadata: &Map<String, Value>,
) -> Vec<u8> {
    let mut data = Vec::with_capacity(tensors.iter().map(|t| t.2.len() * 4).sum());
    for (_, _, d) in tensors {
        for x in d {
            data.extend_from_slice(&x.to_le_bytes());
        }
    }
    let mut metadata = metadata.clone();
    metadata.insert(
        DATA_CHECKSUM_KEY.into(),
        Value::String(data_checksum(&data)),
    );
    let mut header = Map::new();
    header.insert("__metadata__".into(), Value::Object(metadata));
    let mut offset = 0usize;
    for (name, shape, data) in tensors {
        let end = offset + data.len() * 4;
        header.insert(
            name.clone(),
            json!({"dtype": "F32", "shape": shape, "data_offsets": [offset, end]}),
        );
        offset = end;
    }
    let mut h = Value::Object(header).to_string().into_bytes();
    while !h.len().is_multiple_of(8) {
        h.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + h.len() + offset);
    out.extend_from_slice(&(h.len() as u64).to_le_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(&data);
    out
}

/// `__metadata__` key holding the checksum of the tensor data (every byte after the header).
pub const DATA_CHECKSUM_KEY: &str = "data_checksum";

/// The checksum written under [`DATA_CHECKSUM_KEY`]: the store's 64-bit hash
/// (`data::checksum::hash`) of the data bytes, as 16 lowercase hex digits.
pub fn data_checksum(data: &[u8]) -> String {
    format!("{:016x}", crate::data::checksum::hash(data))
}

/// Note for a file without [`DATA_CHECKSUM_KEY`] (written before checksums existed): it loads,
/// but corruption of its tensor data cannot be detected.
pub fn no_checksum_note(path: &Path) -> String {
    format!(
        "{}: no data checksum (written by an older eraengine); corrupted weights would go unnoticed. Save it again to add one",
        path.display()
    )
}

/// Reads a safetensors file after checking, from its first bytes, that it is a regular file and
/// that what the header claims fits the file: the header length and the largest data offset must
/// lie within the file size. A device such as /dev/zero, or a file whose header claims terabytes,
/// is refused before anything large is read or allocated.
pub fn read_file(path: &Path) -> Result<Vec<u8>> {
    use std::io::Read;
    let err = |place: &str, m: String| Error::format(path, place, m);
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let meta = f.metadata().map_err(|e| Error::io(path, e))?;
    if !meta.is_file() {
        return Err(err(
            "",
            "not a regular file; expected a .safetensors checkpoint".into(),
        ));
    }
    let len = meta.len();
    let mut lenb = [0u8; 8];
    if len < 8 || f.read_exact(&mut lenb).is_err() {
        return Err(err(
            "header",
            format!("file is {len} bytes, too short for a safetensors header"),
        ));
    }
    let hlen = u64::from_le_bytes(lenb);
    if hlen > len - 8 || hlen > MAX_HEADER {
        return Err(err(
            "header",
            format!(
                "header length {hlen} exceeds the file size {len}: not a safetensors checkpoint{}",
                if &lenb[..4] == b"PAR1" {
                    " (this is a parquet file)"
                } else {
                    ""
                }
            ),
        ));
    }
    let mut header = vec![0u8; hlen as usize];
    f.read_exact(&mut header).map_err(|e| Error::io(path, e))?;
    let data_len = len - 8 - hlen;
    if let Ok(Value::Object(obj)) = serde_json::from_slice::<Value>(&header) {
        for (name, v) in &obj {
            let end = v
                .get("data_offsets")
                .and_then(Value::as_array)
                .and_then(|a| a.get(1))
                .and_then(Value::as_u64);
            if let Some(end) = end {
                if end > data_len {
                    return Err(err(
                        &format!("tensor '{name}'"),
                        format!(
                            "data_offsets end at byte {end}, but the file holds only {data_len} data bytes (truncated or not a checkpoint)"
                        ),
                    ));
                }
            }
        }
    }
    let mut bytes = Vec::with_capacity(len as usize);
    bytes.extend_from_slice(&lenb);
    bytes.extend_from_slice(&header);
    f.read_to_end(&mut bytes).map_err(|e| Error::io(path, e))?;
    Ok(bytes)
}

/// Largest header accepted (bytes).
const MAX_HEADER: u64 = 100_000_000;

/// Parses safetensors bytes into (metadata, tensors in file order). Every offset is checked.
pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<(Map<String, Value>, HostTensors)> {
    let err = |place: &str, m: String| Error::format(path, place, m);
    if bytes.len() < 8 {
        return Err(err(
            "header",
            format!(
                "file is {} bytes, too short for a safetensors header",
                bytes.len()
            ),
        ));
    }
    let mut lenb = [0u8; 8];
    lenb.copy_from_slice(&bytes[..8]);
    let hlen = u64::from_le_bytes(lenb);
    if hlen > (bytes.len() - 8) as u64 || hlen > MAX_HEADER {
        return Err(err(
            "header",
            format!(
                "header length {hlen} exceeds the file size {}: not a safetensors checkpoint{}",
                bytes.len(),
                if bytes.starts_with(b"PAR1") {
                    " (this is a parquet file)"
                } else {
                    ""
                }
            ),
        ));
    }
    let hlen = hlen as usize;
    let header: Value = serde_json::from_slice(&bytes[8..8 + hlen])
        .map_err(|e| err("header", format!("header is not valid JSON: {e}")))?;
    let obj = header
        .as_object()
        .ok_or_else(|| err("header", "header is not a JSON object".into()))?;
    let data = &bytes[8 + hlen..];
    if let Some(v) = obj
        .get("__metadata__")
        .and_then(|m| m.get(DATA_CHECKSUM_KEY))
    {
        let want = v.as_str().unwrap_or("");
        let got = data_checksum(data);
        if want != got {
            return Err(err(
                &format!("__metadata__.{DATA_CHECKSUM_KEY}"),
                format!(
                    "the tensor data does not match its checksum (stored {}, computed {got}): the file is corrupted",
                    if want.len() > 20 { &want[..20] } else { want }
                ),
            ));
        }
    }
    let mut metadata = Map::new();
    let mut entries = Vec::new();
    for (name, v) in obj {
        if name == "__metadata__" {
            metadata = v
                .as_object()
                .cloned()
                .ok_or_else(|| err("__metadata__", "is not an object".into()))?;
            continue;
        }
        let place = format!("tensor '{name}'");
        let dtype = v.get("dtype").and_then(Value::as_str).unwrap_or("");
        if dtype != "F32" {
            return Err(err(&place, format!("dtype is '{dtype}', expected F32")));
        }
        let shape: Vec<usize> = v
            .get("shape")
            .and_then(Value::as_array)
            .ok_or_else(|| err(&place, "shape missing".into()))?
            .iter()
            .map(|x| x.as_u64().map(|x| x as usize))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                err(
                    &place,
                    "shape must be a list of non-negative integers".into(),
                )
            })?;
        let offs = v
            .get("data_offsets")
            .and_then(Value::as_array)
            .filter(|a| a.len() == 2)
            .and_then(|a| Some((a[0].as_u64()? as usize, a[1].as_u64()? as usize)))
            .ok_or_else(|| err(&place, "data_offsets must be [start, end]".into()))?;
        let numel = shape.iter().try_fold(1usize, |a, &b| a.checked_mul(b));
        let nbytes = numel.and_then(|n| n.checked_mul(4));
        if offs.0 > offs.1 || offs.1 > data.len() || Some(offs.1 - offs.0) != nbytes {
            return Err(err(
                &place,
                format!(
                    "data_offsets {:?} do not fit shape {:?} within {} data bytes",
                    offs,
                    shape,
                    data.len()
                ),
            ));
        }
        entries.push((offs, name.clone(), shape));
    }
    entries.sort();
    let mut expect = 0usize;
    let mut tensors = Vec::new();
    for ((start, end), name, shape) in entries {
        if start != expect {
            return Err(err(
                &format!("tensor '{name}'"),
                "tensors overlap or leave a gap".into(),
            ));
        }
        expect = end;
        let vals = data[start..end]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        tensors.push((name, shape, vals));
    }
    if expect != data.len() {
        return Err(err(
            "data",
            format!(
                "{} trailing bytes after the last tensor",
                data.len() - expect
            ),
        ));
    }
    Ok((metadata, tensors))
}

/// A string value of `__metadata__`, or an error saying the file is not `what`.
pub fn meta_str<'a>(
    meta: &'a Map<String, Value>,
    key: &str,
    path: &Path,
    what: &str,
) -> Result<&'a str> {
    meta.get(key).and_then(Value::as_str).ok_or_else(|| {
        Error::format(
            path,
            "__metadata__",
            format!("key '{key}' is missing: not {what}"),
        )
    })
}

/// Checks `__metadata__.format`.
pub fn expect_format(
    meta: &Map<String, Value>,
    path: &Path,
    format: &str,
    what: &str,
) -> Result<()> {
    if meta_str(meta, "format", path, what)? != format {
        return Err(Error::format(
            path,
            "__metadata__.format",
            format!("expected \"{format}\""),
        ));
    }
    Ok(())
}

/// `__metadata__` key of the head blend's weights (a JSON array, one number per target).
pub const HEAD_BLEND_KEY: &str = "head_blend";

/// `__metadata__` key marking a pretrained checkpoint, and its one value.
pub const PRETRAINED_KEY: &str = "pretrained";
pub const PRETRAINED: &str = "masked-feature";

impl Checkpoint {
    pub fn metadata(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("format".into(), Value::String("eraengine".into()));
        m.insert("format_version".into(), Value::String("1".into()));
        m.insert(
            "config".into(),
            Value::String(self.config.to_json().to_string()),
        );
        m.insert(
            "features".into(),
            Value::String(json!(self.features).to_string()),
        );
        m.insert(
            "targets".into(),
            Value::String(json!(self.targets).to_string()),
        );
        if self.is_pretrained() {
            m.insert(PRETRAINED_KEY.into(), Value::String(PRETRAINED.into()));
        }
        if let Some(w) = &self.head_blend {
            m.insert(HEAD_BLEND_KEY.into(), Value::String(json!(w).to_string()));
        }
        m
    }

    /// Whether this is a masked-feature pretrained checkpoint (it holds the `pretrain.*` tensors,
    /// docs/model.md).
    pub fn is_pretrained(&self) -> bool {
        self.tensors
            .iter()
            .any(|(n, _, _)| n.starts_with("pretrain."))
    }

    /// Atomic write: temp file, then rename.
    pub fn save(&self, path: &Path) -> Result<()> {
        write_atomic(path, &to_bytes(&self.tensors, &self.metadata()))
    }

    pub fn load(path: &Path) -> Result<Checkpoint> {
        Self::load_checked(path).map(|(c, _)| c)
    }

    /// Loads a checkpoint (as [`Checkpoint::load`]) and returns a note for the CLI to print when
    /// the file has no data checksum (older files still load).
    pub fn load_checked(path: &Path) -> Result<(Checkpoint, Option<String>)> {
        let bytes = read_file(path)?;
        let (meta, tensors) = from_bytes(&bytes, path)?;
        let note = (!meta.contains_key(DATA_CHECKSUM_KEY)).then(|| no_checksum_note(path));
        let get = |k: &str| meta_str(&meta, k, path, "an eraengine checkpoint");
        expect_format(&meta, path, "eraengine", "an eraengine checkpoint")?;
        let ver = get("format_version")?;
        if ver != "1" {
            return Err(Error::format(
                path,
                "__metadata__.format_version",
                format!("version {ver} is not supported (this build reads 1)"),
            ));
        }
        let cfg_v: Value = serde_json::from_str(get("config")?)
            .map_err(|e| Error::format(path, "__metadata__.config", format!("not JSON: {e}")))?;
        let config = Config::from_json(&cfg_v, path)?;
        let names = |k: &str| -> Result<Vec<String>> {
            let v: Value = serde_json::from_str(get(k)?).map_err(|e| {
                Error::format(path, format!("__metadata__.{k}"), format!("not JSON: {e}"))
            })?;
            v.as_array()
                .and_then(|a| {
                    a.iter()
                        .map(|x| x.as_str().map(String::from))
                        .collect::<Option<Vec<_>>>()
                })
                .ok_or_else(|| {
                    Error::format(
                        path,
                        format!("__metadata__.{k}"),
                        "expected a JSON array of strings",
                    )
                })
        };
        let features = names("features")?;
        let targets = names("targets")?;
        let head_blend = match meta.get(HEAD_BLEND_KEY) {
            None => None,
            Some(v) => {
                let place = format!("__metadata__.{HEAD_BLEND_KEY}");
                let w: Option<Vec<f32>> = v
                    .as_str()
                    .and_then(|s| serde_json::from_str::<Value>(s).ok())
                    .and_then(|a| {
                        a.as_array().and_then(|a| {
                            a.iter()
                                .map(|x| x.as_f64().map(|x| x as f32))
                                .collect::<Option<Vec<_>>>()
                        })
                    })
                    .filter(|w| w.len() == targets.len() && w.iter().all(|x| x.is_finite()));
                Some(w.ok_or_else(|| {
                    Error::format(
                        path,
                        place,
                        format!(
                            "expected a JSON array of {} finite numbers (one per target)",
                            targets.len()
                        ),
                    )
                })?)
            }
        };
        for (k, list) in [("features", &features), ("targets", &targets)] {
            let mut seen = std::collections::HashSet::with_capacity(list.len());
            if let Some(d) = list.iter().find(|n| !seen.insert(n.as_str())) {
                return Err(Error::format(
                    path,
                    format!("__metadata__.{k}"),
                    format!("name '{d}' appears twice: columns would map ambiguously"),
                ));
            }
        }
        if features.len() != config.n_features || targets.len() != config.n_targets {
            return Err(Error::format(
                path,
                "__metadata__",
                format!(
                    "{} feature and {} target names, but the config says {} and {}",
                    features.len(),
                    targets.len(),
                    config.n_features,
                    config.n_targets
                ),
            ));
        }
        // Put tensors in model order and check each one's shape and values.
        // parameters, then the (not trained) buffers such as the era context's standardisation
        let mut specs = crate::model::param_specs(&config);
        specs.extend(crate::model::buffer_specs(&config));
        // a pretrained checkpoint carries its pretraining tensors after the model's
        match meta.get(PRETRAINED_KEY).and_then(|v| v.as_str()) {
            None => {}
            Some(PRETRAINED) => specs.extend(crate::model::pretrain_specs(&config)),
            Some(other) => {
                return Err(Error::format(
                    path,
                    format!("__metadata__.{PRETRAINED_KEY}"),
                    format!(
                        "'{other}' is not a known pretraining (this build knows '{PRETRAINED}')"
                    ),
                ))
            }
        }
        let mut ordered = Vec::with_capacity(specs.len());
        for (name, shape) in &specs {
            let t = tensors
                .iter()
                .find(|(n, _, _)| n == name)
                .ok_or_else(|| Error::format(path, format!("tensor '{name}'"), "is missing"))?;
            if &t.1 != shape {
                return Err(Error::format(
                    path,
                    format!("tensor '{name}'"),
                    format!("shape {:?}, the config needs {:?}", t.1, shape),
                ));
            }
            if let Some(i) = t.2.iter().position(|x| !x.is_finite()) {
                return Err(Error::format(
                    path,
                    format!("tensor '{name}'"),
                    format!("element {i} is not finite"),
                ));
            }
            ordered.push(t.clone());
        }
        if let Some((extra, _, _)) = tensors
            .iter()
            .find(|(n, _, _)| !specs.iter().any(|(s, _)| s == n))
        {
            return Err(Error::format(
                path,
                format!("tensor '{extra}'"),
                "is not a parameter of this config",
            ));
        }
        Ok((
            Checkpoint {
                config,
                features,
                targets,
                tensors: ordered,
                head_blend,
            },
            note,
        ))
    }
}

impl Checkpoint {
    /// `eraengine info CKPT --json`.
    pub fn info_json(&self) -> Value {
        let params: usize = self.tensors.iter().map(|(_, _, d)| d.len()).sum();
        json!({
            "format": "eraengine",
            "format_version": "1",
            "config": self.config.to_json(),
            "features": self.features,
            "targets": self.targets,
            "head_blend": self.head_blend,
            "parameters": params,
            "tensors": self.tensors.iter().map(|(n, s, _)| json!({"name": n, "shape": s})).collect::<Vec<_>>(),
        })
    }

    /// `eraengine info CKPT`, for people.
    pub fn info_text(&self) -> String {
        let c = &self.config;
        let params: usize = self.tensors.iter().map(|(_, _, d)| d.len()).sum();
        let mut s = String::new();
        s += "eraengine checkpoint, format version 1\n";
        s += &format!(
            "model: {} features -> d_model {}, {} heads, {} layers, d_ff {}, {} attention, gate rank {}\n",
            c.n_features, c.d_model, c.heads, c.layers, c.d_ff, c.attention.as_str(), c.gate_rank
        );
        s += &format!(
            "gate: {}, lambda {}, dropout {}, positional encoding {}\n",
            match c.top_k {
                Some(k) => format!("top-{k}"),
                None => format!("threshold {}", c.threshold),
            },
            c.lambda_sparsity,
            c.dropout,
            if c.pos_enc { "on" } else { "off" }
        );
        s += &format!(
            "targets ({}): {}\n",
            self.targets.len(),
            self.targets.join(", ")
        );
        if let Some(w) = &self.head_blend {
            s += &format!(
                "output 0: {} (head blend)\n",
                describe_blend(w, &self.targets)
            );
        }
        let shown: Vec<&str> = self.features.iter().take(5).map(String::as_str).collect();
        s += &format!(
            "features ({}): {}{}\n",
            self.features.len(),
            shown.join(", "),
            if self.features.len() > 5 { ", ..." } else { "" }
        );
        s += &format!("parameters: {params} in {} tensors\n", self.tensors.len());
        s
    }
}

/// A head blend for people (src/train/blend.rs): "1·target + 0.5·target_aux1" (heads with
/// weight 0 left out).
pub fn describe_blend(w: &[f32], targets: &[String]) -> String {
    let parts: Vec<String> = w
        .iter()
        .zip(targets)
        .filter(|(&wk, _)| wk != 0.0)
        .map(|(wk, name)| format!("{wk}·{name}"))
        .collect();
    if parts.is_empty() {
        "0".into()
    } else {
        parts.join(" + ")
    }
}
