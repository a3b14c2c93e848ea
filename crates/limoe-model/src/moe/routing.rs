//! Top-K choice, capacity and fill order: which buffer slot each (token, choice) takes.
//!
//! On a GPU everything stays on the device with fixed shapes; on the CPU the same decisions
//! come from plain loops on the host (tested equal). Tokens route in [`Groups`] (on the device
//! each group is padded to the largest); within a group the K * n assignments are laid out in
//! fill order, choice-major (every first choice before any second choice), tokens in priority
//! order (BPR: descending top-1 gate; else the group's order). An assignment's position in
//! its expert's buffer is the number of earlier assignments to the same expert, a prefix count
//! done blockwise (O(T * E * sqrt(T)) work, O(T * E) memory: no T x T triangle). Integer
//! bookkeeping runs in f32, exact below 2^24 (checked). Equal top-1 gates keep the group's
//! order on the CPU (stable sort); candle's CUDA argsort is not stable, so there their order
//! is unspecified.

use candle_core::{DType, Device, Result, Tensor, bail};

use super::groups::Groups;

/// The largest integer f32 holds exactly (every index computed here must stay below it).
const F32_EXACT: usize = 1 << 24;
/// The longest row candle's CUDA argsort can sort.
const CUDA_SORT_MAX: usize = 8192;

/// The rules of one routing problem.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RouteSpec {
    /// Number of experts E.
    pub experts: usize,
    /// Choices per token K.
    pub top_k: usize,
    /// Capacity factor c; infinite for no limit.
    pub capacity_factor: f64,
    /// Batch Priority Routing.
    pub bpr: bool,
}

/// Routing decisions for a batch of T tokens. Slots index an expert-major buffer of
/// `experts * slots_per_expert` rows (expert e, group g, position p at
/// `e * slots_per_expert + g * capacity + p`) plus one trailing dummy row for dropped tokens.
#[derive(Debug, Clone)]
pub struct Routing {
    /// [T, K] u32: the expert taking each (token, choice), `E` where the choice was dropped.
    pub experts: Tensor,
    /// [T, K] u32: the experts chosen by top-K (before capacity), best first.
    pub chosen: Tensor,
    /// [K, T] u32: buffer row of each (choice, token); dropped ones use the dummy row.
    pub dispatch: Tensor,
    /// [E * slots_per_expert] u32: the token each buffer row reads (0 for empty rows).
    pub fill: Tensor,
    /// [K, T] u32: buffer row to read back (0 for dropped ones, masked by `kept`).
    pub combine: Tensor,
    /// [K, T] f32: 1 where the choice was kept, 0 where it was dropped.
    pub kept: Tensor,
    /// Slots per expert in the largest group (C).
    pub capacity: usize,
    /// Number of groups.
    pub groups: usize,
    /// Rows per expert in the buffer: `groups * capacity`.
    pub slots_per_expert: usize,
}

/// Routes T tokens in `groups`: `scores` [T, E] choose the top-K experts (noisy logits in
/// training), `probs` [T, E] are the clean gates whose top-1 value orders tokens under BPR.
pub fn route(
    scores: &Tensor,
    probs: &Tensor,
    spec: &RouteSpec,
    groups: &Groups,
) -> Result<Routing> {
    let (t, e) = scores.dims2()?;
    let k = spec.top_k;
    if e != spec.experts || probs.dims() != [t, e] {
        bail!(
            "route: scores {:?} and probs {:?} must both be [tokens, {}]",
            scores.dims(),
            probs.dims(),
            spec.experts
        );
    }
    if t == 0 || k == 0 || k > e {
        bail!("route: need tokens > 0 and 1 <= top_k <= experts (T={t}, K={k}, E={e})");
    }
    if groups.tokens() != t {
        bail!("route: the groups hold {} tokens, not {t}", groups.tokens());
    }
    let shape = Shape::of(t, spec, groups);
    if e * shape.slots_per_expert() + 1 >= F32_EXACT
        || groups.count() * groups.largest() * k >= F32_EXACT
    {
        bail!("route: {t} tokens x {k} choices is too many for one routing call");
    }
    if scores.device().is_cpu() {
        return route_on_host(scores, probs, spec.bpr, groups, &shape);
    }
    route_on_device(scores, probs, spec, groups, &shape)
}

