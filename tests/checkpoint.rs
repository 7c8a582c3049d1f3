//! Checkpoints: safetensors round trip, SPEC §4 names and metadata, and corrupt files as errors.

mod common;

use common::TempDir;
use eraengine::checkpoint::{from_bytes, to_bytes, Checkpoint};
use eraengine::model::{init_params, param_specs, Attention, Config};
use proptest::prelude::*;
use std::path::Path;

fn sample(cfg: Config) -> Checkpoint {
    let tensors = init_params(&cfg, 3);
    Checkpoint {
        features: (0..cfg.n_features)
            .map(|i| format!("feature_{i}"))
            .collect(),
        targets: (0..cfg.n_targets)
            .map(|i| {
                if i == 0 {
                    "target".into()
                } else {
                    format!("target_aux{i}")
                }
            })
            .collect(),
        config: cfg,
        tensors,
        head_blend: None,
    }
}

#[test]
fn names_and_shapes_follow_spec_section_4() {
    let mut cfg = Config::new(7, 2);
    cfg.layers = 1;
    let names: Vec<String> = param_specs(&cfg).into_iter().map(|(n, _)| n).collect();
    for expect in [
        "gate.w",
        "gate.a",
        "gate.b",
        "mapper.0.weight",
        "mapper.0.bias",
        "mapper.1.weight",
        "mapper.1.bias",
        "layers.0.attn.q.weight",
        "layers.0.attn.q.bias",
        "layers.0.attn.k.weight",
        "layers.0.attn.v.weight",
        "layers.0.attn.o.weight",
        "layers.0.attn.o.bias",
        "layers.0.norm1.weight",
        "layers.0.norm1.bias",
        "layers.0.ffn.0.weight",
        "layers.0.ffn.0.bias",
        "layers.0.ffn.1.weight",
        "layers.0.ffn.1.bias",
        "layers.0.norm2.weight",
        "layers.0.norm2.bias",
        "head.0.weight",
        "head.0.bias",
        "head.1.weight",
        "head.1.bias",
    ] {
        assert!(names.iter().any(|n| n == expect), "missing {expect}");
    }
    let shapes: std::collections::HashMap<_, _> = param_specs(&cfg).into_iter().collect();
    assert_eq!(shapes["mapper.0.weight"], vec![64, 7]);
    assert_eq!(shapes["layers.0.ffn.0.weight"], vec![128, 64]);
    assert_eq!(shapes["layers.0.ffn.1.weight"], vec![64, 128]);
    assert_eq!(shapes["head.1.weight"], vec![2, 64]);
    assert_eq!(shapes["gate.a"], vec![7, 8]);
    cfg.gate_rank = 0;
    assert!(!param_specs(&cfg)
        .iter()
        .any(|(n, _)| n == "gate.a" || n == "gate.b"));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn save_then_load_is_identical(f in 1usize..20, t in 1usize..4, rank in 0usize..4, layers in 0usize..3, soft in any::<bool>(), topk in any::<bool>()) {
        let mut cfg = Config::new(f, t);
        cfg.d_model = 8;
        cfg.heads = 2;
        cfg.d_ff = 16;
        cfg.gate_rank = rank;
        cfg.layers = layers;
        cfg.attention = if soft { Attention::Softmax } else { Attention::Linear };
        cfg.top_k = if topk { Some(1) } else { None };
        cfg.threshold = 0.1;
        let ck = sample(cfg);
        let dir = TempDir::new("ckpt-rt");
        let path = dir.join(format!("m{f}-{t}-{rank}-{layers}.safetensors"));
        ck.save(&path).unwrap();
        let back = Checkpoint::load(&path).unwrap();
        prop_assert_eq!(&back.config, &ck.config);
        prop_assert_eq!(&back.features, &ck.features);
        prop_assert_eq!(&back.targets, &ck.targets);
        prop_assert_eq!(&back.tensors, &ck.tensors);
        std::fs::remove_file(&path).unwrap();
    }
}

