//! `limoe classify`, `embed` and `route` on a tiny trained run, with images and texts that
//! the tests make themselves (PNG and JPEG, of other sizes than the model's), and the inputs
//! they refuse.

mod support;

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;

use arrow_array::{Array, FixedSizeListArray, Float32Array, RecordBatch, StringArray};
use image::{ImageFormat, Rgb, RgbImage};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use support::equivalence::{assert_ok, run_args};
use support::{finished_output, limoe, text};

/// The directory of one tiny run trained for every test of this file.
fn trained() -> &'static Path {
    static RUN: OnceLock<tempfile::TempDir> = OnceLock::new();
    RUN.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let mut args = run_args("limoe");
        args.extend([
            "--set".to_owned(),
            "train={steps: 2, batch_size: 16, warmup_steps: 1, checkpoint_every: 2, \
             eval_every: 2}"
                .to_owned(),
        ]);
        assert_ok(&limoe(&args, dir.path()), "training");
        dir
    })
    .path()
}

/// `limoe ARGS` in the trained run's directory.
fn run(args: &[&str]) -> Output {
    limoe(args, trained())
}

/// `limoe ARGS`, which must succeed; its stdout.
fn ok(args: &[&str]) -> String {
    let out = run(args);
    assert_ok(&out, &args.join(" "));
    text(&out.stdout)
}

/// `limoe ARGS`, which must fail naming `what`.
fn refused(args: &[&str], what: &str) {
    let out = run(args);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
    assert!(
        stderr.contains(what),
        "{args:?} should name {what}: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
}

/// A scene of `width` x `height` with a disc of `colour` in it, written as `format` under
/// `dir`; its path.
fn scene(dir: &Path, name: &str, (width, height): (u32, u32), colour: [u8; 3]) -> PathBuf {
    let (cx, cy, r) = (
        width as i64 / 2,
        height as i64 / 2,
        width.min(height) as i64 / 3,
    );
    let image = RgbImage::from_fn(width, height, |x, y| {
        let (dx, dy) = (x as i64 - cx, y as i64 - cy);
        if dx * dx + dy * dy <= r * r {
            Rgb(colour)
        } else {
            Rgb([240, 240, 240])
        }
    });
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let format = ImageFormat::from_path(&path).unwrap();
    image.save_with_format(&path, format).unwrap();
    path
}

/// A fresh directory under the trained run for one test's files.
fn scratch(name: &str) -> PathBuf {
    let dir = trained().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The record batches of a Parquet file.
fn batches(file: &Path) -> Vec<RecordBatch> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(file).unwrap());
    reader
        .unwrap()
        .build()
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// The utf8 column `name` of a Parquet file, if it has one.
fn strings(file: &Path, name: &str) -> Option<Vec<String>> {
    let mut values = None::<Vec<String>>;
    for batch in batches(file) {
        let column = batch.column_by_name(name)?;
        let column = column.as_any().downcast_ref::<StringArray>().unwrap();
        let more = (0..column.len()).map(|i| column.value(i).to_owned());
        values.get_or_insert_with(Vec::new).extend(more);
    }
    values
}

/// Each row's (key, embedding) of an `embed` output.
fn embeddings(file: &Path) -> Vec<(String, Vec<f32>)> {
    let mut vectors = Vec::new();
    for batch in batches(file) {
        let list = batch.column_by_name("embedding").unwrap();
        let list = list.as_any().downcast_ref::<FixedSizeListArray>().unwrap();
        for i in 0..batch.num_rows() {
            let values = list.value(i);
            let values = values.as_any().downcast_ref::<Float32Array>().unwrap();
            vectors.push(values.values().to_vec());
        }
    }
    strings(file, "key")
        .unwrap()
        .into_iter()
        .zip(vectors)
        .collect()
}

/// `limoe embed tiny FLAG INPUT -o OUTPUT`, which must succeed; the rows it wrote.
fn embed_ok(flag: &str, input: &Path, output: &Path) -> Vec<(String, Vec<f32>)> {
    let (input, out) = (input.to_str().unwrap(), output.to_str().unwrap());
    ok(&["embed", "tiny", flag, input, "-o", out]);
    embeddings(output)
}

/// Asserts every embedding has unit length.
fn assert_unit(rows: &[(String, Vec<f32>)]) {
    for (key, values) in rows {
        let norm = values.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "{key}: norm {norm}");
    }
}

