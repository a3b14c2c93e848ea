//! CLIP's byte-level BPE (through `instant-clip-tokenizer`) with a truncatable vocabulary,
//! start/end tokens, truncation that keeps the end token, and padding with an attention mask.
//!
//! Token ids: 0..512 are the 256 bytes and their end-of-word forms, then one id per merge rule
//! in CLIP's order, then `<start_of_text>` = `vocab_size - 2` and `<end_of_text>` =
//! `vocab_size - 1`. A vocabulary of `v` ids keeps CLIP's first `v - 514` merges, so every id is
//! below `v`; with the full 49408 the ids are CLIP's own.

use std::io::Cursor;

use anyhow::{Context, bail};
use instant_clip_tokenizer::Token;

/// CLIP's merge rules (the first 48894 lines after the header of OpenAI's
/// `bpe_simple_vocab_16e6.txt`, MIT licence), zstd-compressed.
const MERGES: &[u8] = include_bytes!("../assets/clip-bpe-merges.txt.zst");

/// The smallest vocabulary (512 byte tokens, start, end) and CLIP's full one, defined where
/// validation checks `model.vocab_size` against them.
pub use limoe_core::spec::{CLIP_VOCAB_SIZE, MIN_VOCAB_SIZE};

/// A CLIP tokenizer for a fixed vocabulary size and sequence length.
pub struct Tokenizer {
    inner: instant_clip_tokenizer::Tokenizer,
    vocab_size: usize,
    max_len: usize,
}

impl Tokenizer {
    /// A tokenizer with the first `vocab_size` ids of CLIP's vocabulary (514 to 49408; the
    /// spec's `model.vocab_size`) whose sequences are `max_len` long (at least 2: start and
    /// end; the spec's `model.text_length`).
    pub fn new(vocab_size: usize, max_len: usize) -> anyhow::Result<Tokenizer> {
        if !(MIN_VOCAB_SIZE..=CLIP_VOCAB_SIZE).contains(&vocab_size) {
            bail!(
                "vocab_size {vocab_size} does not fit CLIP's BPE: it needs at least \
                 {MIN_VOCAB_SIZE} ids (512 byte tokens, start and end) and has at most \
                 {CLIP_VOCAB_SIZE}; set model.vocab_size in that range"
            );
        }
        if max_len < 2 {
            bail!(
                "text length {max_len} leaves no room for the start and end tokens; \
                 set model.text_length to at least 2"
            );
        }
        let text = zstd::stream::decode_all(MERGES).context("the bundled CLIP merges")?;
        // The range check above keeps vocab_size within u16.
        let inner = instant_clip_tokenizer::Tokenizer::with_vocabulary(
            Cursor::new(text),
            vocab_size as u16,
        )
        .context("the bundled CLIP merges")?;
        Ok(Tokenizer {
            inner,
            vocab_size,
            max_len,
        })
    }

    /// Ids of the vocabulary: every id is below this.
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// Length of every encoded sequence.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// `<start_of_text>`.
    pub fn start(&self) -> u32 {
        self.inner.start_of_text().to_u16().into()
    }

    /// `<end_of_text>`.
    pub fn end(&self) -> u32 {
        self.inner.end_of_text().to_u16().into()
    }

    /// Encodes `text` (lowercased by CLIP's rules) into `ids` and `mask`, both `max_len` long:
    /// start, at most `max_len - 2` text tokens (the rest is cut), end, then padding with id 0
    /// and mask 0 (mask 1 on the start, text and end tokens). Returns the unpadded length.
    ///
    /// # Panics
    /// When `ids` or `mask` is not `max_len` long (a caller's bug, not bad input).
    pub fn encode_into(&self, text: &str, ids: &mut [u32], mask: &mut [u8]) -> usize {
        assert_eq!(ids.len(), self.max_len, "ids buffer length");
        assert_eq!(mask.len(), self.max_len, "mask buffer length");
        let mut tokens: Vec<Token> = Vec::new();
        self.inner.encode(text, &mut tokens);
        let kept = tokens.len().min(self.max_len - 2);
        ids.fill(0);
        mask.fill(0);
        ids[0] = self.start();
        for (slot, token) in ids[1..].iter_mut().zip(&tokens[..kept]) {
            *slot = token.to_u16().into();
        }
        ids[kept + 1] = self.end();
        mask[..kept + 2].fill(1);
        kept + 2
    }

