//! Preprocessing's cost per photo size, a JPEG decoded in full against at reduced scale (the
//! manifest's `jpeg_dct_scaling`), and how far apart the two model inputs are; then, for the full
//! decode, how the time splits between decoding and the rest (resize, crop and normalise), which
//! bounds what fusing the resize with the normalisation could save:
//!
//!   cargo bench --bench preprocess
//!
//! The phone-sized photos are sample/orange.jpg enlarged, with noise added so that their files
//! are about as large as a camera's (an enlarged photo alone compresses unrealistically well).
//! Every variant runs in turn within each round, so a VM's drift falls on all of them alike.
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::time::Instant;

use food_api::preprocess::{decode_rgb, to_model_input, InputSpec};
use food_api::runtime::Manifest;
use image::{DynamicImage, ImageFormat, RgbImage};

const ROUNDS: usize = 30;

fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// The bundled model's preprocessing, from its manifest (run scripts/setup.sh first).
fn bundled_spec() -> InputSpec {
    let path = repo_file("checkpoints/manifest.json");
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e} (run scripts/setup.sh)", path.display()));
    Manifest::from_bytes(&path, &bytes).unwrap_or_else(|e| panic!("{e}")).input_spec()
}

fn orange() -> DynamicImage {
    image::open(repo_file("sample/orange.jpg")).expect("sample/orange.jpg")
}

/// The orange at `width` x `height`, each channel moved by up to +-`noise`, as a quality-90 JPEG.
fn photo(width: u32, height: u32, noise: u8) -> Vec<u8> {
    let mut rgb: RgbImage = orange().resize_exact(width, height, image::imageops::FilterType::Triangle).into_rgb8();
    let mut random = fastrand::Rng::with_seed(7);
    for value in rgb.iter_mut() {
        let delta = random.i16(-i16::from(noise)..=i16::from(noise));
        *value = (i16::from(*value) + delta).clamp(0, 255) as u8;
    }
    let mut bytes = Vec::new();
    let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(Cursor::new(&mut bytes), 90);
    rgb.write_with_encoder(encoder).expect("JPEG encoding");
    bytes
}

/// `spec` as it is, or with the scaled decode on.
fn preprocess(bytes: &[u8], spec: &InputSpec, scaled: bool) -> Vec<f32> {
    let spec = InputSpec { jpeg_dct_scaling: scaled, ..spec.clone() };
    let (rgb, ()) = decode_rgb(bytes, ImageFormat::Jpeg, u64::MAX, spec.jpeg_at_least(), |_| Ok(())).expect("decodes");
    to_model_input(&rgb, &spec).expect("resizes")
}

fn median_ms(mut times: Vec<f64>) -> f64 {
    times.sort_by(f64::total_cmp);
    times[times.len() / 2] * 1e3
}

fn main() {
    let spec = bundled_spec();
    let photos = [
        ("orange.jpg 512x512", std::fs::read(repo_file("sample/orange.jpg")).unwrap()),
        ("2000x1500 (3 MP)", photo(2000, 1500, 6)),
        ("4000x3000 (12 MP)", photo(4000, 3000, 6)),
    ];
    for (name, bytes) in &photos {
        let (full, scaled) = (preprocess(bytes, &spec, false), preprocess(bytes, &spec, true));
        let mean_diff = full.iter().zip(&scaled).map(|(a, b)| (a - b).abs()).sum::<f32>() / full.len() as f32;
        let mut times = [Vec::new(), Vec::new()];
        for _ in 0..ROUNDS {
            for (times, scaled) in times.iter_mut().zip([false, true]) {
                let started = Instant::now();
                std::hint::black_box(preprocess(bytes, &spec, scaled));
                times.push(started.elapsed().as_secs_f64());
            }
        }
        let [full_ms, scaled_ms] = times.map(median_ms);
        println!(
            "{name}, {} KB: full {full_ms:.2} ms, scaled {scaled_ms:.2} ms ({:.1}x); mean input difference {mean_diff:.4} \
             (2.0 = black to white)",
            bytes.len() / 1024,
            full_ms / scaled_ms
        );
    }
    for (name, bytes) in &photos {
        let decode = || decode_rgb(bytes, ImageFormat::Jpeg, u64::MAX, None, |_| Ok(())).expect("decodes").0;
        let rgb = decode();
        let mut times = [Vec::new(), Vec::new()];
        for _ in 0..ROUNDS {
            let started = Instant::now();
            std::hint::black_box(decode());
            times[0].push(started.elapsed().as_secs_f64());
            let started = Instant::now();
            std::hint::black_box(to_model_input(&rgb, &spec).expect("resizes"));
            times[1].push(started.elapsed().as_secs_f64());
        }
        let [decode_ms, rest_ms] = times.map(median_ms);
        println!("{name}, full decode: decoding {decode_ms:.3} ms, resize + crop + normalise {rest_ms:.3} ms");
    }
}
