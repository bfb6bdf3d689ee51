// ema: exponential moving average of a flat tensor (iterate averaging, as crowsonkb/style-transfer-pytorch's
// --avg-decay), entirely on the GPU: no readback per step.
//   ema_update: A = d * A + (1 - d) * X            (every element)
//               S = [t + 1, d * S[1] + (1 - d)]    (by invocation 0 only; no other invocation reads S)
//   After t updates from A = 0, S = [0, 0]: S[1] = 1 - d^t, and A / S[1] is the bias-corrected
//   average (crowsonkb divides by 1 - d^t the same way). A and S[1] use the same f32 d and 1 - d,
//   so the average of a constant is that constant to rounding. 1 - d is computed on the host in f64.
// 1-D data over a 2-D grid of 256-wide workgroups (index = (wid.y * gx + wid.x) * 256 + lid).
// Checked by tests/ema.rs against reference::ema_update over several steps.

struct Params { n: u32, gx: u32, decay: f32, one_minus_decay: f32 }

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read_write> S: array<f32>;      // state: t, 1 - d^t
@group(0) @binding(2) var<storage, read> X: array<f32>;            // the current iterate (n)
@group(0) @binding(3) var<storage, read_write> A: array<f32>;      // the running average (n)

@compute @workgroup_size(256)
fn ema_update(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = (wid.y * P.gx + wid.x) * 256u + li;
    if (i == 0u) {
        S[0] = S[0] + 1.0;
        S[1] = P.decay * S[1] + P.one_minus_decay;
    }
    if (i < P.n) {
        A[i] = P.decay * A[i] + P.one_minus_decay * X[i];
    }
}
