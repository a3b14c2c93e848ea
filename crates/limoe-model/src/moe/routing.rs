//! Top-K choice, capacity and fill order: which buffer slot each (token, choice) takes.
//!
//! On a GPU everything stays on the device with fixed shapes; on the CPU the same decisions
//! come from plain loops on the host (tested equal). Tokens are split into `groups` groups of
//! `group` tokens (the last one padded); within a group the K * group assignments are laid out
//! in fill order, choice-major (every first choice before any second choice), tokens in
//! priority order (BPR: descending top-1 gate; else token order). An assignment's position in
//! its expert's buffer is the number of earlier assignments to the same expert, a prefix count
//! done blockwise (O(T * E * sqrt(T)) work, O(T * E) memory: no T x T triangle). Integer
//! bookkeeping runs in f32, exact below 2^24 (checked). Equal top-1 gates keep token order on
//! the CPU (stable sort); candle's CUDA argsort is not stable, so there their order is
//! unspecified.

use candle_core::{DType, Device, Result, Tensor, bail};

/// The largest integer f32 holds exactly (every index computed here must stay below it).
const F32_EXACT: usize = 1 << 24;
/// The longest row candle's CUDA argsort can sort.
const CUDA_SORT_MAX: usize = 8192;

/// Shape of one routing problem.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RouteSpec {
    /// Number of experts E.
    pub experts: usize,
    /// Choices per token K.
    pub top_k: usize,
    /// Tokens per group (the whole batch when `None`).
    pub group_size: Option<usize>,
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
    /// Slots per expert in a full group (C).
    pub capacity: usize,
    /// Number of groups.
    pub groups: usize,
    /// Rows per expert in the buffer: `groups * capacity`.
    pub slots_per_expert: usize,
}

/// Routes T tokens: `scores` [T, E] choose the top-K experts (noisy logits in training),
/// `probs` [T, E] are the clean gates whose top-1 value orders tokens under BPR.
pub fn route(scores: &Tensor, probs: &Tensor, spec: &RouteSpec) -> Result<Routing> {
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
    let group = spec.group_size.unwrap_or(t).min(t);
    if group == 0 {
        bail!("route: group_size must be positive");
    }
    let groups = t.div_ceil(group);
    let padded = groups * group;
    let last = t - (groups - 1) * group;
    let capacity = capacity(group, k, spec.capacity_factor, e);
    let slots_per_expert = groups * capacity;
    if e * slots_per_expert + 1 >= F32_EXACT || padded * k >= F32_EXACT {
        bail!("route: {t} tokens x {k} choices is too many for one routing call");
    }
    let shape = Shape {
        tokens: t,
        experts: e,
        top_k: k,
        group,
        groups,
        capacity,
        last_capacity: self::capacity(last, k, spec.capacity_factor, e),
        dropless: spec.capacity_factor.is_infinite(),
    };
    if scores.device().is_cpu() {
        return route_on_host(scores, probs, spec.bpr, &shape);
    }
    route_on_device(scores, probs, spec, &shape)
}

/// The sizes of one routing call.
#[derive(Debug, Clone, Copy)]
struct Shape {
    tokens: usize,
    experts: usize,
    top_k: usize,
    /// Tokens per group (the last group may have fewer).
    group: usize,
    groups: usize,
    /// Slots per expert in a full group.
    capacity: usize,
    /// Slots per expert in the last group.
    last_capacity: usize,
    /// No limit (an infinite capacity factor): on the host, each expert gets as many slots
    /// as the busiest expert has assignments in any group, not one per token.
    dropless: bool,
}

/// [`route`] with tensor ops on the device (fixed shapes, no host round trip: without a
/// capacity limit every expert gets a slot per token of its group).
fn route_on_device(
    scores: &Tensor,
    probs: &Tensor,
    spec: &RouteSpec,
    shape: &Shape,
) -> Result<Routing> {
    let Shape {
        tokens: t,
        experts: e,
        top_k: k,
        group,
        groups,
        capacity,
        last_capacity,
        dropless: _,
    } = *shape;
    let padded = groups * group;
    let slots_per_expert = groups * capacity;
    let dev = scores.device();
    // candle's CUDA argsort sorts a row in one block's shared memory (48 KiB: 8192 entries).
    if dev.is_cuda() && e.max(if spec.bpr { group } else { 0 }) > CUDA_SORT_MAX {
        bail!(
            "route: on CUDA, Batch Priority Routing sorts each group in one kernel block and \
             handles at most {CUDA_SORT_MAX} tokens per group (got {group}); set group_size"
        );
    }

    let chosen = scores
        .arg_sort_last_dim(false)?
        .narrow(1, 0, k)?
        .contiguous()?;
    // Expert of each (token, choice), padding tokens marked E (never counted, always dropped).
    let choice = pad_rows(&chosen, padded - t, e as f64)?;
    // Fill order within each group: [groups, K, group], choice-major.
    let by_choice = choice
        .reshape((groups, group, k))?
        .transpose(1, 2)?
        .contiguous()?;
    let order = if spec.bpr {
        let top1 = probs
            .detach()
            .gather(&chosen.narrow(1, 0, 1)?.contiguous()?, 1)?
            .to_dtype(DType::F32)?;
        // Padding sorts last (gates are >= 0).
        let key = pad_rows(&top1, padded - t, -1.0)?.reshape((groups, group))?;
        Some(key.arg_sort_last_dim(false)?)
    } else {
        None
    };
    let order_index = match &order {
        Some(o) => Some(
            o.unsqueeze(1)?
                .broadcast_as((groups, k, group))?
                .contiguous()?,
        ),
        None => None,
    };
    let sequence = match &order_index {
        Some(index) => by_choice.gather(index, 2)?,
        None => by_choice,
    }
    .reshape((groups, k * group))?;

    let position = positions(&sequence, e + 1)?;
    let expert = sequence.to_dtype(DType::F32)?;
    let mut caps = vec![capacity as f32; groups];
    caps[groups - 1] = last_capacity as f32;
    let caps = Tensor::from_vec(caps, (groups, 1), dev)?;
    let kept = position
        .broadcast_lt(&caps)?
        .mul(&sequence.lt(e as u32)?)?
        .to_dtype(DType::F32)?;
    let group_base = (Tensor::arange(0u32, groups as u32, dev)?.to_dtype(DType::F32)?
        * capacity as f64)?
        .reshape((groups, 1))?;
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
        Tensor::stack(&[&dispatch, &combine, &kept, &taken], 1)?.reshape((groups, 4 * k, group))?;
    let stacked = match &order {
        Some(o) => {
            let index = o
                .unsqueeze(1)?
                .broadcast_as((groups, 4 * k, group))?
                .contiguous()?;
            stacked.zeros_like()?.scatter(&index, &stacked, 2)?
        }
        None => stacked,
    }
    .reshape((groups, 4, k, group))?
    .permute((1, 2, 0, 3))?
    .reshape((4, k, padded))?
    .narrow(2, 0, t)?;
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
        groups,
        slots_per_expert,
    })
}