/// The sizes of one routing call.
#[derive(Debug, Clone)]
struct Shape {
    tokens: usize,
    experts: usize,
    top_k: usize,
    /// Slots per expert and group in the buffer: the capacity of the largest group.
    capacity: usize,
    /// The slots each group may fill: the capacity of its own size.
    group_capacity: Vec<usize>,
    /// No limit (an infinite capacity factor): on the host, each expert gets as many slots
    /// as the busiest expert has assignments in any group, not one per token.
    dropless: bool,
    /// Number of groups.
    groups: usize,
}

impl Shape {
    /// The sizes `route` works with for `tokens` tokens in `groups`.
    fn of(tokens: usize, spec: &RouteSpec, groups: &Groups) -> Shape {
        let of_size = |n: usize| capacity(n, spec.top_k, spec.capacity_factor, spec.experts);
        Shape {
            tokens,
            experts: spec.experts,
            top_k: spec.top_k,
            capacity: of_size(groups.largest()),
            group_capacity: (0..groups.count())
                .map(|g| of_size(groups.group(g).len()))
                .collect(),
            dropless: spec.capacity_factor.is_infinite(),
            groups: groups.count(),
        }
    }

    /// Rows per expert in the buffer (before a dropless host call resizes them).
    fn slots_per_expert(&self) -> usize {
        self.groups * self.capacity
    }
}

/// [`route`] with tensor ops on the device (fixed shapes, no host round trip: without a
/// capacity limit every expert gets a slot per token of its group).
fn route_on_device(
    scores: &Tensor,
    probs: &Tensor,
    spec: &RouteSpec,
    groups: &Groups,
    shape: &Shape,
) -> Result<Routing> {
    let (t, e, k, capacity) = (shape.tokens, shape.experts, shape.top_k, shape.capacity);
    let (count, width) = (groups.count(), groups.largest());
    let padded = count * width;
    let slots_per_expert = shape.slots_per_expert();
    let dev = scores.device();
    // candle's CUDA argsort sorts a row in one block's shared memory (48 KiB: 8192 entries).
    if dev.is_cuda() && e.max(if spec.bpr { width } else { 0 }) > CUDA_SORT_MAX {
        bail!(
            "route: on CUDA, Batch Priority Routing sorts each group in one kernel block and \
             handles at most {CUDA_SORT_MAX} tokens per group (got {width}); set \
             model.moe.group_size to at most {CUDA_SORT_MAX}"
        );
    }
    // Group g's j-th token sits at g * width + j; padding reads the extra row T.
    let mut slot_token = vec![t as u32; padded];
    let mut token_slot = vec![0u32; t];
    for g in 0..count {
        for (j, &token) in groups.group(g).iter().enumerate() {
            slot_token[g * width + j] = token;
            token_slot[token as usize] = (g * width + j) as u32;
        }
    }
    let slot_token = Tensor::from_vec(slot_token, padded, dev)?;
    let token_slot = Tensor::from_vec(token_slot, t, dev)?;
    let grouped = |x: &Tensor, pad: f64| pad_rows(x, 1, pad)?.index_select(&slot_token, 0);

    let chosen = scores
        .arg_sort_last_dim(false)?
        .narrow(1, 0, k)?
        .contiguous()?;
    // Expert of each (token, choice), padding tokens marked E (never counted, always dropped).
    // Fill order within each group: [groups, K, width], choice-major.
    let by_choice = grouped(&chosen, e as f64)?
        .reshape((count, width, k))?
        .transpose(1, 2)?
        .contiguous()?;
    let order = if spec.bpr {
        let top1 = probs
            .detach()
            .gather(&chosen.narrow(1, 0, 1)?.contiguous()?, 1)?
            .to_dtype(DType::F32)?;
        // Padding sorts last (gates are >= 0).
        let key = grouped(&top1, -1.0)?.reshape((count, width))?;
        Some(key.arg_sort_last_dim(false)?)
    } else {
        None
    };
    let order_index = match &order {
        Some(o) => Some(
            o.unsqueeze(1)?
                .broadcast_as((count, k, width))?
                .contiguous()?,
        ),
        None => None,
    };
    let sequence = match &order_index {
        Some(index) => by_choice.gather(index, 2)?,
        None => by_choice,
    }
    .reshape((count, k * width))?;

    let position = positions(&sequence, e + 1)?;
    let expert = sequence.to_dtype(DType::F32)?;
    let caps: Vec<f32> = shape.group_capacity.iter().map(|&c| c as f32).collect();
    let caps = Tensor::from_vec(caps, (count, 1), dev)?;
    let kept = position
        .broadcast_lt(&caps)?
        .mul(&sequence.lt(e as u32)?)?
        .to_dtype(DType::F32)?;
    let group_base = (Tensor::arange(0u32, count as u32, dev)?.to_dtype(DType::F32)?
        * capacity as f64)?
        .reshape((count, 1))?;
    let row = (expert
        .affine(slots_per_expert as f64, 0.0)?
        .broadcast_add(&group_base)?
        + &position)?;
    let dummy = (e * slots_per_expert) as f64;
    let dispatch = (kept.mul(&(&row - dummy)?)? + dummy)?;
    let combine = kept.mul(&row)?;
    let taken = (kept.mul(&(&expert - e as f64)?)? + e as f64)?;

    // Back from fill order to token order: [4, K, T].
    let stacked =
        Tensor::stack(&[&dispatch, &combine, &kept, &taken], 1)?.reshape((count, 4 * k, width))?;
    let stacked = match &order {
        Some(o) => {
            let index = o
                .unsqueeze(1)?
                .broadcast_as((count, 4 * k, width))?
                .contiguous()?;
            stacked.zeros_like()?.scatter(&index, &stacked, 2)?
        }
        None => stacked,
    }
    .reshape((count, 4, k, width))?
    .permute((1, 2, 0, 3))?
    .reshape((4, k, padded))?
    .index_select(&token_slot, 2)?;
    let as_index = |i: usize| stacked.get(i)?.to_dtype(DType::U32);
    let dispatch = as_index(0)?;
    // Invert the dispatch: every buffer row learns its token (dropped ones hit the dummy row).
    let token = Tensor::arange(0u32, t as u32, dev)?
        .to_dtype(DType::F32)?
        .unsqueeze(0)?
        .broadcast_as((k, t))?
        .flatten_all()?;
    let rows = e * slots_per_expert;
    let fill = Tensor::zeros(rows + 1, DType::F32, dev)?
        .scatter(&dispatch.flatten_all()?, &token, 0)?
        .narrow(0, 0, rows)?
        .to_dtype(DType::U32)?;
    Ok(Routing {
        experts: as_index(3)?.t()?.contiguous()?,
        chosen,
        dispatch,
        fill,
        combine: as_index(1)?,
        kept: stacked.get(2)?.contiguous()?,
        capacity,
        groups: count,
        slots_per_expert,
    })
}