#[test]
fn classify_prints_the_top_classes_with_their_probabilities() {
    let dir = scratch("classify");
    let png = scene(&dir, "red.png", (40, 24), [220, 30, 30]);
    let jpeg = scene(&dir, "blue.jpg", (50, 70), [30, 30, 220]);
    let (png, jpeg) = (png.to_str().unwrap(), jpeg.to_str().unwrap());
    let three = "red circle, blue square,green triangle";

    let json = |args: &[&str]| -> serde_json::Value {
        let mut all = vec!["classify", "tiny", "--json"];
        all.extend(args);
        serde_json::from_str(&ok(&all)).unwrap()
    };
    let probabilities = |entry: &serde_json::Value| -> Vec<(String, f64)> {
        (entry["classes"].as_array().unwrap().iter())
            .map(|c| {
                let class = c["class"].as_str().unwrap().to_owned();
                (class, c["probability"].as_f64().unwrap())
            })
            .collect()
    };
    // The same image twice in one call, and again alone: the same probabilities each time
    // (to rounding: a batch of one multiplies its matrices in another order than three).
    let result = json(&["--classes", three, png, jpeg, png]);
    let entries = result.as_array().unwrap();
    assert_eq!(entries.len(), 3, "{result}");
    assert_eq!(entries[0]["image"], png);
    for entry in entries {
        let classes = probabilities(entry);
        assert_eq!(classes.len(), 3, "all three classes: {entry}");
        let sum: f64 = classes.iter().map(|c| c.1).sum();
        assert!((sum - 1.0).abs() < 1e-9, "over all classes: {sum}");
        assert!(classes.windows(2).all(|w| w[0].1 >= w[1].1), "{entry}");
    }
    let close = |a: &serde_json::Value, b: &serde_json::Value| {
        let (a, b) = (probabilities(a), probabilities(b));
        a.len() == b.len()
            && a.iter()
                .zip(&b)
                .all(|(x, y)| x.0 == y.0 && (x.1 - y.1).abs() < 1e-5)
    };
    assert!(close(&entries[0], &entries[2]), "{result}");
    let alone = json(&["--classes", three, png]);
    assert!(close(&alone[0], &entries[0]), "{alone} {result}");
    assert_eq!(
        json(&["--classes", three, png]),
        alone,
        "a rerun prints the same"
    );

    // Seven classes: the top five, which hold at most all of the probability.
    let seven = "red,green,blue,yellow,purple,orange,black";
    let result = json(&["--classes", seven, jpeg]);
    let classes = probabilities(&result[0]);
    assert_eq!(classes.len(), 5);
    assert!(classes.iter().map(|c| c.1).sum::<f64>() <= 1.0 + 1e-9);

    // The text table: a line per image, then a line per class.
    let table = ok(&["classify", "runs/tiny", "--classes", three, png]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "{table}");
    assert_eq!(lines[0], png);
    let sum: f64 = (lines[1..].iter())
        .map(|l| l.split_whitespace().next().unwrap().parse::<f64>().unwrap())
        .sum();
    assert!((sum - 1.0).abs() < 2e-4, "{table}");

    // Own templates: the JSON list CLIP_benchmark writes.
    let templates = dir.join("templates.json");
    std::fs::write(&templates, r#"["a {} shape.", "an image of a {}."]"#).unwrap();
    let own = json(&[
        "--classes",
        three,
        "--templates",
        templates.to_str().unwrap(),
        png,
    ]);
    assert_eq!(probabilities(&own[0]).len(), 3);
    assert_ne!(own[0], alone[0], "other prompts, other class weights");

    let broken = dir.join("no-placeholder.json");
    std::fs::write(&broken, r#"["a photo"]"#).unwrap();
    let broken = broken.to_str().unwrap();
    refused(
        &[
            "classify",
            "tiny",
            "--classes",
            three,
            "--templates",
            broken,
            png,
        ],
        "no-placeholder.json: template `a photo` has no `{}`",
    );
}

#[test]
fn embed_writes_unit_embeddings_with_their_keys_and_resumes_a_broken_run() {
    let dir = scratch("embed");
    let images = dir.join("images");
    scene(&images, "a.png", (40, 24), [220, 30, 30]);
    scene(&images, "b.jpg", (50, 70), [30, 30, 220]);
    scene(&images, "nested/c.png", (33, 33), [30, 200, 30]);
    scene(&images, "nested/d.jpeg", (64, 20), [200, 200, 30]);
    std::fs::write(images.join("notes.txt"), "not an image").unwrap();
    // The last image in key order does not decode: the run stops there, naming it, and
    // leaves the parts it wrote.
    let last = images.join("nested/e.png");
    std::fs::write(&last, b"not a png").unwrap();
    let (input, broken) = (images.to_str().unwrap(), dir.join("broken.parquet"));
    let embed = |out: &Path| -> Output {
        let out = out.to_str().unwrap();
        run(&[
            "embed",
            "tiny",
            "--images",
            input,
            "-o",
            out,
            "--batch-size",
            "2",
        ])
    };
    let out = embed(&broken);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("nested/e.png"),
        "{}",
        text(&out.stderr)
    );
    let parts = dir.join("broken.parquet.parts");
    assert!(parts.join("part-000000.parquet").is_file());
    assert!(parts.join("part-000001.parquet").is_file());
    assert!(!broken.exists());

    std::fs::copy(images.join("a.png"), &last).unwrap();
    let resumed = embed(&broken);
    assert_ok(&resumed, "the resumed run");
    assert!(
        text(&resumed.stderr).contains("2 of 3 parts"),
        "{}",
        text(&resumed.stderr)
    );
    assert!(!parts.exists(), "the parts are removed once joined");
    let fresh = dir.join("fresh.parquet");
    assert_ok(&embed(&fresh), "a fresh run");
    let rows = embeddings(&fresh);
    assert_eq!(embeddings(&broken), rows);
    assert_eq!(strings(&fresh, "text"), None, "images have no text column");
    let keys: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(
        keys,
        [
            "a.png",
            "b.jpg",
            "nested/c.png",
            "nested/d.jpeg",
            "nested/e.png"
        ]
    );
    assert_unit(&rows);
    let off = (rows[0].1.iter().zip(&rows[4].1))
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(
        off < 1e-5,
        "the same image, the same embedding (to rounding): {off}"
    );

    // A shard of the run's own ingest output, in the shard schema.
    let ingest = finished_output(&trained().join("runs/tiny"), "ingest-");
    let shard = (std::fs::read_dir(&ingest).unwrap())
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "parquet"))
        .expect("a shard in the ingest output");
    let rows = embed_ok("--images", &shard, &dir.join("shard.parquet"));
    let keys: Vec<String> = rows.iter().map(|r| r.0.clone()).collect();
    assert_eq!(Some(keys), strings(&shard, "key"));
    assert_unit(&rows);

    // Texts: keyed by line number, blank lines passed over.
    let lines = dir.join("captions.txt");
    std::fs::write(&lines, "a red circle\nA blue square\n\n  \na green cross\n").unwrap();
    let out_texts = dir.join("texts.parquet");
    let rows = embed_ok("--texts", &lines, &out_texts);
    let texts = strings(&out_texts, "text");
    let keys: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(keys, ["1", "2", "5"]);
    let expected = ["a red circle", "A blue square", "a green cross"].map(String::from);
    assert_eq!(texts.unwrap(), expected);
    assert_unit(&rows);
}

