//! Any bytes as a /predict multipart body: field limits, names, text, then the image path.
#![no_main]
use std::sync::OnceLock;
use std::time::Duration;

use actix_web::http::header;
use actix_web::test::TestRequest;
use actix_web::{web, FromRequest};
use food_api::domain::UploadLimits;
use libfuzzer_sys::fuzz_target;

mod common;

const LIMITS: UploadLimits =
    UploadLimits { max_body_bytes: 1 << 20, max_text_chars: 1000, max_parts: 8, read_timeout: Duration::from_secs(30) };

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap())
}

fuzz_target!(|body: &[u8]| {
    let (request, mut payload) = TestRequest::post()
        .insert_header((header::CONTENT_TYPE, "multipart/form-data; boundary=fuzz"))
        .set_payload(body.to_vec())
        .to_http_parts();
    runtime().block_on(async {
        let payload = web::Payload::from_request(&request, &mut payload).await.unwrap();
        // A budget that any body within LIMITS fits, so that every input reaches the parser.
        let mut memory = food_api::admission::Admission::new(1, 16 << 20, false).reservation();
        if let Ok(upload) =
            food_api::routes::extract::predict_upload(request.headers(), payload, LIMITS, &mut memory).await
        {
            if let Some(text) = &upload.text {
                assert!(!text.as_str().is_empty() && text.as_str().chars().count() <= LIMITS.max_text_chars);
            }
            common::preprocess(&upload.image);
        }
    });
});