#[test]
fn metadata_holds_exactly_the_spec_keys() {
    let ck = sample(Config::new(4, 1));
    let bytes = to_bytes(&ck.tensors, &ck.metadata());
    let (meta, tensors) = from_bytes(&bytes, Path::new("x")).unwrap();
    let mut keys: Vec<&String> = meta.keys().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "config",
            "data_checksum",
            "features",
            "format",
            "format_version",
            "targets"
        ]
    );
    let cfg: serde_json::Value = serde_json::from_str(meta["config"].as_str().unwrap()).unwrap();
    for k in [
        "n_features",
        "n_targets",
        "d_model",
        "heads",
        "layers",
        "d_ff",
        "gate_rank",
        "threshold",
        "top_k",
        "dropout",
        "pos_enc",
        "attention",
        "lambda_sparsity",
        "eps_attention",
        "eps_layer_norm",
    ] {
        assert!(cfg.get(k).is_some(), "config lacks {k}");
    }
    assert_eq!(cfg["top_k"], serde_json::Value::Null);
    assert_eq!(cfg["dropout"].as_f64(), Some(0.1));
    assert_eq!(tensors.len(), ck.tensors.len());
    // The header is 8-byte aligned and data follows it directly.
    let hlen = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    assert_eq!(hlen % 8, 0);
    let n: usize = ck.tensors.iter().map(|t| t.2.len()).sum();
    assert_eq!(bytes.len(), 8 + hlen + 4 * n);
}

fn load_err(bytes: &[u8], tag: &str) -> String {
    let dir = TempDir::new(&format!("ckpt-{tag}"));
    let p = dir.join("bad.safetensors");
    std::fs::write(&p, bytes).unwrap();
    let e = Checkpoint::load(&p).unwrap_err().to_string();
    assert!(
        e.contains("bad.safetensors"),
        "error does not name the file: {e}"
    );
    e
}

