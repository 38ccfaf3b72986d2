//! The Rust pipeline against the reference one (PIL, scripts/reference.py): same crop, same
//! normalisation, pixel values within resampling rounding.
use std::path::Path;

use serde::Deserialize;

use super::*;

#[derive(Deserialize)]
struct Fixture {
    image: String,
    shape: [usize; 3],
    channel_means: [f32; 3],
    grid_step: usize,
    grid: Vec<Vec<Vec<f32>>>,
}

fn spec() -> InputSpec {
    InputSpec {
        input_size: 224,
        resize_shorter_side: 256,
        mean: [0.5; 3],
        std: [0.5; 3],
        jpeg_dct_scaling: false,
        interpolation: Interpolation::Bilinear,
    }
}

fn repo_file(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// A decode with no memory budget to draw from.
fn decode(bytes: &[u8], format: image::ImageFormat, max_pixels: u64) -> Result<RgbImage, ImageError> {
    decode_rgb(bytes, format, max_pixels, None, |_| Ok(())).map(|(rgb, ())| rgb)
}

fn preprocess(bytes: &[u8]) -> Vec<f32> {
    let format = sniff_format(bytes).unwrap();
    to_model_input(&decode(bytes, format, u64::MAX).unwrap(), &spec()).unwrap()
}

#[test]
fn preprocessing_matches_the_reference_pipeline() {
    // Two 8-bit rounding steps apart at most: 2 / 255 / std.
    matches_fixture("tests/fixtures/preprocess_reference.json", &spec(), 2.0);
}

/// PIL's bicubic (timm's models, imported by scripts/import_model.py) against our Catmull-Rom
/// convolution, with ImageNet's mean and std: the filters are the same, the rounding of their
/// coefficients is not (PIL's are fixed-point with 22 bits), so a pixel may be a few steps apart
/// where the cubic's overshoot is clipped at an edge of 0 or 255.
#[test]
fn bicubic_preprocessing_matches_pils() {
    let spec = InputSpec {
        resize_shorter_side: 248,
        mean: [0.485, 0.456, 0.406],
        std: [0.229, 0.224, 0.225],
        interpolation: Interpolation::Bicubic,
        ..spec()
    };
    matches_fixture("tests/fixtures/preprocess_reference_bicubic.json", &spec, 3.0);
}

/// The fixture's per-channel means within 0.003 and each grid value within `steps` 8-bit steps.
fn matches_fixture(path: &str, spec: &InputSpec, steps: f32) {
    let fixture: Fixture = serde_json::from_str(&std::fs::read_to_string(repo_file(path)).unwrap()).unwrap();
    let bytes = std::fs::read(repo_file(&fixture.image)).unwrap();
    let chw = to_model_input(&decode(&bytes, sniff_format(&bytes).unwrap(), u64::MAX).unwrap(), spec).unwrap();
    let [channels, height, width] = fixture.shape;
    assert_eq!(chw.len(), channels * height * width);

    for c in 0..3 {
        let plane = &chw[c * height * width..(c + 1) * height * width];
        let mean = plane.iter().sum::<f32>() / plane.len() as f32;
        assert!(
            (mean - fixture.channel_means[c]).abs() < 0.003 / spec.std[c] * 0.5,
            "channel {c}: mean {mean} vs {}",
            fixture.channel_means[c]
        );
        let tolerance = steps / 255.0 / spec.std[c] + 1e-5;
        for (gy, row) in fixture.grid[c].iter().enumerate() {
            for (gx, expected) in row.iter().enumerate() {
                let (y, x) = (gy * fixture.grid_step, gx * fixture.grid_step);
                let got = plane[y * width + x];
                assert!((got - expected).abs() <= tolerance, "c{c} y{y} x{x}: {got} vs {expected}");
            }
        }
    }
}

#[test]
fn normalisation_maps_0_and_255_to_minus_one_and_one() {
    let mut image = image::RgbImage::new(300, 300);
    for (x, _, p) in image.enumerate_pixels_mut() {
        *p = if x < 150 { image::Rgb([0, 0, 0]) } else { image::Rgb([255, 255, 255]) };
    }
    let chw = to_model_input(&image, &spec()).unwrap();
    assert_eq!(chw[0], -1.0, "top-left is black");
    assert_eq!(chw[223], 1.0, "top-right is white");
}

#[test]
fn normalisation_gives_the_formulas_floats_for_every_byte_in_every_channel() {
    // The model's mean and std (ImageNet's), not 0.5: the table must hold each channel's own.
    let spec = InputSpec { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225], ..spec() };
    let hwc: Vec<u8> = (0..=255u8).flat_map(|x| [x, 255 - x, x.wrapping_mul(7)]).collect();
    let chw = normalise(&hwc, &spec);
    for (i, pixel) in hwc.chunks_exact(3).enumerate() {
        for c in 0..3 {
            let expected = (pixel[c] as f32 / 255.0 - spec.mean[c]) / spec.std[c];
            assert_eq!(chw[c * 256 + i].to_bits(), expected.to_bits(), "channel {c}, byte {}", pixel[c]);
        }
    }
}

