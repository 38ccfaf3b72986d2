//! docker-compose: two replicas, Redis for the shared cache and nginx in front (round robin; a
//! prediction whose replica failed is retried on the other one).
use super::{quoted, Plan};

fn replica(plan: &Plan, name: &str) -> String {
    let mut env = format!("      FOOD_API_REPLICA_NAME: {name}\n");
    if plan.setting("FOOD_API_REDIS_URL").is_none() {
        env += "      FOOD_API_REDIS_URL: redis://redis:6379\n";
    }
    // A secret is passed through from the environment of `docker-compose up` (a key without a
    // value): never written here, and absent from the replica when unset there (an empty token is
    // refused at start).
    for s in &plan.settings {
        match s.secret {
            true => env += &format!("      {}:\n", s.env),
            false => env += &format!("      {}: {}\n", s.env, quoted(&s.value)),
        }
    }
    // As many inference threads as the replica may use CPUs (`cpus` below), said outright.
    if plan.setting("FOOD_API_INFERENCE_THREADS").is_none() {
        env += &format!("      FOOD_API_INFERENCE_THREADS: \"{}\"\n", plan.cpus);
    }
    if plan.setting("FOOD_API_ADMIN_TOKEN").is_none() {
        // Management through nginx needs a token (callers are not on the replica's loopback).
        env += "      FOOD_API_ADMIN_TOKEN:\n";
    }
    if plan.setting("FOOD_API_CACHE_SECRET").is_none() {
        // The replicas sign the shared cache's entries with one secret (`deploy deploy` makes one
        // when the environment has none); each would otherwise make its own and never share.
        env += "      FOOD_API_CACHE_SECRET:\n";
    }
    format!(
        r#"  {name}:
    image: {image}
    restart: unless-stopped
    stop_grace_period: {grace}s
    # Hardened as the Kubernetes pods are: nothing written outside the data volume and /tmp, no
    # capability, no privilege gained by exec, and bounded CPU and memory.
    read_only: true
    tmpfs:
      - /tmp
    cap_drop: ["ALL"]
    security_opt: ["no-new-privileges:true"]
    cpus: {cpus}
    mem_limit: 4g
    environment:
{env}    volumes:
      - {name}-data:/opt/food-api/data
    depends_on:
      redis:
        condition: service_healthy
"#,
        image = plan.image,
        grace = plan.server.shutdown_grace_seconds + 5,
        cpus = plan.cpus,
    )
}

pub fn compose(plan: &Plan) -> String {
    let infra = &plan.infra_image;
    format!(
        r#"# Rendered by `food-api deploy plan --target compose` from the server's own flags: edit those, not this file.
# Up: food-api deploy deploy --target compose (or scripts/compose-test.sh, which also tests it).
version: "2.4"
services:
  redis:
    image: {infra}
    command: ["redis-server", "--bind", "0.0.0.0", "--protected-mode", "no", "--save", "", "--appendonly", "no",
              "--maxmemory", "256mb", "--maxmemory-policy", "allkeys-lru"]
    user: redis
    healthcheck:
      test: ["CMD", "redis-cli", "ping"]
      interval: 1s
      timeout: 1s
      retries: 30
{api1}{api2}  nginx:
    image: {infra}
    command: ["nginx", "-c", "/etc/nginx/food-api.conf", "-g", "daemon off;"]
    volumes:
      - ./nginx.conf:/etc/nginx/food-api.conf:ro
    ports:
      - "127.0.0.1:${{FOOD_API_PUBLISH_PORT:-{publish}}}:8080"
    depends_on:
      api1:
        condition: service_healthy
      api2:
        condition: service_healthy
volumes:
  api1-data:
  api2-data:
"#,
        api1 = replica(plan, "api1"),
        api2 = replica(plan, "api2"),
        publish = plan.publish_port,
    )
}

pub fn nginx(plan: &Plan) -> String {
    let port = plan.server.port;
    // nginx refuses bodies the server would refuse anyway, before they cross to it.
    let max_body = plan.server.max_upload_bytes;
    format!(
        r#"# Rendered by `food-api deploy plan --target compose` from the server's own flags: edit those, not this file.
worker_processes 1;
pid /tmp/nginx.pid;
events {{
    worker_connections 1024;
}}
http {{
    access_log off;
    client_max_body_size {max_body};
    client_body_temp_path /tmp/nginx-body;
    proxy_temp_path /tmp/nginx-proxy;
    upstream food_api {{
        server api1:{port} max_fails=1 fail_timeout=2s;
        server api2:{port} max_fails=1 fail_timeout=2s;
        keepalive 32;
    }}
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header Host $host;
    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    proxy_connect_timeout 1s;
    proxy_read_timeout 60s;
    server {{
        listen 8080;
        # Predictions change nothing: one whose replica failed or was overloaded is sent to the other.
        location ~ ^/(predict|predict/batch|v2/models/[^/]+(/versions/[^/]+)?/infer)$ {{
            proxy_next_upstream error timeout http_502 http_503 http_504 non_idempotent;
            proxy_next_upstream_tries 2;
            proxy_pass http://food_api;
        }}
        # Everything else (management included) is sent once.
        location / {{
            proxy_next_upstream error timeout;
            proxy_pass http://food_api;
        }}
    }}
}}
"#
    )
}
