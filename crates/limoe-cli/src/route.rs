//! `limoe route`: pictures of the expert each patch of an image goes to, per MoE block, and
//! the experts of a caption's tokens.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use limoe_analysis::plot::{PatchRouting, plot_patch_routing};
use limoe_core::Registry;
use limoe_core::files::write_atomic;
use limoe_data::named_images::NamedImage;
use limoe_train::infer::route::{route_caption, route_image};

use crate::checkpoint::ModelArgs;

/// The options of `limoe route`.
#[derive(clap::Args)]
pub(crate) struct RouteArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// The PNG or JPEG files.
    #[arg(required = true, value_name = "IMAGES")]
    images: Vec<PathBuf>,
    /// Where to draw `<image>.block<N>.png` for each image and MoE block.
    #[arg(short, long, value_name = "DIR")]
    output: PathBuf,
    /// A caption whose tokens' experts to print and write to `DIR/caption.txt`.
    #[arg(long, value_name = "TEXT")]
    caption: Option<String>,
}

/// `limoe route RUN IMAGES... -o DIR`.
pub(crate) fn route(
    registry: &Registry,
    runs_dir: &Path,
    args: &RouteArgs,
) -> anyhow::Result<ExitCode> {
    let mut stems = BTreeMap::new();
    let mut images = Vec::with_capacity(args.images.len());
    for path in &args.images {
        let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned());
        let stem = stem.with_context(|| format!("{} names no file", path.display()))?;
        if let Some(other) = stems.insert(stem.clone(), path) {
            bail!(
                "{} and {} would both be drawn as {stem}.block<N>.png; rename one",
                other.display(),
                path.display()
            );
        }
        images.push((stem, NamedImage::read(path)?));
    }
    let trained = args.model.open(registry, runs_dir)?;
    if trained.spec.model.active_moe_blocks().is_empty() {
        bail!(
            "the model of {} is a baseline without MoE blocks: no token chooses an expert",
            trained.spec.name
        );
    }
    std::fs::create_dir_all(&args.output)
        .with_context(|| format!("cannot create {}", args.output.display()))?;
    for (stem, image) in &images {
        let routed = route_image(&trained.built, image)?;
        for block in &routed.blocks {
            let path = args.output.join(format!("{stem}.block{}.png", block.block));
            let picture = PatchRouting {
                title: format!("{} - block {}", image.name, block.block),
                view: &routed.view,
                side: routed.side,
                grid: routed.grid,
                experts: &block.experts,
            };
            draw_atomically(&picture, &path)?;
            println!("{}", path.display());
        }
    }
    if let Some(caption) = &args.caption {
        let routed = route_caption(&trained.built, caption)?;
        let mut text = format!("caption: {caption:?}\n");
        for block in &routed.blocks {
            let tokens: Vec<String> = (routed.tokens.iter().zip(&block.experts))
                .map(|(token, expert)| format!("{}:{expert}", token.trim()))
                .collect();
            text.push_str(&format!("block {}: {}\n", block.block, tokens.join(" ")));
        }
        let path = args.output.join("caption.txt");
        write_atomic(&path, text.as_bytes())?;
        print!("{text}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Draws `picture` to a hidden file beside `path`, then renames it to `path`, so that a
/// reader sees the old picture or the whole new one.
fn draw_atomically(picture: &PatchRouting, path: &Path) -> anyhow::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = tempfile::Builder::new()
        .prefix(".route-")
        .suffix(".png")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    plot_patch_routing(picture, tmp.path())?;
    tmp.persist(path)
        .with_context(|| format!("cannot move the new picture to {}", path.display()))?;
    Ok(())
}
