//! The `model` section: backbone shape, MoE routing, heads (the auxiliary losses: `aux.rs`).

use serde::{Deserialize, Serialize};

use super::aux::AuxSpec;
use super::check::Checker;
use super::node::{Node, Origin};
use super::path::KeyPath;

/// Which network the spec trains.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Arch {
    /// One shared encoder for both modalities, with sparse MoE blocks.
    #[default]
    Limoe,
    /// The same shared encoder without experts (compute-matched baseline).
    Dense,
    /// Separate image and text encoders of the same shape.
    TwoTower,
    /// V-MoE: the image encoder alone, with sparse MoE blocks, and a classification head.
    Vmoe,
    /// The dense ViT: V-MoE without experts (its baseline at matched active compute).
    Vit,
}

impl Arch {
    /// Whether the network is an image classifier (trained on labels, no text side).
    pub fn is_classifier(self) -> bool {
        matches!(self, Arch::Vmoe | Arch::Vit)
    }

    /// Whether its MoE blocks have experts.
    pub fn is_sparse(self) -> bool {
        matches!(self, Arch::Limoe | Arch::Vmoe)
    }

    /// The image classifier made of this network's image side: the arch a transfer of it
    /// trains (`None` for two towers, whose image encoder has parameters of its own names).
    pub fn image_classifier(self) -> Option<Arch> {
        match self {
            Arch::Limoe | Arch::Vmoe => Some(Arch::Vmoe),
            Arch::Dense | Arch::Vit => Some(Arch::Vit),
            Arch::TwoTower => None,
        }
    }
}

/// The loss of a classifier's labels.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LabelLoss {
    /// Softmax cross-entropy over the classes (one label per image).
    #[default]
    Softmax,
    /// Sigmoid cross-entropy, one binary problem per class, as V-MoE trains on JFT.
    Sigmoid,
}

/// The classification head of `vmoe` and `vit`.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Classifier {
    /// Classes of the training data (its labels, in label order).
    pub classes: usize,
    /// The loss of the labels.
    #[serde(default)]
    pub loss: LabelLoss,
}

/// A size preset: fills the backbone shape and expert count unless the spec sets them.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub enum Size {
    /// A few-minute CPU model (width 64, depth 4, 32 px images).
    #[default]
    #[serde(rename = "tiny")]
    Tiny,
    /// S/16: width 512, depth 8.
    S,
    /// B/16: width 768, depth 12, 8 experts.
    B,
    /// L/16: width 1024, depth 24, 32 experts.
    L,
    /// H/14: width 1280, depth 32, 32 experts in 12 MoE blocks.
    H,
}

impl Size {
    /// Reads a preset name as written in a spec.
    pub fn from_name(name: &str) -> Option<Size> {
        Some(match name {
            "tiny" => Size::Tiny,
            "S" => Size::S,
            "B" => Size::B,
            "L" => Size::L,
            "H" => Size::H,
            _ => return None,
        })
    }

    /// The model keys this preset fills, with their values: width, depth, mlp_dim, heads,
    /// patch, image_size, text_length, vocab_size (V-MoE backbones; 224 px, 16 tokens).
    pub fn shape(self) -> [(&'static str, usize); 8] {
        let (width, depth, mlp_dim, heads, patch, image_size, vocab_size) = match self {
            Size::Tiny => (64, 4, 256, 4, 8, 32, 4096),
            Size::S => (512, 8, 2048, 8, 16, 224, CLIP_VOCAB_SIZE),
            Size::B => (768, 12, 3072, 12, 16, 224, CLIP_VOCAB_SIZE),
            Size::L => (1024, 24, 4096, 16, 16, 224, CLIP_VOCAB_SIZE),
            Size::H => (1280, 32, 5120, 16, 14, 224, CLIP_VOCAB_SIZE),
        };
        [
            ("width", width),
            ("depth", depth),
            ("mlp_dim", mlp_dim),
            ("heads", heads),
            ("patch", patch),
            ("image_size", image_size),
            ("text_length", 16),
            ("vocab_size", vocab_size),
        ]
    }

    /// Experts per MoE block, and the placement `(every, last)`, as the LIMoE paper reads:
    /// 8 experts for B/16, 32 for L/16 and H/14 (H/14: 12 MoE blocks among the last 24).
    pub fn routing(self) -> (usize, usize, Option<usize>) {
        match self {
            Size::Tiny => (4, 2, None),
            Size::S | Size::B => (8, 2, None),
            Size::L => (32, 2, None),
            Size::H => (32, 2, Some(24)),
        }
    }
}

/// A value given separately for image and text tokens.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PerModality<T: Default> {
    /// The value for image tokens.
    pub image: T,
    /// The value for text tokens.
    pub text: T,
}

