//! The four logs of a training run, each declared once: a line per column after `step`.

use super::Modality;
use super::eval_metrics::metric_key;
use super::row::log_row;

log_row! {
    /// Training metrics, one row per logging interval.
    pub const METRICS = "metrics": "training metrics at one step";
    /// One row of [`METRICS`].
    #[derive(Clone, Debug, Default, PartialEq)]
    pub struct MetricsRow;
    /// The column names of [`METRICS`].
    pub mod metrics {
        WALL_SECONDS wall_seconds: f64 = "seconds since the run's start, continuing across resumes",
        LR lr: f64 = "learning rate of the step",
        LOSS loss: f64 = "total loss: the objective (contrastive or classification) + aux",
        CONTRASTIVE contrastive: f64 = "contrastive loss (NaN for a classifier)",
        CLASSIFICATION classification: f64 = "a classifier's label loss, softmax or sigmoid \
            cross-entropy (NaN for a contrastive model)",
        AUX aux: f64 = "weighted sum of the auxiliary losses",
        LOCAL_ENTROPY_IMAGE local_entropy_image: f64 =
            "unweighted local entropy loss of image tokens, summed over MoE blocks",
        LOCAL_ENTROPY_TEXT local_entropy_text: f64 =
            "unweighted local entropy loss of text tokens, summed over MoE blocks",
        GLOBAL_ENTROPY_IMAGE global_entropy_image: f64 =
            "unweighted global entropy loss of image tokens, summed over MoE blocks",
        GLOBAL_ENTROPY_TEXT global_entropy_text: f64 =
            "unweighted global entropy loss of text tokens, summed over MoE blocks",
        IMPORTANCE_IMAGE importance_image: f64 =
            "unweighted importance loss of image tokens, summed over MoE blocks",
        IMPORTANCE_TEXT importance_text: f64 =
            "unweighted importance loss of text tokens, summed over MoE blocks",
        LOAD_IMAGE load_image: f64 = "unweighted load loss of image tokens, summed over MoE blocks",
        LOAD_TEXT load_text: f64 = "unweighted load loss of text tokens, summed over MoE blocks",
        IMPORTANCE_JOINT importance_joint: f64 =
            "unweighted importance loss of all tokens together, summed over MoE blocks",
        LOAD_JOINT load_joint: f64 =
            "unweighted load loss of all tokens together, summed over MoE blocks",
        Z_LOSS_IMAGE z_loss_image: f64 =
            "unweighted router z-loss of image tokens, summed over MoE blocks",
        Z_LOSS_TEXT z_loss_text: f64 =
            "unweighted router z-loss of text tokens, summed over MoE blocks",
        GRAD_NORM grad_norm: f64 = "global gradient norm before clipping",
        LOGIT_SCALE logit_scale: f64 =
            "contrastive logit scale, 1 / temperature (NaN for a classifier)",
        PAIRS_PER_SECOND pairs_per_second: f64 =
            "image-text pairs trained per second over the interval",
    }
}

log_row! {
    /// Routing statistics: one row per step, split, MoE block, modality and expert.
    pub const ROUTING = "routing":
        "routing of one modality's tokens to one expert of one MoE block";
    /// One row of [`ROUTING`].
    #[derive(Clone, Debug, PartialEq)]
    pub struct RoutingRow;
    /// The column names of [`ROUTING`].
    pub mod routing {
        SPLIT split: String = "data split the tokens came from (train, val, ...)",
        BLOCK block: i32 = "encoder block index (0-based)",
        MODALITY modality: Modality = "image or text",
        EXPERT expert: i32 = "expert index (0-based)",
        TOKENS tokens: i64 = "(token, choice) assignments kept by the expert",
        DROPPED dropped: i64 =
            "(token, choice) assignments of the modality dropped in the block; \
             the same on every expert row",
        MEAN_GATE mean_gate: f64 = "mean over the modality's tokens of the clean gate p(expert|x)",
        LOCAL_ENTROPY local_entropy: f64 =
            "mean router entropy of the modality's tokens; the same on every expert row",
        GLOBAL_ENTROPY global_entropy: f64 =
            "entropy of the modality's mean gate; the same on every expert row",
    }
}

