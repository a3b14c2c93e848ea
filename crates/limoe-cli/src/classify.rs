//! `limoe classify`: zero-shot classification of a person's image files against the class
//! names they give.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::bail;
use limoe_core::Registry;
use limoe_core::spec::NameList;
use limoe_data::named_images::NamedImage;
use limoe_train::eval::zero_shot::TOP_K;
use limoe_train::infer::classify::Classifier;
use limoe_train::infer::images::embed_images;

use crate::checkpoint::ModelArgs;

/// The options of `limoe classify`.
#[derive(clap::Args)]
pub(crate) struct ClassifyArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// The class names, separated by commas: `"cat,dog,car"`.
    #[arg(long, value_name = "NAMES")]
    classes: String,
    /// Prompt templates, each with `{}` for the class name: a JSON list of strings, as
    /// CLIP_benchmark writes them [default: the run's eval.zero_shot.templates].
    #[arg(long, value_name = "FILE")]
    templates: Option<PathBuf>,
    /// Print JSON: per image, its most probable classes with their probabilities.
    #[arg(long)]
    json: bool,
    /// The PNG or JPEG files to classify.
    #[arg(required = true, value_name = "IMAGES")]
    images: Vec<PathBuf>,
}

/// `limoe classify RUN --classes NAMES IMAGES...`.
pub(crate) fn classify(
    registry: &Registry,
    runs_dir: &Path,
    args: &ClassifyArgs,
) -> anyhow::Result<ExitCode> {
    if args.classes.trim().is_empty() {
        bail!("--classes names no class: give the class names, separated by commas");
    }
    let names: Vec<String> = args
        .classes
        .split(',')
        .map(|c| c.trim().to_owned())
        .collect();
    // Every input is read before the model is built, so that a wrong name fails at once.
    let images: Vec<NamedImage> =
        (args.images.iter().map(|p| NamedImage::read(p))).collect::<anyhow::Result<_>>()?;
    let own_templates = args.templates.as_deref().map(read_templates).transpose()?;
    let trained = args.model.open(registry, runs_dir)?;
    let templates = own_templates.unwrap_or_else(|| trained.spec.eval.zero_shot.templates.clone());
    let batch = trained.spec.eval.batch_size;
    let classifier = Classifier::new(&trained.built, names, &templates, batch)?;
    let mut results = Vec::with_capacity(images.len());
    for chunk in images.chunks(batch.max(1)) {
        let embedded = embed_images(&trained.built, chunk)?;
        for (image, probabilities) in chunk.iter().zip(classifier.probabilities(&embedded)?) {
            let top = classifier.top(&probabilities, TOP_K);
            let classes: Vec<serde_json::Value> = (top.iter())
                .map(|s| serde_json::json!({ "class": s.class, "probability": s.probability }))
                .collect();
            if !args.json {
                println!("{}", image.name);
                for scored in &top {
                    println!("  {:.4}  {}", scored.probability, scored.class);
                }
            }
            results.push(serde_json::json!({ "image": image.name, "classes": classes }));
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    }
    Ok(ExitCode::SUCCESS)
}

/// The templates of a `--templates` file, each checked for its `{}`.
fn read_templates(file: &Path) -> anyhow::Result<Vec<String>> {
    let templates = NameList::File(file.to_owned()).resolve("classify", "--templates")?;
    if let Some(t) = templates.iter().find(|t| !t.contains("{}")) {
        bail!(
            "--templates: {}: template `{t}` has no `{{}}` for the class name",
            file.display()
        );
    }
    Ok(templates)
}
