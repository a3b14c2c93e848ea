//! Appending events to a new event file, flushed on demand so that TensorBoard shows a
//! run while it trains.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use prost::Message;

use crate::EVENT_FILE_MARK;
use crate::proto::{Event, HistogramProto, Image, Kind, Summary, Value, What};
use crate::reader::event_files;
use crate::record::frame;

/// The version header TensorBoard expects as a file's first event.
pub const FILE_VERSION: &str = "brain.Event:2";

/// Writes events to one new file in a directory.
pub struct EventWriter {
    path: PathBuf,
    file: BufWriter<File>,
}

/// A histogram of counts over consecutive integer values (say, experts `0..n`): bucket `i`
/// holds the weight of value `i`.
pub struct Histogram<'a> {
    /// The weight of each value.
    pub weights: &'a [f64],
}

impl EventWriter {
    /// Starts a new event file in `dir` (created if missing), named as TensorBoard's own
    /// writers name theirs (`events.out.tfevents.<seconds>.<host>.<pid>`), with its version
    /// header. Readers take a directory's files in name order, so the seconds are those of
    /// the newest file there plus one when that is later than now: a run resumed within the
    /// second still reads in order.
    pub fn create(dir: &Path) -> anyhow::Result<EventWriter> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let newest = event_files(dir)?
            .iter()
            .filter_map(|file| seconds_of(file))
            .max();
        let seconds = (now().floor() as u64).max(newest.map_or(0, |s| s + 1));
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "localhost".to_owned());
        let name = format!(
            "events.out.{EVENT_FILE_MARK}.{seconds:010}.{host}.{}",
            std::process::id()
        );
        let path = dir.join(name);
        let file = File::create_new(&path)
            .with_context(|| format!("cannot create the event file {}", path.display()))?;
        let mut writer = EventWriter {
            path,
            file: BufWriter::new(file),
        };
        writer.write(Event {
            wall_time: now(),
            step: 0,
            what: Some(What::FileVersion(FILE_VERSION.to_owned())),
        })?;
        Ok(writer)
    }

    /// The file written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Scalars of one step, each `(tag, value)`.
    pub fn scalars(
        &mut self,
        step: i64,
        values: impl IntoIterator<Item = (String, f64)>,
    ) -> anyhow::Result<()> {
        let value = values
            .into_iter()
            .map(|(tag, v)| Value {
                tag,
                kind: Some(Kind::SimpleValue(v as f32)),
            })
            .collect();
        self.summary(step, value)
    }

    /// A histogram of one step.
    pub fn histogram(
        &mut self,
        step: i64,
        tag: String,
        histogram: &Histogram,
    ) -> anyhow::Result<()> {
        let weights = histogram.weights;
        let values = (0..weights.len()).map(|i| i as f64);
        let num = weights.iter().sum();
        let sum = values.clone().zip(weights).map(|(x, w)| x * w).sum();
        let sum_squares = values.zip(weights).map(|(x, w)| x * x * w).sum();
        let histo = HistogramProto {
            min: 0.0,
            max: weights.len().saturating_sub(1) as f64,
            num,
            sum,
            sum_squares,
            bucket_limit: (0..weights.len()).map(|i| i as f64 + 0.5).collect(),
            bucket: weights.to_vec(),
        };
        self.summary(
            step,
            vec![Value {
                tag,
                kind: Some(Kind::Histo(histo)),
            }],
        )
    }

    /// A PNG picture (`width` x `height`, RGB) of one step.
    pub fn image(
        &mut self,
        step: i64,
        tag: String,
        png: Vec<u8>,
        (width, height): (u32, u32),
    ) -> anyhow::Result<()> {
        let image = Image {
            height: height as i32,
            width: width as i32,
            colorspace: 3,
            encoded_image_string: png,
        };
        self.summary(
            step,
            vec![Value {
                tag,
                kind: Some(Kind::Image(image)),
            }],
        )
    }

    /// Hands what is buffered to the file system, where TensorBoard's next poll finds it.
    pub fn flush(&mut self) -> anyhow::Result<()> {
        self.file
            .flush()
            .with_context(|| format!("cannot write {}", self.path.display()))
    }

    fn summary(&mut self, step: i64, value: Vec<Value>) -> anyhow::Result<()> {
        self.write(Event {
            wall_time: now(),
            step,
            what: Some(What::Summary(Summary { value })),
        })
    }

    fn write(&mut self, event: Event) -> anyhow::Result<()> {
        self.file
            .write_all(&frame(&event.encode_to_vec()))
            .with_context(|| format!("cannot write {}", self.path.display()))
    }
}

/// The seconds field of an event file's name.
fn seconds_of(file: &Path) -> Option<u64> {
    let name = file.file_name()?.to_str()?;
    let after = name.strip_prefix(&format!("events.out.{EVENT_FILE_MARK}."))?;
    after.split('.').next()?.parse().ok()
}

/// Seconds since the Unix epoch.
fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
