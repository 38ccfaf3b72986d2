//! What an ONNX file may not ask of the server, checked on its bytes before ONNX Runtime sees them.
//!
//! A tensor's data may live in "external data", a file the model names: ONNX Runtime reads it from
//! any path (relative to the working directory when the model comes from memory, as ours do), so a
//! model could carry another file's bytes, `Cargo.toml` say, into its answers. A classifier ships
//! its weights inside the file, so a model that names external data anywhere is refused.
//!
//! Only the fields on the way to a tensor are declared (field numbers of onnx.proto); prost skips
//! every other field without keeping it, and its recursion limit bounds nested graphs.
use prost::Message;

use super::shorten;

#[derive(Clone, PartialEq, Message)]
struct ModelProto {
    #[prost(message, optional, tag = "7")]
    graph: Option<GraphProto>,
    #[prost(message, repeated, tag = "20")]
    training_info: Vec<TrainingInfoProto>,
    #[prost(message, repeated, tag = "25")]
    functions: Vec<FunctionProto>,
}

/// Graphs a runtime for training would run; inference ignores them, but nothing in them may
/// name another file either.
#[derive(Clone, PartialEq, Message)]
struct TrainingInfoProto {
    #[prost(message, optional, tag = "1")]
    initialization: Option<GraphProto>,
    #[prost(message, optional, tag = "2")]
    algorithm: Option<GraphProto>,
}

#[derive(Clone, PartialEq, Message)]
struct FunctionProto {
    #[prost(message, repeated, tag = "7")]
    node: Vec<NodeProto>,
    /// Default values of the function's attributes.
    #[prost(message, repeated, tag = "11")]
    attribute_proto: Vec<AttributeProto>,
}

#[derive(Clone, PartialEq, Message)]
struct GraphProto {
    #[prost(message, repeated, tag = "1")]
    node: Vec<NodeProto>,
    #[prost(message, repeated, tag = "5")]
    initializer: Vec<TensorProto>,
    #[prost(message, repeated, tag = "15")]
    sparse_initializer: Vec<SparseTensorProto>,
}

#[derive(Clone, PartialEq, Message)]
struct NodeProto {
    #[prost(message, repeated, tag = "5")]
    attribute: Vec<AttributeProto>,
}

/// A node's attribute: tensors (a `Constant`'s value) and subgraphs (`If`, `Loop`, `Scan`).
#[derive(Clone, PartialEq, Message)]
struct AttributeProto {
    #[prost(message, optional, tag = "5")]
    t: Option<TensorProto>,
    #[prost(message, optional, tag = "6")]
    g: Option<GraphProto>,
    #[prost(message, repeated, tag = "10")]
    tensors: Vec<TensorProto>,
    #[prost(message, repeated, tag = "11")]
    graphs: Vec<GraphProto>,
    #[prost(message, optional, tag = "22")]
    sparse_tensor: Option<SparseTensorProto>,
    #[prost(message, repeated, tag = "23")]
    sparse_tensors: Vec<SparseTensorProto>,
}

#[derive(Clone, PartialEq, Message)]
struct SparseTensorProto {
    #[prost(message, optional, tag = "1")]
    values: Option<TensorProto>,
    #[prost(message, optional, tag = "2")]
    indices: Option<TensorProto>,
}

#[derive(Clone, PartialEq, Message)]
struct TensorProto {
    #[prost(string, tag = "8")]
    name: String,
    #[prost(message, repeated, tag = "13")]
    external_data: Vec<StringStringEntryProto>,
    /// 1: EXTERNAL.
    #[prost(int32, tag = "14")]
    data_location: i32,
}

#[derive(Clone, PartialEq, Message)]
struct StringStringEntryProto {
    #[prost(string, tag = "1")]
    key: String,
    #[prost(string, tag = "2")]
    value: String,
}

