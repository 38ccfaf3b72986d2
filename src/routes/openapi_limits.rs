//! The limits this server enforces that depend on its settings (`--max-top-k`, `--max-text-chars`,
//! `--max-batch-items`), written into the OpenAPI document it serves, so that the document tells
//! callers (and schemathesis) what will be refused instead of the bare types utoipa derives.
use serde_json::{json, Value};

use crate::config::PredictLimits;

/// Applies the settings' limits to a document utoipa built.
pub fn apply(document: &mut Value, limits: &PredictLimits) {
    let Some(paths) = document.get_mut("paths").and_then(Value::as_object_mut) else { return };
    for operation in paths.values_mut().filter_map(Value::as_object_mut).flat_map(|item| item.values_mut()) {
        // An admin route refuses a caller without the token (401) or from the wrong place (403).
        if operation.get("security").is_some() {
            let responses = &mut operation["responses"];
            for (status, what) in [("401", "No or a wrong admin token"), ("403", "Not an admin caller")] {
                if responses.get(status).is_none() {
                    responses[status] = error_response(what);
                }
            }
        }
        for parameter in operation.get_mut("parameters").and_then(Value::as_array_mut).into_iter().flatten() {
            let name = parameter["name"].as_str().unwrap_or_default().to_string();
            let place = parameter["in"].as_str().unwrap_or_default().to_string();
            match (name.as_str(), place.as_str()) {
                ("top_k", "query") => bound(&mut parameter["schema"], 1, limits.max_top_k as u64),
                ("name", "path") => set_example(parameter, "food"),
                ("version", "path") => set_example(parameter, "stable"),
                _ => {}
            }
        }
    }
    // Uploads: an image that cannot be empty (base64 in JSON), texts within their limit, batches
    // within theirs.
    let chars = limits.max_text_chars;
    if let Some(json_body) = document.pointer_mut("/components/schemas/PredictJson/properties") {
        json_body["image"]["minLength"] = json!(1);
        json_body["text"]["maxLength"] = json!(chars);
    }
    if let Some(form) = document.pointer_mut("/components/schemas/PredictForm/properties") {
        form["text"]["maxLength"] = json!(chars);
    }
    if let Some(batch) = document.pointer_mut("/components/schemas/BatchForm/properties") {
        batch["image"]["minItems"] = json!(1);
        batch["image"]["maxItems"] = json!(limits.max_batch_items);
        // One `text` field or several (multipart repeats a field for a list): a string or an array.
        batch["text"] = json!({
            "type": ["string", "array", "null"],
            "maxLength": chars,
            "items": {"type": "string", "maxLength": chars},
            "maxItems": limits.max_batch_items,
            "description": "Texts pair with images by position (first text, first image); optional",
        });
    }
}

fn error_response(description: &str) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}})
}

fn bound(schema: &mut Value, minimum: u64, maximum: u64) {
    schema["minimum"] = json!(minimum);
    schema["maximum"] = json!(maximum);
}

fn set_example(parameter: &mut Value, example: &str) {
    parameter["example"] = json!(example);
}