/// [`route`] computed on the host: the same decisions as [`route_on_device`] from plain
/// loops, instead of a few dozen small tensor ops whose dispatch dominates at small sizes.
fn route_on_host(scores: &Tensor, probs: &Tensor, bpr: bool, shape: &Shape) -> Result<Routing> {
    let Shape {
        tokens: t,
        experts: e,
        top_k: k,
        group,
        groups,
        capacity,
        last_capacity,
        dropless,
    } = *shape;
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
    let (capacity, last_capacity) = match dropless {
        true => {
            let busiest = busiest_expert_load(&chosen, e, k * group);
            (busiest, busiest)
        }
        false => (capacity, last_capacity),
    };
    let slots_per_expert = groups * capacity;
    let dummy = (e * slots_per_expert) as u32;
    let (mut dispatch, mut combine) = (vec![dummy; k * t], vec![0u32; k * t]);
    let (mut kept, mut taken) = (vec![0f32; k * t], vec![e as u32; t * k]);
    let mut fill = vec![0u32; e * slots_per_expert];
    for g in 0..groups {
        let tokens: Vec<usize> = (g * group..((g + 1) * group).min(t)).collect();
        let cap = if g + 1 == groups {
            last_capacity
        } else {
            capacity
        };
        // BPR: by descending top-1 gate, equal gates in token order.
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
        groups,
        slots_per_expert,
    })
}

/// The most (token, choice) assignments one expert gets within one group of
/// `group_choices` consecutive entries of `chosen` (at least 1).
fn busiest_expert_load(chosen: &[u32], experts: usize, group_choices: usize) -> usize {
    let mut busiest = 1;
    for group in chosen.chunks(group_choices) {
        let mut load = vec![0usize; experts];
        group.iter().for_each(|&x| load[x as usize] += 1);
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
    use super::{RouteSpec, Shape, capacity, positions, route_on_device, route_on_host};
    use crate::random::Stream;
    use candle_core::{DType, Device, Result, Tensor};

    /// The sizes `route` derives from `spec` for `tokens` tokens.
    fn shape_of(tokens: usize, spec: &RouteSpec) -> Shape {
        let group = spec.group_size.unwrap_or(tokens).min(tokens);
        let groups = tokens.div_ceil(group);
        let last = tokens - (groups - 1) * group;
        Shape {
            tokens,
            experts: spec.experts,
            top_k: spec.top_k,
            group,
            groups,
            capacity: capacity(group, spec.top_k, spec.capacity_factor, spec.experts),
            last_capacity: capacity(last, spec.top_k, spec.capacity_factor, spec.experts),
            dropless: false,
        }
    }

    #[test]
    fn host_routing_matches_device_routing() -> Result<()> {
        let mut stream = Stream::new(3);
        for (tokens, experts, top_k, group_size, capacity_factor, bpr) in [
            (40, 4, 1, None, 1.0, true),
            (40, 4, 2, None, 0.5, true),
            (37, 5, 2, Some(8), 1.25, true),
            (37, 5, 1, Some(8), 0.75, false),
            (64, 8, 3, Some(20), 1.0, false),
            (9, 3, 1, None, 2.0, true),
        ] {
            let spec = RouteSpec {
                experts,
                top_k,
                group_size,
                capacity_factor,
                bpr,
            };
            // Scores with ties (rounded) to check the order of equal values too.
            let values: Vec<f32> = (0..tokens * experts)
                .map(|_| (stream.uniform() * 4.0).round() as f32)
                .collect();
            let scores = Tensor::from_vec(values, (tokens, experts), &Device::Cpu)?;
            let probs = candle_nn::ops::softmax(&scores, 1)?;
            let shape = shape_of(tokens, &spec);
            let host = route_on_host(&scores, &probs, bpr, &shape)?;
            let device = route_on_device(&scores, &probs, &spec, &shape)?;
            let case = format!("{spec:?} with {tokens} tokens");
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
