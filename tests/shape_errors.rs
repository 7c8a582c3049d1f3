//! A wrong buffer length is `Error::Shape` on every device — never a slice panic on the CPU, never
//! a launch on the GPU (issue 7, item 5): every op family, each with one buffer one element short.

mod gpu_common;

use eraengine::device::{Backend, Cpu};
use eraengine::gpu::Order;
use eraengine::ops::elementwise::DropoutKey;
use eraengine::ops::gate::GateSelect;
use eraengine::ops::optim::AdamArgs;
use eraengine::Error;
use gpu_common::Emu;

fn shape_err<T: std::fmt::Debug>(what: &str, dev: &str, r: eraengine::Result<T>) {
    assert!(
        matches!(r, Err(Error::Shape(_))),
        "{dev}: {what} gave {r:?}, expected a shape error"
    );
}

fn every_op_checks_lengths<B: Backend>(dev: &B) {
    let name = dev.name();
    let z = |len: usize| dev.zeros(len).unwrap();
    let (n, k, m, d, h, f, r, t) = (3, 4, 5, 4, 2, 6, 2, 2);
    let key = DropoutKey {
        seed: 1,
        step: 2,
        tensor: 3,
    };

    let r1 = dev.linear_fwd(&mut z(n * m), &z(n * k - 1), &z(m * k), None, n, k, m);
    shape_err("linear_fwd inp", &name, r1);
    let r1 = dev.linear_bwd(
        None,
        &mut z(m * k),
        None,
        &z(n * m),
        &z(n * k),
        &z(m * k - 1),
        n,
        k,
        m,
    );
    shape_err("linear_bwd w", &name, r1);
    let r1 = dev.layer_norm_fwd(
        &mut z(n * d),
        &mut z(n),
        &mut z(n),
        &z(n * d),
        &z(d - 1),
        &z(d),
        n,
        d,
    );
    shape_err("layer_norm_fwd gamma", &name, r1);
    let r1 = dev.layer_norm_bwd(
        &mut z(n * d),
        &mut z(d),
        &mut z(d),
        &z(n * d - 1),
        &z(n * d),
        &z(n),
        &z(n),
        &z(d),
        n,
        d,
    );
    shape_err("layer_norm_bwd dout", &name, r1);
    shape_err("gelu_fwd", &name, dev.gelu_fwd(&mut z(4), &z(3)));
    shape_err("gelu_bwd", &name, dev.gelu_bwd(&mut z(4), &z(3), &z(4)));
    shape_err("add_fwd", &name, dev.add_fwd(&mut z(4), &z(4), &z(5)));
    shape_err("accumulate", &name, dev.accumulate(&mut z(4), &z(3)));
    shape_err("copy", &name, dev.copy(&mut z(4), &z(3)));
    shape_err(
        "dropout_fwd",
        &name,
        dev.dropout_fwd(&mut z(4), &z(3), 0.5, key),
    );
    shape_err(
        "dropout_bwd",
        &name,
        dev.dropout_bwd(&mut z(4), &z(5), 0.5, key),
    );
    shape_err(
        "pos_enc_add",
        &name,
        dev.pos_enc_add(&mut z(n * d - 1), n, d),
    );
    let dh = d / h;
    let r1 = dev.linear_attention_fwd(
        &mut z(n * d),
        &mut z(h * dh * dh),
        &mut z(h * dh),
        &z(n * d),
        &z(n * d),
        &z(n * d),
        &z(n - 1),
        n,
        d,
        h,
    );
    shape_err("linear_attention_fwd mask", &name, r1);
    let r1 = dev.linear_attention_bwd(
        &mut z(n * d),
        &mut z(n * d),
        &mut z(n * d),
        &z(n * d),
        &z(n * d),
        &z(n * d),
        &z(n * d),
        &z(n),
        &z(h * dh * dh - 1),
        &z(h * dh),
        n,
        d,
        h,
    );
    shape_err("linear_attention_bwd s", &name, r1);
    let r1 = dev.softmax_attention_fwd(
        &mut z(n * d),
        &mut z(h * n - 1),
        &z(n * d),
        &z(n * d),
        &z(n * d),
        &z(n),
        n,
        n,
        d,
        h,
    );
    shape_err("softmax_attention_fwd lse", &name, r1);
    let r1 = dev.softmax_attention_bwd(
        &mut z(n * d),
        &mut z(n * d),
        &mut z(n * d - 1),
        &z(n * d),
        &z(n * d),
        &z(h * n),
        &z(n * d),
        &z(n * d),
        &z(n * d),
        &z(n),
        n,
        n,
        d,
        h,
    );
    shape_err("softmax_attention_bwd dv", &name, r1);
    // heads that do not divide d
    let r1 = dev.softmax_attention_fwd(
        &mut z(n * d),
        &mut z(3 * n),
        &z(n * d),
        &z(n * d),
        &z(n * d),
        &z(n),
        n,
        n,
        d,
        3,
    );
    shape_err("softmax_attention_fwd heads", &name, r1);
    let r1 = dev.gate_fwd(
        Some(&mut z(n * f)),
        &mut z(f),
        &mut z(f),
        &mut z(f),
        &mut z(r),
        &z(n * f),
        &z(n),
        None,
        &z(f),
        &z(f * r),
        &z(f * r - 1),
        GateSelect::TopK(2),
        n,
        f,
        r,
    );
    shape_err("gate_fwd b", &name, r1);
    let r1 = dev.gate_bwd(
        &mut z(f),
        &mut z(f * r),
        &mut z(f * r),
        &mut z(f),
        &z(n * f),
        &z(n * f),
        &z(f),
        &z(r - 1),
        &z(f),
        &z(f),
        &z(f * r),
        n,
        f,
        r,
    );
    shape_err("gate_bwd u", &name, r1);
    let r1 = dev.mse_sparsity_fwd(&z(n * t), &z(n * t - 1), &z(n), &z(f), 0.1, n, t);
    shape_err("mse_sparsity_fwd y", &name, r1);
    let r1 = dev.mse_sparsity_bwd(
        &mut z(n * t + 1),
        &mut z(f),
        &z(n * t),
        &z(n * t),
        &z(n),
        0.1,
        n,
        t,
    );
    shape_err("mse_sparsity_bwd dyhat", &name, r1);
    let args = AdamArgs {
        lr: 1e-3,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.0,
        step: 1,
        grad_scale: 1.0,
    };
    let r1 = dev.adam_step(&mut z(4), &z(4), &mut z(3), &mut z(4), &args);
    shape_err("adam_step m", &name, r1);
}

#[test]
fn cpu_reports_wrong_lengths_as_shape_errors() {
    every_op_checks_lengths(&Cpu);
}

#[test]
fn emulated_gpu_reports_wrong_lengths_as_shape_errors() {
    every_op_checks_lengths(&Emu::new(Order::Forward));
}

#[test]
fn cuda_reports_wrong_lengths_as_shape_errors() {
    if let Some(dev) = gpu_common::cuda("cuda_reports_wrong_lengths_as_shape_errors") {
        every_op_checks_lengths(&dev);
    }
}