pub fn check(bytes: &[u8]) -> Result<(), String> {
    let model = ModelProto::decode(bytes).map_err(|e| format!("not a loadable ONNX model: {e}"))?;
    let training = model.training_info.iter().flat_map(|t| t.initialization.iter().chain(&t.algorithm));
    let mut graphs: Vec<&GraphProto> = model.graph.iter().chain(training).collect();
    let mut tensors: Vec<&TensorProto> = Vec::new();
    let mut nodes: Vec<&NodeProto> = model.functions.iter().flat_map(|f| &f.node).collect();
    let mut attributes: Vec<&AttributeProto> = model.functions.iter().flat_map(|f| &f.attribute_proto).collect();
    while !(graphs.is_empty() && nodes.is_empty() && attributes.is_empty()) {
        for graph in graphs.drain(..) {
            tensors.extend(&graph.initializer);
            tensors.extend(graph.sparse_initializer.iter().flat_map(sparse));
            nodes.extend(&graph.node);
        }
        attributes.extend(nodes.drain(..).flat_map(|n| &n.attribute));
        for attribute in attributes.drain(..) {
            tensors.extend(attribute.t.iter().chain(&attribute.tensors));
            tensors.extend(attribute.sparse_tensor.iter().chain(&attribute.sparse_tensors).flat_map(sparse));
            graphs.extend(attribute.g.iter().chain(&attribute.graphs));
        }
    }
    match tensors.iter().find(|t| t.data_location == 1 || !t.external_data.is_empty()) {
        None => Ok(()),
        Some(tensor) => {
            let location = tensor.external_data.iter().find(|e| e.key == "location").map_or("", |e| e.value.as_str());
            Err(format!(
                "tensor {} keeps its data in an outside file ({}): refused, a served model carries its weights inside its file",
                shorten(&tensor.name),
                shorten(location)
            ))
        }
    }
}

fn sparse(tensor: &SparseTensorProto) -> impl Iterator<Item = &TensorProto> {
    tensor.values.iter().chain(&tensor.indices)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tensor(name: &str, location: Option<&str>) -> TensorProto {
        TensorProto {
            name: name.into(),
            external_data: location
                .map(|l| vec![StringStringEntryProto { key: "location".into(), value: l.into() }])
                .unwrap_or_default(),
            data_location: i32::from(location.is_some()),
        }
    }

    fn model(graph: GraphProto) -> Vec<u8> {
        ModelProto { graph: Some(graph), ..Default::default() }.encode_to_vec()
    }

    #[test]
    fn external_data_is_refused_wherever_it_hides() {
        let inside = GraphProto { initializer: vec![tensor("w", None)], ..Default::default() };
        assert_eq!(check(&model(inside.clone())), Ok(()));
        let top = GraphProto { initializer: vec![tensor("w", Some("Cargo.toml"))], ..Default::default() };
        let error = check(&model(top)).unwrap_err();
        assert!(error.contains("\"w\"") && error.contains("Cargo.toml"), "{error}");
        // In a Constant node of the else-branch of an If inside the main graph.
        let constant = NodeProto {
            attribute: vec![AttributeProto { t: Some(tensor("c", Some("/etc/passwd"))), ..Default::default() }],
        };
        let branch = GraphProto { node: vec![constant], ..Default::default() };
        let if_node = NodeProto { attribute: vec![AttributeProto { g: Some(branch), ..Default::default() }] };
        let nested = GraphProto { node: vec![if_node], ..inside };
        assert!(check(&model(nested)).unwrap_err().contains("/etc/passwd"));
        // In a function's default attribute, and in a training graph.
        let default = AttributeProto { t: Some(tensor("d", Some("secret.bin"))), ..Default::default() };
        let function = FunctionProto { attribute_proto: vec![default], ..Default::default() };
        let in_function = ModelProto { functions: vec![function], ..Default::default() };
        assert!(check(&in_function.encode_to_vec()).unwrap_err().contains("secret.bin"));
        let training = TrainingInfoProto {
            initialization: Some(GraphProto { initializer: vec![tensor("t", Some("key.pem"))], ..Default::default() }),
            algorithm: None,
        };
        let in_training = ModelProto { training_info: vec![training], ..Default::default() };
        assert!(check(&in_training.encode_to_vec()).unwrap_err().contains("key.pem"));
        let long = "x".repeat(1 << 20);
        let error = check(&model(GraphProto { initializer: vec![tensor(&long, Some(&long))], ..Default::default() }))
            .unwrap_err();
        assert!(error.len() < 400, "names are shortened: {} bytes", error.len());
        assert!(check(b"\xff\xff\xff garbage").is_err());
    }
}
