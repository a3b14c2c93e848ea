//! The labelled sets that zero-shot classification and few-shot probes score: which embedded
//! pairs belong to a dataset, their classes, and every candidate class of the dataset (its
//! whole class list, not only the classes an evaluated subset happens to hold).

use std::collections::BTreeMap;

use anyhow::bail;
use limoe_data::benchmarks::BenchmarkClasses;
use limoe_data::shards::Index;

use crate::embed::SplitEmbeddings;

/// The pairs of one dataset within some embeddings, against its candidate classes.
pub struct Labelled {
    /// Every candidate class: label id and name, in label order.
    pub classes: Vec<(i32, String)>,
    /// Rows of the embeddings that belong to the dataset.
    pub rows: Vec<usize>,
    /// Each row's class, as an index into `classes`.
    pub labels: Vec<usize>,
}

impl Labelled {
    /// The pairs of `emb` from the training source `dataset` (keys starting with its name),
    /// against every class the ingested data (`index`) has for sources of that name; `None`
    /// when no pair of the dataset carries a label. An index written before class lists
    /// were recorded gives the classes present in `emb`.
    pub fn of_source(emb: &SplitEmbeddings, dataset: &str, index: &Index) -> Option<Labelled> {
        let mut classes: BTreeMap<i32, String> = (index.classes.iter())
            .filter(|(source, _)| source.starts_with(dataset))
            .flat_map(|(_, names)| names.iter().map(|(&l, n)| (l, n.clone())))
            .collect();
        let in_dataset = |i: usize| emb.keys[i].starts_with(dataset);
        if classes.is_empty() {
            for i in (0..emb.len()).filter(|&i| in_dataset(i)) {
                if let (Some(label), Some(name)) = (emb.labels[i], &emb.label_names[i]) {
                    classes.entry(label).or_insert_with(|| name.clone());
                }
            }
        }
        let classes: Vec<(i32, String)> = classes.into_iter().collect();
        let position = positions(&classes);
        let (mut rows, mut labels) = (Vec::new(), Vec::new());
        for i in (0..emb.len()).filter(|&i| in_dataset(i)) {
            if let Some(&class) = emb.labels[i].and_then(|l| position.get(&l)) {
                rows.push(i);
                labels.push(class);
            }
        }
        (!rows.is_empty()).then_some(Labelled {
            classes,
            rows,
            labels,
        })
    }

    /// Every pair of a benchmark's embeddings against its classes. Errors on a pair whose
    /// label is not one of them.
    pub fn of_benchmark(
        emb: &SplitEmbeddings,
        classes: &BenchmarkClasses,
    ) -> anyhow::Result<Labelled> {
        let position = positions(&classes.classes);
        let mut labels = Vec::with_capacity(emb.len());
        for i in 0..emb.len() {
            match emb.labels[i].and_then(|l| position.get(&l)) {
                Some(&class) => labels.push(class),
                None => bail!(
                    "pair `{}` has label {}, which is not one of the benchmark's classes",
                    emb.keys[i],
                    emb.labels[i].map_or("none".to_owned(), |l| l.to_string())
                ),
            }
        }
        Ok(Labelled {
            classes: classes.classes.clone(),
            rows: (0..emb.len()).collect(),
            labels,
        })
    }

    /// The class names, in class order.
    pub fn names(&self) -> Vec<&str> {
        self.classes.iter().map(|(_, n)| n.as_str()).collect()
    }

    /// The subset of this set at `picks` (positions into `rows`), with the same classes.
    pub fn subset(&self, picks: &[usize]) -> Labelled {
        Labelled {
            classes: self.classes.clone(),
            rows: picks.iter().map(|&p| self.rows[p]).collect(),
            labels: picks.iter().map(|&p| self.labels[p]).collect(),
        }
    }

