//! What a prediction answers, and its encoding in the shared cache: a format byte, then postcard
//! (compact, serde's). Replicas of another build that read an entry of another format treat it as
//! a miss, never as an answer; the key (`food:v2:`) also names the format's generation.
use serde::{Deserialize, Serialize};

use crate::runtime::{ClassMapping, ClassScore, Prediction};

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

    /// None for another format, damaged bytes, or an answer that is not over `classes`, the
    /// version's mapping: every class ranked once, with its own label and a probability.
    pub fn decode(bytes: &[u8], classes: &ClassMapping) -> Option<Self> {
        let (&format, body) = bytes.split_first()?;
        if format != FORMAT {
            return None;
        }
        let answer: Self = postcard::from_bytes(body).ok()?;
        answer.is_over(classes).then_some(answer)
    }

    fn is_over(&self, classes: &ClassMapping) -> bool {
        let entries = classes.entries();
        // Entries are sorted by index, each index once.
        let mapped = |score: &ClassScore| {
            (0.0..=1.0).contains(&score.probability)
                && entries
                    .binary_search_by_key(&score.index, |e| e.index)
                    .is_ok_and(|i| entries[i].label == score.label)
        };
        let mut seen = std::collections::HashSet::with_capacity(entries.len());
        let ranked = &self.combined.ranked;
        ranked.len() == entries.len()
            && ranked.iter().all(|score| mapped(score) && seen.insert(score.index))
            && mapped(&self.image)
            && self.text_match.as_ref().is_none_or(|t| entries.iter().any(|e| e.label == t.label))
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
        let classes = ClassMapping::parse(r#"{"pizza": 1, "ramen": 3}"#, 5).unwrap();
        let bytes = answer().encode();
        assert_eq!(Answer::decode(&bytes, &classes), Some(answer()));
        let three = ClassMapping::parse(r#"{"pizza": 1, "ramen": 3, "sushi": 4}"#, 5).unwrap();
        assert_eq!(Answer::decode(&bytes, &three), None, "another class count: not this model's answer");
        let renamed = ClassMapping::parse(r#"{"pizza": 1, "soup": 3}"#, 5).unwrap();
        assert_eq!(Answer::decode(&bytes, &renamed), None, "a label this version does not have");
        let mut forged = answer();
        forged.combined.ranked[0].index = 1;
        assert_eq!(Answer::decode(&forged.encode(), &classes), None, "a class ranked twice");
        let mut forged = answer();
        forged.image.label = "ramen".into();
        assert_eq!(Answer::decode(&forged.encode(), &classes), None, "a label on another class's index");
        let mut other = bytes.clone();
        other[0] = FORMAT + 1;
        assert_eq!(Answer::decode(&other, &classes), None, "another format");
        assert_eq!(Answer::decode(&bytes[..bytes.len() / 2], &classes), None, "cut short");
        assert_eq!(Answer::decode(&[], &classes), None);
    }
}
