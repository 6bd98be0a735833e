//! The arithmetic of a decode step over its rows (one per token fed): RMSNorm, RoPE, and the
//! block-quantized products with each row's adapter, the row groups of the weights shared by the
//! team and read once for every row.

use super::head_cache::exp;
use super::team::{Disjoint, Team};
use crate::model::nn::linear::LoraLinear;
use crate::model::nn::weight::BaseWeight;
use crate::model::quant::products::Kernel;
use crate::model::quant::{BlockMatrix, GROUP, QuantizedRow};
use candle_core::Result;

/// Row groups a product is split into per thread, each of at least `MIN_CHUNK_GROUPS`:
/// long runs of rows stream better than short ones.
const CHUNKS_PER_THREAD: usize = 4;
const MIN_CHUNK_GROUPS: usize = 4;

/// A frozen block-quantized projection and its bias.
pub(super) struct Projection<'m> {
    pub(super) w: &'m BlockMatrix,
    pub(super) bias: Option<Vec<f32>>,
}

impl<'m> Projection<'m> {
    pub(super) fn new(l: &'m LoraLinear) -> Result<Option<Projection<'m>>> {
        let BaseWeight::Blocks(w) = &l.base else {
            return Ok(None);
        };
        let bias = l.bias.as_ref().map(|b| b.to_vec1::<f32>()).transpose()?;
        Ok(Some(Projection { w, bias }))
    }

    fn rows(&self) -> usize {
        self.w.dims().0
    }

    /// Outputs `first..first + ys.len()` of the layer from their base values, in place:
    /// `+ B low` (the activation row's adapter), then the bias. Nothing to do for a layer
    /// without either, which is most of them.
    fn finish(&self, first: usize, ys: &mut [f32], lora: Option<(&Adapter, &[f32])>) {
        if let Some((l, low)) = lora {
            let b = l.b[first * l.rank..].chunks_exact(l.rank);
            for (y, b) in ys.iter_mut().zip(b) {
                *y += b.iter().zip(low).map(|(b, x)| b * x).sum::<f32>();
            }
        }
        if let Some(bias) = &self.bias {
            for (y, b) in ys.iter_mut().zip(&bias[first..]) {
                *y += b;
            }
        }
    }
}

/// A LoRA adapter's matrices: A `[rank, in]`, B `[out, rank]`, and its scale alpha / r.
#[derive(Clone)]
pub(super) struct Adapter {
    pub(super) rank: usize,
    pub(super) a: Vec<f32>,
    pub(super) b: Vec<f32>,
    pub(super) scale: f32,
}

impl Adapter {
    /// `scale · A x` into `low` (`rank` values).
    fn low(&self, x: &[f32], low: &mut [f32]) {
        for (l, a) in low.iter_mut().zip(self.a.chunks_exact(x.len())) {
            *l = a.iter().zip(x).map(|(a, x)| a * x).sum::<f32>() * self.scale;
        }
    }
}

/// `x += y`, as candle adds.
pub(super) fn add(x: &mut [f32], y: &[f32]) {
    for (x, y) in x.iter_mut().zip(y) {
        *x += y;
    }
}

/// RoPE at one position on every head of `x` (halves rotated, as candle-nn's `rope`).
pub(super) fn rope(x: &mut [f32], d: usize, cos: &[f32], sin: &[f32]) {
    let half = d / 2;
    for head in x.chunks_exact_mut(d) {
        let (a, b) = head.split_at_mut(half);
        for (((a, b), c), s) in a.iter_mut().zip(b.iter_mut()).zip(cos).zip(sin) {
            let (x1, x2) = (*a, *b);
            *a = x1 * c - x2 * s;
            *b = x1 * s + x2 * c;
        }
    }
}

/// RMSNorm of each row of `x` (rows as long as `weight`) into `out`, as candle-nn computes it
/// on the CPU.
pub(super) fn rms_norm_rows(x: &[f32], weight: &[f32], eps: f32, out: &mut Vec<f32>) {
    out.clear();
    for row in x.chunks_exact(weight.len()) {
        let sum2 = row.iter().map(|v| v * v).sum::<f32>();
        let m = (sum2 / row.len() as f32 + eps).sqrt();
        out.extend(row.iter().zip(weight).map(|(v, w)| v / m * w));
    }
}

/// Rows a step rounds on the calling thread: a decode step's few rows take less time than the
/// team takes to start; a prefill's hundreds are shared.
const SERIAL_ROWS: usize = 16;

/// Each row of `x` (rows of `cols`) rounded to 8 bits, into the first rows of `acts` (rows
/// are added as needed; those past them are left as they were).
fn quantize_rows(team: &Team, x: &[f32], cols: usize, acts: &mut Vec<QuantizedRow>) {
    let rows: Vec<&[f32]> = x.chunks_exact(cols).collect();
    if rows.len() <= SERIAL_ROWS {
        for (r, row) in rows.into_iter().enumerate() {
            match acts.get_mut(r) {
                Some(act) => act.set(row),
                None => acts.push(QuantizedRow::new(row)),
            }
        }
        return;
    }
    if acts.len() < rows.len() {
        acts.resize_with(rows.len(), || QuantizedRow::new(&[]));
    }
    let slots = Disjoint::new(&mut acts[..rows.len()]);
    team.run(rows.len(), &|r| {
        // SAFETY: chunk r rounds row r only.
        let act = unsafe { slots.range(r, 1) };
        act[0].set(rows[r]);
    });
}

/// This thread's room for a chunk's products of `groups` groups of weight rows (kept between
/// chunks; give it back with `ROOM.set`).
fn room_for(groups: usize) -> Vec<[f32; GROUP]> {
    let mut room = ROOM.take();
    if room.len() < groups {
        room.resize(groups, [0.0; GROUP]);
    }
    room
}

thread_local! {
    /// Each thread's room for its chunks' products.
    static ROOM: std::cell::Cell<Vec<[f32; GROUP]>> = const { std::cell::Cell::new(Vec::new()) };
    /// The leader's rounded activation rows, kept from one product to the next so that a
    /// decode step does not allocate them for every product.
    static ACTS: std::cell::Cell<Vec<QuantizedRow>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Each row's adapter product `scale · A x`, row `r`'s at `r · stride` (`stride` the largest
/// rank; nothing for rows without an adapter).
struct Lows {
    values: Vec<f32>,
    stride: usize,
}

impl Lows {
    fn new(team: &Team, adapters: &[Option<&Adapter>], x: &[f32]) -> Lows {
        let stride = adapters.iter().flatten().map(|a| a.rank).max().unwrap_or(0);
        let mut values = vec![0f32; adapters.len() * stride];
        if stride > 0 {
            let cols = x.len() / adapters.len();
            let target = Disjoint::new(&mut values);
            team.run(adapters.len(), &|r| {
                if let Some(a) = adapters[r] {
                    // SAFETY: row r writes its own values.
                    let low = unsafe { target.range(r * stride, a.rank) };
                    a.low(&x[r * cols..(r + 1) * cols], low);
                }
            });
        }
        Lows { values, stride }
    }

    /// Row `r`'s adapter and its low-rank product, if it has an adapter.
    fn of<'a>(
        &'a self,
        adapter: Option<&'a Adapter>,
        r: usize,
    ) -> Option<(&'a Adapter, &'a [f32])> {
        adapter.map(|a| (a, &self.values[r * self.stride..r * self.stride + a.rank]))
    }
}

/// `outs[i] = x W_i^T + adapter_i(x) + b_i` for each projection and each row of `x` (row `r`
/// with its adapter `loras[i][r]`), the row groups of all the projections split into chunks
/// that the team shares; each chunk reads its groups once for every row.
pub(super) fn product<const N: usize>(
    team: &Team,
    kernel: Kernel,
    projections: [&Projection; N],
    loras: [&[Option<&Adapter>]; N],
    x: &[f32],
    mut outs: [&mut Vec<f32>; N],
) {
    let n = loras[0].len();
    let cols = x.len() / n.max(1);
    let mut rounded = ACTS.take();
    quantize_rows(team, x, cols, &mut rounded);
    let acts: Vec<&QuantizedRow> = rounded[..n].iter().collect();
    let lows: [Lows; N] = std::array::from_fn(|i| Lows::new(team, loras[i], x));
    let total: usize = projections.iter().map(|p| p.w.groups()).sum();
    let chunk = (total / (CHUNKS_PER_THREAD * team.size())).max(MIN_CHUNK_GROUPS);
    let counts: [usize; N] = std::array::from_fn(|i| projections[i].w.groups().div_ceil(chunk));
    for (out, p) in outs.iter_mut().zip(&projections) {
        out.clear();
        out.resize(n * p.rows(), 0.0);
    }
    let targets: Vec<Disjoint> = outs.iter_mut().map(|o| Disjoint::new(o)).collect();
    team.run(counts.iter().sum(), &|mut i| {
        let mut p = 0;
        while i >= counts[p] {
            i -= counts[p];
            p += 1;
        }
        let (w, rows) = (projections[p].w, projections[p].rows());
        let groups = i * chunk..((i + 1) * chunk).min(w.groups());
        let first = groups.start * GROUP;
        let last = (groups.end * GROUP).min(rows);
        // SAFETY: chunk i of projection p writes its own rows of every activation row.
        let mut out: Vec<&mut [f32]> = (0..n)
            .map(|r| unsafe { targets[p].range(r * rows + first, last - first) })
            .collect();
        let mut room = room_for(2 * n);
        let (y0, y1) = room[..2 * n].split_at_mut(n);
        let mut g = groups.start;
        while g < groups.end {
            let count = pair_or_one(w, kernel, g, groups.end, &acts, [&mut *y0, &mut *y1]);
            for (k, y) in [&*y0, &*y1][..count].iter().enumerate() {
                let g = g + k;
                for (r, (out, y)) in out.iter_mut().zip(y.iter()).enumerate() {
                    let lora = lows[p].of(loras[p][r], r);
                    let at = (g - groups.start) * GROUP;
                    let len = GROUP.min(out.len() - at);
                    let out = &mut out[at..at + len];
                    out.copy_from_slice(&y[..len]);
                    projections[p].finish(g * GROUP, out, lora);
                }
            }
            g += count;
        }
        ROOM.set(room);
    });
    drop(acts);
    ACTS.set(rounded);
}

/// Group `g` of `w` against `acts` into `y[0]`, and group `g + 1` into `y[1]` with it where it
/// is below `end` and there are several rows; the number of groups done. (A single row waits on
/// memory, which reads one group at a time faster.)
fn pair_or_one(
    w: &BlockMatrix,
    kernel: Kernel,
    g: usize,
    end: usize,
    acts: &[&QuantizedRow],
    [first, second]: [&mut [[f32; GROUP]]; 2],
) -> usize {
    if g + 1 < end && acts.len() > 1 {
        w.dot_group_pair(kernel, g, acts, [first, second]);
        2
    } else {
        w.dot_group(kernel, g, acts, first);
        1
    }
}

/// `x σ(x)`, with the polynomial exponential of attention so that a loop of it vectorizes:
/// `σ(x) = 1 / (1 + e^-x)` for `x ≥ 0`, `e^x / (1 + e^x)` below, the exponential's argument
/// never positive.
#[inline(always)]
fn silu(x: f32) -> f32 {
    let e = exp(-x.abs());
    let sigmoid = if x >= 0.0 {
        1.0 / (1.0 + e)
    } else {
        e / (1.0 + e)
    };
    x * sigmoid
}

/// `silu(gate(x)) · up(x)` into `out` for each row of `x` (each with its adapter and bias):
/// each chunk takes the same rows of the gate and up projections and combines them, so that the
/// activation runs on every core.
pub(super) fn swiglu(
    team: &Team,
    kernel: Kernel,
    [gate, up]: &[Projection; 2],
    [gate_lora, up_lora]: [&[Option<&Adapter>]; 2],
    x: &[f32],
    out: &mut Vec<f32>,
) {
    let n = gate_lora.len();
    let cols = x.len() / n.max(1);
    let mut rounded = ACTS.take();
    quantize_rows(team, x, cols, &mut rounded);
    let acts: Vec<&QuantizedRow> = rounded[..n].iter().collect();
    let (gate_low, up_low) = (Lows::new(team, gate_lora, x), Lows::new(team, up_lora, x));
    let rows = gate.rows();
    let groups = gate.w.groups();
    let chunk = (2 * groups / (CHUNKS_PER_THREAD * team.size())).max(MIN_CHUNK_GROUPS);
    out.clear();
    out.resize(n * rows, 0.0);
    let target = Disjoint::new(out);
    team.run(groups.div_ceil(chunk), &|i| {
        let range = i * chunk..((i + 1) * chunk).min(groups);
        let (first, last) = (range.start * GROUP, (range.end * GROUP).min(rows));
        // SAFETY: chunk i writes its own rows of every activation row.
        let mut out: Vec<&mut [f32]> = (0..n)
            .map(|r| unsafe { target.range(r * rows + first, last - first) })
            .collect();
        let mut room = room_for(4 * n);
        let (xs, us) = room[..4 * n].split_at_mut(2 * n);
        let ((x0, x1), (u0, u1)) = (xs.split_at_mut(n), us.split_at_mut(n));
        let mut g = range.start;
        while g < range.end {
            let count = pair_or_one(gate.w, kernel, g, range.end, &acts, [&mut *x0, &mut *x1]);
            pair_or_one(up.w, kernel, g, range.end, &acts, [&mut *u0, &mut *u1]);
            let (xs, us) = ([&*x0, &*x1], [&*u0, &*u1]);
            for (k, (xs, us)) in xs[..count].iter().zip(&us).enumerate() {
                let g = g + k;
                for (r, out) in out.iter_mut().enumerate() {
                    let at = (g - range.start) * GROUP;
                    let len = GROUP.min(out.len() - at);
                    let (mut x, mut u) = (xs[r], us[r]);
                    gate.finish(g * GROUP, &mut x[..len], gate_low.of(gate_lora[r], r));
                    up.finish(g * GROUP, &mut u[..len], up_low.of(up_lora[r], r));
                    for (o, (x, u)) in out[at..at + len].iter_mut().zip(x.iter().zip(&u)) {
                        *o = silu(*x) * u;
                    }
                }
            }
            g += count;
        }
        ROOM.set(room);
    });
    drop(acts);
    ACTS.set(rounded);
}
