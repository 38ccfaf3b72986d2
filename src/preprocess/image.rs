//! Image bytes -> normalised CHW floats, the way the model was trained to see them:
//! decode, upright by EXIF, RGB, shorter side to `resize_shorter_side` (bilinear or bicubic, as the
//! manifest says), centre crop, then (x / 255 - mean) / std per channel.
use std::io::Cursor;
use std::sync::Arc;

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, RgbImage};

use crate::limits::AdmissionError;

/// Why an image cannot become a model input; `error.rs` says what each means over HTTP.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ImageError {
    /// Not an image, or a format not decoded here.
    #[error("{0}")]
    Unsupported(String),
    /// A supported format whose bytes do not decode.
    #[error("{0}")]
    Invalid(String),
    /// More pixels, or more memory, than allowed.
    #[error("{0}")]
    TooLarge(String),
    /// The memory budget cannot hold the decode now.
    #[error(transparent)]
    Busy(AdmissionError),
    /// A bug of ours (the resize refused its own arguments): `what` failed, for the reason `source`.
    #[error("{what}")]
    Internal {
        what: &'static str,
        #[source]
        source: Option<Arc<dyn std::error::Error + Send + Sync>>,
    },
}

/// How a model wants its input; read from the model's manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct InputSpec {
    pub input_size: u32,
    pub resize_shorter_side: u32,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    /// Whether a JPEG at least twice `resize_shorter_side` may be decoded smaller (`decode_rgb`).
    pub jpeg_dct_scaling: bool,
    pub interpolation: Interpolation,
}

/// The resize filter a model was trained with: torchvision's default is bilinear, most of timm's
/// models bicubic. Both as PIL applies them to a downscale (antialiased: the filter widens with
/// the scale), which `fast_image_resize`'s convolution does too; PIL's bicubic is Keys' cubic with
/// a = -0.5, Catmull-Rom's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Interpolation {
    #[default]
    Bilinear,
    Bicubic,
}

impl Interpolation {
    pub fn is_bilinear(&self) -> bool {
        *self == Self::Bilinear
    }

    fn filter(self) -> FilterType {
        match self {
            Self::Bilinear => FilterType::Bilinear,
            Self::Bicubic => FilterType::CatmullRom,
        }
    }
}

impl InputSpec {
    /// What `decode_rgb` may shrink a JPEG to: its shorter side at least this, when the model asks.
    pub fn jpeg_at_least(&self) -> Option<u32> {
        self.jpeg_dct_scaling.then_some(self.resize_shorter_side)
    }
}

const SUPPORTED: [ImageFormat; 6] =
    [ImageFormat::Jpeg, ImageFormat::Png, ImageFormat::WebP, ImageFormat::Bmp, ImageFormat::Gif, ImageFormat::Tiff];

/// The format named by the file's magic bytes, if it is one we decode.
pub fn sniff_format(bytes: &[u8]) -> Result<ImageFormat, ImageError> {
    let format = image::guess_format(bytes).map_err(|_| {
        ImageError::Unsupported(
            "the `image` file is not a recognised image (expected JPEG, PNG, WebP, BMP, GIF or TIFF)".into(),
        )
    })?;
    if !SUPPORTED.contains(&format) {
        return Err(ImageError::Unsupported(format!(
            "{format:?} images are not supported (expected JPEG, PNG, WebP, BMP, GIF or TIFF)"
        )));
    }
    Ok(format)
}

/// Room for a decoder's own buffers beside the image (rows, tables, a GIF frame's palette
/// indices): its allocation limit is the image's reservation plus this.
const DECODER_SLACK_BYTES: u64 = 16 << 20;

