"""The rendered deployment files against each target's own checks. Run by tests/api/deploy.rs:

    check_files.py DEPLOY_DIR

- Kubernetes objects (k8s, and kserve's Redis): kubernetes-validate --strict, against the schemas of
  the Kubernetes release it ships (unknown fields are errors).
- KServe's own objects (ServingRuntime, InferenceService, custom resources kubernetes-validate has no
  schema for): every field must be one KServe's SDK models (kserve on PyPI) know, recursively, with
  the right kind of value, and the predictor must use the Open Inference Protocol (v2).
- Truss: config.yaml through truss's own TrussConfig.from_yaml, then validate_forbid_extra().
- CPU sizing (k8s, kserve): every server container is Guaranteed QoS (CPU and memory limits equal
  to their requests), and its FOOD_API_INFERENCE_THREADS is its CPU count, so that no replica
  counts the node's cores.
- Pod Security "restricted" (k8s, kserve), the rules of Kubernetes' Pod Security Standards for the
  pods this renders: non-root, no privilege escalation, every capability dropped, a RuntimeDefault
  or Localhost seccomp profile, no privileged container, no host namespaces, ports or paths, and
  only the volume types the profile allows.
- KServe: the InferenceService says its deployment mode (RawDeployment) instead of falling to the
  cluster's default (Serverless, whose Knative admission refuses a named port, a lifecycle hook
  and fieldRef env, all of which the runtime has).
- Redis (k8s, kserve): a password from the Secret (`--requirepass`), which the servers' Redis URL
  names through an env var listed before it, and a NetworkPolicy that admits only the server's
  pods (by their template's labels, or KServe's inferenceservice label) on 6379.
- Every YAML file: yamllint.
Prints "ok <check>" for each check that ran; exits non-zero with every failure listed.
"""
import re
import sys
from importlib.metadata import version
from pathlib import Path

import kserve
import kubernetes.client
import kubernetes_validate
import yaml
from truss.base.truss_config import TrussConfig
from yamllint import linter
from yamllint.config import YamlLintConfig

YAMLLINT = YamlLintConfig("{extends: default, rules: {line-length: {max: 130}, document-start: disable}}")
KSERVE_GROUP = "serving.kserve.io/"
SCALARS = {"str": str, "int": int, "bool": bool, "float": (int, float), "object": object, "datetime": str}


def model_class(name: str):
    for module in (kserve, kubernetes.client):
        if hasattr(module, name):
            return getattr(module, name)
    raise LookupError(f"no SDK model {name}")


def check_value(value, kind: str, where: str, errors: list) -> None:
    """`value` against an SDK type string: 'str', 'List[V1EnvVar]', 'dict(str, str)', 'V1Container'..."""
    kind = kind.strip()
    if m := re.fullmatch(r"(?:List|list)\[(.+)\]", kind):
        if not isinstance(value, list):
            errors.append(f"{where}: a list expected, found {value!r}")
            return
        for i, item in enumerate(value):
            check_value(item, m[1], f"{where}[{i}]", errors)
    elif m := re.fullmatch(r"(?:Dict\[|dict\()str, (.+)[\])]", kind):
        if not isinstance(value, dict):
            errors.append(f"{where}: a mapping expected, found {value!r}")
            return
        for key, item in value.items():
            check_value(item, m[1], f"{where}.{key}", errors)
    elif kind in SCALARS:
        if not isinstance(value, SCALARS[kind]):
            errors.append(f"{where}: {kind} expected, found {value!r}")
    elif kind == "ResourceQuantity" or kind == "IntOrString":
        if not isinstance(value, (str, int, float)):
            errors.append(f"{where}: a quantity expected, found {value!r}")
    else:
        cls = model_class(kind)
        if not isinstance(value, dict):
            errors.append(f"{where}: a {kind} object expected, found {value!r}")
            return
        fields = {json_name: cls.openapi_types[py] for py, json_name in cls.attribute_map.items()}
        for key, item in value.items():
            if key not in fields:
                errors.append(f"{where}: {kind} has no field {key!r} (known: {', '.join(sorted(fields))})")
            else:
                check_value(item, fields[key], f"{where}.{key}", errors)


def check_kserve_object(doc: dict, where: str, errors: list) -> None:
    kinds = {"ServingRuntime": "V1alpha1ServingRuntime", "InferenceService": "V1beta1InferenceService"}
    if doc.get("kind") not in kinds:
        errors.append(f"{where}: unexpected KServe kind {doc.get('kind')!r}")
        return
    check_value(doc, kinds[doc["kind"]], f"{where} {doc['kind']}", errors)
    if doc["kind"] == "InferenceService" and doc["spec"]["predictor"]["model"].get("protocolVersion") != "v2":
        errors.append(f"{where}: the predictor must speak the Open Inference Protocol (protocolVersion: v2)")
    if doc["kind"] == "ServingRuntime" and doc["spec"].get("protocolVersions") != ["v2"]:
        errors.append(f"{where}: the runtime must declare protocolVersions [v2]")


