//! The text side of a model bundle: tokenizer, sentence encoder and the embeddings of the labels.
use std::path::Path;

use tokenizers::{Tokenizer, TruncationParams};

use super::files::hashed;
use super::onnx::OnnxTextModel;
use super::{
    ClassMapping, Device, LoadError, Manifest, ModelFile, ModelFormat, Slot, TextEncoderManifest, ThreadLayout,
};

/// The runtime the encoder is served on, as its manifest's `format` says.
enum Encoder {
    #[cfg(feature = "torch")]
    TorchScript {
        module: tch::CModule,
        device: Device,
    },
    Onnx(OnnxTextModel),
}

pub struct TextModel {
    encoder: Encoder,
    tokenizer: Tokenizer,
    /// One L2-normalised embedding per class, in `ClassMapping::entries` order; computed once per load.
    label_embeddings: Vec<Vec<f32>>,
    pub manifest: TextEncoderManifest,
}

impl TextModel {
    /// Loads tokenizer and encoder and embeds every label. Runs libtorch: call off the async workers.
    pub fn load(
        dir: &Path,
        manifest: &Manifest,
        classes: &ClassMapping,
        device: Device,
        layout: ThreadLayout,
    ) -> Result<(Self, Vec<ModelFile>), LoadError> {
        let tokenizer_path = manifest.tokenizer_path(dir);
        let (tokenizer_file, tokenizer_bytes) = hashed(&tokenizer_path)?;
        let mut tokenizer = Tokenizer::from_bytes(&tokenizer_bytes)
            .map_err(|e| LoadError::new(&tokenizer_path, format!("not a tokenizers JSON file: {e}")))?;
        // One text per request: padding only adds work (14 ms vs 2 ms for a short text).
        tokenizer.with_padding(None);
        let truncation = TruncationParams { max_length: manifest.text_encoder.max_tokens, ..Default::default() };
        tokenizer.with_truncation(Some(truncation)).map_err(|e| LoadError::new(&tokenizer_path, e.to_string()))?;

        let weights_path = manifest.text_weights_path(dir);
        let (weights_file, weights) = hashed(&weights_path)?;
        let encoder = match manifest.text_encoder.format {
            ModelFormat::Onnx => Encoder::Onnx(OnnxTextModel::load(&weights_path, &weights, layout)?),
            #[cfg(feature = "torch")]
            ModelFormat::TorchScript => Encoder::TorchScript {
                module: super::torchscript_ops::check(&weights)
                    .map_err(|reason| LoadError::new(&weights_path, reason))
                    .and_then(|()| {
                        tch::CModule::load_data_on_device(&mut std::io::Cursor::new(weights), device).map_err(|e| {
                            let reason = super::files::first_line(&e);
                            LoadError::new(&weights_path, format!("not a loadable TorchScript module: {reason}"))
                        })
                    })?,
                device,
            },
            // The manifest's check refuses TorchScript in a build without libtorch.
            #[cfg(not(feature = "torch"))]
            ModelFormat::TorchScript => {
                return Err(LoadError::new(&weights_path, "format \"torchscript\" is not served by this build"))
            }
        };
        #[cfg(not(feature = "torch"))]
        let _ = device;

        let mut text =
            Self { encoder, tokenizer, label_embeddings: Vec::new(), manifest: manifest.text_encoder.clone() };
        let invalid = |reason: String| LoadError::new(&weights_path, reason);
        for class in classes.entries() {
            let prompt = text.manifest.label_template.replace("{}", &class.label);
            let ids = text.tokenize(&prompt).map_err(|e| LoadError::new(&tokenizer_path, e))?;
            // On the loader thread: the first inference thread's session.
            let embedding = text
                .embed(&ids, Slot { thread: 0, alone: false })
                .map_err(|e| invalid(format!("encoding the labels failed: {e}")))?;
            if embedding.len() != text.manifest.dim as usize || embedding.iter().any(|x| !x.is_finite()) {
                return Err(invalid(format!(
                    "encoder gives {} values (finite: {}), the manifest says dim = {}",
                    embedding.len(),
                    embedding.iter().all(|x| x.is_finite()),
                    text.manifest.dim
                )));
            }
            text.label_embeddings.push(embedding);
        }
        Ok((text, vec![weights_file, tokenizer_file]))
    }

    /// Token ids with the special tokens, truncated to `max_tokens`.
    pub fn tokenize(&self, text: &str) -> Result<Vec<i64>, String> {
        let encoding = self.tokenizer.encode(text, true).map_err(|e| format!("cannot tokenize: {e}"))?;
        Ok(encoding.get_ids().iter().map(|&id| id as i64).collect())
    }

    /// The sentence embedding of one tokenized text, on `slot`'s session where the encoder is
    /// ONNX. Call with gradients off. The error is the first line of the runtime's message.
    pub fn embed(&self, ids: &[i64], slot: Slot) -> Result<Vec<f32>, String> {
        match &self.encoder {
            #[cfg(feature = "torch")]
            Encoder::TorchScript { module, device } => {
                torchscript_embedding(module, ids, *device).map_err(|e| super::files::first_line(&e))
            }
            Encoder::Onnx(onnx) => onnx.embed(ids, slot).map_err(|e| super::files::first_line(&e)),
        }
    }

    /// The encoder's runtime, as the manifest names it.
    pub fn backend(&self) -> &'static str {
        match self.encoder {
            #[cfg(feature = "torch")]
            Encoder::TorchScript { .. } => "torchscript",
            Encoder::Onnx(_) => "onnx",
        }
    }

    /// Cosine similarity of a text embedding to each label (both sides are L2-normalised).
    pub fn similarities(&self, embedding: &[f32]) -> Vec<f32> {
        self.label_embeddings.iter().map(|label| label.iter().zip(embedding).map(|(a, b)| a * b).sum()).collect()
    }
}

#[cfg(feature = "torch")]
fn torchscript_embedding(module: &tch::CModule, ids: &[i64], device: Device) -> Result<Vec<f32>, tch::TchError> {
    use tch::Tensor;
    let len = ids.len() as i64;
    let input_ids = Tensor::f_from_slice(ids)?.f_view([1, len])?.f_to_device(device)?;
    let attention_mask = Tensor::f_ones([1, len], (tch::Kind::Int64, device))?;
    let embedding = module.forward_ts(&[input_ids, attention_mask])?;
    Vec::<f32>::try_from(&embedding.f_view([-1])?.f_to_device(Device::Cpu)?)
}
