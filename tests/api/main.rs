//! Integration tests: the real model, real HTTP on port 0. One binary, one module per area.
mod admin;
mod bad_input;
mod batch;
mod classes;
mod client_closed;
mod corpus;
mod cors;
mod health;
mod onnx;
mod overload;
mod helpers;
mod json_predict;
mod predict;
mod reload;
mod startup;
mod system_status;
mod text;