impl<T: Default + Copy> PerModality<T> {
    /// The same value for both modalities.
    pub fn both(value: T) -> PerModality<T> {
        PerModality {
            image: value,
            text: value,
        }
    }

    /// (name, value) for each modality.
    pub fn named(&self) -> [(&'static str, T); 2] {
        [("image", self.image), ("text", self.text)]
    }
}

/// How a modality's tokens are pooled into one vector.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Pooling {
    /// Mean over the (non-padding) tokens.
    #[default]
    Mean,
    /// Multi-head attention pooling with a learned query.
    Map,
}

/// The whole `model` section. Shape fields left out are filled from `size`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// limoe, dense, two_tower, vmoe or vit.
    #[serde(default)]
    pub arch: Arch,
    /// Size preset.
    #[serde(default)]
    pub size: Size,
    /// Model width.
    pub width: usize,
    /// Number of transformer blocks.
    pub depth: usize,
    /// MLP hidden size.
    pub mlp_dim: usize,
    /// Attention heads.
    pub heads: usize,
    /// Patch side in pixels.
    pub patch: usize,
    /// Image side in pixels.
    pub image_size: usize,
    /// Image channels.
    #[serde(default = "three")]
    pub channels: usize,
    /// Text tokens per caption (longer captions are truncated).
    pub text_length: usize,
    /// Tokenizer vocabulary size (CLIP's BPE, truncated for small models).
    pub vocab_size: usize,
    /// Joint embedding size; defaults to the width.
    #[serde(default)]
    pub embed_dim: Option<usize>,
    /// Pooling per modality.
    #[serde(default)]
    pub pooling: PerModality<Pooling>,
    /// Mixture-of-experts routing.
    pub moe: MoeSpec,
    /// Auxiliary losses.
    #[serde(default)]
    pub aux: AuxSpec,
    /// Learned contrastive logit scale (1 / temperature).
    #[serde(default)]
    pub logit_scale: LogitScale,
    /// The classification head, for the classifier archs (`vmoe`, `vit`) only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classifier: Option<Classifier>,
}

fn three() -> usize {
    3
}

/// Routing of the MoE blocks.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MoeSpec {
    /// Experts per MoE block.
    pub experts: usize,
    /// Experts each token is sent to.
    #[serde(default = "one")]
    pub top_k: usize,
    /// Every `every`-th block is MoE (blocks every-1, 2*every-1, ...).
    #[serde(default)]
    pub every: Option<usize>,
    /// Only the last `last` blocks may be MoE.
    #[serde(default)]
    pub last: Option<usize>,
    /// Capacity factor c (C = ceil(tokens * K * c / E)) for training and evaluation.
    #[serde(default)]
    pub capacity: Capacity,
    /// Batch Priority Routing: fill expert buffers by descending top-1 gate.
    #[serde(default = "yes")]
    pub bpr: bool,
    /// Router noise; the std of the Gaussian added to logits is noise / experts.
    #[serde(default = "one_f")]
    pub noise: f64,
    /// Tokens per routing group, in whole examples (see [`MoeSpec::examples_per_group`]);
    /// the whole batch (each rank's share of it) when left out.
    #[serde(default)]
    pub group_size: Option<usize>,
}

fn one() -> usize {
    1
}
fn one_f() -> f64 {
    1.0
}
fn yes() -> bool {
    true
}

impl MoeSpec {
    /// Indices (0-based) of the MoE blocks in a stack of `depth` blocks.
    pub fn moe_blocks(&self, depth: usize) -> Vec<usize> {
        let first_allowed = self.last.map_or(0, |last| depth.saturating_sub(last));
        (first_allowed..depth)
            .filter(|i| {
                self.every
                    .is_none_or(|every| every > 0 && (i + 1) % every == 0)
            })
            .filter(|_| self.every.is_some() || self.last.is_some())
            .collect()
    }