def server_containers(node):
    """The containers that run this server (they carry FOOD_API_* settings), anywhere in an object."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "containers" and isinstance(value, list):
                yield from (c for c in value if any(e.get("name", "").startswith("FOOD_API_") for e in c.get("env", [])))
            else:
                yield from server_containers(value)
    elif isinstance(node, list):
        for item in node:
            yield from server_containers(item)


def check_cpu_sizing(container: dict, where: str, errors: list) -> None:
    resources = container.get("resources", {})
    requests, limits = resources.get("requests", {}), resources.get("limits", {})
    for kind in ("cpu", "memory"):
        if kind not in requests or str(requests.get(kind)) != str(limits.get(kind)):
            errors.append(f"cpu sizing {where}: {kind} request {requests.get(kind)} and limit {limits.get(kind)} "
                          "differ (not Guaranteed QoS)")
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    if env.get("FOOD_API_INFERENCE_THREADS") != str(requests.get("cpu")):
        errors.append(f"cpu sizing {where}: FOOD_API_INFERENCE_THREADS {env.get('FOOD_API_INFERENCE_THREADS')} "
                      f"for {requests.get('cpu')} CPUs")


RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                      "projected", "secret"}


def pod_specs(doc: dict):
    """(pod-level spec, its containers) of a workload: a Deployment's template, a ServingRuntime."""
    if doc["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        spec = doc["spec"]["template"]["spec"]
        yield spec, spec.get("containers", []) + spec.get("initContainers", [])
    elif doc["kind"] == "ServingRuntime":
        yield doc["spec"], doc["spec"].get("containers", [])


def check_restricted(pod: dict, containers: list, where: str, errors: list) -> None:
    """Pod Security Standards, "restricted" (kubernetes.io/docs/concepts/security/pod-security-standards)."""
    fail = lambda what: errors.append(f"pod security {where}: {what}")  # noqa: E731
    pod_context = pod.get("securityContext", {})
    for host in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(host):
            fail(f"{host} is set")
    for volume in pod.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUMES:
            fail(f"volume {volume['name']} of type {sorted(kinds)}")
    for c in containers:
        name, context = c["name"], c.get("securityContext", {})
        merged = {**pod_context, **context}
        if context.get("privileged"):
            fail(f"{name} is privileged")
        if context.get("allowPrivilegeEscalation") is not False:
            fail(f"{name}: allowPrivilegeEscalation is not false")
        if merged.get("runAsNonRoot") is not True or merged.get("runAsUser") == 0:
            fail(f"{name}: runAsNonRoot is not true")
        if "ALL" not in context.get("capabilities", {}).get("drop", []):
            fail(f"{name}: capabilities do not drop ALL")
        if set(context.get("capabilities", {}).get("add", [])) - {"NET_BIND_SERVICE"}:
            fail(f"{name}: adds capabilities")
        if merged.get("seccompProfile", {}).get("type") not in ("RuntimeDefault", "Localhost"):
            fail(f"{name}: no RuntimeDefault or Localhost seccompProfile")
        if any(p.get("hostPort") for p in c.get("ports", [])):
            fail(f"{name}: a hostPort")


def check_redis(docs: list, where: str, errors: list) -> None:
    fail = lambda what: errors.append(f"redis {where}: {what}")  # noqa: E731
    redis = [d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "food-api-redis"]
    if not redis:
        return fail("no food-api-redis Deployment")
    container = redis[0]["spec"]["template"]["spec"]["containers"][0]
    args, env = container.get("args", []), {e["name"]: e for e in container.get("env", [])}
    secret = env.get("REDIS_PASSWORD", {}).get("valueFrom", {}).get("secretKeyRef")
    if "--requirepass" not in args or args[args.index("--requirepass") + 1] != "$(REDIS_PASSWORD)" or not secret:
        fail("Redis runs without a password from the Secret")
    for c in (c for d in docs for c in server_containers(d)):
        names = [e["name"] for e in c.get("env", [])]
        url = next((e.get("value", "") for e in c["env"] if e["name"] == "FOOD_API_REDIS_URL"), "")
        if "$(REDIS_PASSWORD)" not in url or "REDIS_PASSWORD" not in names[:names.index("FOOD_API_REDIS_URL")]:
            fail(f"container {c['name']}: the Redis URL {url!r} does not carry the password from an earlier env var")
    server_labels = [d["spec"]["template"]["metadata"]["labels"] for d in docs
                     if d["kind"] == "Deployment" and d["metadata"]["name"] != "food-api-redis"]
    services = {d["metadata"]["name"] for d in docs if d["kind"] == "InferenceService"}
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"
                and d["spec"]["podSelector"].get("matchLabels") == {"app": "food-api-redis"}]
    if not policies:
        return fail("no NetworkPolicy selects Redis's pods")
    for rule in policies[0]["spec"].get("ingress", []):
        sources = rule.get("from", [])
        if not sources:
            fail("an ingress rule without `from` admits every pod")
        for source in sources:
            wanted = source.get("podSelector", {}).get("matchLabels", {})
            ours = any(wanted and wanted.items() <= labels.items() for labels in server_labels)
            kserve_pods = wanted.get("serving.kserve.io/inferenceservice") in services
            if not (ours or kserve_pods) or set(source) != {"podSelector"}:
                fail(f"the NetworkPolicy admits {source}, not only the server's pods")