/// Decodes after checking the dimensions in the header, so a small file that claims a huge
/// image is refused before any pixel buffer is allocated. `reserve` is handed the bytes the
/// decode will hold at its peak before any of them is allocated, and may refuse; what it returns is
/// handed back with the image (a memory reservation, say, to hold until the image is done with).
/// The decoder's own allocations are limited to that much too: a GIF frame larger than the
/// screen its header declares is refused, not allocated.
///
/// `jpeg_at_least`: a JPEG may come out at 1/2, 1/4 or 1/8 of its size, its shorter side still at
/// least this (`decode_jpeg_turbo`); None decodes every pixel.
pub fn decode_rgb<R>(
    bytes: &[u8],
    format: ImageFormat,
    max_pixels: u64,
    jpeg_at_least: Option<u32>,
    reserve: impl FnOnce(u64) -> Result<R, ImageError>,
) -> Result<(RgbImage, R), ImageError> {
    let invalid = |e: image::ImageError| match e {
        image::ImageError::Limits(e) => {
            ImageError::TooLarge(format!("the {format:?} image needs more memory than its size allows: {e}"))
        }
        e => ImageError::Invalid(format!("cannot decode the {format:?} image: {e}")),
    };
    let mut decoder = ImageReader::with_format(Cursor::new(bytes), format).into_decoder().map_err(invalid)?;
    let (width, height) = decoder.dimensions();
    if width == 0 || height == 0 {
        return Err(ImageError::Invalid(format!("the image is {width}x{height} pixels")));
    }
    if u64::from(width) * u64::from(height) > max_pixels {
        return Err(ImageError::TooLarge(format!(
            "the image is {width}x{height} pixels, more than the limit of {max_pixels} pixels"
        )));
    }
    if format == ImageFormat::Jpeg && !jpeg_is_complete(bytes) {
        return Err(ImageError::Invalid(
            "the JPEG stops before its end-of-image marker: the upload looks truncated".into(),
        ));
    }
    let orientation = decoder.orientation().unwrap_or(image::metadata::Orientation::NoTransforms);
    let peak = peak_bytes(width, height, decoder.color_type(), format, orientation);
    let reservation = reserve(peak)?;
    // Every JPEG through libjpeg-turbo, as PIL (and so torchvision's and timm's training
    // pipelines) decodes it: the `image` crate's own decoder upsamples chroma differently, a few
    // levels per pixel, which moved a seeded ViT's probabilities by 0.023 (tests/api/import.rs).
    let turbo = if format == ImageFormat::Jpeg {
        let divisor = jpeg_at_least.and_then(|side| dct_divisor(width, height, side)).unwrap_or(1);
        decode_jpeg_turbo(bytes, divisor)
    } else {
        None
    };
    let mut image = match turbo {
        Some(rgb) => DynamicImage::ImageRgb8(rgb),
        None => {
            let mut limits = image::Limits::default();
            limits.max_image_width = Some(width);
            limits.max_image_height = Some(height);
            limits.max_alloc = Some(peak + DECODER_SLACK_BYTES);
            decoder.set_limits(limits).map_err(invalid)?;
            if decoder.color_type() == image::ColorType::Rgb8 {
                // Most photos: decoded into a buffer of ours (`unzeroed`) rather than
                // `from_decoder`'s zeroed one.
                let mut pixels = unzeroed(usize::try_from(decoder.total_bytes()).unwrap_or(usize::MAX));
                decoder.read_image(&mut pixels).map_err(invalid)?;
                let rgb = RgbImage::from_raw(width, height, pixels);
                DynamicImage::ImageRgb8(
                    rgb.ok_or_else(|| ImageError::Internal { what: "decoded size mismatch", source: None })?,
                )
            } else {
                DynamicImage::from_decoder(decoder).map_err(invalid)?
            }
        }
    };
    image.apply_orientation(orientation);
    Ok((image.into_rgb8(), reservation))
}

/// A buffer of `len` bytes for a decoder or resizer to overwrite. Not `vec![0; len]`: a zeroed
/// allocation of this size makes jemalloc hand back recycled pages to the kernel (madvise) so that
/// they come back zeroed, and every one of them then faults in again on first write; filled
/// here, the recycled pages are reused as they are. Served, that was about 360 page faults and
/// 1 ms of CPU per 512 px photo (BENCHMARKS.md, round two). Clippy's advice here is that
/// `vec![0; len]`; the unit test `preprocessing_again_does_not_fault_in_fresh_pages` holds it off.
#[allow(clippy::slow_vector_initialization)]
fn unzeroed(len: usize) -> Vec<u8> {
    let mut buffer = Vec::with_capacity(len);
    buffer.resize(len, 0);
    buffer
}

