//! `limoe embed`: unit embeddings of a directory of images, a Parquet shard's images, or the
//! lines of a text file, written to Parquet with their keys in resumable parts.

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use limoe_core::{Progress, Registry};
use limoe_data::named_images::NamedImage;
use limoe_data::shard_file::ShardFile;
use limoe_train::embed::embed_texts;
use limoe_train::infer::images::embed_images;
use limoe_train::infer::parts::{Parts, Rows};

use crate::checkpoint::ModelArgs;
use crate::trained::Trained;

/// The options of `limoe embed`.
#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("input").required(true).args(["images", "texts"])))]
pub(crate) struct EmbedArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// The images: a directory of PNG and JPEG files (searched recursively; each keyed by
    /// its path under the directory), or a Parquet file of the shard schema (keyed by `key`).
    #[arg(long, value_name = "DIR|PARQUET")]
    images: Option<PathBuf>,
    /// The texts: a file of one text per line (blank lines are passed over; each keyed by
    /// its line number).
    #[arg(long, value_name = "FILE")]
    texts: Option<PathBuf>,
    /// The Parquet file to write (columns key, [text,] embedding).
    #[arg(short, long, value_name = "FILE")]
    output: PathBuf,
    /// Inputs per forward pass and per part [default: the run's eval.batch_size].
    #[arg(long, value_name = "N")]
    batch_size: Option<NonZeroUsize>,
}

/// What to embed.
enum Inputs {
    /// Image files, with their keys.
    Files(Vec<(String, PathBuf)>),
    /// The rows of a shard file.
    Shard(PathBuf),
    /// Texts, keyed by their line numbers.
    Texts(Vec<(String, String)>),
}

/// `limoe embed RUN (--images DIR|PARQUET | --texts FILE) -o OUT`.
pub(crate) fn embed(
    registry: &Registry,
    runs_dir: &Path,
    args: &EmbedArgs,
    quiet: bool,
) -> anyhow::Result<ExitCode> {
    let (input, inputs) = match (&args.images, &args.texts) {
        (Some(images), _) if images.is_dir() => (images, Inputs::Files(image_files(images)?)),
        (Some(images), _) if images.is_file() => (images, Inputs::Shard(images.clone())),
        (Some(images), _) => bail!("--images {} does not exist", images.display()),
        (None, Some(texts)) => (texts, Inputs::Texts(text_lines(texts)?)),
        (None, None) => bail!("name what to embed: --images DIR|PARQUET or --texts FILE"),
    };
    let trained = args.model.open(registry, runs_dir)?;
    let batch = (args.batch_size.map(NonZeroUsize::get))
        .unwrap_or(trained.spec.eval.batch_size)
        .max(1);
    let total = match &inputs {
        Inputs::Files(files) => files.len(),
        Inputs::Shard(path) => ShardFile::open(path, batch)?.rows(),
        Inputs::Texts(lines) => lines.len(),
    };
    let stamp = serde_json::json!({
        "checkpoint": trained.checkpoint.path,
        "input": std::path::absolute(input).unwrap_or_else(|_| input.clone()),
        "rows": total,
        "batch_size": batch,
    });
    let parts = Parts::open(&args.output, trained.built.model.spec().embed_dim(), &stamp)?;
    let count = total.div_ceil(batch);
    let done = (0..count).filter(|&i| parts.done(i)).count();
    if done > 0 {
        tracing::info!(
            "{done} of {count} parts were written by an earlier run; embedding the rest"
        );
    }
    let bar = Progress::new(!quiet).bar(total as u64, "embed");
    match inputs {
        Inputs::Files(files) => {
            for (index, chunk) in files.chunks(batch).enumerate() {
                if !parts.done(index) {
                    let images: Vec<NamedImage> = (chunk.iter().map(|(_, p)| NamedImage::read(p)))
                        .collect::<anyhow::Result<_>>()?;
                    let keys = chunk.iter().map(|(k, _)| k.clone()).collect();
                    parts.write(index, &image_rows(&trained, keys, &images)?)?;
                }
                bar.inc(chunk.len() as u64);
            }
        }
        Inputs::Shard(path) => {
            for (index, pairs) in ShardFile::open(&path, batch)?.enumerate() {
                let pairs = pairs?;
                let rows = pairs.len() as u64;
                if !parts.done(index) {
                    let keys = pairs.iter().map(|p| p.key.clone()).collect();
                    let images: Vec<NamedImage> = (pairs.into_iter())
                        .map(|p| NamedImage {
                            name: format!("{}: row `{}`", path.display(), p.key),
                            bytes: p.image,
                        })
                        .collect();
                    parts.write(index, &image_rows(&trained, keys, &images)?)?;
                }
                bar.inc(rows);
            }
        }
        Inputs::Texts(lines) => {
            for (index, chunk) in lines.chunks(batch).enumerate() {
                if !parts.done(index) {
                    let texts: Vec<String> = chunk.iter().map(|(_, t)| t.clone()).collect();
                    let built = &trained.built;
                    let embeddings = embed_texts(
                        &built.model,
                        &built.device,
                        &built.preprocess,
                        &texts,
                        batch,
                    )?;
                    let rows = Rows {
                        keys: chunk.iter().map(|(k, _)| k.clone()).collect(),
                        texts: Some(texts),
                        embeddings,
                    };
                    parts.write(index, &rows)?;
                }
                bar.inc(chunk.len() as u64);
            }
        }
    }
    bar.finish_and_clear();
    let rows = parts.finish(count)?;
    println!(
        "{}: {rows} embeddings of step {}",
        args.output.display(),
        trained.checkpoint.step
    );
    Ok(ExitCode::SUCCESS)
}

/// The rows of `images`, keyed by `keys`.
fn image_rows(trained: &Trained, keys: Vec<String>, images: &[NamedImage]) -> anyhow::Result<Rows> {
    Ok(Rows {
        keys,
        texts: None,
        embeddings: embed_images(&trained.built, images)?,
    })
}

/// The PNG and JPEG files under `dir` (recursively), keyed by their paths under it, in key
/// order; a directory without any is an error.
fn image_files(dir: &Path) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(at) = pending.pop() {
        for entry in
            std::fs::read_dir(&at).with_context(|| format!("cannot list {}", at.display()))?
        {
            let path = entry
                .with_context(|| format!("cannot list {}", at.display()))?
                .path();
            if path.is_dir() {
                pending.push(path);
            } else if is_image_name(&path) {
                let key = path
                    .strip_prefix(dir)
                    .unwrap_or(&path)
                    .to_string_lossy()
                    .into_owned();
                files.push((key, path));
            }
        }
    }
    if files.is_empty() {
        bail!(
            "{} holds no PNG or JPEG files (.png, .jpg, .jpeg)",
            dir.display()
        );
    }
    files.sort();
    Ok(files)
}

/// Whether `path` is named like a PNG or JPEG file.
fn is_image_name(path: &Path) -> bool {
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    matches!(extension.as_deref(), Some("png" | "jpg" | "jpeg"))
}

/// The non-blank lines of `file`, keyed by their line numbers (from 1); a file without any is
/// an error.
fn text_lines(file: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let lines: Vec<(String, String)> = (text.lines().enumerate())
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| ((i + 1).to_string(), line.to_owned()))
        .collect();
    if lines.is_empty() {
        bail!(
            "{} has no text to embed (it is empty or blank)",
            file.display()
        );
    }
    Ok(lines)
}