#[test]
fn an_extreme_aspect_ratio_still_gives_one_model_input() {
    let image = image::RgbImage::from_pixel(10_000, 1, image::Rgb([200, 10, 10]));
    let chw = to_model_input(&image, &spec()).unwrap();
    assert_eq!(chw.len(), 3 * 224 * 224);
    assert!((chw[0] - (200.0 / 255.0 - 0.5) / 0.5).abs() < 1e-2);
}

#[test]
fn an_image_over_the_pixel_limit_is_refused_before_decoding() {
    let bytes = std::fs::read(repo_file("sample/orange.jpg")).unwrap();
    let err = decode(&bytes, image::ImageFormat::Jpeg, 1000).unwrap_err();
    assert!(matches!(err, ImageError::TooLarge(_)), "{err:?}");
}

#[test]
fn sniffing_tells_text_from_images_and_refuses_unsupported_formats() {
    assert!(matches!(sniff_format(b"hello, this is text"), Err(ImageError::Unsupported(_))));
    let ico = [0u8, 0, 1, 0, 1, 0, 16, 16, 0, 0];
    assert!(matches!(sniff_format(&ico), Err(ImageError::Unsupported(m)) if m.contains("Ico")));
    let png = std::fs::read(repo_file("sample/coffee.png")).unwrap();
    assert_eq!(sniff_format(&png).unwrap(), image::ImageFormat::Png);
}

#[test]
fn a_truncated_png_is_an_invalid_image() {
    let png = std::fs::read(repo_file("sample/coffee.png")).unwrap();
    let result = decode(&png[..png.len() / 3], image::ImageFormat::Png, u64::MAX);
    assert!(matches!(result, Err(ImageError::Invalid(_))), "{:?}", result.err());
}

#[test]
fn a_truncated_jpeg_is_an_invalid_image_but_trailing_bytes_are_fine() {
    let jpeg = std::fs::read(repo_file("sample/orange.jpg")).unwrap();
    for cut in [jpeg.len() / 2, jpeg.len() - 2] {
        let error = decode(&jpeg[..cut], ImageFormat::Jpeg, u64::MAX).unwrap_err();
        assert!(error.to_string().contains("truncated"), "cut at {cut}: {error}");
    }
    // Data after the end marker, even bytes that look like a start of scan (a Motion Photo
    // appends a whole video), is not the image's.
    for trailer in [&b"camera maker data"[..], &[0xFF, 0xDA, 0x00, 0x08, 1, 2, 3, 4, 5, 6]] {
        let mut with_trailer = jpeg.clone();
        with_trailer.extend_from_slice(trailer);
        assert!(decode(&with_trailer, ImageFormat::Jpeg, u64::MAX).is_ok(), "trailer {trailer:?}");
    }
    for dir in ["sample", "tests/fixtures", "fuzz/seeds/image"] {
        for entry in std::fs::read_dir(repo_file(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "jpg") {
                let bytes = std::fs::read(&path).unwrap();
                assert!(decode(&bytes, ImageFormat::Jpeg, u64::MAX).is_ok(), "{}", path.display());
            }
        }
    }
    let progressive = std::fs::read(repo_file("fuzz/seeds/image/orange-progressive.jpg")).unwrap();
    assert!(decode(&progressive, ImageFormat::Jpeg, u64::MAX).is_ok());
    let cut = progressive.len() * 2 / 3;
    assert!(decode(&progressive[..cut], ImageFormat::Jpeg, u64::MAX).is_err());
    let exif = std::fs::read(repo_file("tests/fixtures/orange_exif_rotated.jpg")).unwrap();
    assert!(decode(&exif, ImageFormat::Jpeg, u64::MAX).is_ok());
}

