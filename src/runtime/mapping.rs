//! class_mapping.json: the labels the API serves and the model output each one reads.
use std::collections::HashSet;
use std::path::Path;

use serde::Serialize;

use super::LoadError;

#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct ClassEntry {
    pub label: String,
    pub index: i64,
}

/// Labels and output indices, unique and inside the model's output width, sorted by index.
#[derive(Debug, Clone)]
pub struct ClassMapping(Vec<ClassEntry>);

impl ClassMapping {
    /// Parses and checks class_mapping.json, read from `path`.
    pub fn from_bytes(path: &Path, bytes: &[u8], num_outputs: i64) -> Result<Self, LoadError> {
        let text = std::str::from_utf8(bytes).map_err(|_| LoadError::new(path, "is not UTF-8 text"))?;
        Self::parse(text, num_outputs).map_err(|reason| LoadError::new(path, reason))
    }

    pub fn parse(json: &str, num_outputs: i64) -> Result<Self, String> {
        // serde_json keeps the last of duplicate keys silently; count them through a Vec instead.
        let pairs: Vec<(String, i64)> = serde_json::from_str::<DuplicateCheckingMap>(json)
            .map_err(|e| format!("expected a JSON object of label -> output index: {e}"))?
            .0;
        if pairs.is_empty() {
            return Err("maps no classes".into());
        }
        let mut labels = HashSet::new();
        let mut indices = HashSet::new();
        for (label, index) in &pairs {
            if label.trim().is_empty() {
                return Err("has an empty label".into());
            }
            if !labels.insert(label.as_str()) {
                return Err(format!("label {label:?} appears twice"));
            }
            if !(0..num_outputs).contains(index) {
                return Err(format!(
                    "label {label:?} maps to index {index}, outside the model's {num_outputs} outputs"
                ));
            }
            if !indices.insert(*index) {
                return Err(format!("index {index} is mapped twice (again by {label:?})"));
            }
        }
        let mut entries: Vec<ClassEntry> =
            pairs.into_iter().map(|(label, index)| ClassEntry { label, index }).collect();
        entries.sort_by_key(|e| e.index);
        Ok(Self(entries))
    }

    pub fn entries(&self) -> &[ClassEntry] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A JSON object read as its list of entries, duplicates included.
struct DuplicateCheckingMap(Vec<(String, i64)>);

impl<'de> serde::Deserialize<'de> for DuplicateCheckingMap {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = DuplicateCheckingMap;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object of label -> integer index")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut pairs = Vec::new();
                while let Some(pair) = map.next_entry::<String, i64>()? {
                    pairs.push(pair);
                }
                Ok(DuplicateCheckingMap(pairs))
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_mapping_is_sorted_by_index() {
        let m = ClassMapping::parse(r#"{"pizza": 963, "espresso": 967, "plate": 923}"#, 1000).unwrap();
        let indices: Vec<i64> = m.entries().iter().map(|e| e.index).collect();
        assert_eq!(indices, vec![923, 963, 967]);
    }

    #[test]
    fn an_index_outside_the_output_width_is_refused() {
        let err = ClassMapping::parse(r#"{"pizza": 1000}"#, 1000).unwrap_err();
        assert!(err.contains("outside the model's 1000 outputs"), "{err}");
        assert!(ClassMapping::parse(r#"{"pizza": -1}"#, 1000).is_err());
    }

    #[test]
    fn a_duplicate_index_is_refused() {
        let err = ClassMapping::parse(r#"{"pizza": 963, "pie": 963}"#, 1000).unwrap_err();
        assert!(err.contains("index 963 is mapped twice"), "{err}");
    }

    #[test]
    fn a_duplicate_label_is_refused() {
        let err = ClassMapping::parse(r#"{"pizza": 963, "pizza": 964}"#, 1000).unwrap_err();
        assert!(err.contains("appears twice"), "{err}");
    }

    #[test]
    fn an_empty_or_malformed_mapping_is_refused() {
        assert!(ClassMapping::parse("{}", 1000).is_err());
        assert!(ClassMapping::parse(r#"["pizza"]"#, 1000).is_err());
        assert!(ClassMapping::parse(r#"{"pizza": "963"}"#, 1000).is_err());
        assert!(ClassMapping::parse(r#"{"": 3}"#, 1000).is_err());
    }
}
