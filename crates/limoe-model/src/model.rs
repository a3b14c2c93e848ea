//! The whole network: embeddings, encoder(s), heads, and the training loss (contrastive, or
//! a classifier's label loss).

use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::{Init, VarBuilder};

use limoe_core::spec::{Arch, LabelLoss, ModelSpec};

use crate::classify::label_loss;
use crate::contrastive::{contrastive_loss, logits};
use crate::embed::{PatchEmbed, TokenEmbed};
use crate::encoder::{BlockRouting, Encoder, Streams};
use crate::heads::{ClassifierHead, Head};
use crate::inputs::{Images, Texts};
use crate::moe::{ExpertGroup, MoeConfig, RouteMode};
use crate::params::Params;

enum Towers {
    Shared(Encoder),
    Separate { image: Encoder, text: Encoder },
}

/// What sits on top of the encoder: the contrastive models' text side and heads into the
/// joint space, or a classifier's head.
enum Heads {
    Contrastive {
        token_embed: TokenEmbed,
        image_head: Head,
        text_head: Head,
        log_scale: Tensor,
    },
    Classifier {
        head: ClassifierHead,
        loss: LabelLoss,
    },
}

/// The parameter holding the log of the logit scale (1 / temperature).
pub const LOG_LOGIT_SCALE: &str = "log_logit_scale";

/// The parameters of a classifier's logits layer; the rest of a classifier is the image side
/// of a contrastive model, named alike, which is what transfer loads.
pub const CLASSIFIER_LOGITS: &str = "classifier";

/// Whether the parameter `name` belongs to a classifier's logits layer: what a head-only
/// transfer trains and what a transfer starts fresh.
pub fn is_classifier_logits(name: &str) -> bool {
    (name.strip_prefix(CLASSIFIER_LOGITS)).is_some_and(|rest| rest.starts_with('.'))
}

/// LIMoE, V-MoE, or one of their baselines, as [`ModelSpec::arch`] says.
pub struct Model {
    spec: ModelSpec,
    /// What it was built from, to build it again in another dtype ([`Model::in_precision`]).
    params: Params,
    group: Option<ExpertGroup>,
    device: Device,
    patch_embed: PatchEmbed,
    towers: Towers,
    heads: Heads,
}

/// Unit embeddings (or class logits) of a batch, and what the MoE blocks reported.
pub struct Encoded {
    /// Image embeddings [B, E], when images were given to a contrastive model.
    pub image: Option<Tensor>,
    /// The image features the embeddings or class logits are computed from [B, W]
    /// (pre-logits), when images were given.
    pub image_pre_logits: Option<Tensor>,
    /// A classifier's class logits [B, classes], when images were given.
    pub class_logits: Option<Tensor>,
    /// Text embeddings [B, E], when texts were given.
    pub text: Option<Tensor>,
    /// One report per MoE block (none for the baselines).
    pub routing: Vec<BlockRouting>,
}

/// A forward pass over a training batch, with every loss term.
pub struct Output {
    /// The objective plus the weighted auxiliary losses: what training minimises.
    pub loss: Tensor,
    /// The objective alone: the contrastive loss, or a classifier's label loss.
    pub objective: Tensor,
    /// The weighted sum of every MoE block's auxiliary losses (0 without MoE blocks).
    pub aux: Tensor,
    /// Image-text logits [B, B] (scaled similarities), or a classifier's class logits
    /// [B, classes].
    pub logits: Tensor,
    /// The logit scale in use (1 / temperature, clamped); none for a classifier.
    pub logit_scale: Option<Tensor>,
    /// Embeddings and routing reports.
    pub encoded: Encoded,
}

impl Model {
    /// Builds the model a spec's `model` section describes, creating its parameters in
    /// `params` on `device`. The section is checked by the spec's own rules first.
    pub fn new(spec: &ModelSpec, params: &Params, device: &Device) -> Result<Model> {
        Model::with_experts_of(spec, params, device, None)
    }

