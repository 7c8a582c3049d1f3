//! The column scale that folds the feature gate into the mapper's weight (src/ops/col_scale) against
//! an f64 oracle on every device (cpu, emu in every thread order, cuda when present): the forward,
//! the backward by central finite differences, the `+=` rule, a dropped feature (keep 0); and the
//! folded mapper x (W ⊙ s)ᵀ + b against the unfolded gate → x̃ → linear on the tape, values and
//! every gradient.

#[macro_use]
mod gpu_common;
mod oracle;

use eraengine::device::Backend;
use eraengine::ops::gate::GateSelect;
use eraengine::params::{ParamId, Params};
use eraengine::tape::Tape;
use eraengine::Error;
use oracle::*;
use proptest::prelude::*;
use proptest::test_runner::TestCaseResult;

/// out = w ⊙ (g ⊙ keep), straight from the definition.
fn fwd64(w: &[f64], g: &[f64], keep: &[f32], m: usize, k: usize) -> Vec<f64> {
    (0..m * k)
        .map(|e| w[e] * g[e % k] * keep[e % k] as f64)
        .collect()
}

fn col_scale_matches_oracle_and_its_gradient<B: Backend>(
    dev: &B,
    c: &(usize, usize, u64),
) -> TestCaseResult {
    let &(m, k, seed) = c;
    let mut gen = Gen::new(seed);
    let w = gen.vec(m * k, -1.0, 1.0);
    let g = gen.vec(k, 0.0, 1.0);
    // every third feature (from a random offset) dropped by the selection
    let off = gen.below(3);
    let keep: Vec<f32> = (0..k)
        .map(|c| {
            if (c + off).is_multiple_of(3) {
                0.0
            } else {
                1.0
            }
        })
        .collect();
    let (wb, gb, kb) = (dev.upload(&w)?, dev.upload(&g)?, dev.upload(&keep)?);
    let mut out = dev.upload(&vec![7.0; m * k])?;
    dev.col_scale_fwd(&mut out, &wb, &gb, &kb, m, k)?;
    let want = fwd64(&f64s(&w), &f64s(&g), &keep, m, k);
    close("out", &dev.download(&out)?, &want, FWD_RTOL, FWD_ATOL)?;

    let dout = gen.vec(m * k, -1.0, 1.0);
    let (dw0, dg0) = (gen.vec(m * k, -1.0, 1.0), gen.vec(k, -1.0, 1.0));
    let (mut dw, mut dg) = (dev.upload(&dw0)?, dev.upload(&dg0)?);
    dev.col_scale_bwd(&mut dw, &mut dg, &dev.upload(&dout)?, &wb, &gb, &kb, m, k)?;
    let (w64, g64) = (f64s(&w), f64s(&g));
    let want_w = fd_grad(&w64, |x| functional(&dout, &fwd64(x, &g64, &keep, m, k)));
    let want_g = fd_grad(&g64, |x| functional(&dout, &fwd64(&w64, x, &keep, m, k)));
    close(
        "dw",
        &added(&dev.download(&dw)?, &dw0),
        &want_w,
        BWD_RTOL,
        BWD_ATOL,
    )?;
    let got_g = added(&dev.download(&dg)?, &dg0);
    close("dg", &got_g, &want_g, BWD_RTOL, BWD_ATOL)?;
    // a dropped feature gets no gradient
    for c in 0..k {
        if keep[c] == 0.0 {
            prop_assert_eq!(got_g[c], 0.0, "dg[{}] of a dropped feature", c);
        }
    }
    Ok(())
}
device_proptest!(
    48,
    col_scale_matches_oracle_and_its_gradient,
    (1usize..40, 1usize..70, proptest::prelude::any::<u64>())
);

