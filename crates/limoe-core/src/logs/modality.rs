//! The token modality a routing or assignments row is about.

/// A token modality, written as `image` or `text`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Modality {
    /// Image patches.
    Image,
    /// Text tokens.
    Text,
}

impl Modality {
    /// The name written in logs.
    pub fn name(self) -> &'static str {
        match self {
            Modality::Image => "image",
            Modality::Text => "text",
        }
    }

    /// The modality written as `name`, if any.
    pub fn from_name(name: &str) -> Option<Modality> {
        match name {
            "image" => Some(Modality::Image),
            "text" => Some(Modality::Text),
            _ => None,
        }
    }
}
