//! Turning client input into model input.
mod image;

pub use self::image::{decode_rgb, sniff_format, to_model_input, ImageError, InputSpec, Interpolation};
