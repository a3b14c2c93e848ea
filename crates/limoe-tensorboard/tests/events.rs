//! Event files as limoe writes them, read back by this crate's reader, by TensorBoard's own
//! Python reader when it is installed, and cut back to a step for a resumed run.

use std::path::Path;
use std::process::Command;

use limoe_tensorboard::proto::{Event, Kind, What};
use limoe_tensorboard::{EventWriter, Histogram, event_files, read_dir, truncate_after};

/// A PNG of 3 x 2 pixels.
fn tiny_png() -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut encoder = png::Encoder::new(&mut bytes, 3, 2);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().unwrap();
    writer.write_image_data(&[200; 18]).unwrap();
    writer.finish().unwrap();
    bytes
}

/// Steps 1..=`steps`: a loss scalar each, a histogram every other step, an image at the end.
fn write_run(dir: &Path, steps: i64) -> EventWriter {
    let mut events = EventWriter::create(dir).unwrap();
    for step in 1..=steps {
        let loss = 1.0 / step as f64;
        events
            .scalars(
                step,
                [
                    ("train/loss".to_owned(), loss),
                    ("train/lr".to_owned(), 0.5),
                ],
            )
            .unwrap();
        if step % 2 == 0 {
            let weights = [0.25, 0.0, 0.75];
            events
                .histogram(
                    step,
                    "routing/train/block 1/text".to_owned(),
                    &Histogram { weights: &weights },
                )
                .unwrap();
        }
    }
    events
        .image(steps, "specialisation/val".to_owned(), tiny_png(), (3, 2))
        .unwrap();
    events.flush().unwrap();
    events
}

/// (step, tag, first number) of every summary value.
fn summaries(events: &[Event]) -> Vec<(i64, String, f64)> {
    let mut out = Vec::new();
    for event in events {
        let Some(What::Summary(summary)) = &event.what else {
            continue;
        };
        for value in &summary.value {
            let number = match &value.kind {
                Some(Kind::SimpleValue(v)) => f64::from(*v),
                Some(Kind::Histo(h)) => h.bucket.iter().sum(),
                Some(Kind::Image(i)) => f64::from(i.width),
                None => f64::NAN,
            };
            out.push((event.step, value.tag.clone(), number));
        }
    }
    out
}

#[test]
fn written_events_read_back_with_their_version_header_first() {
    let dir = tempfile::tempdir().unwrap();
    write_run(dir.path(), 4);
    let events = read_dir(dir.path()).unwrap();
    assert_eq!(
        events[0].what,
        Some(What::FileVersion("brain.Event:2".to_owned()))
    );
    let got = summaries(&events);
    assert_eq!(got.len(), 4 * 2 + 2 + 1, "{got:?}");
    assert_eq!(got[0], (1, "train/loss".to_owned(), 1.0));
    assert!(got.contains(&(4, "routing/train/block 1/text".to_owned(), 1.0)));
    assert_eq!(
        got.last().unwrap(),
        &(4, "specialisation/val".to_owned(), 3.0)
    );
    let Some(What::Summary(summary)) = &events.iter().rev().nth(1).unwrap().what else {
        panic!("the event before the image is a summary");
    };
    let Some(Kind::Histo(histogram)) = &summary.value[0].kind else {
        panic!("the event before the image is the histogram of step 4");
    };
    assert_eq!(histogram.bucket_limit, [0.5, 1.5, 2.5]);
    assert_eq!(
        (histogram.min, histogram.max, histogram.sum),
        (0.0, 2.0, 1.5)
    );
}

#[test]
fn a_resumed_run_keeps_the_summaries_up_to_its_checkpoint_only() {
    let dir = tempfile::tempdir().unwrap();
    let first = write_run(dir.path(), 6);
    // A writer killed mid-record leaves a torn tail.
    let mut bytes = std::fs::read(first.path()).unwrap();
    bytes.extend_from_slice(&[7, 0, 0]);
    std::fs::write(first.path(), bytes).unwrap();

    truncate_after(dir.path(), 3).unwrap();
    let kept = summaries(&read_dir(dir.path()).unwrap());
    assert!(kept.iter().all(|(step, ..)| *step <= 3), "{kept:?}");
    assert_eq!(kept.len(), 3 * 2 + 1);

    // Cut back to before any summary, a file holds nothing worth keeping.
    truncate_after(dir.path(), 0).unwrap();
    assert!(event_files(dir.path()).unwrap().is_empty());
}

#[test]
fn a_corrupt_record_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let events = write_run(dir.path(), 2);
    let mut bytes = std::fs::read(events.path()).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(events.path(), bytes).unwrap();
    let error = format!("{:#}", read_dir(dir.path()).unwrap_err());
    assert!(
        error.contains(&events.path().display().to_string()),
        "{error}"
    );
    assert!(error.contains("byte"), "{error}");
}

/// TensorBoard's own event accumulator reads the scalars, the histogram and the image.
#[test]
fn tensorboards_python_reader_reads_them() {
    let probe = Command::new("python3")
        .args(["-c", "import tensorboard"])
        .output();
    if !probe.is_ok_and(|out| out.status.success()) {
        eprintln!("skipped: Python's `tensorboard` is not installed (pip install tensorboard)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    write_run(dir.path(), 4);
    let script = r#"
import sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
acc = EventAccumulator(sys.argv[1], size_guidance={"scalars": 0, "histograms": 0, "images": 0})
acc.Reload()
tags = acc.Tags()
loss = [(e.step, round(e.value, 4)) for e in acc.Scalars("train/loss")]
histo = acc.Histograms("routing/train/block 1/text")[-1].histogram_value
image = acc.Images("specialisation/val")[0]
print(loss)
print(histo.num, list(histo.bucket_limit), list(histo.bucket))
print(image.width, image.height, len(image.encoded_image_string))
"#;
    let out = Command::new("python3")
        .args(["-c", script, dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "[(1, 1.0), (2, 0.5), (3, 0.3333), (4, 0.25)]");
    assert_eq!(lines[1], "1.0 [0.5, 1.5, 2.5] [0.25, 0.0, 0.75]");
    assert_eq!(lines[2], format!("3 2 {}", tiny_png().len()));
}

#[test]
fn a_file_started_within_the_same_second_sorts_after_the_last() {
    let dir = tempfile::tempdir().unwrap();
    let first = EventWriter::create(dir.path()).unwrap();
    let second = EventWriter::create(dir.path()).unwrap();
    assert_eq!(
        event_files(dir.path()).unwrap(),
        [first.path().to_owned(), second.path().to_owned()]
    );
}