fn wrong_lengths_are_shape_errors<B: Backend>(dev: &B) -> TestCaseResult {
    let (m, k) = (3usize, 4usize);
    let full = dev.upload(&vec![0.5; m * k])?;
    let short = dev.upload(&vec![0.5; k - 1])?;
    let kv = dev.upload(&vec![1.0; k])?;
    let mut out = dev.upload(&vec![0.0; m * k])?;
    let r = dev.col_scale_fwd(&mut out, &full, &short, &kv, m, k);
    prop_assert!(matches!(r, Err(Error::Shape(_))), "fwd: {:?}", r.err());
    let mut dg = dev.upload(&vec![0.0; k])?;
    let r = dev.col_scale_bwd(&mut out, &mut dg, &short, &full, &kv, &kv, m, k);
    prop_assert!(matches!(r, Err(Error::Shape(_))), "bwd: {:?}", r.err());
    Ok(())
}
device_test!(wrong_lengths_are_shape_errors);

/// The mapper's first layer both ways on one tape each: the gate with x̃ then the linear map, and
/// the gate without x̃ then the gated linear map. Same output and the same gradients for the gate's
/// parameters, W and b (the sums run in another order: f32 rounding only).
fn folded_mapper_equals_gate_then_linear<B: Backend>(
    dev: &B,
    c: &(usize, usize, usize, usize, bool, u64),
) -> TestCaseResult {
    let &(n, f, d, r, topk, seed) = c;
    let mut gen = Gen::new(seed);
    let tensors = vec![
        ("gate.w".to_string(), vec![f], gen.vec(f, -2.0, 2.0)),
        ("gate.a".to_string(), vec![f, r], gen.vec(f * r, -0.5, 0.5)),
        ("gate.b".to_string(), vec![f, r], gen.vec(f * r, -0.5, 0.5)),
        ("m.w".to_string(), vec![d, f], gen.vec(d * f, -0.5, 0.5)),
        ("m.b".to_string(), vec![d], gen.vec(d, -0.5, 0.5)),
    ];
    let x = gen.vec(n * f, -1.0, 1.0);
    let mask: Vec<f32> = (0..n).map(|i| if i % 5 == 4 { 0.0 } else { 1.0 }).collect();
    // targets of an MSE (+ sparsity) loss over h as [n, d] outputs: the tape must end in a loss
    let y = gen.vec(n * d, -1.0, 1.0);
    let select = if topk {
        GateSelect::TopK(f.div_ceil(2))
    } else {
        GateSelect::Threshold(0.3)
    };
    let run = |folded: bool| -> eraengine::Result<(Vec<f32>, Vec<Vec<f32>>)> {
        let mut p = Params::from_host(dev, &tensors)?;
        p.zero_grads(dev)?;
        let id = |i| ParamId(i);
        let mut tape = Tape::new();
        let xi = tape.input(dev, &x)?;
        let mi = tape.input(dev, &mask)?;
        let yi = tape.input(dev, &y)?;
        let ab = Some((id(1), id(2)));
        let (h, g) = if folded {
            let (g, keep) = tape.gate_select(dev, &p, xi, mi, None, id(0), ab, select, n, f, r)?;
            let h = tape.gated_linear(dev, &p, (xi, None), (g, keep), (id(3), id(4)), n, f, d)?;
            (h, g)
        } else {
            let (xt, g, _) = tape.gate(dev, &p, xi, mi, id(0), ab, select, n, f, r)?;
            (tape.linear(dev, &p, xt, id(3), id(4), n, f, d)?, g)
        };
        let out = tape.download(dev, h)?;
        tape.loss(dev, h, yi, mi, g, 0.01, n, d)?;
        tape.backward(dev, &mut p)?;
        tape.release(dev);
        let grads = (0..tensors.len())
            .map(|i| dev.download(&p.grads[i]))
            .collect::<eraengine::Result<Vec<_>>>()?;
        Ok((out, grads))
    };
    let (want, want_g) = run(false)?;
    let (got, got_g) = run(true)?;
    let f64v = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<_>>();
    close("h", &got, &f64v(&want), 1e-5, 1e-5)?;
    for (i, (a, b)) in got_g.iter().zip(&want_g).enumerate() {
        close(&tensors[i].0, a, &f64v(b), 1e-4, 1e-5)?;
    }
    Ok(())
}
device_proptest!(
    24,
    folded_mapper_equals_gate_then_linear,
    (
        1usize..60,
        1usize..40,
        1usize..20,
        0usize..4,
        proptest::prelude::any::<bool>(),
        proptest::prelude::any::<u64>()
    )
);

