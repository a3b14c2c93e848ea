//! What a spec's model costs, in words: parameters, FLOPs per step, training memory per
//! device and communication per step at a placement, with the memory the chosen device has,
//! the GPUs it would fit, and the paper's parameter counts to compare against.

use limoe_core::records::PlanRecord;
use limoe_core::spec::{Arch, Device, Size, Spec};
pub use limoe_model::plan::Placement;
use limoe_model::plan::{Cost, placed_cost};

/// Total parameters the LIMoE paper reports for its largest models.
fn paper_params(size: Size) -> Option<f64> {
    match size {
        Size::L => Some(3.4e9),
        Size::H => Some(5.6e9),
        Size::Tiny | Size::S | Size::B => None,
    }
}

/// GPU memories to compare a device's training memory with: the 80 GB and the 141 GB cards,
/// in decimal bytes as their makers count.
const GPU_BYTES: [(&str, u64); 2] = [("an 80 GB", 80_000_000_000), ("a 141 GB", 141_000_000_000)];

/// The pairs of one micro-batch: `train.batch_size / train.accumulation`.
pub fn micro_batch(spec: &Spec) -> usize {
    spec.train.batch_size / spec.train.accumulation.max(1)
}

/// The cost of training the spec's model at its `train.batch_size` and `accumulation`, on
/// the devices of `placement`.
pub fn spec_cost(spec: &Spec, placement: Placement) -> Cost {
    placed_cost(
        &spec.model,
        spec.train.batch_size,
        micro_batch(spec),
        placement,
        spec.train.precision,
    )
}

/// The spec's cost as the train stage records it for reports (`plan.json`): in one process.
pub fn plan_record(spec: &Spec) -> PlanRecord {
    let cost = spec_cost(spec, Placement::SOLO);
    PlanRecord {
        total_params: cost.total_params as u64,
        active_params: cost.active_params as u64,
        step_flops: cost.step_flops,
        state_bytes: cost.state_bytes(),
        activation_bytes: cost.activation_bytes,
        lines: describe(spec, &cost, available_bytes(spec.train.device)),
    }
}

/// Memory the device offers for training, when it can be read (CPU: MemAvailable).
pub fn available_bytes(device: Device) -> Option<u64> {
    match device {
        Device::Cpu => {
            let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
            let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
            let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib * 1024)
        }
        Device::Cuda => None,
    }
}

/// 3.42B, 12.5M, 640k: a count in short form.
pub fn short(value: f64) -> String {
    let (scaled, unit) = match value.abs() {
        v if v >= 1e12 => (value / 1e12, "T"),
        v if v >= 1e9 => (value / 1e9, "B"),
        v if v >= 1e6 => (value / 1e6, "M"),
        v if v >= 1e3 => (value / 1e3, "k"),
        _ => (value, ""),
    };
    format!("{scaled:.3}{unit}")
}

/// 1.50 GiB, 12.00 MiB, 16.00 KiB, 0 B: bytes in the largest binary unit they fill.
fn binary(bytes: u64) -> String {
    let units = [(30, "GiB"), (20, "MiB"), (10, "KiB")];
    match units.into_iter().find(|(shift, _)| bytes >= 1u64 << shift) {
        Some((shift, unit)) => format!("{:.2} {unit}", bytes as f64 / (1u64 << shift) as f64),
        None => format!("{bytes} B"),
    }
}