/// The largest of 8, 4 and 2 that divides a `width` x `height` image with its shorter side still
/// at least `at_least`; None when even halving would take it below.
fn dct_divisor(width: u32, height: u32, at_least: u32) -> Option<u32> {
    let shorter = width.min(height);
    [8, 4, 2].into_iter().find(|&divisor| shorter.div_ceil(divisor) >= at_least.max(1))
}

/// A JPEG decoded by libjpeg-turbo, as PIL decodes it; with `divisor` 1 every pixel, else at
/// 1/`divisor` of its size by its scaled inverse DCT (libjpeg's
/// `scale_denom`, PIL's `draft`): each 8x8 block becomes 4x4, 2x2 or 1x1 pixels, so a 12 MP phone
/// photo costs little more than its entropy decoding (BENCHMARKS.md). At 1/8 a pixel is its
/// block's mean, a box filter; pixels differ from a full decode and resize by resampling, which is
/// why a manifest asks for it and a version that turns it on is judged as a new version.
/// None for what it does not turn into RGB (CMYK) or refuses: the full decode then runs, and its
/// error is the one a client sees. Its peak is within `peak_bytes`' (a progressive JPEG's
/// coefficients at full size, the pixels at the reduced one).
fn decode_jpeg_turbo(bytes: &[u8], divisor: u32) -> Option<RgbImage> {
    use turbojpeg::{Colorspace, Decompressor, Image, PixelFormat, ScalingFactor};
    let mut decompressor = Decompressor::new().ok()?;
    let header = decompressor.read_header(bytes).ok()?;
    if !matches!(header.colorspace, Colorspace::YCbCr | Colorspace::RGB | Colorspace::Gray) {
        return None;
    }
    let factor = ScalingFactor::new(1, usize::try_from(divisor).ok()?);
    decompressor.set_scaling_factor(factor).ok()?;
    let scaled = header.scaled(factor);
    let mut pixels = unzeroed(3 * scaled.width * scaled.height);
    let output = Image {
        pixels: &mut pixels[..],
        width: scaled.width,
        pitch: 3 * scaled.width,
        height: scaled.height,
        format: PixelFormat::RGB,
    };
    decompressor.decompress(bytes, output).ok()?;
    RgbImage::from_raw(u32::try_from(scaled.width).ok()?, u32::try_from(scaled.height).ok()?, pixels)
}

/// The most a decode holds at once: the decoded pixels; a progressive JPEG's coefficients (two
/// bytes per pixel and channel) beside them; a GIF's or WebP's frame buffer (a frame no larger
/// than the canvas: WebP refuses larger ones, and a GIF's is held to this reservation by the
/// decoder's limit); a rotated copy for EXIF rotations by 90 degrees; the RGB8 copy for any other
/// pixel type. Only the first frame or page of any format is decoded.
fn peak_bytes(
    width: u32,
    height: u32,
    color: image::ColorType,
    format: ImageFormat,
    orientation: image::metadata::Orientation,
) -> u64 {
    use image::metadata::Orientation::*;
    let pixels = u64::from(width) * u64::from(height);
    let decoded = pixels * u64::from(color.bytes_per_pixel());
    let coefficients = if format == ImageFormat::Jpeg { pixels * 2 * u64::from(color.channel_count()) } else { 0 };
    let frame = if matches!(format, ImageFormat::Gif | ImageFormat::WebP) { decoded } else { 0 };
    let rotated =
        if matches!(orientation, Rotate90 | Rotate270 | Rotate90FlipH | Rotate270FlipH) { decoded } else { 0 };
    let rgb = if color == image::ColorType::Rgb8 { 0 } else { pixels * 3 };
    decoded + coefficients + frame + rotated + rgb
}