    /// Examples per routing group when each example has `tokens_per_example` tokens (patches
    /// plus text length): as many whole examples as fit in `group_size`, at least one. `None`
    /// routes the whole batch as one group.
    pub fn examples_per_group(&self, tokens_per_example: usize) -> Option<usize> {
        self.group_size
            .map(|size| (size / tokens_per_example.max(1)).max(1))
    }

    /// Checks the ranges that hold whatever the depth (experts, top_k, capacity, noise, group).
    fn check(&self, at: &KeyPath, c: &mut Checker) {
        c.at_least_one(at, &[("experts", self.experts)]);
        if self.top_k == 0 || self.top_k > self.experts {
            c.error(
                &at.key("top_k"),
                format!(
                    "top_k {} must be between 1 and experts ({})",
                    self.top_k, self.experts
                ),
                Some(format!(
                    "lower top_k or raise experts to at least {}",
                    self.top_k.max(1)
                )),
            );
        }
        if let Some(every) = self.every {
            c.at_least_one(at, &[("every", every)]);
        }
        let factors = [
            ("train", Some(self.capacity.train)),
            ("eval", self.capacity.eval),
        ];
        for (key, factor) in factors.into_iter().filter_map(|(k, f)| Some((k, f?))) {
            c.require(factor > 0.0, &at.key("capacity").key(key), || {
                format!("capacity factor must be positive (got {factor})")
            });
        }
        c.require(self.noise >= 0.0, &at.key("noise"), || {
            "`noise` must be zero or positive".into()
        });
        if let Some(group) = self.group_size {
            c.at_least_one(at, &[("group_size", group)]);
        }
    }

    /// The same checks for a section built in code, not read from a file: one MoE layer
    /// validates its routing with them.
    pub fn validate(&self) -> Result<(), String> {
        detached(KeyPath::root().key("model").key("moe"), |at, c| {
            self.check(at, c)
        })
    }
}

/// Capacity factors for training and evaluation.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Capacity {
    /// Capacity factor while training.
    pub train: f64,
    /// Capacity factor at evaluation; `None` (`eval: null`, the default) drops no token, so
    /// that batches of one modality (zero-shot prompts) are not cut by a capacity sized for
    /// the mixed batches of training. Each expert then gets the slots the busiest one needs
    /// (on the CPU; on a GPU one per token: an `experts x tokens` buffer per block).
    pub eval: Option<f64>,
}

impl Default for Capacity {
    fn default() -> Capacity {
        Capacity {
            train: 1.0,
            eval: None,
        }
    }
}

/// The learned logit scale of the contrastive loss.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogitScale {
    /// Initial scale (1 / 0.07).
    pub init: f64,
    /// Upper clamp.
    pub max: f64,
}

impl Default for LogitScale {
    fn default() -> LogitScale {
        LogitScale {
            init: 1.0 / 0.07,
            max: 100.0,
        }
    }
}

/// The smallest vocabulary of the caption tokenizer (`crates/limoe-data/src/tokenizer.rs`):
/// its 512 byte tokens, the start token and the end token.
pub const MIN_VOCAB_SIZE: usize = 514;

/// CLIP's full vocabulary: the tokenizer has no ids beyond it.
pub const CLIP_VOCAB_SIZE: usize = 49408;

/// Channels of every image: they are decoded as RGB.
pub const CHANNELS: usize = 3;

/// The deepest encoder a spec may ask for: far beyond any ViT (ViT-22B has 48 blocks), and
/// small enough that listing the blocks (validation places the MoE blocks among them) is
/// cheap.
const MAX_DEPTH: usize = 1024;

/// The largest image side, in pixels: an image is decoded to side x side x 3 bytes and
/// patchified to as many floats (48 MiB and 192 MiB at 4096 px), so larger sides exhaust
/// memory image by image, while real sets rarely exceed a few thousand pixels.
pub(super) const MAX_IMAGE_SIDE: usize = 4096;

/// Records an error at `at` when an image side is larger than [`MAX_IMAGE_SIDE`].
pub(super) fn check_image_side(side: usize, at: &KeyPath, c: &mut Checker) {
    if side > MAX_IMAGE_SIDE {
        c.error(
            at,
            format!(
                "an image side of {side} pixels is over the limit of {MAX_IMAGE_SIDE}: every \
                 image is held as side x side x 3 values"
            ),
            Some(format!(
                "use at most {MAX_IMAGE_SIDE} pixels (the LIMoE models see 224)"
            )),
        );
    }
}

