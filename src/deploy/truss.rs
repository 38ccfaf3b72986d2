//! Baseten's Truss: a custom server (`docker_server`) from the image, its routes named.
use super::{quoted, Plan};

pub fn config(plan: &Plan) -> String {
    let port = plan.server.port;
    let mut env = String::new();
    let mut secrets = String::new();
    for s in &plan.settings {
        if s.secret {
            // Truss hands secrets to the server as files under /secrets: the token file flag reads one.
            let name = s.env.trim_start_matches("FOOD_API_").to_lowercase();
            secrets += &format!("  {name}: null\n");
            if s.env == "FOOD_API_ADMIN_TOKEN" {
                env += &format!("  FOOD_API_ADMIN_TOKEN_FILE: {}\n", quoted(&format!("/secrets/{name}")));
            }
        } else {
            env += &format!("  {}: {}\n", s.env, quoted(&s.value));
        }
    }
    let secrets = if secrets.is_empty() { "secrets: {}\n".to_string() } else { format!("secrets:\n{secrets}") };
    format!(
        r#"# Rendered by `food-api deploy plan --target truss` from the server's own flags: edit those, not this file.
# Push: truss push deploy/truss (the image must be in a registry Baseten can pull from).
model_name: food-api
python_version: py311
base_image:
  image: {image}
docker_server:
  start_command: /opt/food-api/food-api
  server_port: {port}
  # JSON with a base64 image: {{"image": "<base64>", "text": "..."}}
  predict_endpoint: /predict
  readiness_endpoint: /v2/health/ready
  liveness_endpoint: /v2/health/live
resources:
  cpu: "2"
  memory: 4Gi
  use_gpu: false
environment_variables:
{env}{secrets}"#,
        image = plan.image,
    )
}
