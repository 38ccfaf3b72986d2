//! A model folder turned into a validated, warmed-up image model (TorchScript on libtorch, or ONNX
//! on ONNX Runtime, as the manifest's `format` says) and text encoder.
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Instant, SystemTime};

use super::files::{first_line, hashed, ModelFile};
use super::onnx::{OnnxImageModel, Slot};
use super::prediction::softmax;
use super::stats::VersionStats;
use super::text::TextModel;
use super::{
    no_grad, set_torch_threads, ClassMapping, Device, Fingerprint, InferError, LoadError, Manifest, ModelFormat,
    ModelId, ThreadLayout, MANIFEST_FILE,
};

/// Where a model comes from; read again on every reload.
#[derive(Debug, Clone)]
pub struct ModelPaths {
    pub model_dir: PathBuf,
    pub class_mapping: PathBuf,
}

/// What the inference thread is asked to run.
pub enum Work {
    /// A preprocessed image (CHW, `input_size` square): softmax over all outputs comes back.
    Image(Vec<f32>),
    /// A tokenized text: its sentence embedding comes back.
    Text(Vec<i64>),
}

/// The runtime the image model is served on.
enum ImageModel {
    #[cfg(feature = "torch")]
    TorchScript(TorchScriptModel),
    Onnx(OnnxImageModel),
}

/// A TorchScript image model: once for passes that share the cores and, where oneDNN Graph fuses
/// it and a lone request gets more threads, once more for that lone request. A fused graph keeps
/// the thread count it was compiled under (its kernels ask OpenMP for that many threads whatever
/// the caller's count later is: measured, CPU time per pass), so one compiled under the shared
/// count would leave a lone request's other cores idle, and one compiled under all cores would
/// oversubscribe them under load. The same bytes, loaded twice: RSS 359 -> 404 MB (BENCHMARKS.md).
#[cfg(feature = "torch")]
struct TorchScriptModel {
    shared: tch::CModule,
    alone: Option<tch::CModule>,
}

#[cfg(feature = "torch")]
impl TorchScriptModel {
    fn load(bytes: &[u8], device: Device, layout: ThreadLayout) -> Result<Self, tch::TchError> {
        let load = || tch::CModule::load_data_on_device(&mut std::io::Cursor::new(bytes), device);
        let shared = load()?;
        let twice = super::onednn_fusion().0 && device == Device::Cpu && layout.torch.alone != layout.torch.shared;
        Ok(Self { shared, alone: if twice { Some(load()?) } else { None } })
    }

    fn for_slot(&self, slot: Slot) -> &tch::CModule {
        match &self.alone {
            Some(alone) if slot.alone => alone,
            _ => &self.shared,
        }
    }

    fn slots(&self) -> Vec<Slot> {
        let shared = Slot { thread: 0, alone: false };
        if self.alone.is_some() {
            vec![shared, Slot { thread: 0, alone: true }]
        } else {
            vec![shared]
        }
    }
}

/// The image model and the text encoder that come and go together.
pub struct LoadedModel {
    image: ImageModel,
    pub text: TextModel,
    pub manifest: Manifest,
    pub classes: ClassMapping,
    /// What this model is: its manifest's name and version and its files' fingerprint.
    pub id: ModelId,
    /// 1 for the model loaded at start, one more for each successful reload: for display only
    /// (identity, and so caching, is `id`).
    pub generation: u64,
    pub device: Device,
    pub files: Vec<ModelFile>,
    pub loaded_at: SystemTime,
    pub load_ms: f64,
    /// Whether a lone request's forward pass is faster on every core than on one core's share,
    /// timed at load: it is on some CPUs and not on others (BENCHMARKS.md), so it is measured.
    pub alone_pays: bool,
    /// Requests and management actions against this version.
    pub stats: VersionStats,
    /// When a request last resolved to this model (ms on the process clock): the least recently
    /// used unaliased version is unloaded first.
    last_used_ms: AtomicU64,
    _alive: Alive,
}

