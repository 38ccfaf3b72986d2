//! What the model's probabilities say about the mapped classes.
use serde::Serialize;

use super::ClassMapping;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ClassScore {
    pub label: String,
    pub index: i64,
    pub probability: f32,
}

#[derive(Debug, Clone)]
pub struct Prediction {
    /// Every mapped class, most probable first.
    pub ranked: Vec<ClassScore>,
    /// Probability mass on the mapped classes. The softmax runs over all the model's outputs, so a
    /// photo of none of them (a cat for a food mapping) has a small mass here.
    pub mapped_mass: f32,
}

impl Prediction {
    /// `probabilities` is the softmax over the model's whole output row.
    pub fn from_probabilities(probabilities: &[f32], classes: &ClassMapping) -> Self {
        let mut ranked: Vec<ClassScore> = classes
            .entries()
            .iter()
            .map(|c| ClassScore {
                label: c.label.clone(),
                index: c.index,
                probability: probabilities[c.index as usize],
            })
            .collect();
        ranked.sort_by(|a, b| b.probability.total_cmp(&a.probability).then(a.index.cmp(&b.index)));
        let mapped_mass = ranked.iter().map(|c| c.probability).sum();
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

    #[test]
    fn ranks_mapped_classes_and_sums_their_mass() {
        let classes = ClassMapping::parse(r#"{"a": 1, "b": 3, "c": 0}"#, 4).unwrap();
        let p = Prediction::from_probabilities(&[0.1, 0.2, 0.6, 0.1], &classes);
        let labels: Vec<&str> = p.ranked.iter().map(|c| c.label.as_str()).collect();
        assert_eq!(labels, ["a", "c", "b"]);
        assert!((p.mapped_mass - 0.4).abs() < 1e-6);
        assert_eq!(p.best().label, "a");
        assert_eq!(p.top(2).len(), 2);
        assert_eq!(p.top(10).len(), 3);
    }
}
