//! Any bytes as the `image` file: format sniffing, header checks, decoding, resizing.
#![no_main]
use actix_web::web::Bytes;
use food_api::domain::ImageUpload;
use libfuzzer_sys::fuzz_target;

mod common;

fuzz_target!(|data: &[u8]| {
    if let Ok(image) = ImageUpload::parse(Bytes::copy_from_slice(data)) {
        common::preprocess(&image);
    }
});
