//! What a prediction answers, and its encoding in the shared cache: a format byte, then postcard
//! (compact, serde's). Replicas of another build that read an entry of another format treat it as
//! a miss, never as an answer; the key (`food:v1:`) also names the format's generation.
use serde::{Deserialize, Serialize};

use crate::model::{ClassScore, Prediction};

/// A cached answer: everything in it depends only on (image, text, model).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    pub combined: Prediction,
    /// The image's own best class, before the text had its say.
    pub image: ClassScore,
    pub text_match: Option<TextMatch>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TextMatch {
    pub label: String,
    /// Cosine similarity of the text to the label's prompt.
    pub similarity: f32,
    /// The text's own probability for this label (softmax over similarities / temperature).
    pub probability: f32,
}

/// Bumped whenever `Answer`'s fields change.
const FORMAT: u8 = 1;

impl Answer {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![FORMAT];
        // Serializing owned, finite data into a Vec cannot fail.
        out.extend(postcard::to_stdvec(self).unwrap_or_default());
        out
    }

    /// None for another format or damaged bytes; `classes` is how many classes the model maps,
    /// which a right answer ranks all of.
    pub fn decode(bytes: &[u8], classes: usize) -> Option<Self> {
        let (&format, body) = bytes.split_first()?;
        if format != FORMAT {
            return None;
        }
        let answer: Self = postcard::from_bytes(body).ok()?;
        (answer.combined.ranked.len() == classes).then_some(answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer() -> Answer {
        let score = |label: &str, index, probability| ClassScore { label: label.into(), index, probability };
        Answer {
            combined: Prediction { ranked: vec![score("ramen", 3, 0.7), score("pizza", 1, 0.2)], mapped_mass: 0.9 },
            image: score("pizza", 1, 0.5),
            text_match: Some(TextMatch { label: "ramen".into(), similarity: 0.4, probability: 0.8 }),
        }
    }

    #[test]
    fn an_answer_survives_the_round_trip_and_a_foreign_entry_is_a_miss() {
        let bytes = answer().encode();
        assert_eq!(Answer::decode(&bytes, 2), Some(answer()));
        assert_eq!(Answer::decode(&bytes, 3), None, "another class count: not this model's answer");
        let mut other = bytes.clone();
        other[0] = FORMAT + 1;
        assert_eq!(Answer::decode(&other, 2), None, "another format");
        assert_eq!(Answer::decode(&bytes[..bytes.len() / 2], 2), None, "cut short");
        assert_eq!(Answer::decode(&[], 2), None);
    }
}