#[test]
fn corrupt_checkpoints_are_clear_errors() {
    let ck = sample(Config::new(3, 1));
    let good = to_bytes(&ck.tensors, &ck.metadata());
    // Truncated data.
    let e = load_err(&good[..good.len() - 10], "trunc");
    assert!(e.contains("data_offsets") || e.contains("trailing"), "{e}");
    // Header length beyond the file.
    let mut bad = good.clone();
    bad[..8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    assert!(load_err(&bad, "hlen").contains("header length"));
    // Too short.
    assert!(load_err(&good[..5], "short").contains("too short"));
    // Not JSON.
    let mut bad = good.clone();
    bad[8] = b'#';
    assert!(load_err(&bad, "json").contains("not valid JSON"));
    // A missing tensor.
    let mut t = ck.tensors.clone();
    t.retain(|(n, _, _)| n != "head.0.bias");
    assert!(load_err(&to_bytes(&t, &ck.metadata()), "missing").contains("'head.0.bias'"));
    // Wrong shape for the config.
    let mut t = ck.tensors.clone();
    t[0].1 = vec![t[0].2.len(), 1];
    assert!(load_err(&to_bytes(&t, &ck.metadata()), "shape").contains("shape"));
    // NaN weights.
    let mut t = ck.tensors.clone();
    t[3].2[0] = f32::NAN;
    assert!(load_err(&to_bytes(&t, &ck.metadata()), "nan").contains("not finite"));
    // Not an eraengine checkpoint (no metadata).
    assert!(
        load_err(&to_bytes(&ck.tensors, &serde_json::Map::new()), "meta")
            .contains("not an eraengine checkpoint")
    );
    // Unsupported format version.
    let mut m = ck.metadata();
    m.insert("format_version".into(), "9".into());
    assert!(load_err(&to_bytes(&ck.tensors, &m), "ver").contains("version 9"));
    // Config inconsistent with names.
    let mut m = ck.metadata();
    m.insert("features".into(), "[\"a\"]".into());
    assert!(load_err(&to_bytes(&ck.tensors, &m), "names").contains("feature"));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Flipped bytes: loading either succeeds with finite weights or errors; it never panics.
    #[test]
    fn flipped_bytes_never_panic(pos in 0usize..4000, val in any::<u8>()) {
        let ck = sample({ let mut c = Config::new(3, 1); c.d_model = 8; c.heads = 2; c.d_ff = 8; c.layers = 1; c });
        let mut bytes = to_bytes(&ck.tensors, &ck.metadata());
        let p = pos % bytes.len();
        bytes[p] = val;
        let dir = TempDir::new("ckpt-flip");
        let path = dir.join(format!("f{p}-{val}.safetensors"));
        std::fs::write(&path, &bytes).unwrap();
        if let Ok(c) = Checkpoint::load(&path) {
            prop_assert!(c.tensors.iter().all(|t| t.2.iter().all(|x| x.is_finite())));
        }
        std::fs::remove_file(&path).unwrap();
    }
}

/// Rewrites a checkpoint's header through `edit` (the data stays), re-padding the header.
fn edit_header(bytes: &[u8], edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    let hlen = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut h: serde_json::Value = serde_json::from_slice(&bytes[8..8 + hlen]).unwrap();
    edit(&mut h);
    let mut hb = h.to_string().into_bytes();
    while !hb.len().is_multiple_of(8) {
        hb.push(b' ');
    }
    let mut out = (hb.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&hb);
    out.extend_from_slice(&bytes[8 + hlen..]);
    out
}

#[test]
fn a_flipped_tensor_byte_fails_the_data_checksum() {
    let ck = sample(Config::new(3, 1));
    let good = to_bytes(&ck.tensors, &ck.metadata());
    let hlen = u64::from_le_bytes(good[..8].try_into().unwrap()) as usize;
    // a flip that keeps the weight finite: the lowest mantissa bit of every 4th byte position
    for pos in [8 + hlen, 8 + hlen + 4 * 7, good.len() - 4] {
        let mut bad = good.clone();
        bad[pos] ^= 1;
        let e = load_err(&bad, "flipdata");
        assert!(e.contains("checksum") && e.contains("corrupted"), "{e}");
    }
}

#[test]
fn a_checkpoint_without_checksum_loads_with_a_note() {
    let dir = TempDir::new("ckpt-nock");
    let ck = sample(Config::new(3, 1));
    let good = to_bytes(&ck.tensors, &ck.metadata());
    let old = edit_header(&good, |h| {
        h["__metadata__"]
            .as_object_mut()
            .unwrap()
            .remove("data_checksum");
    });
    let p = dir.join("old.safetensors");
    std::fs::write(&p, &old).unwrap();
    let (back, note) = Checkpoint::load_checked(&p).unwrap();
    assert_eq!(back.tensors, ck.tensors);
    let note = note.expect("a note for a file without a checksum");
    assert!(
        note.contains("no data checksum") && note.contains("old.safetensors"),
        "{note}"
    );
    // with a checksum: no note
    let q = dir.join("new.safetensors");
    ck.save(&q).unwrap();
    assert!(Checkpoint::load_checked(&q).unwrap().1.is_none());
    // a garbled checksum value is an error, not a silent load
    let bad = edit_header(&good, |h| {
        h["__metadata__"]["data_checksum"] = "0000000000000000".into();
    });
    assert!(load_err(&bad, "garbled").contains("checksum"));
}

#[test]
fn duplicate_feature_or_target_names_are_errors() {
    let mut ck = sample(Config::new(3, 2));
    ck.features[2] = ck.features[0].clone();
    let e = load_err(&to_bytes(&ck.tensors, &ck.metadata()), "dupf");
    assert!(e.contains("appears twice") && e.contains("features"), "{e}");
    let mut ck = sample(Config::new(3, 2));
    ck.targets[1] = ck.targets[0].clone();
    let e = load_err(&to_bytes(&ck.tensors, &ck.metadata()), "dupt");
    assert!(e.contains("appears twice") && e.contains("targets"), "{e}");
}

#[test]
fn a_header_claiming_more_than_the_file_is_refused_before_reading() {
    let ck = sample(Config::new(3, 1));
    let good = to_bytes(&ck.tensors, &ck.metadata());
    let huge = edit_header(&good, |h| {
        h["head.1.bias"]["data_offsets"] = serde_json::json!([0u64, 1u64 << 50]);
    });
    let e = load_err(&huge, "huge");
    assert!(e.contains("holds only"), "{e}");
    // a device is not read at all
    let e = Checkpoint::load(Path::new("/dev/zero"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a regular file"), "{e}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    /// Any change to a byte of the tensor data is caught (by the checksum or the finite check).
    #[test]
    fn any_data_byte_change_is_an_error(pos in 0usize..100_000, val in 1u8..=255) {
        let ck = sample(Config::new(3, 1));
        let mut bytes = to_bytes(&ck.tensors, &ck.metadata());
        let hlen = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let data = bytes.len() - 8 - hlen;
        let p = 8 + hlen + pos % data;
        bytes[p] ^= val;
        let dir = TempDir::new("ckpt-dataflip");
        let path = dir.join(format!("d{p}-{val}.safetensors"));
        std::fs::write(&path, &bytes).unwrap();
        prop_assert!(Checkpoint::load(&path).is_err());
        std::fs::remove_file(&path).unwrap();
    }
}