    /// The text of token `id` (`<start_of_text>`, `<end_of_text>`, or its bytes, the end of a
    /// word as a trailing space), or `<id>` for an id outside the vocabulary.
    pub fn token_text(&self, id: u32) -> String {
        let token = u16::try_from(id)
            .ok()
            .filter(|&id| usize::from(id) < self.vocab_size)
            .and_then(|id| Token::from_u16(id, &self.inner));
        match token {
            Some(token) => self.inner.decode([token]),
            None => format!("<{id}>"),
        }
    }

    /// `text` encoded as [`Tokenizer::encode_into`] does: (ids, mask).
    pub fn encode(&self, text: &str) -> (Vec<u32>, Vec<u8>) {
        let mut ids = vec![0; self.max_len];
        let mut mask = vec![0; self.max_len];
        self.encode_into(text, &mut ids, &mut mask);
        (ids, mask)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_clip_ids_with_the_full_vocabulary() {
        let t = Tokenizer::new(CLIP_VOCAB_SIZE, 10).unwrap();
        let (ids, mask) = t.encode("a photo of a cat.");
        assert_eq!(
            ids,
            [49406, 320, 1125, 539, 320, 2368, 269, 49407, 0, 0],
            "CLIP's ids, padded"
        );
        assert_eq!(mask, [1, 1, 1, 1, 1, 1, 1, 1, 0, 0]);
        assert_eq!((t.start(), t.end()), (49406, 49407));
        // Lowercased like CLIP.
        assert_eq!(t.encode("A Photo of a CAT.").0, ids);
    }

    #[test]
    fn token_texts_spell_the_caption() {
        let t = Tokenizer::new(CLIP_VOCAB_SIZE, 10).unwrap();
        let (ids, mask) = t.encode("a photo of a cat.");
        let texts: Vec<String> = (ids.iter().zip(&mask))
            .filter(|(_, m)| **m != 0)
            .map(|(&id, _)| t.token_text(id))
            .collect();
        assert_eq!(
            texts.concat(),
            "<start_of_text>a photo of a cat . <end_of_text>"
        );
        assert_eq!(t.token_text(CLIP_VOCAB_SIZE as u32), "<49408>");
        let small = Tokenizer::new(MIN_VOCAB_SIZE, 10).unwrap();
        assert_eq!(small.token_text(600), "<600>");
    }

    #[test]
    fn truncation_keeps_start_and_end() {
        let t = Tokenizer::new(CLIP_VOCAB_SIZE, 5).unwrap();
        let (ids, mask) = t.encode("a photo of a cat.");
        assert_eq!(ids, [49406, 320, 1125, 539, 49407]);
        assert_eq!(mask, [1; 5]);
        let t = Tokenizer::new(CLIP_VOCAB_SIZE, 2).unwrap();
        assert_eq!(t.encode("anything").0, [49406, 49407]);
        assert_eq!(t.encode("").0, [49406, 49407]);
    }

    #[test]
    fn truncated_vocabularies_keep_ids_below_their_size() {
        let text = "a large red circle left of a small blue square; Zürich 1234 🙂 photosynthesis";
        for vocab in [MIN_VOCAB_SIZE, 1000, 4096, 8192] {
            let t = Tokenizer::new(vocab, 128).unwrap();
            let (ids, mask) = t.encode(text);
            let len = mask.iter().filter(|&&m| m == 1).count();
            assert!(len > 2 && len < 128, "{vocab}: {len}");
            assert!(
                ids.iter().all(|&id| (id as usize) < vocab),
                "{vocab}: {ids:?}"
            );
            assert_eq!((t.start(), t.end()), (vocab as u32 - 2, vocab as u32 - 1));
            assert_eq!(ids[len - 1], t.end());
        }
        // Fewer merges, longer sequences; common words stay whole in 8192.
        let small = Tokenizer::new(MIN_VOCAB_SIZE, 128).unwrap();
        let full = Tokenizer::new(CLIP_VOCAB_SIZE, 128).unwrap();
        let count = |t: &Tokenizer| t.encode(text).1.iter().filter(|&&m| m == 1).count();
        assert!(count(&small) > count(&full));
        let t8k = Tokenizer::new(8192, 8).unwrap();
        assert_eq!(
            &t8k.encode("a photo of a cat.").0[1..7],
            [320, 1125, 539, 320, 2368, 269]
        );
    }

    #[test]
    fn impossible_sizes_are_errors() {
        for (vocab, len) in [(513, 16), (49409, 16), (0, 16), (4096, 1)] {
            let err = Tokenizer::new(vocab, len).err().unwrap().to_string();
            assert!(err.contains("model."), "{err}");
        }
    }
}