/// The gated linear map given x's era codes (`EraInputs::codes`: the CPU's product reads them,
/// other devices decode them) against the same map on x = (c − 2) / 2: the same output and the
/// same gradients, bit for bit.
fn gated_linear_on_codes_is_bit_identical<B: Backend>(
    dev: &B,
    c: &(usize, usize, usize, u64),
) -> TestCaseResult {
    let &(n, f, d, seed) = c;
    let mut gen = Gen::new(seed);
    let tensors = vec![
        ("gate.w".to_string(), vec![f], gen.vec(f, -2.0, 2.0)),
        ("m.w".to_string(), vec![d, f], gen.vec(d * f, -0.5, 0.5)),
        ("m.b".to_string(), vec![d], gen.vec(d, -0.5, 0.5)),
    ];
    let codes: Vec<u8> = gen
        .vec(n * f, 0.0, 5.0)
        .iter()
        .map(|&v| (v as u8).min(4))
        .collect();
    let packed = eraengine::ops::codes::pack(&codes);
    let x: Vec<f32> = codes.iter().map(|&c| (c as f32 - 2.0) * 0.5).collect();
    let mask: Vec<f32> = (0..n).map(|i| if i % 7 == 6 { 0.0 } else { 1.0 }).collect();
    let y = gen.vec(n * d, -1.0, 1.0);
    let run = |with_codes: bool| -> eraengine::Result<Vec<Vec<f32>>> {
        let mut p = Params::from_host(dev, &tensors)?;
        p.zero_grads(dev)?;
        let mut tape = Tape::new();
        let xi = tape.input(dev, &x)?;
        let ci = if with_codes {
            Some(tape.input(dev, &packed)?)
        } else {
            None
        };
        let mi = tape.input(dev, &mask)?;
        let yi = tape.input(dev, &y)?;
        // every feature kept (g > 0), so m.w's gradient is seen whole
        let sel = GateSelect::Threshold(0.0);
        let (g, keep) = tape.gate_select(dev, &p, xi, mi, None, ParamId(0), None, sel, n, f, 0)?;
        let h = tape.gated_linear(
            dev,
            &p,
            (xi, ci),
            (g, keep),
            (ParamId(1), ParamId(2)),
            n,
            f,
            d,
        )?;
        let mut out = vec![tape.download(dev, h)?];
        tape.loss(dev, h, yi, mi, g, 0.01, n, d)?;
        tape.backward(dev, &mut p)?;
        tape.release(dev);
        for i in 0..tensors.len() {
            out.push(dev.download(&p.grads[i])?);
        }
        Ok(out)
    };
    let (want, got) = (run(false)?, run(true)?);
    for (i, (a, b)) in got.iter().zip(&want).enumerate() {
        let same = a.len() == b.len() && a.iter().zip(b).all(|(u, v)| u.to_bits() == v.to_bits());
        prop_assert!(
            same,
            "output {} (0: h, then the gradients) differs with codes",
            i
        );
    }
    if n * f >= 64 {
        prop_assert!(want[2].iter().any(|&v| v != 0.0), "m.w got no gradient");
    }
    Ok(())
}
device_proptest!(
    10,
    gated_linear_on_codes_is_bit_identical,
    (
        // one or two of the weight gradient's 512-row blocks
        proptest::prop_oneof![1usize..40, 513usize..540],
        1usize..48,
        1usize..12,
        proptest::prelude::any::<u64>()
    )
);
