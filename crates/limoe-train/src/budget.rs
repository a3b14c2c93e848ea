//! What a spec's model costs, in words: parameters, FLOPs per step and training memory, with
//! the memory the chosen device has, and the paper's parameter counts to compare against.

use limoe_core::records::PlanRecord;
use limoe_core::spec::{Arch, Device, Size, Spec};
use limoe_model::plan::{Cost, cost};

/// Total parameters the LIMoE paper reports for its largest models.
fn paper_params(size: Size) -> Option<f64> {
    match size {
        Size::L => Some(3.4e9),
        Size::H => Some(5.6e9),
        Size::Tiny | Size::S | Size::B => None,
    }
}

/// The cost of training the spec's model at its `train.batch_size` and `accumulation`.
pub fn spec_cost(spec: &Spec) -> Cost {
    let train = &spec.train;
    let micro_batch = train.batch_size / train.accumulation.max(1);
    cost(&spec.model, train.batch_size, micro_batch)
}

/// The spec's cost as the train stage records it for reports (`plan.json`).
pub fn plan_record(spec: &Spec) -> PlanRecord {
    let cost = spec_cost(spec);
    PlanRecord {
        total_params: cost.total_params as u64,
        active_params: cost.active_params as u64,
        step_flops: cost.step_flops,
        state_bytes: cost.state_bytes,
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

fn gib(bytes: u64) -> String {
    format!("{:.2} GiB", bytes as f64 / (1u64 << 30) as f64)
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
    lines.push(format!(
        "training memory: {} (weights, gradients, AdamW: {}; activations of a micro-batch ~{})",
        gib(cost.training_bytes()),
        gib(cost.state_bytes),
        gib(cost.activation_bytes)
    ));
    lines.push(match available {
        Some(free) if cost.training_bytes() > free => format!(
            "does NOT fit: {:?} has {} available; lower train.batch_size (with \
             train.accumulation), model.size or model.moe.experts, or use device: cuda",
            spec.train.device,
            gib(free)
        ),
        Some(free) => format!("fits: {:?} has {} available", spec.train.device, gib(free)),
        None => format!("{:?} memory unknown: not checked", spec.train.device),
    });
    lines
}