def main(deploy: Path) -> int:
    errors = []
    yaml_files = sorted(p for p in deploy.rglob("*") if p.suffix in (".yaml", ".yml"))
    kube, kserve_objects, sized, pods, modes = 0, 0, 0, 0, 0
    redis_checked = False
    for path in yaml_files:
        text = path.read_text()
        for problem in linter.run(text, YAMLLINT, str(path)):
            errors.append(f"yamllint {path}:{problem.line}:{problem.column}: {problem.message} ({problem.rule})")
        if path.parent.name not in ("k8s", "kserve"):
            continue
        check_redis([d for d in yaml.safe_load_all(text) if d], str(path.relative_to(deploy)), errors)
        redis_checked = True
        for i, doc in enumerate(d for d in yaml.safe_load_all(text) if d):
            where = f"{path.relative_to(deploy)} document {i + 1}"
            for pod, containers in pod_specs(doc):
                check_restricted(pod, containers, f"{where} ({doc['kind']} {doc['metadata']['name']})", errors)
                pods += 1
            if doc["kind"] == "InferenceService":
                mode = doc["metadata"].get("annotations", {}).get("serving.kserve.io/deploymentMode")
                if mode != "RawDeployment":
                    errors.append(f"kserve mode {where}: deploymentMode {mode!r}, so the cluster's default "
                                  "(Serverless: Knative refuses the runtime's named port, preStop hook and fieldRef env)")
                modes += 1
            for container in server_containers(doc):
                check_cpu_sizing(container, f"{where} container {container.get('name')}", errors)
                sized += 1
            if doc["apiVersion"].startswith(KSERVE_GROUP):
                check_kserve_object(doc, f"kserve {where}", errors)
                kserve_objects += 1
            else:
                try:
                    kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)
                except kubernetes_validate.ValidationError as e:
                    errors.append(f"kubernetes-validate {where} ({doc['kind']} {doc['metadata']['name']}): {e.message} at {'.'.join(map(str, e.path))}")
                kube += 1
    failed = lambda prefix: any(e.startswith(prefix) for e in errors)  # noqa: E731
    if not failed("yamllint"):
        print(f"ok yamllint: {len(yaml_files)} files")
    if not failed("kubernetes-validate"):
        print(f"ok kubernetes-validate --strict: {kube} objects (Kubernetes {kubernetes_validate.latest_version()})")
    if pods and not failed("pod security"):
        print(f"ok pod security restricted: {pods} pod templates")
    elif not pods:
        errors.append("pod security: no pod template found")
    if redis_checked and not failed("redis"):
        print("ok redis: a password from the Secret, reachable only from the server's pods")
    if modes and not failed("kserve mode"):
        print(f"ok kserve mode: {modes} InferenceService in RawDeployment, said outright")
    if sized and not failed("cpu sizing"):
        print(f"ok cpu sizing: {sized} server containers Guaranteed, as many inference threads as CPUs")
    elif not sized:
        errors.append("cpu sizing: no server container found in k8s/ or kserve/")
    if not failed("kserve"):
        print(f"ok kserve: {kserve_objects} objects against the models of kserve {version('kserve')}")

    truss = deploy / "truss" / "config.yaml"
    try:
        config = TrussConfig.from_yaml(truss)
        config.validate_forbid_extra()
        server = config.docker_server
        for route in ("predict_endpoint", "readiness_endpoint", "liveness_endpoint"):
            if not getattr(server, route):
                errors.append(f"truss: docker_server.{route} is empty")
        print(f"ok truss: TrussConfig.from_yaml and validate_forbid_extra ({server.predict_endpoint} on :{server.server_port})")
    except Exception as e:  # any refusal of truss's loader is the failure being checked for
        errors.append(f"truss {truss}: {type(e).__name__}: {e}")

    for error in errors:
        print(f"FAIL {error}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