    /// [`Model::new`] holding, with an expert `group` (expert parallelism), only this rank's
    /// share of every MoE block's experts: the rows of the weights one process would start
    /// from. Its forward passes exchange tokens with the group's other ranks, which must run
    /// the same passes.
    pub fn with_experts_of(
        spec: &ModelSpec,
        params: &Params,
        device: &Device,
        group: Option<&ExpertGroup>,
    ) -> Result<Model> {
        spec.validate().map_err(candle_core::Error::msg)?;
        let params = match group {
            Some(group) => params.sharing_experts(group.part(), group.parts()),
            None => params.clone(),
        };
        Model::computing_in(spec, &params, device, group, DType::F32)
    }

    /// This model computing in `dtype` (mixed precision under bf16): every parameter is read
    /// through a differentiable cast of its f32 variable, so the gradients arrive in f32 and
    /// the optimizer steps the f32 weights. Built afresh for every step, since the casts are
    /// copies of the weights' current values; f32 is this model itself.
    pub fn in_precision(&self, dtype: DType) -> Result<InPrecision<'_>> {
        if dtype == DType::F32 {
            return Ok(InPrecision::Same(self));
        }
        let model = Model::computing_in(
            &self.spec,
            &self.params,
            &self.device,
            self.group.as_ref(),
            dtype,
        )?;
        Ok(InPrecision::Cast(Box::new(model)))
    }

    fn computing_in(
        spec: &ModelSpec,
        params: &Params,
        device: &Device,
        group: Option<&ExpertGroup>,
        dtype: DType,
    ) -> Result<Model> {
        let vb = params.builder(dtype, device);
        let moe = MoeConfig::of(spec);
        let moe_blocks = spec.active_moe_blocks();
        let encoder = |vb: &VarBuilder| Encoder::new(vb, spec, &moe, &moe_blocks, group);
        let towers = match spec.arch {
            Arch::Limoe | Arch::Dense | Arch::Vmoe | Arch::Vit => {
                Towers::Shared(encoder(&vb.pp("encoder"))?)
            }
            Arch::TwoTower => Towers::Separate {
                image: encoder(&vb.pp("image_encoder"))?,
                text: encoder(&vb.pp("text_encoder"))?,
            },
        };
        let (width, heads) = (spec.width, spec.heads);
        let heads = match spec.classifier {
            Some(classifier) => Heads::Classifier {
                head: ClassifierHead::new(
                    &vb.pp("image_head"),
                    &vb.pp(CLASSIFIER_LOGITS),
                    spec.pooling.image,
                    width,
                    heads,
                    classifier.classes,
                )?,
                loss: classifier.loss,
            },
            None => {
                let head = |name: &str, pooling| {
                    Head::new(&vb.pp(name), pooling, width, heads, spec.embed_dim())
                };
                Heads::Contrastive {
                    token_embed: TokenEmbed::new(
                        &vb.pp("token_embed"),
                        spec.vocab_size,
                        spec.text_length,
                        width,
                    )?,
                    image_head: head("image_head", spec.pooling.image)?,
                    text_head: head("text_head", spec.pooling.text)?,
                    // f32 in every precision: it scales the f32 contrastive logits.
                    log_scale: vb.get_with_hints_dtype(
                        (),
                        LOG_LOGIT_SCALE,
                        Init::Const(spec.logit_scale.init.ln()),
                        DType::F32,
                    )?,
                }
            }
        };
        Ok(Model {
            patch_embed: PatchEmbed::new(
                &vb.pp("patch_embed"),
                spec.patches(),
                spec.patch_dim(),
                width,
            )?,
            towers,
            heads,
            spec: spec.clone(),
            params: params.clone(),
            group: group.cloned(),
            device: device.clone(),
        })
    }

    /// The `model` section the model was built from.
    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    /// Embeds images and/or texts (a classifier: classifies images). In a shared encoder the
    /// given modalities are routed together; `mode` selects noisy training routing or
    /// deterministic evaluation.
    pub fn encode(
        &self,
        images: Option<&Images>,
        texts: Option<&Texts>,
        mode: RouteMode,
    ) -> Result<Encoded> {
        self.encode_frozen(images, texts, mode, false)
    }

    /// [`Model::encode`]; `frozen` detaches a classifier's pre-logits, so that its loss
    /// trains the logits layer alone.
    fn encode_frozen(
        &self,
        images: Option<&Images>,
        texts: Option<&Texts>,
        mode: RouteMode,
        frozen: bool,
    ) -> Result<Encoded> {
        if let Some(images) = images {
            let dims = images.patches.dims();
            if dims.len() != 3 || dims[1] != self.spec.patches() || dims[2] != self.spec.patch_dim()
            {
                candle_core::bail!(
                    "images have shape {dims:?}, the model expects [batch, {}, {}]",
                    self.spec.patches(),
                    self.spec.patch_dim()
                );
            }
        }
        let text = match (texts, &self.heads) {
            (None, _) => None,
            (Some(_), Heads::Classifier { .. }) => {
                candle_core::bail!("a classifier (`arch: vmoe` or `vit`) has no text side")
            }
            (Some(texts), Heads::Contrastive { token_embed, .. }) => {
                let length = texts.tokens.dim(1)?;
                if length > self.spec.text_length {
                    candle_core::bail!(
                        "captions have {length} tokens, the model takes at most {}",
                        self.spec.text_length
                    );
                }
                Some((token_embed.forward(&texts.tokens)?, &texts.mask))
            }
        };
        let image = images
            .map(|i| self.patch_embed.forward(&i.patches))
            .transpose()?;
        let (image, text, routing) = match &self.towers {
            Towers::Shared(encoder) => {
                let (out, routing) = encoder.forward(Streams { image, text }, mode)?;
                (out.image, out.text, routing)
            }
            Towers::Separate {
                image: image_tower,
                text: text_tower,
            } => {
                let (image_out, mut routing) =
                    image_tower.forward(Streams { image, text: None }, mode)?;
                let (text_out, text_routing) =
                    text_tower.forward(Streams { image: None, text }, mode)?;
                routing.extend(text_routing);
                (image_out.image, text_out.text, routing)
            }
        };
        match &self.heads {
            Heads::Classifier { head, .. } => {
                let classified = image.map(|i| head.classify(&i, frozen)).transpose()?;
                let (image_pre_logits, class_logits) = classified.unzip();
                Ok(Encoded {
                    image: None,
                    image_pre_logits,
                    class_logits,
                    text: None,
                    routing,
                })
            }
            Heads::Contrastive {
                image_head,
                text_head,
                ..
            } => {
                let image = image.map(|i| image_head.embed(&i, None)).transpose()?;
                let (image_pre_logits, image) = image.unzip();
                Ok(Encoded {
                    image,
                    image_pre_logits,
                    class_logits: None,
                    text: text
                        .map(|(t, mask)| text_head.forward(&t, Some(mask)))
                        .transpose()?,
                    routing,
                })
            }
        }
    }

    /// The logit scale: exp of the learned log scale. The trainer clamps the parameter at
    /// the configured maximum after each step (as open_clip does), so that a scale at the
    /// bound still gets a gradient that can bring it down.
    pub fn logit_scale(&self) -> Result<Tensor> {
        match &self.heads {
            Heads::Contrastive { log_scale, .. } => log_scale.exp(),
            Heads::Classifier { .. } => {
                candle_core::bail!("a classifier has no contrastive logit scale")
            }
        }
    }

    /// A training (or evaluation) pass over paired images and texts: pair i of the images
    /// matches caption i.
    pub fn forward(&self, images: &Images, texts: &Texts, mode: RouteMode) -> Result<Output> {
        let own = |image: &Tensor, text: &Tensor| Ok((image.clone(), text.clone()));
        self.forward_with_negatives(
            images,
            texts,
            mode,
            &Negatives {
                gather: &own,
                scale_gradient: true,
            },
        )
    }

    /// [`Model::forward`] with the contrastive loss over a larger batch, which `negatives`
    /// gathers. The auxiliary losses stay this batch's.
    pub fn forward_with_negatives(
        &self,
        images: &Images,
        texts: &Texts,
        mode: RouteMode,
        negatives: &Negatives,
    ) -> Result<Output> {
        if images.patches.dim(0)? != texts.batch() {
            candle_core::bail!(
                "{} images but {} captions in one batch",
                images.patches.dim(0)?,
                texts.batch()
            );
        }
        let encoded = self.encode(Some(images), Some(texts), mode)?;
        let (Some(image), Some(text)) = (&encoded.image, &encoded.text) else {
            candle_core::bail!("both modalities were encoded but an embedding is missing");
        };
        let logit_scale = match negatives.scale_gradient {
            true => self.logit_scale()?,
            false => self.logit_scale()?.detach(),
        };
        let (image, text) = (negatives.gather)(image, text)?;
        let logits = logits(&image, &text, &logit_scale)?;
        let contrastive = contrastive_loss(&logits)?;
        let aux = self.aux_loss(&encoded, contrastive.device(), false)?;
        Ok(Output {
            loss: (&contrastive + &aux)?,
            objective: contrastive,
            aux,
            logits,
            logit_scale: Some(logit_scale),
            encoded,
        })
    }

    /// A classifier's training pass over labelled images: `classes` [B] holds each image's
    /// class index. `frozen` trains the logits layer alone (a head-only transfer): no
    /// gradient reaches the rest, and the auxiliary losses are reported but not trained.
    pub fn forward_labelled(
        &self,
        images: &Images,
        classes: &Tensor,
        mode: RouteMode,
        frozen: bool,
    ) -> Result<Output> {
        let Heads::Classifier { loss, .. } = &self.heads else {
            candle_core::bail!("only a classifier (`arch: vmoe` or `vit`) trains on labels");
        };
        let batch = images.patches.dim(0)?;
        if classes.dims() != [batch] {
            candle_core::bail!("{batch} images but labels of shape {:?}", classes.dims());
        }
        let encoded = self.encode_frozen(Some(images), None, mode, frozen)?;
        let Some(logits) = encoded.class_logits.clone() else {
            candle_core::bail!("a classifier returned no class logits for a batch of images");
        };
        let objective = label_loss(&logits, classes, *loss)?;
        let aux = self.aux_loss(&encoded, objective.device(), frozen)?;
        Ok(Output {
            loss: (&objective + &aux)?,
            objective,
            aux,
            logits,
            logit_scale: None,
            encoded,
        })
    }

    /// The weighted sum of every MoE block's auxiliary losses (`detached`: as a value only).
    fn aux_loss(&self, encoded: &Encoded, device: &Device, detached: bool) -> Result<Tensor> {
        let mut aux = Tensor::zeros((), DType::F32, device)?;
        for block in &encoded.routing {
            aux = (aux + &block.aux_loss)?;
        }
        Ok(match detached {
            true => aux.detach(),
            false => aux,
        })
    }
}

/// A model in a step's precision ([`Model::in_precision`]).
pub enum InPrecision<'a> {
    /// The f32 model itself.
    Same(&'a Model),
    /// A copy computing in another dtype.
    Cast(Box<Model>),
}

impl std::ops::Deref for InPrecision<'_> {
    type Target = Model;

    fn deref(&self) -> &Model {
        match self {
            InPrecision::Same(model) => model,
            InPrecision::Cast(model) => model,
        }
    }
}

/// Maps (image, text) embeddings of a pass to those of the whole batch.
pub type GatherEmbeddings<'a> = dyn Fn(&Tensor, &Tensor) -> Result<(Tensor, Tensor)> + Sync + 'a;

/// The batch a pass's contrastive loss contrasts when it is larger than the pass's own: other
/// ranks' rows (data parallelism), other micro-batches' (accumulation), or both.
pub struct Negatives<'a> {
    /// Maps this pass's image and text embeddings [b, E] to the whole batch's [B, E], this
    /// pass's rows carrying the gradient, the others plain values.
    pub gather: &'a GatherEmbeddings<'a>,
    /// Whether the logit scale gets this pass's gradient: it acts on the whole batch, so of
    /// several passes over one batch only one may count it.
    pub scale_gradient: bool,
}
