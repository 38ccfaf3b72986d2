//! From model outputs to an answer over the mapped classes, and how a text changes it.
//!
//! Per-class vectors here are in `ClassMapping::entries` order.
use serde::{Deserialize, Serialize};

use super::ClassMapping;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct ClassScore {
    pub label: String,
    pub index: i64,
    pub probability: f32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// Every mapped class, most probable first.
    pub ranked: Vec<ClassScore>,
    /// Probability mass on the mapped classes. The softmax runs over all the model's outputs, so a
    /// photo of none of them (a cat for a food mapping) has a small mass here.
    pub mapped_mass: f32,
}

/// The mapped classes' share of a softmax over all of the model's outputs.
pub fn class_probabilities(all_outputs: &[f32], classes: &ClassMapping) -> Vec<f32> {
    classes.entries().iter().map(|c| all_outputs[c.index as usize]).collect()
}

pub fn softmax(logits: &[f32], temperature: f32) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f32> = logits.iter().map(|x| ((x - max) / temperature).exp()).collect();
    let sum: f32 = exp.iter().sum();
    exp.into_iter().map(|e| e / sum).collect()
}

/// The image's distribution weighted by the text's: p(c) ∝ p_image(c) · p_text(c)^weight,
/// renormalised to the image's mass on the mapped classes. Weight 0 gives the image's answer; the
/// text's best class never loses probability, since its factor is the largest.
pub fn combine(image: &[f32], text: &[f32], weight: f32) -> Vec<f32> {
    let weighted: Vec<f32> = image.iter().zip(text).map(|(i, t)| i * t.powf(weight)).collect();
    let (mass, total) = (image.iter().sum::<f32>(), weighted.iter().sum::<f32>());
    if !(total > 0.0 && total.is_finite()) {
        // The text's factors underflowed everywhere the image has mass: keep the image's answer.
        return image.to_vec();
    }
    weighted.into_iter().map(|w| w / total * mass).collect()
}

impl Prediction {
    pub fn rank(per_class: &[f32], classes: &ClassMapping) -> Self {
        let mut ranked: Vec<ClassScore> = classes
            .entries()
            .iter()
            .zip(per_class)
            .map(|(c, p)| ClassScore { label: c.label.clone(), index: c.index, probability: *p })
            .collect();
        ranked.sort_by(|a, b| b.probability.total_cmp(&a.probability).then(a.index.cmp(&b.index)));
        let mapped_mass = per_class.iter().sum();
        Self { ranked, mapped_mass }
    }

    pub fn best(&self) -> &ClassScore {
        &self.ranked[0]
    }

    pub fn top(&self, k: usize) -> &[ClassScore] {
        &self.ranked[..k.min(self.ranked.len())]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classes() -> ClassMapping {
        ClassMapping::parse(r#"{"a": 1, "b": 3, "c": 0}"#, 4).unwrap()
    }

    #[test]
    fn ranks_mapped_classes_and_sums_their_mass() {
        let per_class = class_probabilities(&[0.1, 0.2, 0.6, 0.1], &classes());
        assert_eq!(per_class, [0.1, 0.2, 0.1], "entries are in index order: c, a, b");
        let p = Prediction::rank(&per_class, &classes());
        let labels: Vec<&str> = p.ranked.iter().map(|c| c.label.as_str()).collect();
        assert_eq!(labels, ["a", "c", "b"]);
        assert!((p.mapped_mass - 0.4).abs() < 1e-6);
        assert_eq!(p.top(2).len(), 2);
        assert_eq!(p.top(10).len(), 3);
    }

    #[test]
    fn weight_zero_keeps_the_image_answer() {
        let image = [0.5, 0.3, 0.1];
        assert_eq!(combine(&image, &[0.1, 0.1, 0.8], 0.0), image);
    }

    #[test]
    fn the_text_best_class_never_loses_probability_and_mass_is_kept() {
        let image = [0.6, 0.3, 0.05];
        for text in [[0.1, 0.2, 0.7], [0.34, 0.33, 0.33], [0.0, 1.0, 0.0]] {
            for weight in [0.5, 1.0, 3.0] {
                let combined = combine(&image, &text, weight);
                let best = (0..3).max_by(|&a, &b| text[a].total_cmp(&text[b])).unwrap();
                assert!(combined[best] >= image[best] - 1e-6, "{text:?} w{weight}: {combined:?}");
                assert!((combined.iter().sum::<f32>() - 0.95).abs() < 1e-5);
            }
        }
    }

    #[test]
    fn softmax_with_a_temperature_sharpens() {
        let flat = softmax(&[0.5, 0.4], 1.0);
        let sharp = softmax(&[0.5, 0.4], 0.1);
        assert!(sharp[0] > flat[0] && (sharp.iter().sum::<f32>() - 1.0).abs() < 1e-6);
    }
}
