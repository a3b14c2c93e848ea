//! Dotted key paths into a spec: `model.moe.experts`, `stages[2].needs[0]`.

use std::fmt;
use std::str::FromStr;

/// One step of a path.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Segment {
    /// A mapping key.
    Key(String),
    /// A list index.
    Index(usize),
}

/// A path from the root of a spec to one value.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyPath(Vec<Segment>);

impl KeyPath {
    /// The empty path (the document itself).
    pub fn root() -> KeyPath {
        KeyPath(Vec::new())
    }

    /// The steps of the path.
    pub fn segments(&self) -> &[Segment] {
        &self.0
    }

    /// This path extended by one step.
    pub fn join(&self, segment: Segment) -> KeyPath {
        let mut segments = self.0.clone();
        segments.push(segment);
        KeyPath(segments)
    }

    /// This path extended by a mapping key.
    pub fn key(&self, key: &str) -> KeyPath {
        self.join(Segment::Key(key.to_owned()))
    }

    /// This path extended by a list index.
    pub fn index(&self, index: usize) -> KeyPath {
        self.join(Segment::Index(index))
    }

    /// This path followed by `tail`.
    pub fn concat(&self, tail: &KeyPath) -> KeyPath {
        let mut segments = self.0.clone();
        segments.extend(tail.0.iter().cloned());
        KeyPath(segments)
    }

    /// True when `self` is `other` or one of its ancestors.
    pub fn is_prefix_of(&self, other: &KeyPath) -> bool {
        other.0.starts_with(&self.0)
    }

    /// The path itself when it is a top-level key, else its parent: the values whose checks
    /// involve this one.
    pub fn neighbourhood(&self) -> KeyPath {
        match self.0.len() {
            0 | 1 => self.clone(),
            n => KeyPath(self.0[..n - 1].to_vec()),
        }
    }

    /// True for the empty path.
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("(top level)");
        }
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Segment::Key(k) if i == 0 => write!(f, "{k}")?,
                Segment::Key(k) => write!(f, ".{k}")?,
                Segment::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

impl FromStr for KeyPath {
    type Err = String;

    /// Parses `a.b.c`, `a.0.b` and `a[0].b` (a numeric step is a list index).
    fn from_str(text: &str) -> Result<KeyPath, String> {
        let mut segments = Vec::new();
        for part in text.split('.') {
            let (name, indices) = match part.find('[') {
                Some(at) => part.split_at(at),
                None => (part, ""),
            };
            if name.is_empty() && indices.is_empty() {
                return Err(format!("`{text}` has an empty step; write keys as `a.b.c`"));
            }
            if !name.is_empty() {
                segments.push(match name.parse::<usize>() {
                    Ok(n) => Segment::Index(n),
                    Err(_) => Segment::Key(name.to_owned()),
                });
            }
            let mut rest = indices;
            while !rest.is_empty() {
                let close = rest
                    .find(']')
                    .ok_or_else(|| format!("`{text}` has an unclosed `[`"))?;
                let index = rest[1..close]
                    .parse::<usize>()
                    .map_err(|_| format!("`{text}`: `{}` is not a list index", &rest[..=close]))?;
                segments.push(Segment::Index(index));
                rest = &rest[close + 1..];
                if !rest.is_empty() && !rest.starts_with('[') {
                    return Err(format!("`{text}`: expected `.` or `[` after `]`"));
                }
            }
        }
        Ok(KeyPath(segments))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_displays() {
        let p: KeyPath = "stages[2].needs.0".parse().unwrap();
        assert_eq!(
            p.segments(),
            &[
                Segment::Key("stages".into()),
                Segment::Index(2),
                Segment::Key("needs".into()),
                Segment::Index(0)
            ]
        );
        assert_eq!(p.to_string(), "stages[2].needs[0]");
        assert!("a..b".parse::<KeyPath>().is_err());
        assert!("a[x]".parse::<KeyPath>().is_err());
        assert!("a[1".parse::<KeyPath>().is_err());
    }
}
