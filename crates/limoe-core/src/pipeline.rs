//! The stage graph of a spec: checks (ids, kinds, needs, cycles) and execution order.

use std::collections::{BTreeMap, BTreeSet};

use crate::spec::{Checker, KeyPath, Spec, StageSpec, did_you_mean, is_safe_name};
use crate::stage::Registry;

/// Checks the pipeline of `spec` and each stage's own settings, adding every problem to `c`.
pub fn check_pipeline(spec: &Spec, registry: &Registry, c: &mut Checker) {
    let stages_at = KeyPath::root().key("stages");
    let mut seen = BTreeSet::new();
    for (i, stage) in spec.stages.iter().enumerate() {
        let at = stages_at.index(i);
        if !is_safe_name(&stage.id) {
            c.error(
                &at.key("id"),
                format!(
                    "stage id `{}` must be letters, digits, `.`, `_` or `-`",
                    stage.id
                ),
                None,
            );
        }
        if !seen.insert(stage.id.as_str()) {
            c.error(
                &at.key("id"),
                format!("stage id `{}` is used twice", stage.id),
                Some("give every stage its own id".into()),
            );
        }
        match registry.get(&stage.uses) {
            Some(kind) => c.extend(kind.check(&stage.with, &at.key("with"), spec)),
            None => c.error(
                &at.key("uses"),
                format!("unknown stage kind `{}`", stage.uses),
                Some(registry.hint_for(&stage.uses)),
            ),
        }
    }
    let ids: Vec<&str> = spec.stages.iter().map(|s| s.id.as_str()).collect();
    for (i, stage) in spec.stages.iter().enumerate() {
        for (j, need) in stage.needs.iter().enumerate() {
            let at = stages_at.index(i).key("needs").index(j);
            if need == &stage.id {
                c.error(&at, format!("stage `{need}` needs itself"), None);
            } else if !ids.contains(&need.as_str()) {
                let hint = did_you_mean(need, ids.iter().copied())
                    .unwrap_or_else(|| format!("stages in this spec: {}", ids.join(", ")));
                c.error(
                    &at,
                    format!("`{need}` is not a stage of this spec"),
                    Some(hint),
                );
            }
        }
    }
    check_needed_kinds(spec, registry, c);
    if let Some(cycle) = find_cycle(&spec.stages) {
        let first = cycle[0];
        let names: Vec<&str> = cycle.iter().map(|&i| spec.stages[i].id.as_str()).collect();
        c.error(
            &stages_at.index(first).key("needs"),
            format!(
                "stages depend on each other in a cycle: {} -> {}",
                names.join(" -> "),
                names[0]
            ),
            Some("remove one of these `needs`".into()),
        );
    }
}

/// Checks that every stage's `needs` names exactly one stage of each kind its stage kind
/// reads the output of ([`Stage::needs_kinds`](crate::Stage::needs_kinds)).
fn check_needed_kinds(spec: &Spec, registry: &Registry, c: &mut Checker) {
    let stages_at = KeyPath::root().key("stages");
    for (i, stage) in spec.stages.iter().enumerate() {
        let Some(kind) = registry.get(&stage.uses) else {
            continue;
        };
        for needed in kind.needs_kinds(spec) {
            let matching: Vec<&str> = stage
                .needs
                .iter()
                .filter(|need| {
                    spec.stages
                        .iter()
                        .any(|s| &s.id == *need && s.uses == needed)
                })
                .map(String::as_str)
                .collect();
            let at = stages_at.index(i).key("needs");
            match matching.as_slice() {
                [_] => {}
                [] => {
                    let candidates: Vec<&str> = spec
                        .stages
                        .iter()
                        .filter(|s| s.uses == needed)
                        .map(|s| s.id.as_str())
                        .collect();
                    let hint = match candidates.as_slice() {
                        [] => format!("add a stage with `uses: {needed}` and name its id here"),
                        ids => format!("add `{}` to `needs`", ids.join("` or `")),
                    };
                    c.error(
                        &at,
                        format!(
                            "stage `{}` reads the output of a stage of kind `{needed}`, but \
                             its `needs` has none",
                            stage.id
                        ),
                        Some(hint),
                    );
                }
                several => c.error(
                    &at,
                    format!(
                        "stage `{}` needs {} `{needed}` stages ({}); it reads one",
                        stage.id,
                        several.len(),
                        several.join(", ")
                    ),
                    Some("keep one of them in `needs`".into()),
                ),
            }
        }
    }
}

/// A cycle of `needs` among `stages` (indices, in dependency order), if any.
fn find_cycle(stages: &[StageSpec]) -> Option<Vec<usize>> {
    let index: BTreeMap<&str, usize> = stages
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id.as_str(), i))
        .collect();
    // 0 = unvisited, 1 = on the current path, 2 = done.
    let mut state = vec![0u8; stages.len()];
    fn visit(
        i: usize,
        stages: &[StageSpec],
        index: &BTreeMap<&str, usize>,
        state: &mut [u8],
        path: &mut Vec<usize>,
    ) -> Option<Vec<usize>> {
        state[i] = 1;
        path.push(i);
        for need in &stages[i].needs {
            let Some(&j) = index.get(need.as_str()) else {
                continue;
            };
            if j == i {
                continue; // reported as "needs itself"
            }
            if state[j] == 1 {
                let start = path.iter().position(|&p| p == j).unwrap_or(0);
                return Some(path[start..].to_vec());
            }
            if state[j] == 0
                && let Some(cycle) = visit(j, stages, index, state, path)
            {
                return Some(cycle);
            }
        }
        path.pop();
        state[i] = 2;
        None
    }
    (0..stages.len()).find_map(|i| {
        if state[i] == 0 {
            visit(i, stages, &index, &mut state, &mut Vec::new())
        } else {
            None
        }
    })
}

/// The order to run `stages` in: every stage after all it needs, otherwise in spec order.
/// Assumes a checked pipeline (no cycles, no dangling needs).
pub fn execution_order(stages: &[StageSpec]) -> Vec<usize> {
    let mut done = vec![false; stages.len()];
    let mut order = Vec::with_capacity(stages.len());
    while order.len() < stages.len() {
        let ready = (0..stages.len()).find(|&i| {
            !done[i]
                && stages[i].needs.iter().all(|need| {
                    stages
                        .iter()
                        .position(|s| &s.id == need)
                        .is_none_or(|j| done[j])
                })
        });
        match ready {
            Some(i) => {
                done[i] = true;
                order.push(i);
            }
            None => break, // a cycle: unreachable for a checked pipeline
        }
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_follows_needs_then_spec_order() {
        let stages = vec![
            StageSpec::new("report", "x", &["train", "eval"]),
            StageSpec::new("eval", "x", &["train"]),
            StageSpec::new("ingest", "x", &[]),
            StageSpec::new("train", "x", &["ingest"]),
        ];
        let ids: Vec<&str> = execution_order(&stages)
            .into_iter()
            .map(|i| stages[i].id.as_str())
            .collect();
        assert_eq!(ids, ["ingest", "train", "eval", "report"]);
    }

    #[test]
    fn finds_cycles() {
        let stages = vec![
            StageSpec::new("a", "x", &["c"]),
            StageSpec::new("b", "x", &["a"]),
            StageSpec::new("c", "x", &["b"]),
            StageSpec::new("d", "x", &[]),
        ];
        assert_eq!(find_cycle(&stages), Some(vec![0, 2, 1]));
        assert_eq!(find_cycle(&stages[3..]), None);
    }
}
