//! Learning-rate schedule: linear warmup, then cosine, rsqrt (with a linear cooldown) or
//! constant.
//!
//! Steps count from 1 (the optimiser's step counter after it is incremented): step 1 is the
//! first update, step `total_steps` the last. Warmup rises linearly, `lr * step / warmup_steps`,
//! reaching `lr` at step `warmup_steps`; step 0 (before any update) has rate 0.

use std::f64::consts::PI;

use limoe_core::spec::{Schedule, TrainSpec};

/// The learning rate as a pure function of the step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LrSchedule {
    /// Peak rate, reached at the end of warmup.
    pub lr: f64,
    /// Rate the cosine decay ends at (last step).
    pub min_lr: f64,
    /// Steps of linear warmup from 0 to `lr`.
    pub warmup_steps: u64,
    /// The last step.
    pub total_steps: u64,
    /// Shape of the decay after warmup.
    pub kind: Schedule,
    /// Steps of linear cooldown to 0 at the end (rsqrt only).
    pub cooldown_steps: u64,
}

impl LrSchedule {
    /// The schedule a `train` section asks for.
    pub fn from_spec(spec: &TrainSpec) -> LrSchedule {
        LrSchedule {
            lr: spec.lr,
            min_lr: spec.min_lr,
            warmup_steps: spec.warmup_steps as u64,
            total_steps: spec.steps as u64,
            kind: spec.schedule,
            cooldown_steps: spec.cooldown_steps as u64,
        }
    }

    /// The rate of update number `step` (1-based; steps past `total_steps` get the last rate).
    ///
    /// - warmup (`step <= warmup_steps`): `lr * step / warmup_steps`;
    /// - cosine: `min_lr + (lr - min_lr) * (1 + cos(pi * t)) / 2`, with
    ///   `t = (step - warmup) / (total - warmup)`, so the last step has `min_lr`;
    /// - rsqrt: `lr * sqrt(max(warmup, 1) / step)`, times `(total - step) / cooldown_steps`
    ///   during the last `cooldown_steps` steps (0 at the last step);
    /// - constant: `lr`.
    pub fn lr(&self, step: u64) -> f64 {
        let step = step.min(self.total_steps);
        if step == 0 {
            return 0.0;
        }
        if step <= self.warmup_steps {
            return self.lr * step as f64 / self.warmup_steps as f64;
        }
        match self.kind {
            Schedule::Constant => self.lr,
            Schedule::Cosine => {
                let t = (step - self.warmup_steps) as f64
                    / (self.total_steps - self.warmup_steps) as f64;
                self.min_lr + (self.lr - self.min_lr) * 0.5 * (1.0 + (PI * t).cos())
            }
            Schedule::Rsqrt => {
                let rsqrt = self.lr * (self.warmup_steps.max(1) as f64 / step as f64).sqrt();
                let left = self.total_steps - step;
                if left < self.cooldown_steps {
                    rsqrt * left as f64 / self.cooldown_steps as f64
                } else {
                    rsqrt
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(kind: Schedule) -> LrSchedule {
        LrSchedule {
            lr: 1.0,
            min_lr: 0.1,
            warmup_steps: 10,
            total_steps: 110,
            kind,
            cooldown_steps: 20,
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn warmup_is_linear_from_zero() {
        for kind in [Schedule::Cosine, Schedule::Rsqrt, Schedule::Constant] {
            let s = schedule(kind);
            assert_eq!(s.lr(0), 0.0);
            assert!(close(s.lr(1), 0.1));
            assert!(close(s.lr(5), 0.5));
            assert!(close(s.lr(10), 1.0));
        }
    }

    #[test]
    fn cosine_hand_values() {
        let s = schedule(Schedule::Cosine);
        // Middle of the decay: t = 0.5, cos = 0 -> halfway between lr and min_lr.
        assert!(close(s.lr(60), 0.55));
        // t = 0.25: 0.1 + 0.9 * (1 + cos(pi/4)) / 2.
        assert!(close(s.lr(35), 0.1 + 0.45 * (1.0 + 0.5f64.sqrt())));
        assert!(close(s.lr(110), 0.1));
        assert!(close(s.lr(500), 0.1));
    }

    #[test]
    fn rsqrt_hand_values_and_cooldown() {
        let s = schedule(Schedule::Rsqrt);
        assert!(close(s.lr(40), 0.5)); // sqrt(10 / 40)
        assert!(close(s.lr(90), (10.0f64 / 90.0).sqrt())); // cooldown starts after 90
        assert!(close(s.lr(100), (10.0f64 / 100.0).sqrt() * 0.5)); // 10 of 20 steps left
        assert!(close(s.lr(109), (10.0f64 / 109.0).sqrt() / 20.0));
        assert_eq!(s.lr(110), 0.0);
    }

    #[test]
    fn constant_and_no_warmup() {
        let s = schedule(Schedule::Constant);
        assert!(close(s.lr(60), 1.0));
        assert!(close(s.lr(110), 1.0));
        let s = LrSchedule {
            warmup_steps: 0,
            ..schedule(Schedule::Rsqrt)
        };
        assert!(close(s.lr(1), 1.0));
        assert!(close(s.lr(4), 0.5));
        let s = LrSchedule {
            warmup_steps: 0,
            ..schedule(Schedule::Cosine)
        };
        assert!(close(s.lr(1), 0.1 + 0.45 * (1.0 + (PI / 110.0).cos())));
    }
}