#[test]
fn a_crop_as_large_as_the_resized_side_or_larger_stays_inside_the_image() {
    // resize == input size puts the crop box on the image's edges, where float rounding could
    // reach past them; a manifest may even ask for a crop larger than its resize.
    for resize_shorter_side in [224, 200] {
        let spec = InputSpec { resize_shorter_side, ..spec() };
        for (w, h) in [(300, 200), (200, 300), (224, 224), (333, 223), (1, 1), (7, 10_000), (10_001, 3)] {
            let image = image::RgbImage::from_pixel(w, h, image::Rgb([10, 20, 30]));
            let chw =
                to_model_input(&image, &spec).unwrap_or_else(|e| panic!("{w}x{h} resize {resize_shorter_side}: {e}"));
            assert_eq!(chw.len(), 3 * 224 * 224);
        }
    }
}

/// sample/apple.jpg enlarged to `width` x `height` and saved as a JPEG: a phone photo's size.
fn large_jpeg(width: u32, height: u32, grey: bool) -> Vec<u8> {
    let apple = image::open(repo_file("sample/apple.jpg")).unwrap();
    let large = apple.resize_exact(width, height, image::imageops::FilterType::Triangle);
    let large = if grey { image::DynamicImage::ImageLuma8(large.to_luma8()) } else { large };
    let mut bytes = Vec::new();
    large.write_to(&mut std::io::Cursor::new(&mut bytes), ImageFormat::Jpeg).unwrap();
    bytes
}

/// `jpeg` with an EXIF segment saying `orientation` (6: turn 90 degrees clockwise to show).
fn with_exif_orientation(jpeg: &[u8], orientation: u8) -> Vec<u8> {
    // Big-endian TIFF: header, one IFD entry (0x0112, SHORT, count 1, value), no next IFD.
    let tiff = [b'M', b'M', 0, 42, 0, 0, 0, 8, 0, 1, 0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, orientation, 0, 0, 0, 0, 0, 0];
    let mut app1 = b"Exif\0\0".to_vec();
    app1.extend_from_slice(&tiff);
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&((app1.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&app1);
    out.extend_from_slice(&jpeg[2..]);
    out
}

fn scaled_decode(bytes: &[u8], at_least: u32) -> RgbImage {
    decode_rgb(bytes, ImageFormat::Jpeg, u64::MAX, Some(at_least), |_| Ok(())).map(|(rgb, ())| rgb).unwrap()
}

#[test]
fn the_dct_divisor_keeps_the_shorter_side_at_least_the_resize() {
    assert_eq!(dct_divisor(4032, 3024, 256), Some(8), "a 12 MP phone photo: 504x378");
    assert_eq!(dct_divisor(2048, 2048, 256), Some(8));
    assert_eq!(dct_divisor(2047, 3000, 256), Some(8), "decoded sizes round up: 2047 / 8 gives 256 pixels");
    assert_eq!(dct_divisor(2040, 3000, 256), Some(4), "2040 / 8 is 255");
    assert_eq!(dct_divisor(600, 512, 256), Some(2));
    assert_eq!(dct_divisor(510, 4000, 256), None, "halving would go below the resize");
}

#[test]
fn a_large_jpeg_is_decoded_smaller_only_when_asked_and_gives_nearly_the_same_input() {
    let bytes = large_jpeg(2100, 1600, false);
    let full = decode(&bytes, ImageFormat::Jpeg, u64::MAX).unwrap();
    assert_eq!(full.dimensions(), (2100, 1600));
    let scaled = scaled_decode(&bytes, 256);
    assert_eq!(scaled.dimensions(), (525, 400), "1/4: 1/8 would make the shorter side 200");

    let spec = InputSpec { jpeg_dct_scaling: true, ..spec() };
    let (a, b) = (to_model_input(&full, &spec).unwrap(), to_model_input(&scaled, &spec).unwrap());
    let diffs: Vec<f32> = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).collect();
    let mean = diffs.iter().sum::<f32>() / diffs.len() as f32;
    // In normalised units (2.0 = black to white): about one 8-bit step on average.
    assert!(mean < 0.02, "mean difference {mean}");
    assert!(diffs.iter().all(|d| *d < 0.5), "max difference {}", diffs.iter().fold(0f32, |m, d| m.max(*d)));
}

