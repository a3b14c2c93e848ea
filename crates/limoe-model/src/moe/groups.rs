//! Routing groups: which tokens compete for the same expert capacity.
//!
//! Each group fills its own slots of every expert's buffer, with the capacity of its own size,
//! and BPR orders tokens within a group. The encoder forms groups of whole examples
//! ([`Groups::of_examples`]): a group holds the image patches and the text tokens of the same
//! examples, so both modalities compete, and a group's contents do not depend on how a batch
//! is split over ranks as long as each rank's share is a whole number of groups.

use candle_core::{Result, bail};

/// A partition of the T tokens of one routing call into groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Groups {
    /// Token indices, group after group; each group in its fill order when BPR is off.
    order: Vec<u32>,
    /// Where each group starts in `order`, then `order.len()`.
    starts: Vec<usize>,
}

impl Groups {
    /// Consecutive tokens, `size` per group (the last one may be smaller); one group of all
    /// tokens when `size` is `None`.
    pub fn consecutive(tokens: usize, size: Option<usize>) -> Result<Groups> {
        let size = size.unwrap_or(tokens).min(tokens);
        if tokens == 0 || size == 0 {
            bail!("routing groups: need tokens > 0 and a positive group size (T={tokens})");
        }
        let mut starts: Vec<usize> = (0..tokens).step_by(size).collect();
        starts.push(tokens);
        Ok(Groups {
            order: (0..tokens as u32).collect(),
            starts,
        })
    }

    /// Groups of `per_group` consecutive examples (the last one may have fewer). Rows are laid
    /// out image first: example b's `patches` image rows at `b * patches`, then every text
    /// row, example by example, `text[b]` of them for example b. A group lists its examples'
    /// image rows, then their text rows.
    pub fn of_examples(patches: usize, text: &[usize], per_group: usize) -> Result<Groups> {
        let examples = text.len();
        if examples == 0 || per_group == 0 {
            bail!("routing groups: need examples > 0 and a positive number per group");
        }
        let image_rows = examples * patches;
        let mut text_start = Vec::with_capacity(examples + 1);
        text_start.push(image_rows);
        for count in text {
            text_start.push(text_start[text_start.len() - 1] + count);
        }
        let mut order = Vec::with_capacity(text_start[examples]);
        let mut starts = Vec::with_capacity(examples.div_ceil(per_group) + 1);
        for first in (0..examples).step_by(per_group) {
            let end = (first + per_group).min(examples);
            starts.push(order.len());
            order.extend((first * patches..end * patches).map(|r| r as u32));
            order.extend((text_start[first]..text_start[end]).map(|r| r as u32));
        }
        starts.push(order.len());
        if let Some(g) = starts.windows(2).position(|w| w[0] == w[1]) {
            bail!("routing groups: group {g} has no tokens (examples without patches or text)");
        }
        Ok(Groups { order, starts })
    }

    /// Number of groups.
    pub fn count(&self) -> usize {
        self.starts.len() - 1
    }

    /// Number of tokens over all groups.
    pub fn tokens(&self) -> usize {
        self.order.len()
    }

    /// The tokens of group `g`.
    pub fn group(&self, g: usize) -> &[u32] {
        &self.order[self.starts[g]..self.starts[g + 1]]
    }

    /// Tokens in the largest group.
    pub fn largest(&self) -> usize {
        self.starts
            .windows(2)
            .map(|w| w[1] - w[0])
            .max()
            .unwrap_or(0)
    }

    /// The groups of rows `rows` (one modality's), numbered over the groups that have any;
    /// `None` when they all fall in one group.
    pub fn of_rows(&self, rows: std::ops::Range<usize>) -> Option<RowGroups> {
        let mut group_of = vec![u32::MAX; rows.len()];
        let mut sizes = Vec::new();
        for g in 0..self.count() {
            let before = sizes.len() as u32;
            let mut size = 0;
            for &token in self.group(g) {
                if rows.contains(&(token as usize)) {
                    group_of[token as usize - rows.start] = before;
                    size += 1;
                }
            }
            if size > 0 {
                sizes.push(size);
            }
        }
        (sizes.len() > 1).then_some(RowGroups {
            index: group_of,
            sizes,
        })
    }
}

