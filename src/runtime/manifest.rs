//! manifest.json: what a model needs from the server, kept beside its weights so that a reload
//! can bring a model with a different input size or normalisation.
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::LoadError;
use crate::preprocess::{InputSpec, Interpolation};

pub const MANIFEST_FILE: &str = "manifest.json";
pub const MAX_INPUT_SIZE: u32 = 1024;
const MAX_RESIZE: u32 = 2048;
/// ImageNet-21k has 21,843 classes: far more is no classifier, and every answer ranks them all.
const MAX_OUTPUTS: i64 = 100_000;

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Manifest {
    pub name: String,
    pub version: String,
    /// The image model's runtime: "torchscript" (libtorch) or "onnx" (ONNX Runtime).
    pub format: ModelFormat,
    /// File name of the weights, inside the model folder.
    pub weights: String,
    /// Width of the model's output (logits) row.
    pub num_outputs: i64,
    pub input_size: u32,
    pub resize_shorter_side: u32,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    /// Decode a JPEG at least twice `resize_shorter_side` at 1/2, 1/4 or 1/8 of its size (its DCT
    /// scaling): several times faster on a phone photo, pixels changed by resampling. Off when
    /// absent, so a manifest written before it keeps its answers; turning it on changes the
    /// manifest's hash, so it is a new version that compare can judge.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub jpeg_dct_scaling: bool,
    /// The resize filter, "bilinear" (when absent: manifests written before it) or "bicubic".
    #[serde(default, skip_serializing_if = "Interpolation::is_bilinear")]
    pub interpolation: Interpolation,
    pub text_encoder: TextEncoderManifest,
}

/// The sentence encoder that turns a request's text into a distribution over the classes.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TextEncoderManifest {
    pub name: String,
    pub version: String,
    /// The encoder's runtime, as for the image model; "torchscript" when absent (manifests written
    /// before the encoder had an ONNX export).
    #[serde(default = "torchscript")]
    pub format: ModelFormat,
    /// (input_ids, attention_mask) int64 [N, L] -> L2-normalised embeddings [N, dim].
    pub weights: String,
    pub tokenizer: String,
    pub dim: i64,
    /// Longer texts are truncated to this many tokens.
    pub max_tokens: usize,
    /// Each label is encoded as this template with `{}` replaced by the label.
    pub label_template: String,
    /// Softmax temperature over text-to-label cosine similarities.
    pub temperature: f32,
}

fn torchscript() -> ModelFormat {
    ModelFormat::TorchScript
}

/// The runtime a model's weights run on; any other value in a manifest is refused when it is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ModelFormat {
    /// TorchScript on libtorch.
    TorchScript,
    /// ONNX on ONNX Runtime.
    Onnx,
}

impl ModelFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TorchScript => "torchscript",
            Self::Onnx => "onnx",
        }
    }
}

impl Manifest {
    /// Parses and checks manifest.json, read from `path`.
    pub fn from_bytes(path: &Path, bytes: &[u8]) -> Result<Self, LoadError> {
        let manifest: Self =
            serde_json::from_slice(bytes).map_err(|e| LoadError::new(path, format!("not a valid manifest: {e}")))?;
        manifest.validate().map_err(|reason| LoadError::new(path, reason))?;
        Ok(manifest)
    }

    fn validate(&self) -> Result<(), String> {
        let text = &self.text_encoder;
        for (what, format) in [("format", self.format), ("text_encoder.format", text.format)] {
            if format == ModelFormat::TorchScript && !cfg!(feature = "torch") {
                return Err(format!(
                    "{what} is \"torchscript\", but this build has no libtorch: it serves ONNX models only"
                ));
            }
        }
        for file in [&self.weights, &text.weights, &text.tokenizer] {
            if Path::new(file).file_name() != Some(file.as_ref()) {
                return Err(format!("{file:?} must be a file name inside the model folder"));
            }
        }
        if !(1..=8192).contains(&text.dim)
            || !(2..=4096).contains(&text.max_tokens)
            || !text.label_template.contains("{}")
        {
            return Err(
                "text_encoder needs 1 <= dim <= 8192, 2 <= max_tokens <= 4096 and a label_template with {}".into()
            );
        }
        if !(text.temperature.is_finite() && text.temperature > 0.0) {
            return Err("text_encoder.temperature must be finite and positive".into());
        }
        if self.num_outputs < 1 {
            return Err("num_outputs must be at least 1".into());
        }
        if self.input_size == 0 || self.resize_shorter_side < self.input_size {
            return Err("need 0 < input_size <= resize_shorter_side".into());
        }
        // Each request's input (4 bytes x 3 x input_size^2) and the pass's activations grow with
        // the square: 8000 took 1.5 GB a request. Classifiers take 224 to 600.
        if self.input_size > MAX_INPUT_SIZE || self.resize_shorter_side > MAX_RESIZE {
            return Err(format!(
                "need input_size <= {MAX_INPUT_SIZE} and resize_shorter_side <= {MAX_RESIZE} (an image classifier takes 224 to 600)"
            ));
        }
        if self.num_outputs > MAX_OUTPUTS {
            return Err(format!("num_outputs must be at most {MAX_OUTPUTS}"));
        }
        if self.std.iter().any(|s| !(s.is_finite() && *s > 0.0)) || self.mean.iter().any(|m| !m.is_finite()) {
            return Err("mean must be finite and std finite and positive".into());
        }
        Ok(())
    }

    pub fn weights_path(&self, dir: &Path) -> PathBuf {
        dir.join(&self.weights)
    }

    pub fn text_weights_path(&self, dir: &Path) -> PathBuf {
        dir.join(&self.text_encoder.weights)
    }

    pub fn tokenizer_path(&self, dir: &Path) -> PathBuf {
        dir.join(&self.text_encoder.tokenizer)
    }

    pub fn input_spec(&self) -> InputSpec {
        InputSpec {
            input_size: self.input_size,
            resize_shorter_side: self.resize_shorter_side,
            mean: self.mean,
            std: self.std,
            jpeg_dct_scaling: self.jpeg_dct_scaling,
            interpolation: self.interpolation,
        }
    }
}
