//! A classifier's classes: every label of a dataset (an ingest output, or a benchmark a
//! transfer trains on) in label order, and each pair's class index among them.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, bail};
use candle_core::{Device, Tensor};
use limoe_core::spec::ModelSpec;
use limoe_data::batch::Batch;
use limoe_data::shards::Index;

/// The classes of one dataset, which a classifier's logits index.
pub struct ClassIndex {
    /// Label id and name of every class, in id order.
    pub classes: Vec<(i32, String)>,
    /// Each label id's class index.
    position: BTreeMap<i32, u32>,
}

impl ClassIndex {
    /// The classes the dataset at `dir` records (`index.json`). Two sources giving one
    /// label id different names are an error: a classifier has one label space.
    pub fn read(dir: &Path) -> anyhow::Result<ClassIndex> {
        let index = Index::read(dir)?;
        let mut classes: BTreeMap<i32, (String, &str)> = BTreeMap::new();
        for (source, names) in &index.classes {
            for (&label, name) in names {
                match classes.get(&label) {
                    Some((other, first)) if other != name => bail!(
                        "{}: label {label} is `{other}` in source `{first}` but `{name}` in \
                         `{source}`; a classifier trains on one label space, so train on one \
                         labelled source",
                        dir.display()
                    ),
                    Some(_) => {}
                    None => {
                        classes.insert(label, (name.clone(), source));
                    }
                }
            }
        }
        if classes.is_empty() {
            bail!(
                "{}: the data has no labelled pairs; a classifier trains on a labelled source \
                 (fashion_mnist, mnist, synthetic, a Parquet source with a label column)",
                dir.display()
            );
        }
        let classes: Vec<(i32, String)> = (classes.into_iter())
            .map(|(label, (name, _))| (label, name))
            .collect();
        let position = (classes.iter().zip(0u32..))
            .map(|((label, _), i)| (*label, i))
            .collect();
        Ok(ClassIndex { classes, position })
    }

    /// The classes of the dataset at `dir` that a classifier `model` indexes, checked against
    /// its head; `None` for a contrastive model.
    pub fn of_model(model: &ModelSpec, dir: &Path) -> anyhow::Result<Option<ClassIndex>> {
        model
            .classifier
            .map(|head| ClassIndex::read(dir)?.expecting(head.classes))
            .transpose()
    }

    /// The same classes, checked against the `expected` count of the model's head.
    pub fn expecting(self, expected: usize) -> anyhow::Result<ClassIndex> {
        if self.len() != expected {
            bail!(
                "the data has {} classes but the model's head has {expected}; set \
                 `model.classifier.classes: {}`",
                self.len(),
                self.len()
            );
        }
        Ok(self)
    }

    /// The number of classes.
    pub fn len(&self) -> usize {
        self.classes.len()
    }

    /// True without classes (never, for an index [`ClassIndex::read`] built).
    pub fn is_empty(&self) -> bool {
        self.classes.is_empty()
    }

    /// The class index of `label`, if it is one of the classes.
    pub fn class_of(&self, label: Option<i32>) -> Option<u32> {
        self.position.get(&label?).copied()
    }

    /// The class index of every pair of a training batch, [B] u32 on `device`; a pair
    /// without a label, or with one outside the classes, is an error naming it.
    pub fn tensor(&self, batch: &Batch, device: &Device) -> anyhow::Result<Tensor> {
        let classes = (batch.keys.iter().zip(&batch.labels))
            .map(|(key, &label)| {
                self.class_of(label).with_context(|| match label {
                    None => format!(
                        "pair `{key}` has no label: a classifier trains on labelled pairs \
                         only; remove the unlabelled sources from data.sources"
                    ),
                    Some(label) => format!(
                        "pair `{key}` has label {label}, which is not one of the data's {} \
                         classes",
                        self.len()
                    ),
                })
            })
            .collect::<anyhow::Result<Vec<u32>>>()?;
        Ok(Tensor::from_vec(classes, batch.len(), device)?)
    }
}
