//! The bad-input corpus: every case gets its expected status and `error_type`, never a 5xx, and
//! the server answers normally afterwards.
use std::io::Cursor;

use image::{DynamicImage, ImageFormat, RgbImage};
use reqwest::multipart::{Form, Part};
use reqwest::Body;

use crate::helpers::{repo_path, sample, spawn_app_with, test_config};

enum Request {
    Form(Form),
    Raw { content_type: &'static str, body: Vec<u8> },
}

fn encode(image: DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut bytes = Cursor::new(Vec::new());
    image.write_to(&mut bytes, format).unwrap();
    bytes.into_inner()
}

fn photo() -> DynamicImage {
    image::load_from_memory(&sample("orange.jpg")).unwrap()
}

fn image_form(bytes: Vec<u8>) -> Form {
    Form::new().part("image", Part::bytes(bytes).file_name("upload.jpg"))
}

fn animated_gif() -> Vec<u8> {
    let mut bytes = Vec::new();
    {
        let mut encoder = image::codecs::gif::GifEncoder::new(&mut bytes);
        let frames =
            [photo().resize(64, 64, image::imageops::FilterType::Triangle).to_rgba8(), image::RgbaImage::new(64, 64)];
        encoder.encode_frames(frames.into_iter().map(image::Frame::new)).unwrap();
    }
    bytes
}

/// A PNG header that claims 30000 x 30000 pixels: a few bytes on the wire, 2.7 GB decoded.
fn png_claiming_30000_square() -> Vec<u8> {
    let mut png = encode(DynamicImage::ImageRgb8(RgbImage::new(1, 1)), ImageFormat::Png);
    png[16..20].copy_from_slice(&30000u32.to_be_bytes());
    png[20..24].copy_from_slice(&30000u32.to_be_bytes());
    let crc = crc32(&png[12..29]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());
    png
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

fn cases() -> Vec<(&'static str, Request, u16, Option<&'static str>)> {
    let jpeg = sample("orange.jpg");
    let png = sample("coffee.png");
    let gray = DynamicImage::ImageLuma8(photo().to_luma8());
    let rgba = DynamicImage::ImageRgba8(photo().to_rgba8());
    let deep = DynamicImage::ImageRgb16(photo().to_rgb16());
    let fixture = |name: &str| std::fs::read(repo_path("tests/fixtures").join(name)).unwrap();
    let mut corrupt_header = jpeg.clone();
    corrupt_header[4..400].fill(0x00); // the magic stays, the segments after it are gone
    vec![
        (
            "empty body",
            Request::Raw { content_type: "multipart/form-data; boundary=x", body: vec![] },
            400,
            Some("validation"),
        ),
        (
            "wrong content type",
            Request::Raw { content_type: "image/jpeg", body: jpeg.clone() },
            415,
            Some("unsupported_media_type"),
        ),
        (
            "multipart with no boundary",
            Request::Raw { content_type: "multipart/form-data", body: b"--x\r\n".to_vec() },
            400,
            Some("validation"),
        ),
        ("missing image", Request::Form(Form::new().text("text", "pizza")), 400, Some("validation")),
        (
            "two image parts",
            Request::Form(image_form(jpeg.clone()).part("image", Part::bytes(jpeg.clone()))),
            400,
            Some("validation"),
        ),
        ("zero-byte image", Request::Form(image_form(vec![])), 400, Some("invalid_image")),
        (
            "text file named .jpg",
            Request::Form(image_form(b"hello, I am text\n".to_vec())),
            415,
            Some("unsupported_media_type"),
        ),
        ("truncated JPEG", Request::Form(image_form(jpeg[..jpeg.len() / 2].to_vec())), 400, Some("invalid_image")),
        ("truncated PNG", Request::Form(image_form(png[..png.len() / 2].to_vec())), 400, Some("invalid_image")),
        ("corrupt JPEG header", Request::Form(image_form(corrupt_header)), 400, Some("invalid_image")),
        ("animated GIF", Request::Form(image_form(animated_gif())), 200, None),
        ("WebP", Request::Form(image_form(encode(photo(), ImageFormat::WebP))), 200, None),
        ("BMP", Request::Form(image_form(encode(photo(), ImageFormat::Bmp))), 200, None),
        ("TIFF", Request::Form(image_form(encode(photo(), ImageFormat::Tiff))), 200, None),
        ("16-bit PNG", Request::Form(image_form(encode(deep, ImageFormat::Png))), 200, None),
        ("grayscale PNG", Request::Form(image_form(encode(gray, ImageFormat::Png))), 200, None),
        ("CMYK JPEG", Request::Form(image_form(fixture("orange_cmyk.jpg"))), 200, None),
        ("RGBA PNG", Request::Form(image_form(encode(rgba, ImageFormat::Png))), 200, None),
        (
            "1x1 image",
            Request::Form(image_form(encode(DynamicImage::ImageRgb8(RgbImage::new(1, 1)), ImageFormat::Png))),
            200,
            None,
        ),
        (
            "10000x1 image",
            Request::Form(image_form(encode(DynamicImage::ImageRgb8(RgbImage::new(10_000, 1)), ImageFormat::Png))),
            200,
            None,
        ),
        ("EXIF-rotated JPEG", Request::Form(image_form(fixture("orange_exif_rotated.jpg"))), 200, None),
        (
            "decompression bomb (30000x30000 PNG header)",
            Request::Form(image_form(png_claiming_30000_square())),
            413,
            Some("image_too_large"),
        ),
        (
            "ICO image",
            Request::Form(image_form(vec![0, 0, 1, 0, 1, 0, 16, 16, 0, 0, 1, 0, 32, 0, 0, 0, 0, 0, 22, 0, 0, 0])),
            415,
            Some("unsupported_media_type"),
        ),
        ("huge text", Request::Form(image_form(jpeg.clone()).text("text", "x".repeat(5000))), 400, Some("validation")),
        (
            "invalid UTF-8 text",
            Request::Form(image_form(jpeg.clone()).part("text", Part::bytes(vec![0xc3, 0x28]))),
            400,
            Some("validation"),
        ),
        (
            "unknown extra fields",
            Request::Form(image_form(jpeg.clone()).text("colour", "orange").text("x", "y")),
            200,
            None,
        ),
        (
            "path-like filename",
            Request::Form(Form::new().part("image", Part::bytes(jpeg.clone()).file_name("../../etc/passwd"))),
            200,
            None,
        ),
        (
            "too many fields",
            Request::Form((0..10).fold(image_form(jpeg.clone()), |f, i| f.text(format!("extra{i}"), "x"))),
            400,
            Some("validation"),
        ),
        (
            "body over the upload limit",
            Request::Form(image_form(vec![0xff; 3_000_000])),
            413,
            Some("payload_too_large"),
        ),
    ]
}

#[tokio::test]
async fn every_corpus_case_gets_its_status_and_error_type_and_never_a_5xx() {
    let mut config = test_config();
    config.max_upload_bytes = 2_000_000;
    let app = spawn_app_with(config).await;
    let url = format!("{}/predict", app.address);
    let cases = cases();
    assert!(cases.len() >= 25);
    for (name, request, status, error_type) in cases {
        let response = match request {
            Request::Form(form) => app.client.post(&url).multipart(form).send().await,
            Request::Raw { content_type, body } => {
                app.client.post(&url).header("content-type", content_type).body(Body::from(body)).send().await
            }
        }
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        let got = response.status().as_u16();
        let body: serde_json::Value = response.json().await.unwrap_or_else(|e| panic!("{name}: not JSON: {e}"));
        assert_eq!(got, status, "{name}: {body}");
        match error_type {
            Some(kind) => assert_eq!(body["error_type"], kind, "{name}: {body}"),
            None => assert!(
                body["label"].is_string() && body["mapped_probability"].as_f64().unwrap() > 0.0,
                "{name}: {body}"
            ),
        }
    }
    let status = app.get_json("/system_status").await;
    assert_eq!(status["requests"]["server_error"], 0);
    assert_eq!(app.predict_ok(&sample("coffee.png"), None).await["label"], "espresso", "still answering");
}

#[tokio::test]
async fn a_client_that_stalls_mid_body_gets_408() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut config = test_config();
    config.request_timeout_seconds = 1;
    let app = spawn_app_with(config).await;
    let mut stream = tokio::net::TcpStream::connect(app.address.trim_start_matches("http://")).await.unwrap();
    let head = "POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\nContent-Length: 1000\r\n\r\n--b\r\n";
    stream.write_all(head.as_bytes()).await.unwrap();
    // ...and nothing more: the server must give up on its own.
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    assert!(response.contains("request_timeout"), "{response}");
}

#[test]
fn an_exif_rotated_jpeg_is_decoded_upright() {
    let bytes = std::fs::read(repo_path("tests/fixtures/orange_exif_rotated.jpg")).unwrap();
    let (rgb, ()) = food_api::preprocess::decode_rgb(&bytes, ImageFormat::Jpeg, u64::MAX, None, |_| Ok(())).unwrap();
    assert_eq!(rgb.dimensions(), (256, 128), "stored 128x256, shown 256x128");
}
