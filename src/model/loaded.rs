//! A model folder turned into a validated, warmed-up TorchScript module.
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Instant, SystemTime};

use serde::Serialize;
use sha2::{Digest, Sha256};
use tch::{CModule, Device, Kind, Tensor};

use super::text::TextModel;
use super::{ClassMapping, LoadError, Manifest, MANIFEST_FILE};

/// Where a model comes from; read again on every reload.
#[derive(Debug, Clone)]
pub struct ModelPaths {
    pub model_dir: PathBuf,
    pub class_mapping: PathBuf,
}

#[derive(Debug, Clone, Serialize)]
pub struct ModelFile {
    pub path: PathBuf,
    pub bytes: usize,
    pub sha256: String,
}

/// What the inference thread is asked to run.
pub enum Work {
    /// A preprocessed image (CHW, `input_size` square): softmax over all outputs comes back.
    Image(Vec<f32>),
    /// A tokenized text: its sentence embedding comes back.
    Text(Vec<i64>),
}

/// The image model and the text encoder that come and go together.
pub struct LoadedModel {
    module: CModule,
    pub text: TextModel,
    pub manifest: Manifest,
    pub classes: ClassMapping,
    /// 1 for the model loaded at start, one more for each successful reload.
    pub generation: u64,
    pub device: Device,
    pub files: Vec<ModelFile>,
    pub loaded_at: SystemTime,
    pub load_ms: f64,
    _alive: Alive,
}

/// Models in memory: the serving one plus any that requests still hold after a reload.
static MODELS_ALIVE: AtomicUsize = AtomicUsize::new(0);

pub fn models_alive() -> usize {
    MODELS_ALIVE.load(Ordering::Relaxed)
}

/// Counts a model in `MODELS_ALIVE`.
struct Alive;

impl Alive {
    fn new() -> Self {
        MODELS_ALIVE.fetch_add(1, Ordering::Relaxed);
        Self
    }
}

impl Drop for Alive {
    fn drop(&mut self) {
        MODELS_ALIVE.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The first calls of a TorchScript module are slow while its profiling executor settles.
const WARMUP_RUNS: usize = 3;

impl LoadedModel {
    /// Loads, validates and warms up. Runs libtorch: call it off the async workers.
    pub fn load(paths: &ModelPaths, device: Device, generation: u64) -> Result<Self, LoadError> {
        let started = Instant::now();
        let _no_grad = tch::no_grad_guard();
        // Every file is read once and parsed from the bytes that were hashed, so the reported
        // hashes are those of what is served.
        let manifest_path = paths.model_dir.join(MANIFEST_FILE);
        let (manifest_file, bytes) = hashed(&manifest_path)?;
        let manifest = Manifest::from_bytes(&manifest_path, &bytes)?;
        let (mapping_file, bytes) = hashed(&paths.class_mapping)?;
        let classes = ClassMapping::from_bytes(&paths.class_mapping, &bytes, manifest.num_outputs)?;

        let weights_path = manifest.weights_path(&paths.model_dir);
        let (weights_file, weights) = hashed(&weights_path)?;
        let module = CModule::load_data_on_device(&mut Cursor::new(weights), device)
            .map_err(|e| LoadError::new(&weights_path, format!("not a loadable TorchScript module: {}", first_line(&e))))?;

        let (text, text_files) = TextModel::load(&paths.model_dir, &manifest, &classes, device)?;
        let mut files = vec![manifest_file, weights_file, mapping_file];
        files.extend(text_files);
        let mut model = Self {
            module,
            text,
            manifest,
            classes,
            generation,
            device,
            files,
            loaded_at: SystemTime::now(),
            load_ms: 0.0,
            _alive: Alive::new(),
        };
        model.warm_up().map_err(|reason| LoadError::new(&weights_path, reason))?;
        model.load_ms = started.elapsed().as_secs_f64() * 1e3;
        Ok(model)
    }

    /// Runs a synthetic image through the model and checks the output's shape and values.
    fn warm_up(&self) -> Result<(), String> {
        let size = self.manifest.input_size as usize;
        let input: Vec<f32> = (0..3 * size * size).map(|i| ((i % 251) as f32 / 125.0) - 1.0).collect();
        for _ in 0..WARMUP_RUNS {
            let probabilities = self.forward(&input).map_err(|e| format!("warm-up forward failed: {}", first_line(&e)))?;
            if probabilities.len() != self.manifest.num_outputs as usize {
                return Err(format!(
                    "model gives {} outputs, the manifest says num_outputs = {}",
                    probabilities.len(),
                    self.manifest.num_outputs
                ));
            }
            if probabilities.iter().any(|p| !p.is_finite()) {
                return Err("warm-up forward gave non-finite numbers".into());
            }
        }
        Ok(())
    }

    /// Call with gradients off (`tch::no_grad_guard`): the inference thread holds one.
    pub fn run(&self, work: &Work) -> Result<Vec<f32>, tch::TchError> {
        match work {
            Work::Image(chw) => self.forward(chw),
            Work::Text(ids) => self.text.embed(ids),
        }
    }

    /// One preprocessed image (CHW, `input_size` square) in, softmax over all outputs out.
    fn forward(&self, chw: &[f32]) -> Result<Vec<f32>, tch::TchError> {
        let size = self.manifest.input_size as i64;
        let input = Tensor::f_from_slice(chw)?.f_view([1, 3, size, size])?.f_to_device(self.device)?;
        let logits = self.module.forward_ts(&[input])?;
        if logits.dim() != 2 || logits.size()[0] != 1 {
            return Err(tch::TchError::Shape(format!("expected logits [1, N], got {:?}", logits.size())));
        }
        let probabilities = logits.f_softmax(-1, Kind::Float)?.f_view([-1])?.f_to_device(Device::Cpu)?;
        Vec::<f32>::try_from(&probabilities)
    }
}

pub(super) fn hashed(path: &Path) -> Result<(ModelFile, Vec<u8>), LoadError> {
    let bytes = std::fs::read(path).map_err(|e| LoadError::io(path, e))?;
    let file = ModelFile { path: path.to_path_buf(), bytes: bytes.len(), sha256: hex::encode(Sha256::digest(&bytes)) };
    Ok((file, bytes))
}

/// libtorch errors carry a C++ backtrace after the first line; clients and logs need the first.
pub(super) fn first_line(e: &tch::TchError) -> String {
    e.to_string().lines().next().unwrap_or_default().to_string()
}
