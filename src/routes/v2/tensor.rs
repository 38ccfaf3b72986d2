//! The protocol's infer answer as this server writes it: JSON over HTTP, the same tensors moved into
//! raw bytes for the binary data extension and gRPC (binary.rs).
use serde::Serialize;

/// An infer answer (the protocol's response; `id` echoes the request's).
#[derive(Serialize, utoipa::ToSchema)]
pub struct InferResponse {
    pub model_name: String,
    pub model_version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub outputs: Vec<OutputTensor>,
}

/// One output tensor: `label` (BYTES), `probability` (FP32) or a classification (BYTES,
/// `probability:index:label` per class).
#[derive(Serialize, utoipa::ToSchema)]
pub struct OutputTensor {
    pub name: String,
    /// BYTES or FP32
    pub datatype: &'static str,
    pub shape: Vec<usize>,
    /// The elements, row-major; absent when they follow the JSON as raw bytes (binary data extension).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<TensorData>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameters: Option<BinaryData>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum TensorData {
    Bytes(Vec<String>),
    /// FP32 values (as JSON numbers).
    Fp32(Vec<f64>),
}

/// Where a tensor's elements went instead of `data`: this many bytes of the raw part.
#[derive(Serialize, utoipa::ToSchema)]
pub struct BinaryData {
    pub binary_data_size: usize,
}
