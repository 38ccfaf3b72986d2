//! Kubernetes: the 9:1 canary (two Deployments behind one Service), autoscaling, a disruption
//! budget and Redis for the shared cache; and KServe's ServingRuntime and InferenceService on the
//! Open Inference Protocol routes.
use super::{quoted, Plan};

/// Secrets live in the Secret `food-api` (README: Deploying), one key per variable.
fn env(plan: &Plan, redis: bool, indent: &str) -> String {
    let mut out = String::new();
    let mut settings = plan.settings.clone();
    // As many inference threads as the pod has CPUs, said outright: a pod that counted the
    // node's cores would start one per core of a 64-core node.
    if plan.setting("FOOD_API_INFERENCE_THREADS").is_none() {
        let threads = plan.cpus.to_string();
        settings.push(super::Setting { env: "FOOD_API_INFERENCE_THREADS".into(), value: threads, secret: false });
        settings.sort_by(|a, b| a.env.cmp(&b.env));
    }
    if redis && plan.setting("FOOD_API_REDIS_URL").is_none() {
        // Redis's password, from the Secret, before the URL that names it: Kubernetes expands
        // $(VAR) from variables listed earlier in the container's env.
        out += &format!(
            "{indent}- name: REDIS_PASSWORD\n{indent}  valueFrom:\n{indent}    secretKeyRef:\n{indent}      name: food-api\n{indent}      key: redis-password\n"
        );
        let url = "redis://:$(REDIS_PASSWORD)@food-api-redis:6379".to_string();
        settings.push(super::Setting { env: "FOOD_API_REDIS_URL".into(), value: url, secret: false });
    }
    // The replicas sign the shared cache's entries with one secret, from the Secret (README).
    if redis && plan.setting("FOOD_API_CACHE_SECRET").is_none() {
        settings.push(super::Setting { env: "FOOD_API_CACHE_SECRET".into(), value: String::new(), secret: true });
    }
    for s in &settings {
        out += &format!("{indent}- name: {}\n", s.env);
        if s.secret {
            let key = s.env.trim_start_matches("FOOD_API_").to_lowercase().replace('_', "-");
            out += &format!(
                "{indent}  valueFrom:\n{indent}    secretKeyRef:\n{indent}      name: food-api\n{indent}      key: {key}\n"
            );
        } else {
            out += &format!("{indent}  value: {}\n", quoted(&s.value));
        }
    }
    // The pod's name names the replica in the history and the X-Replica header.
    out += &format!(
        "{indent}- name: FOOD_API_REPLICA_NAME\n{indent}  valueFrom:\n{indent}    fieldRef:\n{indent}      fieldPath: metadata.name\n"
    );
    out
}

/// The server's container; `indent` is the list's.
fn container(plan: &Plan, name: &str, image: &str, indent: &str) -> String {
    let (port, cpus) = (plan.server.port, plan.cpus);
    let env = env(plan, true, &format!("{indent}    "));
    format!(
        r#"{indent}- name: {name}
{indent}  image: {image}
{indent}  ports:
{indent}    - containerPort: {port}
{indent}      name: http
{indent}      protocol: TCP
{indent}  env:
{env}{indent}  # The model loads and warms up before the port opens: up to two minutes.
{indent}  startupProbe:
{indent}    httpGet:
{indent}      path: /v2/health/ready
{indent}      port: http
{indent}    periodSeconds: 2
{indent}    failureThreshold: 60
{indent}  readinessProbe:
{indent}    httpGet:
{indent}      path: /v2/health/ready
{indent}      port: http
{indent}    periodSeconds: 5
{indent}    failureThreshold: 2
{indent}  livenessProbe:
{indent}    httpGet:
{indent}      path: /v2/health/live
{indent}      port: http
{indent}    periodSeconds: 10
{indent}    failureThreshold: 3
{indent}  lifecycle:
{indent}    # Endpoints are removed asynchronously: keep serving while they catch up, then SIGTERM
{indent}    # starts the graceful shutdown (--shutdown-grace-seconds).
{indent}    preStop:
{indent}      exec:
{indent}        command: ["sleep", "5"]
{indent}  # Limits = requests: Guaranteed QoS. The CPU quota is what the server counts its cores by
{indent}  # (so a lone request's libtorch team is {cpus} threads, not the node's cores), and under
{indent}  # the kubelet's static CPU manager the pod gets {cpus} cores of its own, which its threads
{indent}  # are then bound to. Memory: the model, --memory-budget-mb for requests, and a second copy
{indent}  # of a model while an upload is validated.
{indent}  resources:
{indent}    requests:
{indent}      cpu: "{cpus}"
{indent}      memory: 4Gi
{indent}    limits:
{indent}      cpu: "{cpus}"
{indent}      memory: 4Gi
{indent}  securityContext:
{indent}    runAsNonRoot: true
{indent}    runAsUser: 10001
{indent}    runAsGroup: 10001
{indent}    readOnlyRootFilesystem: true
{indent}    allowPrivilegeEscalation: false
{indent}    capabilities:
{indent}      drop: ["ALL"]
{indent}    # Pod Security "restricted" requires a seccomp profile; the runtime's default suffices
{indent}    # (the server sandboxes a model's validation with its own seccomp filter inside it).
{indent}    seccompProfile:
{indent}      type: RuntimeDefault
{indent}  volumeMounts:
{indent}    - name: data
{indent}      mountPath: /opt/food-api/data
{indent}    - name: tmp
{indent}      mountPath: /tmp
"#
    )
}

fn volumes(indent: &str) -> String {
    format!("{indent}volumes:\n{indent}  - name: data\n{indent}    emptyDir: {{}}\n{indent}  - name: tmp\n{indent}    emptyDir: {{}}\n")
}