impl ModelSpec {
    /// Patches per image.
    pub fn patches(&self) -> usize {
        (self.image_size / self.patch).pow(2)
    }

    /// Text tokens per example: a classifier reads none.
    pub fn text_tokens(&self) -> usize {
        match self.arch.is_classifier() {
            true => 0,
            false => self.text_length,
        }
    }

    /// Tokens per example the encoder routes at most: its patches and text tokens (what
    /// `moe.group_size` is counted in).
    pub fn tokens_per_example(&self) -> usize {
        self.patches() + self.text_tokens()
    }

    /// Values per patch (P * P * C).
    pub fn patch_dim(&self) -> usize {
        self.patch * self.patch * self.channels
    }

    /// Size of the joint embedding space (the width unless `embed_dim` is set).
    pub fn embed_dim(&self) -> usize {
        self.embed_dim.unwrap_or(self.width)
    }

    /// The MoE blocks this architecture really has (none for the baselines).
    pub fn active_moe_blocks(&self) -> Vec<usize> {
        match self.arch.is_sparse() {
            true => self.moe.moe_blocks(self.depth),
            false => Vec::new(),
        }
    }

    /// The checks of a spec file, for a section built in code: the model validates its own
    /// shape with them, so that no second copy of the rules exists.
    pub fn validate(&self) -> Result<(), String> {
        detached(KeyPath::root().key("model"), |at, c| self.check(at, c))
    }

    /// Checks the values that deserialization cannot (divisibility, ranges).
    pub(super) fn check(&self, at: &KeyPath, c: &mut Checker) {
        c.at_least_one(
            at,
            &[
                ("width", self.width),
                ("depth", self.depth),
                ("mlp_dim", self.mlp_dim),
                ("heads", self.heads),
                ("patch", self.patch),
                ("image_size", self.image_size),
                ("text_length", self.text_length),
            ],
        );
        if self.depth > MAX_DEPTH {
            c.error(
                &at.key("depth"),
                format!(
                    "depth {} is over the limit of {MAX_DEPTH} blocks",
                    self.depth
                ),
                Some(format!("use at most {MAX_DEPTH} blocks")),
            );
        }
        check_image_side(self.image_size, &at.key("image_size"), c);
        if self.channels != CHANNELS {
            c.error(
                &at.key("channels"),
                format!(
                    "`channels: {}`, but images are decoded as RGB ({CHANNELS} channels)",
                    self.channels
                ),
                Some(format!("set `channels: {CHANNELS}` or leave it out")),
            );
        }
        if self.heads >= 1 && !self.width.is_multiple_of(self.heads) {
            c.error(
                &at.key("heads"),
                format!("{} heads do not divide width {}", self.heads, self.width),
                Some(format!("pick heads from the divisors of {}", self.width)),
            );
        }
        if self.patch >= 1 && !self.image_size.is_multiple_of(self.patch) {
            c.error(
                &at.key("patch"),
                format!(
                    "patch {} does not divide image_size {}",
                    self.patch, self.image_size
                ),
                Some("choose a patch size that divides the image side".into()),
            );
        }
        if !(MIN_VOCAB_SIZE..=CLIP_VOCAB_SIZE).contains(&self.vocab_size) {
            c.error(
                &at.key("vocab_size"),
                format!(
                    "a vocabulary of {} ids does not fit the tokenizer: CLIP's BPE needs at \
                     least {MIN_VOCAB_SIZE} (512 byte tokens, start and end) and has \
                     {CLIP_VOCAB_SIZE}",
                    self.vocab_size
                ),
                Some(format!(
                    "set vocab_size between {MIN_VOCAB_SIZE} and {CLIP_VOCAB_SIZE} (the \
                     `tiny` preset has 4096)"
                )),
            );
        }
        if let Some(embed) = self.embed_dim {
            c.at_least_one(at, &[("embed_dim", embed)]);
        }
        self.check_moe(&at.key("moe"), c);
        self.check_aux(&at.key("aux"), c);
        self.check_classifier(&at.key("classifier"), c);
        let scale = self.logit_scale;
        c.require(
            scale.init > 0.0 && scale.max >= scale.init,
            &at.key("logit_scale"),
            || {
                format!(
                    "logit scale needs 0 < init <= max (got init {}, max {})",
                    scale.init, scale.max
                )
            },
        );
    }