/// [`route`] computed on the host: the same decisions as [`route_on_device`] from plain
/// loops, instead of a few dozen small tensor ops whose dispatch dominates at small sizes.
fn route_on_host(
    scores: &Tensor,
    probs: &Tensor,
    bpr: bool,
    groups: &Groups,
    shape: &Shape,
) -> Result<Routing> {
    let (t, e, k) = (shape.tokens, shape.experts, shape.top_k);
    let dev = scores.device();
    let scores: Vec<f32> = scores.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
    let probs: Vec<f32> = probs.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
    // Descending order, stable, NaN after everything: candle's CPU argsort.
    let descending = |values: &[f32], a: usize, b: usize| {
        values[b]
            .partial_cmp(&values[a])
            .unwrap_or(std::cmp::Ordering::Greater)
    };
    // Top-K experts of each token, best first; equal scores keep expert order.
    let mut chosen = Vec::with_capacity(t * k);
    for row in scores.chunks(e) {
        let mut order: Vec<usize> = (0..e).collect();
        order.sort_by(|&i, &j| descending(row, i, j));
        chosen.extend(order[..k].iter().map(|&x| x as u32));
    }
    let busiest = shape
        .dropless
        .then(|| busiest_expert_load(&chosen, e, k, groups));
    let capacity = busiest.unwrap_or(shape.capacity);
    let slots_per_expert = groups.count() * capacity;
    let dummy = (e * slots_per_expert) as u32;
    let (mut dispatch, mut combine) = (vec![dummy; k * t], vec![0u32; k * t]);
    let (mut kept, mut taken) = (vec![0f32; k * t], vec![e as u32; t * k]);
    let mut fill = vec![0u32; e * slots_per_expert];
    for g in 0..groups.count() {
        let tokens: Vec<usize> = groups.group(g).iter().map(|&i| i as usize).collect();
        let cap = busiest.unwrap_or(shape.group_capacity[g]);
        // BPR: by descending top-1 gate, equal gates in the group's order.
        let order = if bpr {
            let top1: Vec<f32> = tokens
                .iter()
                .map(|&i| probs[i * e + chosen[i * k] as usize])
                .collect();
            let mut order: Vec<usize> = (0..tokens.len()).collect();
            order.sort_by(|&a, &b| descending(&top1, a, b));
            order.into_iter().map(|a| tokens[a]).collect()
        } else {
            tokens
        };
        let mut used = vec![0usize; e];
        for choice in 0..k {
            for &token in &order {
                let expert = chosen[token * k + choice] as usize;
                let position = used[expert];
                used[expert] += 1;
                if position >= cap {
                    continue;
                }
                let row = expert * slots_per_expert + g * capacity + position;
                dispatch[choice * t + token] = row as u32;
                combine[choice * t + token] = row as u32;
                kept[choice * t + token] = 1.0;
                taken[token * k + choice] = expert as u32;
                fill[row] = token as u32;
            }
        }
    }
    Ok(Routing {
        experts: Tensor::from_vec(taken, (t, k), dev)?,
        chosen: Tensor::from_vec(chosen, (t, k), dev)?,
        dispatch: Tensor::from_vec(dispatch, (k, t), dev)?,
        fill: Tensor::from_vec(fill, e * slots_per_expert, dev)?,
        combine: Tensor::from_vec(combine, (k, t), dev)?,
        kept: Tensor::from_vec(kept, (k, t), dev)?,
        capacity,
        groups: groups.count(),
        slots_per_expert,
    })
}