log_row! {
    /// Evaluation results: one row per step, dataset and metric.
    pub const EVAL = "eval": "one evaluation number";
    /// One row of [`EVAL`].
    #[derive(Clone, Debug, PartialEq)]
    pub struct EvalRow;
    /// The column names of [`EVAL`].
    pub mod eval {
        DATASET dataset: String = "evaluated data set",
        METRIC metric: String = "metric name, e.g. zero_shot_top1, retrieval_i2t_r1",
        VALUE value: f64 = "the metric's value",
    }
}

log_row! {
    /// Per-token expert assignments dumped at evaluation: one row per token, block and choice.
    pub const ASSIGNMENTS = "assignments":
        "the expert one token's routing choice went to in one MoE block";
    /// One row of [`ASSIGNMENTS`].
    #[derive(Clone, Debug, PartialEq)]
    pub struct AssignmentRow;
    /// The column names of [`ASSIGNMENTS`].
    pub mod assignments {
        KEY key: String = "key of the example the token belongs to",
        LABEL label: Option<i32> = "the example's class label; null when it has none",
        MODALITY modality: Modality = "image or text",
        BLOCK block: i32 = "encoder block index (0-based)",
        POSITION position: i32 = "token position within its modality's sequence",
        CHOICE choice: i32 = "routing choice (0 = top-1, ..., K-1)",
        EXPERT expert: i32 = "expert index; the number of experts means dropped",
    }
}

impl EvalRow {
    /// The metric's name across datasets ([`metric_key`]).
    pub fn key(&self) -> String {
        metric_key(&self.dataset, &self.metric)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{ALL_LOGS, ColumnType, LogRow, LogSchema};
    use super::*;

    #[test]
    fn the_declarations_give_the_columns_files_have_always_had() {
        let names = |log: &LogSchema| -> Vec<&str> { log.columns.iter().map(|c| c.name).collect() };
        assert_eq!(
            names(&ROUTING),
            [
                "step",
                "split",
                "block",
                "modality",
                "expert",
                "tokens",
                "dropped",
                "mean_gate",
                "local_entropy",
                "global_entropy"
            ]
        );
        // The joint importance and load columns, and the classifiers' label loss, came after
        // the first files; older runs' parts lack them.
        assert_eq!(names(&METRICS).len(), 22);
        assert_eq!(names(&METRICS)[5], metrics::CLASSIFICATION);
        assert_eq!(
            names(&METRICS)[15..17],
            [metrics::IMPORTANCE_JOINT, metrics::LOAD_JOINT]
        );
        assert_eq!(names(&METRICS)[21], metrics::PAIRS_PER_SECOND);
        assert_eq!(ROUTING.columns[3].ty, ColumnType::Utf8);
        let label = ASSIGNMENTS.column(assignments::LABEL).unwrap();
        assert_eq!((label.ty, label.nullable), (ColumnType::Int32, true));
        for log in ALL_LOGS {
            let nullable: Vec<&str> = (log.columns.iter().filter(|c| c.nullable))
                .map(|c| c.name)
                .collect();
            let expected: &[&str] = if log.name == "assignments" {
                &["label"]
            } else {
                &[]
            };
            assert_eq!(nullable, expected, "{}", log.name);
        }
    }

    #[test]
    fn rows_round_trip_through_their_columns() {
        let rows = vec![
            AssignmentRow {
                step: 4,
                key: "a".into(),
                label: None,
                modality: Modality::Text,
                block: 1,
                position: 2,
                choice: 0,
                expert: 3,
            },
            AssignmentRow {
                step: 5,
                key: "b".into(),
                label: Some(7),
                modality: Modality::Image,
                block: 0,
                position: 1,
                choice: 1,
                expert: 0,
            },
        ];
        let columns = AssignmentRow::to_columns(&rows);
        assert_eq!(columns.len(), ASSIGNMENTS.columns.len());
        assert_eq!(AssignmentRow::from_columns(columns).unwrap(), rows);
        let err = AssignmentRow::from_columns(Vec::new()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "log `assignments`: no values for column `step`"
        );
    }
}