/// Lines describing the cost; the last says whether training fits `available` bytes.
pub fn describe(spec: &Spec, cost: &Cost, available: Option<u64>) -> Vec<String> {
    let mut lines = vec![format!(
        "parameters: {} total, {} active per token",
        short(cost.total_params as f64),
        short(cost.active_params as f64)
    )];
    if spec.model.arch == Arch::Limoe
        && let Some(paper) = paper_params(spec.model.size)
    {
        let off = (cost.total_params as f64 - paper) / paper;
        let verdict = if off.abs() <= 0.1 {
            "near the paper".to_string()
        } else {
            format!(
                "{:+.0}% off: the spec changes the {:?} preset's shape or experts",
                off * 100.0,
                spec.model.size
            )
        };
        lines.push(format!(
            "  LIMoE paper, {:?}: {} parameters ({verdict})",
            spec.model.size,
            short(paper)
        ));
    }
    lines.push(format!(
        "FLOPs per training step (batch {}): {}",
        spec.train.batch_size,
        short(cost.step_flops)
    ));
    lines.extend(placement_lines(spec, cost));
    lines.push(match available {
        Some(free) if cost.training_bytes() > free => format!(
            "does NOT fit: {:?} has {} available; lower train.batch_size (with \
             train.accumulation), model.size or model.moe.experts, or use device: cuda",
            spec.train.device,
            binary(free)
        ),
        Some(free) => format!(
            "fits: {:?} has {} available",
            spec.train.device,
            binary(free)
        ),
        None => format!("{:?} memory unknown: not checked", spec.train.device),
    });
    lines
}

/// Where the numbers per device are for, what one device holds and which GPUs that fits, and
/// what each rank sends per step.
fn placement_lines(spec: &Spec, cost: &Cost) -> Vec<String> {
    let Placement {
        world,
        expert_parallel,
    } = cost.placement;
    let micro_batch = micro_batch(spec);
    let mut placement = match world {
        1 => "placement: one process".to_string(),
        _ => format!(
            "placement: {world} ranks, {} of each micro-batch's {micro_batch} pairs per rank",
            micro_batch / world
        ),
    };
    if expert_parallel > 1 {
        let experts = spec.model.moe.experts;
        placement.push_str(&format!(
            ", {} of the {experts} experts of every MoE block per rank (expert parallel \
             {expert_parallel})",
            experts / expert_parallel
        ));
    }
    let per_device = cost.training_bytes();
    let gpus = GPU_BYTES.map(|(name, capacity)| match per_device <= capacity {
        true => format!("fits {name} GPU"),
        false => format!("does NOT fit {name} GPU"),
    });
    let compute_copy = match cost.compute_copy_bytes {
        0 => String::new(),
        bytes => format!(", their bf16 copy {}", binary(bytes)),
    };
    let mut lines = vec![
        placement,
        format!(
            "training memory per device ({}): {} (f32 weights {}{compute_copy}, gradients \
             {}, AdamW moments {}; activations of its pairs of a micro-batch ~{})",
            spec.train.precision.as_str(),
            binary(per_device),
            binary(cost.weight_bytes),
            binary(cost.weight_bytes),
            binary(cost.moment_bytes()),
            binary(cost.activation_bytes)
        ),
        format!(
            "  {:.2} GB per device (GB = 1e9 bytes): {}",
            per_device as f64 / 1e9,
            gpus.join(", ")
        ),
    ];
    if world == 1 {
        return lines;
    }
    let sent = cost.communication;
    let replicas = world / expert_parallel.max(1);
    lines.extend([
        format!(
            "communication per step, bytes each rank sends: {}",
            binary(sent.total())
        ),
        format!(
            "  all-reduce of dense gradients over {world} ranks: {}",
            binary(sent.dense_all_reduce)
        ),
        format!(
            "  all-reduce of expert gradients over the {replicas} rank(s) holding the same \
             experts: {}",
            binary(sent.expert_all_reduce)
        ),
        format!(
            "  all-to-all of MoE dispatch buffers in groups of {expert_parallel} rank(s): {}",
            binary(sent.all_to_all)
        ),
        format!(
            "  all-gather of the embeddings the contrastive loss contrasts: {}",
            binary(sent.all_gather)
        ),
        "  (ring collectives: an all-reduce over n ranks sends 2(n-1)/n of its buffer, an \
         all-gather n-1 times each rank's part; an all-to-all the part bound for other ranks)"
            .into(),
    ]);
    lines
}