#[test]
fn a_scaled_grey_jpeg_becomes_rgb_and_a_scaled_one_is_turned_upright() {
    let grey = scaled_decode(&large_jpeg(1024, 1024, true), 256);
    assert_eq!(grey.dimensions(), (256, 256));
    assert!(grey.pixels().all(|p| p[0] == p[1] && p[1] == p[2]));

    // Stored 2048 wide and 1024 high, shown turned: 1024 wide.
    let turned = with_exif_orientation(&large_jpeg(2048, 1024, false), 6);
    assert_eq!(decode(&turned, ImageFormat::Jpeg, u64::MAX).unwrap().dimensions(), (1024, 2048));
    assert_eq!(scaled_decode(&turned, 256).dimensions(), (256, 512));
}

#[test]
fn small_jpegs_cmyk_and_other_formats_decode_in_full_when_scaling_is_asked() {
    let orange = std::fs::read(repo_file("sample/orange.jpg")).unwrap();
    assert_eq!(scaled_decode(&orange, 257).dimensions(), (512, 512), "halving would go below 257");
    assert_eq!(scaled_decode(&orange, 256).dimensions(), (256, 256), "halving to exactly 256 is allowed");
    let png = std::fs::read(repo_file("sample/coffee.png")).unwrap();
    let (rgb, ()) = decode_rgb(&png, ImageFormat::Png, u64::MAX, Some(100), |_| Ok(())).unwrap();
    assert_eq!(rgb.dimensions(), (600, 400));
    // CMYK: jpeg-decoder gives CMYK pixels, so the full decode (which converts them) runs.
    let cmyk = std::fs::read(repo_file("tests/fixtures/orange_cmyk.jpg")).unwrap();
    let (w, h) = decode(&cmyk, ImageFormat::Jpeg, u64::MAX).unwrap().dimensions();
    assert_eq!(scaled_decode(&cmyk, 1).dimensions(), (w, h));
}

/// Page faults of the calling thread so far (Linux counts them per thread).
fn minor_faults() -> i64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given; RUSAGE_THREAD is Linux's.
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_THREAD, usage.as_mut_ptr()) }, 0);
    // SAFETY: initialised by the successful call above (and zeroed before it).
    unsafe { usage.assume_init() }.ru_minflt
}

/// Decoding and preprocessing a photo again reuses the allocator's pages instead of faulting in
/// fresh ones: zeroed buffers of this size made jemalloc hand their pages back to the kernel on
/// every request (about 360 faults for a 512 px photo, 1 ms of CPU; BENCHMARKS.md, round two).
#[test]
fn preprocessing_again_does_not_fault_in_fresh_pages() {
    let bytes = std::fs::read(repo_file("sample/apple.jpg")).unwrap();
    for _ in 0..5 {
        preprocess(&bytes);
    }
    let (before, runs) = (minor_faults(), 20);
    for _ in 0..runs {
        std::hint::black_box(preprocess(&bytes));
    }
    let per_run = (minor_faults() - before) / runs;
    // The three buffers (pixels 768 KB, crop 147 KB, input 588 KB) are 376 pages.
    assert!(per_run < 40, "{per_run} page faults per decode and preprocess");
}