/// One modality's rows split by routing group: the auxiliary losses are computed per group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowGroups {
    /// The group of each row, numbered `0..sizes.len()`.
    pub index: Vec<u32>,
    /// Rows in each group.
    pub sizes: Vec<usize>,
}

#[cfg(test)]
mod tests {
    use super::{Groups, RowGroups};

    #[test]
    fn consecutive_groups_end_with_the_remainder() -> candle_core::Result<()> {
        let groups = Groups::consecutive(7, Some(3))?;
        assert_eq!(groups.count(), 3);
        assert_eq!(groups.group(2), &[6]);
        assert_eq!(groups.largest(), 3);
        assert_eq!(Groups::consecutive(7, None)?.count(), 1);
        assert!(Groups::consecutive(0, None).is_err());
        Ok(())
    }

    #[test]
    fn example_groups_hold_both_modalities_of_their_examples() -> candle_core::Result<()> {
        // 3 examples of 2 patches (rows 0..6), captions of 1, 3 and 2 tokens (rows 6..12).
        let groups = Groups::of_examples(2, &[1, 3, 2], 2)?;
        assert_eq!(groups.count(), 2);
        assert_eq!(groups.group(0), &[0, 1, 2, 3, 6, 7, 8, 9]);
        assert_eq!(groups.group(1), &[4, 5, 10, 11]);
        assert_eq!(groups.tokens(), 12);
        // Per modality: image rows 0..6 in groups of 4 and 2, text rows 6..12 of 4 and 2.
        let image = groups.of_rows(0..6).expect("two groups");
        assert_eq!(image.index, [0, 0, 0, 0, 1, 1]);
        assert_eq!(image.sizes, [4, 2]);
        let text = groups.of_rows(6..12).expect("two groups");
        assert_eq!(
            (text.index, text.sizes),
            (vec![0, 0, 0, 0, 1, 1], vec![4, 2])
        );
        // Consecutive groups of 5 over the same rows: image rows fall in groups 0 and 1, text
        // rows in groups 1 and 2, renumbered 0 and 1.
        let consecutive = Groups::consecutive(12, Some(5))?;
        assert_eq!(
            consecutive.of_rows(6..12),
            Some(RowGroups {
                index: vec![0, 0, 0, 0, 1, 1],
                sizes: vec![4, 2]
            })
        );
        assert_eq!(Groups::consecutive(12, Some(6))?.of_rows(6..12), None);
        // Text only (prompts at evaluation).
        assert_eq!(Groups::of_examples(0, &[2, 2], 1)?.group(1), &[2, 3]);
        Ok(())
    }

    #[test]
    fn a_group_is_the_same_whatever_the_split() -> candle_core::Result<()> {
        // Four examples split over two ranks give each rank the groups of a single process.
        let text = [2, 1, 3, 1];
        let whole = Groups::of_examples(3, &text, 2)?;
        let half = Groups::of_examples(3, &text[2..], 2)?;
        let rows_of = |groups: &Groups, g: usize, patches: usize, text: &[usize]| {
            // Each row as (example, position within the example).
            let image_rows = text.len() * patches;
            groups
                .group(g)
                .iter()
                .map(|&r| {
                    let r = r as usize;
                    if r < image_rows {
                        (r / patches, r % patches)
                    } else {
                        let mut rest = r - image_rows;
                        let mut b = 0;
                        while rest >= text[b] {
                            rest -= text[b];
                            b += 1;
                        }
                        (b, patches + rest)
                    }
                })
                .collect::<Vec<_>>()
        };
        let shifted: Vec<_> = rows_of(&half, 0, 3, &text[2..])
            .into_iter()
            .map(|(b, p)| (b + 2, p))
            .collect();
        assert_eq!(rows_of(&whole, 1, 3, &text), shifted);
        Ok(())
    }
}