/// The most (token, choice) assignments one expert gets within one group (at least 1), from
/// `chosen` [T, K] row-major.
fn busiest_expert_load(chosen: &[u32], experts: usize, top_k: usize, groups: &Groups) -> usize {
    let mut busiest = 1;
    for g in 0..groups.count() {
        let mut load = vec![0usize; experts];
        for &token in groups.group(g) {
            let row = token as usize * top_k;
            chosen[row..row + top_k]
                .iter()
                .for_each(|&x| load[x as usize] += 1);
        }
        busiest = busiest.max(load.into_iter().max().unwrap_or(0));
    }
    busiest
}

/// C = ceil(tokens * K * c / E), at most `tokens` (so an infinite c drops no token).
pub fn capacity(tokens: usize, top_k: usize, factor: f64, experts: usize) -> usize {
    let c = (tokens * top_k) as f64 * factor / experts as f64;
    (c.ceil() as usize).min(tokens)
}

/// Appends `rows` rows filled with `value` to a 2-D tensor.
fn pad_rows(x: &Tensor, rows: usize, value: f64) -> Result<Tensor> {
    if rows == 0 {
        return Ok(x.clone());
    }
    let fill = Tensor::full(value, (rows, x.dim(1)?), x.device())?.to_dtype(x.dtype())?;
    Tensor::cat(&[x, &fill], 0)
}

/// For `sequence` [G, S] of class ids in `0..classes`, the number of earlier entries of the
/// same row with the same id, as f32 [G, S]. Blockwise: a triangular count within blocks of
/// about sqrt(S) entries plus the running totals of earlier blocks.
fn positions(sequence: &Tensor, classes: usize) -> Result<Tensor> {
    let (g, s) = sequence.dims2()?;
    let dev = sequence.device();
    let block = (s as f64).sqrt().ceil() as usize;
    let blocks = s.div_ceil(block);
    // Padding entries come after every real one, so they never change a real count.
    let sequence = pad_rows(&sequence.t()?, blocks * block - s, 0.0)?
        .t()?
        .contiguous()?;
    let ids = Tensor::arange(0u32, classes as u32, dev)?.reshape((1, 1, classes))?;
    let one_hot = sequence
        .unsqueeze(2)?
        .broadcast_eq(&ids)?
        .to_dtype(DType::F32)?
        .reshape((g * blocks, block, classes))?;
    let within = lower_triangle(block, false, dev)?.broadcast_matmul(&one_hot)?;
    let totals = one_hot.sum(1)?.reshape((g, blocks, classes))?;
    let before = lower_triangle(blocks, true, dev)?
        .broadcast_matmul(&totals)?
        .reshape((g * blocks, 1, classes))?;
    (within.broadcast_add(&before)? - &one_hot)?
        .reshape((g, blocks * block, classes))?
        .gather(&sequence.unsqueeze(2)?, 2)?
        .squeeze(2)?
        .narrow(1, 0, s)
}