/// Whether the JPEG reaches its end-of-image marker (FF D9). The JPEG decoder fills a cut-off
/// image with grey and reports success, which would give a confident answer about half a photo.
/// Walks the segments from the start, skipping each by its length (so an EXIF thumbnail's own end
/// marker is not taken for the image's) and each scan up to the next real marker; whatever
/// follows the end marker (cameras append data, Motion Photos a whole video) is not looked at.
fn jpeg_is_complete(bytes: &[u8]) -> bool {
    let mut i = 2; // after SOI, which sniffing checked
    loop {
        // Fill bytes (FF FF ...) may precede a marker.
        let Some(offset) = bytes.get(i..).and_then(|rest| rest.iter().position(|&b| b != 0xFF)) else { return false };
        i += offset;
        let marker = bytes[i];
        i += 1;
        match marker {
            0xD9 => return true,
            // Markers without a length: restart markers and TEM.
            0xD0..=0xD7 | 0x01 => {}
            _ => {
                let Some(&[high, low]) = bytes.get(i..i + 2) else { return false };
                let length = usize::from(u16::from_be_bytes([high, low]));
                if length < 2 {
                    return false;
                }
                i += length;
                if marker == 0xDA {
                    // Entropy-coded data: 0xFF is stuffed (FF 00) or a restart marker until the
                    // next real marker.
                    loop {
                        let Some(offset) = bytes.get(i..).and_then(|rest| rest.iter().position(|&b| b == 0xFF)) else {
                            return false;
                        };
                        i += offset;
                        match bytes.get(i + 1) {
                            None => return false,
                            Some(0x00 | 0xD0..=0xD7) => i += 2,
                            Some(_) => break,
                        }
                    }
                }
            }
        }
        // The next marker must start here (after fill bytes).
        if bytes.get(i) != Some(&0xFF) {
            return false;
        }
    }
}

/// Resize-then-crop as one resize of the source region that the crop keeps: the same pixels as
/// resizing the whole image (the filter still reads neighbours outside the region), without
/// allocating the resized whole, which for a 10000x1 image would be gigabytes.
pub fn to_model_input(rgb: &RgbImage, spec: &InputSpec) -> Result<Vec<f32>, ImageError> {
    let (w, h) = (rgb.width() as f64, rgb.height() as f64);
    let short = spec.resize_shorter_side as f64;
    // Integer sizes as torchvision's Resize computes them, so crops line up with the reference.
    let (new_w, new_h) = if w <= h { (short, (short * h / w).floor()) } else { ((short * w / h).floor(), short) };
    let crop = spec.input_size as f64;
    let left = ((new_w - crop) / 2.0).round_ties_even();
    let top = ((new_h - crop) / 2.0).round_ties_even();
    let (scale_x, scale_y) = (new_w / w, new_h / h);
    // In source pixels, kept inside the source: rounding (a crop as large as the resized side) or
    // a manifest whose crop is larger than its resize would otherwise reach past an edge.
    let (x, y) = ((left / scale_x).clamp(0.0, w), (top / scale_y).clamp(0.0, h));
    let (crop_w, crop_h) = ((crop / scale_x).min(w - x), (crop / scale_y).min(h - y));

    fn resize_failed(e: impl std::error::Error + Send + Sync + 'static) -> ImageError {
        ImageError::Internal { what: "resizing failed", source: Some(Arc::new(e)) }
    }
    let src = ImageRef::new(rgb.width(), rgb.height(), rgb.as_raw(), PixelType::U8x3).map_err(resize_failed)?;
    let side = spec.input_size as usize;
    let mut dst = Image::from_vec_u8(spec.input_size, spec.input_size, unzeroed(side * side * 3), PixelType::U8x3)
        .map_err(resize_failed)?;
    let options =
        ResizeOptions::new().resize_alg(ResizeAlg::Convolution(spec.interpolation.filter())).crop(x, y, crop_w, crop_h);
    Resizer::new().resize(&src, &mut dst, &options).map_err(resize_failed)?;
    Ok(normalise(dst.buffer(), spec))
}

/// HWC bytes -> CHW floats, (x / 255 - mean) / std. A byte has 256 values: each channel's are
/// computed once by that formula and looked up, the same floats without two divisions per value
/// (those were 0.28 ms of a served request's 12.6 ms of CPU, BENCHMARKS.md).
fn normalise(hwc: &[u8], spec: &InputSpec) -> Vec<f32> {
    let tables: [[f32; 256]; 3] =
        std::array::from_fn(|c| std::array::from_fn(|x| (x as f32 / 255.0 - spec.mean[c]) / spec.std[c]));
    // Plane by plane into spare capacity: no zeroed allocation to fill (see `unzeroed`).
    let mut chw = Vec::with_capacity(hwc.len());
    for (c, table) in tables.iter().enumerate() {
        chw.extend(hwc.chunks_exact(3).map(|pixel| table[usize::from(pixel[c])]));
    }
    chw
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