#[test]
fn route_draws_a_picture_per_image_and_block_and_the_caption_tokens() {
    let dir = scratch("route");
    let png = scene(&dir, "wide.png", (90, 30), [220, 30, 30]);
    let jpeg = scene(&dir, "tall.jpg", (21, 77), [30, 30, 220]);
    let out = dir.join("pictures");
    let printed = ok(&[
        "route",
        "tiny",
        png.to_str().unwrap(),
        jpeg.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--caption",
        "a red circle left of a blue square",
    ]);
    // The tiny model's MoE blocks are 1 and 3 (experiments/tiny.yaml), its images 32 px.
    let size = limoe_analysis::plot::patch_routing_size(32);
    let mut drawn: BTreeMap<String, (u32, u32)> = BTreeMap::new();
    for entry in std::fs::read_dir(&out).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".png") {
            drawn.insert(name, image::image_dimensions(&path).unwrap());
        }
    }
    let names: Vec<&str> = drawn.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "tall.block1.png",
            "tall.block3.png",
            "wide.block1.png",
            "wide.block3.png"
        ]
    );
    assert!(
        drawn.values().all(|&d| d == size),
        "{drawn:?} should be {size:?}"
    );
    let picture = image::open(out.join("wide.block1.png")).unwrap().to_rgb8();
    let reds = picture
        .pixels()
        .filter(|p| p[0] > 150 && p[1] < 120)
        .count();
    assert!(reds > 0, "the red disc shows through its tint");

    let caption = std::fs::read_to_string(out.join("caption.txt")).unwrap();
    assert!(printed.ends_with(&caption), "{printed}");
    let blocks: Vec<&str> = caption.lines().skip(1).collect();
    assert_eq!(blocks.len(), 2, "{caption}");
    for (block, line) in ["1", "3"].iter().zip(&blocks) {
        let (name, tokens) = line.split_once(": ").unwrap();
        assert_eq!(name, format!("block {block}"), "{caption}");
        let tokens: Vec<(&str, u32)> = (tokens.split(' '))
            .map(|t| t.rsplit_once(':').unwrap())
            .map(|(t, e)| (t, e.parse().unwrap()))
            .collect();
        assert_eq!(tokens.first().unwrap().0, "<start_of_text>", "{caption}");
        assert_eq!(tokens.last().unwrap().0, "<end_of_text>", "{caption}");
        assert!(tokens.iter().any(|t| t.0 == "red"), "{caption}");
        assert!(tokens.iter().all(|t| t.1 < 4), "4 experts: {caption}");
    }
}