/// [n, n] f32 lower-triangular ones, without the diagonal when `strict`.
fn lower_triangle(n: usize, strict: bool, dev: &Device) -> Result<Tensor> {
    let tril = Tensor::tril2(n, DType::F32, dev)?;
    if strict {
        tril - Tensor::eye(n, DType::F32, dev)?
    } else {
        Ok(tril)
    }
}

#[cfg(test)]
mod tests {
    use super::{RouteSpec, Shape, positions, route_on_device, route_on_host};
    use crate::moe::groups::Groups;
    use crate::random::Stream;
    use candle_core::{DType, Device, Result, Tensor};

    #[test]
    fn host_routing_matches_device_routing() -> Result<()> {
        let mut stream = Stream::new(3);
        // Groups of 8 consecutive tokens, and groups of two examples of 3 patches and
        // captions of 1 to 4 tokens (not in token order).
        let examples = |n: usize| -> Result<Groups> {
            let text: Vec<usize> = (0..n).map(|b| 1 + b % 4).collect();
            Groups::of_examples(3, &text, 2)
        };
        for (tokens, experts, top_k, groups, capacity_factor, bpr) in [
            (40, 4, 1, Groups::consecutive(40, None)?, 1.0, true),
            (40, 4, 2, Groups::consecutive(40, None)?, 0.5, true),
            (37, 5, 2, Groups::consecutive(37, Some(8))?, 1.25, true),
            (37, 5, 1, Groups::consecutive(37, Some(8))?, 0.75, false),
            (64, 8, 3, Groups::consecutive(64, Some(20))?, 1.0, false),
            (9, 3, 1, Groups::consecutive(9, None)?, 2.0, true),
            (37, 4, 1, examples(7)?, 1.0, true),
            (37, 4, 2, examples(7)?, 0.5, false),
        ] {
            let spec = RouteSpec {
                experts,
                top_k,
                capacity_factor,
                bpr,
            };
            // Scores with ties (rounded) to check the order of equal values too.
            let values: Vec<f32> = (0..tokens * experts)
                .map(|_| (stream.uniform() * 4.0).round() as f32)
                .collect();
            let scores = Tensor::from_vec(values, (tokens, experts), &Device::Cpu)?;
            let probs = candle_nn::ops::softmax(&scores, 1)?;
            let shape = Shape::of(tokens, &spec, &groups);
            let host = route_on_host(&scores, &probs, bpr, &groups, &shape)?;
            let device = route_on_device(&scores, &probs, &spec, &groups, &shape)?;
            let case = format!("{spec:?} with {tokens} tokens in {} groups", groups.count());
            let same = |a: &Tensor, b: &Tensor, what: &str| -> Result<()> {
                let (a, b) = (a.to_dtype(DType::F32)?, b.to_dtype(DType::F32)?);
                assert_eq!(a.dims(), b.dims(), "{case}: {what} shape");
                let (a, b) = (
                    a.flatten_all()?.to_vec1::<f32>()?,
                    b.flatten_all()?.to_vec1::<f32>()?,
                );
                assert_eq!(a, b, "{case}: {what}");
                Ok(())
            };
            same(&host.experts, &device.experts, "experts")?;
            same(&host.chosen, &device.chosen, "chosen")?;
            same(&host.dispatch, &device.dispatch, "dispatch")?;
            same(&host.fill, &device.fill, "fill")?;
            same(&host.combine, &device.combine, "combine")?;
            same(&host.kept, &device.kept, "kept")?;
            assert_eq!(
                (host.capacity, host.groups, host.slots_per_expert),
                (device.capacity, device.groups, device.slots_per_expert),
                "{case}: sizes"
            );
        }
        Ok(())
    }

    #[test]
    fn blockwise_prefix_count_matches_a_loop() -> Result<()> {
        for (len, classes) in [(1, 1), (2, 3), (7, 2), (50, 5), (101, 9)] {
            let ids: Vec<u32> = (0..2 * len as u32)
                .map(|i| (i * 7 + i / 3) % classes)
                .collect();
            let seq = Tensor::from_vec(ids.clone(), (2, len), &Device::Cpu)?;
            let got = positions(&seq, classes as usize)?.to_vec2::<f32>()?;
            for (row, chunk) in ids.chunks(len).enumerate() {
                let mut seen = vec![0.0f32; classes as usize];
                for (i, &c) in chunk.iter().enumerate() {
                    assert_eq!(
                        got[row][i], seen[c as usize],
                        "len {len} row {row} entry {i}"
                    );
                    seen[c as usize] += 1.0;
                }
            }
        }
        Ok(())
    }
}