/// The process clock that `last_used_ms` counts on.
fn process_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
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
    pub fn load(paths: &ModelPaths, device: Device, layout: ThreadLayout, generation: u64) -> Result<Self, LoadError> {
        let started = Instant::now();
        let _no_grad = no_grad();
        // Every file is read once and parsed from the bytes that were hashed, so the reported
        // hashes are those of what is served.
        let manifest_path = paths.model_dir.join(MANIFEST_FILE);
        let (manifest_file, bytes) = hashed(&manifest_path)?;
        let manifest = Manifest::from_bytes(&manifest_path, &bytes)?;
        let (mapping_file, bytes) = hashed(&paths.class_mapping)?;
        let classes = ClassMapping::from_bytes(&paths.class_mapping, &bytes, manifest.num_outputs)?;

        let weights_path = manifest.weights_path(&paths.model_dir);
        let (weights_file, weights) = hashed(&weights_path)?;
        let image = match manifest.format {
            ModelFormat::Onnx => ImageModel::Onnx(OnnxImageModel::load(&weights_path, &weights, layout)?),
            #[cfg(feature = "torch")]
            ModelFormat::TorchScript => {
                // Its code is checked before any of it runs in this process (warm-up included).
                super::torchscript_ops::check(&weights).map_err(|reason| LoadError::new(&weights_path, reason))?;
                ImageModel::TorchScript(TorchScriptModel::load(&weights, device, layout).map_err(|e| {
                    LoadError::new(&weights_path, format!("not a loadable TorchScript module: {}", first_line(&e)))
                })?)
            }
            // The manifest's check refuses TorchScript in a build without libtorch.
            #[cfg(not(feature = "torch"))]
            ModelFormat::TorchScript => {
                return Err(LoadError::new(&weights_path, "format \"torchscript\" is not served by this build"))
            }
        };

        let (text, text_files) = TextModel::load(&paths.model_dir, &manifest, &classes, device, layout)?;
        let mut files = vec![manifest_file, weights_file, mapping_file];
        files.extend(text_files);
        let id = ModelId {
            name: manifest.name.clone(),
            version: manifest.version.clone(),
            fingerprint: Fingerprint::of(&files),
        };
        let mut model = Self {
            image,
            text,
            manifest,
            classes,
            id,
            generation,
            device,
            files,
            loaded_at: SystemTime::now(),
            load_ms: 0.0,
            alone_pays: false,
            stats: VersionStats::default(),
            last_used_ms: AtomicU64::new(process_ms()),
            _alive: Alive::new(),
        };
        model.warm_up(layout).map_err(|reason| LoadError::new(&weights_path, reason))?;
        if layout.torch.alone != layout.torch.shared {
            model.alone_pays = model.alone_is_faster(layout).map_err(|reason| LoadError::new(&weights_path, reason))?;
        }
        model.load_ms = started.elapsed().as_secs_f64() * 1e3;
        Ok(model)
    }

    pub fn touch(&self) {
        self.last_used_ms.store(process_ms(), Ordering::Relaxed);
    }

    pub fn last_used_ms(&self) -> u64 {
        self.last_used_ms.load(Ordering::Relaxed)
    }

    /// Runs a synthetic image through the model and checks the output's shape and values.
    /// Each slot under its own thread count: a TorchScript graph is fused and compiled for the count
    /// it is first optimised under. The loader thread's count is `shared` before and after.
    fn warm_up(&self, layout: ThreadLayout) -> Result<(), String> {
        let input = self.synthetic_image();
        let slots: Vec<Slot> = match &self.image {
            ImageModel::Onnx(onnx) => onnx.slots().collect(),
            #[cfg(feature = "torch")]
            ImageModel::TorchScript(torchscript) => torchscript.slots(),
        };
        for &slot in &slots {
            set_torch_threads(if slot.alone { layout.torch.alone } else { layout.torch.shared });
            let warmed = (0..WARMUP_RUNS).try_for_each(|_| self.check_warm_up(&input, slot));
            set_torch_threads(layout.torch.shared);
            warmed?;
        }
        Ok(())
    }

    /// Times the forward pass with every core (`alone`) and with one core's share; every core has
    /// to win by 5% to be used. Blocks of the two alternate, so that a VM's drift (a neighbour, a
    /// frequency change) falls on both. Runs on the loader thread, whose libtorch count is `shared`.
    fn alone_is_faster(&self, layout: ThreadLayout) -> Result<bool, String> {
        const ROUNDS: usize = 4;
        const TIMED: usize = 3;
        let input = self.synthetic_image();
        let block = |slot: Slot, threads: usize, times: &mut Vec<f64>| -> Result<(), String> {
            set_torch_threads(threads);
            // One untimed run: OpenMP's pool grows to the new count on the first.
            for run in 0..=TIMED {
                let started = Instant::now();
                self.forward(&input, slot)?;
                if run > 0 {
                    times.push(started.elapsed().as_secs_f64());
                }
            }
            Ok(())
        };
        let (mut alone, mut shared) = (Vec::new(), Vec::new());
        let measured = (0..ROUNDS).try_for_each(|_| {
            block(Slot { thread: 0, alone: true }, layout.torch.alone, &mut alone)?;
            block(Slot { thread: 0, alone: false }, layout.torch.shared, &mut shared)
        });
        set_torch_threads(layout.torch.shared);
        measured?;
        let median = |mut times: Vec<f64>| {
            times.sort_by(f64::total_cmp);
            times[times.len() / 2]
        };
        let (alone, shared) = (median(alone), median(shared));
        tracing::info!(
            alone_ms = alone * 1e3,
            shared_ms = shared * 1e3,
            threads = layout.torch.alone,
            "forward pass of a lone request on every core vs one core's share"
        );
        Ok(alone < 0.95 * shared)
    }

    /// A preprocessed image of the model's input size, values spread over [-1, 1).
    fn synthetic_image(&self) -> Vec<f32> {
        let size = self.manifest.input_size as usize;
        (0..3 * size * size).map(|i| ((i % 251) as f32 / 125.0) - 1.0).collect()
    }

    fn check_warm_up(&self, input: &[f32], slot: Slot) -> Result<(), String> {
        let probabilities = self.forward(input, slot).map_err(|e| format!("warm-up forward failed: {e}"))?;
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
        Ok(())
    }

    /// Call with gradients off (`no_grad`): the inference thread holds one. A runtime error is
    /// the first line of the runtime's message. What the model returned is checked on every pass,
    /// not only at warm-up: a model may give another width, or NaN, for some inputs only.
    pub fn run(&self, work: &Work, slot: Slot) -> Result<Vec<f32>, InferError> {
        let (output, what, width) = match work {
            Work::Image(chw) => (self.forward(chw, slot), "outputs", self.manifest.num_outputs),
            Work::Text(ids) => (self.text.embed(ids, slot), "embedding values", self.text.manifest.dim),
        };
        let output = output.map_err(InferError::Failed)?;
        let fault = if output.len() as i64 != width {
            Some(format!("gave {} {what}, its manifest says {width}", output.len()))
        } else if output.iter().any(|x| !x.is_finite()) {
            Some(format!("gave non-finite {what} (NaN or infinity)"))
        } else {
            None
        };
        match fault {
            Some(fault) => Err(InferError::BadOutput(format!(
                "model {} version {} {fault}: no answer from it for this input",
                self.id.name, self.id.version
            ))),
            None => Ok(output),
        }
    }

    /// The runtime serving the image model, as the manifest names it.
    pub fn backend(&self) -> &'static str {
        match self.image {
            #[cfg(feature = "torch")]
            ImageModel::TorchScript(_) => "torchscript",
            ImageModel::Onnx(_) => "onnx",
        }
    }

    /// One preprocessed image (CHW, `input_size` square) in, softmax over all outputs out.
    fn forward(&self, chw: &[f32], slot: Slot) -> Result<Vec<f32>, String> {
        let size = self.manifest.input_size as usize;
        let logits = match &self.image {
            #[cfg(feature = "torch")]
            ImageModel::TorchScript(torchscript) => {
                torchscript_logits(torchscript.for_slot(slot), chw, size, self.device).map_err(|e| first_line(&e))?
            }
            ImageModel::Onnx(onnx) => onnx.logits(chw, size, slot).map_err(|e| first_line(&e))?,
        };
        Ok(softmax(&logits, 1.0))
    }
}

#[cfg(feature = "torch")]
fn torchscript_logits(
    module: &tch::CModule,
    chw: &[f32],
    size: usize,
    device: Device,
) -> Result<Vec<f32>, tch::TchError> {
    use tch::{Kind, Tensor};
    let size = size as i64;
    let input = Tensor::f_from_slice(chw)?.f_view([1, 3, size, size])?.f_to_device(device)?;
    let logits = {
        let _fusing = super::fusing();
        module.forward_ts(&[input])?
    };
    if logits.dim() != 2 || logits.size()[0] != 1 {
        return Err(tch::TchError::Shape(format!("expected logits [1, N], got {:?}", logits.size())));
    }
    Vec::<f32>::try_from(&logits.f_to_kind(Kind::Float)?.f_view([-1])?.f_to_device(Device::Cpu)?)
}
