//! What both targets run once an image upload is accepted: decode, resize, normalise.
use food_api::domain::ImageUpload;
use food_api::preprocess::{decode_rgb, to_model_input, InputSpec};

/// The bundled model's preprocessing (checkpoints/manifest.json), without reading the model, with
/// a large JPEG's scaled decode on, so that both decoders see the fuzzer's JPEGs.
const SPEC: InputSpec = InputSpec {
    input_size: 224,
    resize_shorter_side: 256,
    mean: [0.5, 0.5, 0.5],
    std: [0.5, 0.5, 0.5],
    jpeg_dct_scaling: true,
};

/// 4 MP instead of the server's 40 MP default: the check is the same code, and small limits keep
/// each run fast enough for the fuzzer to explore.
const MAX_PIXELS: u64 = 4_000_000;

pub fn preprocess(image: &ImageUpload) {
    if let Ok((rgb, ())) = decode_rgb(image.bytes(), image.format(), MAX_PIXELS, SPEC.jpeg_at_least(), |_| Ok(())) {
        assert!(u64::from(rgb.width()) * u64::from(rgb.height()) <= MAX_PIXELS);
        let input = to_model_input(&rgb, &SPEC).expect("a decoded image always resizes");
        assert_eq!(input.len(), 3 * 224 * 224);
        assert!(input.iter().all(|v| v.is_finite()));
    }
}