    fn check_moe(&self, at: &KeyPath, c: &mut Checker) {
        let moe = &self.moe;
        moe.check(at, c);
        if let Some(last) = moe.last {
            c.require(last >= 1 && last <= self.depth, &at.key("last"), || {
                format!("`last` must be between 1 and depth ({})", self.depth)
            });
        }
        if self.arch.is_sparse()
            && (1..=MAX_DEPTH).contains(&self.depth)
            && moe.moe_blocks(self.depth).is_empty()
        {
            c.error(
                at,
                format!("no block of the {} is an MoE block", self.depth),
                Some("set `every: 2` (every second block) or `last: N`".into()),
            );
        }
    }

    fn check_classifier(&self, at: &KeyPath, c: &mut Checker) {
        match (self.arch.is_classifier(), &self.classifier) {
            (true, None) => c.error(
                at,
                "a classifier (`arch: vmoe` or `vit`) needs its head: `classifier: {classes: N}`",
                Some("set `classifier: {classes: N}` with N the classes of the data".into()),
            ),
            (false, Some(_)) => c.error(
                at,
                "only the classifiers (`arch: vmoe`, `vit`) have a classification head",
                Some("remove `classifier`, or set `arch: vmoe` or `vit`".into()),
            ),
            (true, Some(head)) => c.at_least_one(at, &[("classes", head.classes)]),
            (false, None) => {}
        }
    }

    /// The image classifier with `classes` classes built from this model's image side (a
    /// transfer's model); `None` for two towers.
    pub fn image_classifier(&self, classes: usize) -> Option<ModelSpec> {
        Some(ModelSpec {
            arch: self.arch.image_classifier()?,
            classifier: Some(Classifier {
                classes,
                loss: self.classifier.map(|c| c.loss).unwrap_or_default(),
            }),
            ..self.clone()
        })
    }

    fn check_aux(&self, at: &KeyPath, c: &mut Checker) {
        let aux = &self.aux;
        for (loss, weights) in [
            ("local_entropy", aux.local_entropy),
            ("global_entropy", aux.global_entropy),
        ] {
            for (modality, w) in weights.named() {
                c.require(w >= 0.0, &at.key(loss).key(modality), || {
                    format!("loss weight must be zero or positive (got {w})")
                });
            }
        }
        for (modality, s) in aux.global_experts.named() {
            let experts = self.moe.experts as f64;
            c.require(
                (1.0..=experts).contains(&s),
                &at.key("global_experts").key(modality),
                || format!("must be between 1 and experts ({experts}); got {s}"),
            );
        }
        for (loss, w) in [
            ("importance", aux.importance),
            ("load", aux.load),
            ("z_loss", aux.z_loss),
        ] {
            c.require(w >= 0.0, &at.key(loss), || {
                format!("loss weight must be zero or positive (got {w})")
            });
        }
    }
}

/// Runs `check` at `section` outside any file: the problems, joined, as one message.
fn detached(section: KeyPath, check: impl FnOnce(&KeyPath, &mut Checker)) -> Result<(), String> {
    let tree = Node::empty_map(Origin::Default);
    let mut c = Checker::new(&tree);
    check(&section, &mut c);
    let problems: Vec<String> = c
        .finish(&[])
        .into_iter()
        .map(|d| format!("{}: {}", d.path, d.message))
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn moe(every: Option<usize>, last: Option<usize>) -> MoeSpec {
        MoeSpec {
            experts: 4,
            top_k: 1,
            every,
            last,
            capacity: Capacity::default(),
            bpr: true,
            noise: 1.0,
            group_size: None,
        }
    }

    #[test]
    fn moe_block_placement() {
        assert_eq!(moe(Some(2), None).moe_blocks(6), [1, 3, 5]);
        assert_eq!(moe(None, Some(2)).moe_blocks(6), [4, 5]);
        assert_eq!(moe(Some(2), Some(24)).moe_blocks(32).len(), 12);
        assert!(moe(None, None).moe_blocks(6).is_empty());
    }
}