    /// The classes some row has.
    pub fn present_classes(&self) -> Vec<(i32, String)> {
        let mut present = vec![false; self.classes.len()];
        self.labels.iter().for_each(|&c| present[c] = true);
        (self.classes.iter().zip(present))
            .filter(|&(_, here)| here)
            .map(|(class, _)| class.clone())
            .collect()
    }

    /// The rows of the classes in `classes` only, numbered as `classes` (a probe fits and
    /// scores only the classes it has shots of).
    pub fn restricted_to(&self, classes: &[(i32, String)]) -> Labelled {
        let position = positions(classes);
        let kept = (self.rows.iter().zip(&self.labels))
            .filter_map(|(&row, &c)| Some((row, *position.get(&self.classes[c].0)?)));
        let (rows, labels) = kept.unzip();
        Labelled {
            classes: classes.to_vec(),
            rows,
            labels,
        }
    }

    /// The rows' vectors of `values` (`dim` per row), gathered in row order.
    pub fn gather(&self, values: &[f32], dim: usize) -> Vec<f32> {
        (self.rows.iter())
            .flat_map(|&r| values[r * dim..(r + 1) * dim].iter().copied())
            .collect()
    }
}

/// Each class's index in `classes`, by label id.
fn positions(classes: &[(i32, String)]) -> BTreeMap<i32, usize> {
    (classes.iter().enumerate())
        .map(|(i, (label, _))| (*label, i))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn embeddings(pairs: &[(&str, Option<i32>, &str)]) -> SplitEmbeddings {
        SplitEmbeddings {
            keys: pairs.iter().map(|p| p.0.to_owned()).collect(),
            labels: pairs.iter().map(|p| p.1).collect(),
            label_names: pairs.iter().map(|p| Some(p.2.to_owned())).collect(),
            ..SplitEmbeddings::default()
        }
    }

    fn index(classes: &[(&str, i32, &str)]) -> Index {
        let mut index: Index =
            serde_json::from_str(r#"{"schema": [], "rows": {}, "sources": {}, "shards": []}"#)
                .unwrap();
        for (source, label, name) in classes {
            let names = index.classes.entry((*source).to_owned()).or_default();
            names.insert(*label, (*name).to_owned());
        }
        index
    }

    #[test]
    fn a_source_is_classified_against_every_class_of_its_data() {
        // The evaluated subset holds classes 0 and 2 of the four the data has.
        let emb = embeddings(&[
            ("mnist-1", Some(2), "two"),
            ("synthetic-0-1", Some(0), "red circle"),
            ("mnist-2", Some(0), "zero"),
            ("mnist-3", None, ""),
        ]);
        let index = index(&[
            ("mnist", 0, "zero"),
            ("mnist", 1, "one"),
            ("mnist", 2, "two"),
            ("mnist", 3, "three"),
            ("synthetic", 0, "red circle"),
        ]);
        let set = Labelled::of_source(&emb, "mnist", &index).unwrap();
        assert_eq!(set.names(), ["zero", "one", "two", "three"]);
        assert_eq!(
            (set.rows.as_slice(), set.labels.as_slice()),
            (&[0, 2][..], &[2, 0][..])
        );
        assert_eq!(
            set.present_classes(),
            [(0, "zero".into()), (2, "two".into())]
        );
        let present = set.restricted_to(&set.present_classes());
        assert_eq!(present.labels, [1, 0]);
        assert!(Labelled::of_source(&emb, "emoji", &index).is_none());
        // An index without class lists falls back to the classes present.
        let old = Labelled::of_source(&emb, "mnist", &self::index(&[])).unwrap();
        assert_eq!(old.names(), ["zero", "two"]);
    }

    #[test]
    fn a_benchmark_pair_outside_its_classes_is_an_error_naming_it() {
        let emb = embeddings(&[("a", Some(0), "x"), ("b", Some(7), "y")]);
        let classes = BenchmarkClasses {
            classes: vec![(0, "x".into()), (1, "z".into())],
            templates: None,
        };
        let error = Labelled::of_benchmark(&emb, &classes)
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("pair `b` has label 7"), "{error}");
    }
}