fn deployment(plan: &Plan, track: &str, replicas: u32, image: &str) -> String {
    let grace = plan.server.shutdown_grace_seconds + 10;
    let container = container(plan, "food-api", image, "        ");
    let volumes = volumes("      ");
    format!(
        r#"---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: food-api-{track}
  labels:
    app: food-api
    track: {track}
spec:
  replicas: {replicas}
  selector:
    matchLabels:
      app: food-api
      track: {track}
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxUnavailable: 0
      maxSurge: 1
  template:
    metadata:
      labels:
        app: food-api
        track: {track}
    spec:
      # The preStop pause, the graceful shutdown's grace and a margin.
      terminationGracePeriodSeconds: {grace}
      securityContext:
        fsGroup: 10001
      containers:
{container}{volumes}"#
    )
}

/// Redis for the shared cache: a password from the Secret, and a NetworkPolicy that lets only the
/// server's pods (`clients`: their labels) reach it. Without both, any pod of the cluster could
/// write answers the replicas serve (the entries are also signed: FOOD_API_CACHE_SECRET).
fn redis(plan: &Plan, clients: &str) -> String {
    let image = &plan.redis_image;
    format!(
        r#"---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: food-api-redis
  labels:
    app: food-api-redis
spec:
  replicas: 1
  selector:
    matchLabels:
      app: food-api-redis
  template:
    metadata:
      labels:
        app: food-api-redis
    spec:
      containers:
        - name: redis
          image: {image}
          # A cache: nothing persisted, the least recently used answers evicted at the limit.
          args: ["--save", "", "--appendonly", "no", "--maxmemory", "256mb", "--maxmemory-policy", "allkeys-lru",
                 "--requirepass", "$(REDIS_PASSWORD)"]
          env:
            - name: REDIS_PASSWORD
              valueFrom:
                secretKeyRef:
                  name: food-api
                  key: redis-password
          ports:
            - containerPort: 6379
              name: redis
          readinessProbe:
            tcpSocket:
              port: redis
            periodSeconds: 5
          resources:
            requests:
              cpu: 100m
              memory: 300Mi
            limits:
              memory: 300Mi
          # The redis image's own user; nothing written but its empty working folder.
          securityContext:
            runAsNonRoot: true
            runAsUser: 999
            runAsGroup: 999
            readOnlyRootFilesystem: true
            allowPrivilegeEscalation: false
            capabilities:
              drop: ["ALL"]
            seccompProfile:
              type: RuntimeDefault
          volumeMounts:
            - name: data
              mountPath: /data
      volumes:
        - name: data
          emptyDir: {{}}
---
apiVersion: v1
kind: Service
metadata:
  name: food-api-redis
spec:
  selector:
    app: food-api-redis
  ports:
    - port: 6379
      targetPort: redis
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: food-api-redis
spec:
  podSelector:
    matchLabels:
      app: food-api-redis
  policyTypes: ["Ingress"]
  ingress:
    - from:
        - podSelector:
            matchLabels:
              {clients}
      ports:
        - port: 6379
          protocol: TCP
"#
    )
}

const HEADER: &str = "# Rendered by `food-api deploy plan` from the server's own flags: edit those, not this file.\n";

pub fn kubernetes(plan: &Plan) -> String {
    let port = plan.server.port;
    let mut out = format!(
        "{HEADER}# The canary: food-api-canary runs one pod for nine of food-api-stable, behind one Service (9:1).\n\
         # Roll back a stable rollout: kubectl rollout undo deployment/food-api-stable\n\
         # Stop the canary: kubectl scale deployment/food-api-canary --replicas=0\n"
    );
    out += &deployment(plan, "stable", 9, &plan.image);
    out += &deployment(plan, "canary", 1, &plan.canary_image);
    out += &format!(
        r#"---
apiVersion: v1
kind: Service
metadata:
  name: food-api
spec:
  selector:
    app: food-api
  ports:
    - name: http
      port: 80
      targetPort: {port}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: food-api-stable
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: food-api-stable
  minReplicas: 9
  maxReplicas: 27
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: 70
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: food-api
spec:
  maxUnavailable: 1
  selector:
    matchLabels:
      app: food-api
"#
    );
    out + &redis(plan, "app: food-api")
}

pub fn kserve(plan: &Plan) -> String {
    let container = container(plan, "kserve-container", &plan.image, "    ");
    let volumes = volumes("  ");
    format!(
        r#"{HEADER}# KServe serves it with the Open Inference Protocol (v2) routes: /v2/models/food/infer.
---
apiVersion: serving.kserve.io/v1alpha1
kind: ServingRuntime
metadata:
  name: food-api
spec:
  supportedModelFormats:
    - name: food-api
      version: "1"
      autoSelect: true
  protocolVersions:
    - v2
  containers:
{container}{volumes}---
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: food
  annotations:
    # RawDeployment, said outright rather than left to the cluster's default (Serverless in
    # KServe's default install): Knative's admission refuses this runtime's named port `http`,
    # its preStop hook (the graceful shutdown's pause) and its fieldRef env (the replica's name).
    # The server queues, admits and sheds load itself, and a cold start loads and warms a model
    # (seconds), so Knative's request-driven scaling to zero would buy little here.
    serving.kserve.io/deploymentMode: RawDeployment
spec:
  predictor:
    minReplicas: 1
    maxReplicas: 10
    model:
      modelFormat:
        name: food-api
      runtime: food-api
      protocolVersion: v2
{redis}"#,
        // KServe labels the predictor's pods with the InferenceService's name.
        redis = redis(plan, "serving.kserve.io/inferenceservice: food")
    )
}