#[test]
fn bad_input_is_refused_naming_it() {
    let dir = scratch("bad");
    let png = scene(&dir, "fine.png", (40, 40), [10, 200, 10]);
    let png = png.to_str().unwrap();
    let broken = dir.join("broken.png");
    std::fs::write(&broken, b"\x89PNG but not really").unwrap();
    let broken = broken.to_str().unwrap();
    let missing = dir.join("missing.jpg");
    let missing = missing.to_str().unwrap();

    let classify = [
        ("a,b", vec![png, broken], "broken.png"),
        ("a,b", vec![missing], "missing.jpg"),
        (" ", vec![png], "--classes names no class"),
        ("cat,,dog", vec![png], "class 2 of 3 is an empty name"),
        ("cat,dog,cat", vec![png], "class `cat` is named twice"),
    ];
    for (classes, images, message) in classify {
        let mut args = vec!["classify", "tiny", "--classes", classes];
        args.extend(images);
        refused(&args, message);
    }
    refused(&["route", "tiny", broken, "-o", "pictures"], "broken.png");
    let other = scratch("bad/other");
    let twin = scene(&other, "fine.jpg", (20, 20), [1, 2, 3]);
    refused(
        &[
            "route",
            "tiny",
            png,
            twin.to_str().unwrap(),
            "-o",
            "pictures",
        ],
        "would both be drawn as fine.block<N>.png",
    );

    let empty = dir.join("empty.txt");
    std::fs::write(&empty, "\n \n").unwrap();
    let empty = empty.to_str().unwrap();
    let no_images = scratch("bad/no-images");
    let not_parquet = dir.join("table.parquet");
    std::fs::write(&not_parquet, "key,image\n").unwrap();
    let embed = [
        ("--texts", empty, "empty.txt has no text"),
        ("--images", missing, "missing.jpg does not exist"),
        (
            "--images",
            no_images.to_str().unwrap(),
            "holds no PNG or JPEG files",
        ),
        (
            "--images",
            not_parquet.to_str().unwrap(),
            "table.parquet is not a Parquet file",
        ),
    ];
    for (flag, input, message) in embed {
        refused(&["embed", "tiny", flag, input, "-o", "x.parquet"], message);
    }

    // A train output without checkpoints, and a checkpoint moved away from its run.
    let bare = scratch("bad/train-output");
    std::fs::create_dir_all(bare.join("checkpoints")).unwrap();
    refused(
        &["classify", bare.to_str().unwrap(), "--classes", "a,b", png],
        "no complete checkpoint in",
    );
    let train = finished_output(&trained().join("runs/tiny"), "train-");
    let moved = scratch("bad/moved/step-00000002");
    for file in ["model.safetensors", "optimizer.safetensors", "state.json"] {
        let from = train.join("checkpoints/step-00000002").join(file);
        std::fs::copy(from, moved.join(file)).unwrap();
    }
    refused(
        &["classify", moved.to_str().unwrap(), "--classes", "a,b", png],
        "does not say which model it belongs to",
    );
    // Named inside its train output, the checkpoint knows its model.
    let inside = train.join("checkpoints/step-00000002");
    ok(&[
        "classify",
        inside.to_str().unwrap(),
        "--classes",
        "a,b",
        png,
    ]);
    ok(&[
        "classify",
        train.to_str().unwrap(),
        "--best",
        "--classes",
        "a,b",
        png,
    ]);
}
