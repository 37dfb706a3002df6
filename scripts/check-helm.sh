#!/usr/bin/env bash
# check-helm.sh: lint, render and validate the Helm chart (helm/accord), offline.
#
#   scripts/check-helm.sh            # every case; prints `helm: N passed, M failed`
#
# For each values file under helm/values/ (defaults, production, all-on):
#   1. `helm lint --strict` with that file;
#   2. `helm template` at each Kubernetes version of K8S_VERSIONS;
#   3. every rendered manifest validated by kubernetes-validate --strict (the
#      Kubernetes API's own JSON schemas, shipped inside the package: no network)
#      against that version. The ServiceMonitor is a CRD the package has no schema
#      for: it is checked structurally by step 4 instead, and said so;
#   4. assertions a platform team relies on (non-root, read-only root, the key only
#      from an existing Secret, the checksum annotation, the probes, the gateway
#      config's keys, the agreement byte for byte, selectors that match, ...).
# Then renders that must fail do (no brokers, no Secret, a key in values, a grace
# period shorter than the drain, ...), the checksum follows the gateway config but not
# the agreement, and the validator rejects a deliberately broken manifest.
#
# Installs what it needs into $ACCORD_CACHE (default ~/.cache/accord) on first use,
# from the registries only: helm with `go install` from the Go module proxy, and
# kubernetes-validate from PyPI into a venv. A second run reuses both.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

readonly HELM_VERSION="${ACCORD_HELM_VERSION:-v3.22.0}"
readonly KV_VERSION="${ACCORD_KUBERNETES_VALIDATE_VERSION:-1.37.0}"
# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest
# the validator carries schemas for.
readonly K8S_VERSIONS=(1.31.0 1.37.0)
readonly CACHE_ROOT="${ACCORD_CACHE:-${HOME:-/tmp}/.cache/accord}"
readonly HELM_DIR="${CACHE_ROOT}/helm-${HELM_VERSION}"
readonly HELM="${HELM_DIR}/bin/helm"
readonly VENV="${CACHE_ROOT}/kubernetes-validate-${KV_VERSION}"
readonly CHART=helm/accord
readonly RELEASE=accord-test
readonly NAMESPACE=accord

say() { printf 'check-helm: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

# ------------------------------------------------------------------ install --

lock() {  # lock NAME: serialise concurrent installs into the cache
    mkdir -p "$CACHE_ROOT"
    if command -v flock >/dev/null 2>&1; then
        exec 9>"${CACHE_ROOT}/.$1.lock"
        flock 9
    fi
}
unlock() { if command -v flock >/dev/null 2>&1; then exec 9>&-; fi; }

install_helm() {
    [[ -x "$HELM" ]] && return 0
    command -v go >/dev/null 2>&1 || die "go is not installed; helm is installed with \`go install helm.sh/helm/v3/cmd/helm@${HELM_VERSION}\`"
    lock helm
    if [[ ! -x "$HELM" ]]; then
        say "installing helm ${HELM_VERSION} into ${HELM_DIR} (go install, from the Go module proxy; a few minutes the first time)"
        local work
        work="$(mktemp -d "${CACHE_ROOT}/.helm-install.XXXXXX")"
        if ! GOBIN="${work}/bin" GOFLAGS="${GOFLAGS:-} -mod=mod" \
                go install "helm.sh/helm/v3/cmd/helm@${HELM_VERSION}" >"${work}/go.log" 2>&1; then
            tail -n 30 "${work}/go.log" >&2 || true
            rm -rf "$work"
            die "go install helm.sh/helm/v3/cmd/helm@${HELM_VERSION} failed (output above)"
        fi
        rm -rf "$HELM_DIR"
        mkdir -p "$HELM_DIR"
        mv "${work}/bin" "${HELM_DIR}/bin"
        rm -rf "$work"
    fi
    unlock
}

install_validator() {
    [[ -x "${VENV}/bin/kubernetes-validate" ]] && return 0
    command -v python3 >/dev/null 2>&1 || die "python3 is not installed; kubernetes-validate is a Python package"
    lock kubernetes-validate
    if [[ ! -x "${VENV}/bin/kubernetes-validate" ]]; then
        say "installing kubernetes-validate ${KV_VERSION} into ${VENV} (pip, from PyPI)"
        local work
        work="$(mktemp -d "${CACHE_ROOT}/.kv-install.XXXXXX")"
        # Built in place under its final name (a venv does not survive being moved).
        rm -rf "$VENV"
        if ! { python3 -m venv "$VENV" && "${VENV}/bin/pip" install --quiet --disable-pip-version-check \
                "kubernetes-validate==${KV_VERSION}"; } >"${work}/pip.log" 2>&1; then
            tail -n 30 "${work}/pip.log" >&2 || true
            rm -rf "$work" "$VENV"
            die "pip install kubernetes-validate==${KV_VERSION} failed (output above)"
        fi
        rm -rf "$work"
    fi
    unlock
}

install_helm
install_validator

WORK="$(mktemp -d "${TMPDIR:-/tmp}/accord-check-helm.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
# Keep helm away from the user's own helm config, cache and repositories.
export HELM_CACHE_HOME="${WORK}/helm/cache" HELM_CONFIG_HOME="${WORK}/helm/config" HELM_DATA_HOME="${WORK}/helm/data"
PY="${VENV}/bin/python"

say "helm $("$HELM" version --template '{{.Version}}' 2>/dev/null || echo "$HELM_VERSION") ($HELM), kubernetes-validate $("${VENV}/bin/kubernetes-validate" --version), Kubernetes ${K8S_VERSIONS[*]}"

passed=0
failed=0
results=()
pass() { passed=$((passed + 1)); results+=("ok    $1"); }
fail() { failed=$((failed + 1)); results+=("FAIL  $1"); say "FAIL $1"; }

# ------------------------------------------------------------ the assertions --
# Checks on one rendered release, with the values that made it (chart defaults
# merged with the case's file and --set-file).
cat >"${WORK}/assert.py" <<'PY'
import base64, hashlib, json, re, sys
import yaml

rendered, chart_values, case_values = sys.argv[1:4]
agreement_file = sys.argv[4] if len(sys.argv) > 4 and sys.argv[4] else None

def merge(a, b):
    out = dict(a)
    for k, v in (b or {}).items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out

values = merge(yaml.safe_load(open(chart_values)), yaml.safe_load(open(case_values)))
if agreement_file:
    values["agreement"]["content"] = open(agreement_file, encoding="utf-8", newline="").read()
docs = [d for d in yaml.safe_load_all(open(rendered)) if d]
problems = []
def check(ok, what):
    if not ok:
        problems.append(what)

by_kind = {}
for d in docs:
    by_kind.setdefault(d["kind"], []).append(d)
def one(kind):
    items = by_kind.get(kind, [])
    check(len(items) == 1, f"expected one {kind}, found {len(items)}")
    return items[0] if items else {}

# --- every object
for d in docs:
    name = f'{d["kind"]}/{d["metadata"]["name"]}'
    labels = d["metadata"].get("labels", {})
    check(labels.get("app.kubernetes.io/name") == "accord", f"{name}: no app.kubernetes.io/name=accord label")
    check(labels.get("app.kubernetes.io/managed-by") == "Helm", f"{name}: no managed-by label")
    check(d["metadata"].get("namespace"), f"{name}: no namespace")
    check(len(d["metadata"]["name"]) <= 63, f"{name}: name longer than 63")
check("Secret" not in by_kind, "the chart rendered a Secret: the key must only come from an existing Secret")

workload = (values.get("workload") or {}).get("kind", "Deployment")
check(not by_kind.get({"Deployment": "StatefulSet", "StatefulSet": "Deployment"}[workload]), f"workload.kind {workload} but another workload kind was rendered too")
dep = one(workload)
pod = dep["spec"]["template"]
spec = pod["spec"]
selector = dep["spec"]["selector"]["matchLabels"]
check(all(pod["metadata"]["labels"].get(k) == v for k, v in selector.items()), "Deployment selector does not match its pod labels")
c = spec["containers"][0]

# --- security
psc, csc = spec.get("securityContext", {}), c.get("securityContext", {})
check(psc.get("runAsNonRoot") is True and csc.get("runAsNonRoot") is True, "runAsNonRoot is not true on pod and container")
check(psc.get("runAsUser", 0) != 0 and csc.get("runAsUser", 0) != 0, "runAsUser is root or unset")
check(csc.get("readOnlyRootFilesystem") is True, "readOnlyRootFilesystem is not true")
check(csc.get("allowPrivilegeEscalation") is False, "allowPrivilegeEscalation is not false")
check("ALL" in csc.get("capabilities", {}).get("drop", []), "capabilities do not drop ALL")
check(psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", "no RuntimeDefault seccomp profile")
check(spec.get("automountServiceAccountToken") is False, "the service account token is mounted")
image = c["image"]
check(not image.endswith(":latest") and (":" in image.rsplit("/", 1)[-1] or "@sha256:" in image), f"image {image} is not pinned to a tag or digest")

# --- probes and ports
ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
check(ports.get("admin") == values["admin"]["port"], "no container port `admin` on admin.port")
for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz"), ("startupProbe", "/healthz")):
    g = c.get(probe, {}).get("httpGet", {})
    check(g.get("path") == path and g.get("port") in ("admin", values["admin"]["port"]), f"{probe} is not an HTTP GET of {path} on the admin port")

# --- the gateway config, as gateway/config.rs reads it (deny_unknown_fields)
cm_config = next((d for d in by_kind.get("ConfigMap", []) if "gateway.yaml" in d.get("data", {})), None)
check(cm_config is not None, "no ConfigMap with gateway.yaml")
gw = yaml.safe_load(cm_config["data"]["gateway.yaml"]) if cm_config else {}
KNOWN = {
    "": {"agreement", "pseudonym_key", "admin", "kafka", "limits"},
    "pseudonym_key": {"file", "id"}, "admin": {"address"},
    "kafka": {"brokers", "group", "input", "output", "quarantine_topic", "delivery", "transactional_id",
              "properties", "consumer", "producer"},
    "kafka.input": {"topics", "format"}, "kafka.output": {"format"},
    "limits": {"max_in_flight", "commit_interval", "drain_timeout", "threads"},
}
extra_top = set((values["config"].get("extra") or {}).keys())
def walk(node, path):
    if path in KNOWN and isinstance(node, dict):
        allowed = KNOWN[path] | (extra_top if path == "" else set())
        for k, v in node.items():
            check(k in allowed, f"gateway.yaml: `{(path + '.' if path else '') + k}` is not a key gateway/config.rs reads")
            walk(v, f"{path}.{k}" if path else k)
walk(gw, "")
ci = values["config"]["limits"].get("commitInterval") or None
check(gw.get("limits", {}).get("commit_interval") == ci, f"limits.commit_interval is {gw.get('limits', {}).get('commit_interval')!r}, not {ci!r} (empty: the gateway's default by delivery mode)")
th = values["config"]["limits"].get("threads") or None
check(gw.get("limits", {}).get("threads") == th, f"limits.threads is {gw.get('limits', {}).get('threads')!r}, not {th!r} (0: the gateway's default, the cores available)")
args = c.get("args", [])
check(args[:3] == ["run", "--config", "/etc/accord/gateway.yaml"], f"container args are {args}")
audit = values["audit"]
if audit["enabled"]:
    check(args[3:9] == ["--audit", f'{audit["mountPath"]}/$(POD_NAME).jsonl', "--audit-interval", str(audit["interval"]), "--audit-key", "/var/run/secrets/accord-audit/audit.key"], f"audit args are {args[3:9]}")
    check(any(e["name"] == "POD_NAME" and e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name" for e in c.get("env", [])), "no POD_NAME for the audit file's name")
else:
    check("--audit" not in args, "--audit given although audit.enabled is false")
addr = gw.get("admin", {}).get("address", "")
check(re.fullmatch(r"(\d+\.\d+\.\d+\.\d+|\[[0-9a-fA-F:]+\]):\d+", addr or "") is not None, f"admin.address `{addr}` is not IP:port")
check(addr.endswith(f':{values["admin"]["port"]}'), "admin.address does not use admin.port")
k = gw.get("kafka", {})
check(isinstance(k.get("brokers"), str) and k["brokers"], "kafka.brokers is not a non-empty string")
topic = re.compile(r"[a-zA-Z0-9._-]{1,249}")
check(all(topic.fullmatch(t) for t in k.get("input", {}).get("topics", [])) and k.get("input", {}).get("topics"), "bad input topics")
check(k.get("quarantine_topic") not in k.get("input", {}).get("topics", []), "quarantine topic is an input topic")
for section in ("properties", "consumer", "producer"):
    for name in (k.get(section) or {}):
        check(name not in ("bootstrap.servers", "group.id", "enable.auto.commit", "enable.auto.offset.store", "transactional.id"),
              f"kafka.{section} sets {name}, which the gateway refuses")
    for name, v in (k.get(section) or {}).items():
        # librdkafka's sensitive properties that hold secrets (templates/_secrets.tpl).
        if re.search(r"password|secret|passphrase|credential", name, re.I) or name in ("ssl.key.pem", "ssl_key", "sasl.username", "sasl.oauthbearer.config", "sasl.oauthbearer.assertion.private.key.pem"):
            check(isinstance(v, str) and re.fullmatch(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}", v), f"kafka.{section}.{name} is a literal secret, not ${{ENV}}")

def k_values_txid(v):
    return (v.get("config", {}).get("kafka", {}) or {}).get("transactionalId")

def seconds(d):
    n, u = re.fullmatch(r"(\d+)(ms|s|m|h)", d).groups()
    return int(n) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[u]
drain = seconds(gw.get("limits", {}).get("drain_timeout", "20s"))
# The gateway's own deadline after SIGTERM is drain_timeout + 10 s (gateway/cli/run.rs).
check(spec["terminationGracePeriodSeconds"] >= drain + 15, f"terminationGracePeriodSeconds {spec['terminationGracePeriodSeconds']} is not >= drain_timeout {drain}s + 15")

# --- checksum: the gateway config rolls the pods
ann = pod["metadata"].get("annotations", {})
check(re.fullmatch(r"[0-9a-f]{64}", ann.get("checksum/config", "")), "no checksum/config annotation (sha256) on the pod template")
check(not any(a.startswith("checksum/agreement") for a in ann), "the agreement is in a checksum: a changed agreement would restart pods instead of reloading")

# --- files: config and agreement in one projected volume, no subPath
vols = {v["name"]: v for v in spec["volumes"]}
mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
check(all("subPath" not in m for m in c["volumeMounts"] if m["name"] in ("config", "pseudonym-key")), "config or key mounted with subPath (never updated in place)")
cfg_mount = mounts.get("/etc/accord", {})
check(cfg_mount.get("name") == "config" and cfg_mount.get("readOnly") is True, "/etc/accord is not the read-only config volume")
sources = [s["configMap"]["name"] for s in vols.get("config", {}).get("projected", {}).get("sources", []) if "configMap" in s]
agreement_cm = values["agreement"]["existingConfigMap"] or f"{cm_config['metadata']['name'].rsplit('-config', 1)[0]}-agreement"
check(cm_config and cm_config["metadata"]["name"] in sources and agreement_cm in sources, f"the config volume does not project both ConfigMaps ({sources})")
check(gw.get("agreement") == f'/etc/accord/{values["agreement"]["fileName"]}', f"gateway.yaml agreement is {gw.get('agreement')}")
if audit["enabled"]:
    am = mounts.get(audit["mountPath"], {})
    av = vols.get(am.get("name"), {})
    claim_templates = {t["metadata"]["name"]: t for t in dep["spec"].get("volumeClaimTemplates", [])}
    if workload == "StatefulSet" and audit.get("persistence", {}).get("enabled"):
        # The trail outlives its pod: a claim per pod, kept on delete and scale-down.
        t = claim_templates.get(am.get("name"), {})
        check(t and am.get("name") not in vols, f"the audit mount {am.get('name')} is not a volumeClaimTemplate")
        check(t.get("spec", {}).get("resources", {}).get("requests", {}).get("storage") == audit["persistence"]["size"], "the audit claim does not request audit.persistence.size")
        check(dep["spec"].get("persistentVolumeClaimRetentionPolicy") == {"whenDeleted": "Retain", "whenScaled": "Retain"}, "the audit claims are not retained")
    else:
        want = {"persistentVolumeClaim": {"claimName": audit["existingClaim"]}} if audit["existingClaim"] else {"emptyDir": {}}
        check({k: v for k, v in av.items() if k != "name"} == want, f"the audit volume is {av}")
    check(not am.get("readOnly"), "the audit volume is read-only")
    # The audit key: from its own Secret, read-only, never the pseudonym key's.
    km = mounts.get("/var/run/secrets/accord-audit", {})
    kv = vols.get(km.get("name"), {}).get("secret", {})
    sk = audit["signingKey"]
    check(km.get("readOnly") is True and "subPath" not in km, "the audit key is not mounted read-only without subPath")
    check(kv.get("secretName") == sk["existingSecret"] and kv.get("secretName") != values["pseudonymKey"]["existingSecret"], f"the audit key comes from {kv.get('secretName')}, not its own Secret")
    check(kv.get("items") == [{"key": sk["secretKey"], "path": "audit.key"}] and kv.get("defaultMode") == 0o440, f"the audit key volume is {kv}")
else:
    check("--audit-key" not in args and "/var/run/secrets/accord-audit" not in mounts, "an audit key although audit.enabled is false")
if workload == "StatefulSet":
    check(dep["spec"].get("serviceName") == one("Service")["metadata"]["name"], "the StatefulSet's serviceName is not the chart's Service")
    check("strategy" not in dep["spec"], "a StatefulSet has no `strategy`")
    check(not k_values_txid(values), "a StatefulSet with a fixed transactional.id: every pod would fence the others")
    check("transactional_id" not in gw.get("kafka", {}), "gateway.yaml sets transactional_id in StatefulSet mode (the per-pod default is the stable one)")
tmp = mounts.get("/tmp", {})
check(tmp and "emptyDir" in vols.get(tmp.get("name"), {}), "no writable emptyDir on /tmp")

# --- the key: only from the existing Secret
key = values["pseudonymKey"]
kv = vols.get("pseudonym-key", {}).get("secret", {})
check(kv.get("secretName") == key["existingSecret"], f"the key volume is not the Secret {key['existingSecret']}")
check([i["key"] for i in kv.get("items", [])] == [key["secretKey"]], "the key volume does not project exactly pseudonymKey.secretKey")
check(kv.get("defaultMode", 0o644) & 0o007 == 0, "the key file is readable by others")
km = next((m for m in c["volumeMounts"] if m["name"] == "pseudonym-key"), {})
check(km.get("readOnly") is True and gw.get("pseudonym_key", {}).get("file") == km.get("mountPath", "?") + "/key",
      "gateway.yaml pseudonym_key.file is not the mounted Secret's file")
env = {e["name"]: e for e in c.get("env", [])}
if key.get("idSecretKey"):
    ref = env.get("ACCORD_KEY_ID", {}).get("valueFrom", {}).get("secretKeyRef", {})
    check(ref == {"name": key["existingSecret"], "key": key["idSecretKey"]}, "ACCORD_KEY_ID is not read from the key's Secret")
    check("id" not in gw.get("pseudonym_key", {}), "key id both in gateway.yaml and from the Secret")
else:
    check(gw.get("pseudonym_key", {}).get("id") == key["id"], "gateway.yaml pseudonym_key.id is not pseudonymKey.id")
for e in c.get("env", []):
    check("value" not in e or not re.search(r"KEY|PASSWORD|SECRET|TOKEN", e["name"]), f"env {e['name']} carries a literal secret")

# --- the agreement, byte for byte (signatures are over the exact bytes)
if not values["agreement"]["existingConfigMap"]:
    cm = next((d for d in by_kind.get("ConfigMap", []) if d["metadata"]["name"] == agreement_cm), {})
    data = cm.get("data", {})
    want = values["agreement"]["content"]
    got = data.get(values["agreement"]["fileName"])
    check(got == want, f"the agreement in the ConfigMap differs from the input (sha256 {hashlib.sha256((got or '').encode()).hexdigest()[:12]} != {hashlib.sha256(want.encode()).hexdigest()[:12]})")
    for name, content in (values["agreement"].get("extraFiles") or {}).items():
        check(data.get(name) == content, f"extra file {name} differs in the ConfigMap")
    for name, content in (values["agreement"].get("extraBinaryFiles") or {}).items():
        check(base64.b64decode(cm.get("binaryData", {}).get(name, "")) == base64.b64decode(content), f"binary file {name} differs")
else:
    check(not any(d["metadata"]["name"].endswith("-agreement") for d in by_kind.get("ConfigMap", [])), "an agreement ConfigMap was rendered although existingConfigMap is set")

# --- service
svc = one("Service")
sp = {p["name"]: p for p in svc["spec"]["ports"]}
check(sp.get("admin", {}).get("targetPort") == "admin", "the Service has no port `admin` targeting the admin port")
check(all(pod["metadata"]["labels"].get(k) == v for k, v in svc["spec"]["selector"].items()), "the Service selector does not match the pods")

def matches_pods(sel):
    return bool(sel) and all(pod["metadata"]["labels"].get(k) == v for k, v in sel.items())

# --- optional parts: present exactly when enabled, and wired to the right objects
def present(kind, enabled):
    check((kind in by_kind) == bool(enabled), f"{kind} present={kind in by_kind} but enabled={bool(enabled)}")
    return by_kind.get(kind, [None])[0] if enabled else None

sm = present("ServiceMonitor", values["serviceMonitor"]["enabled"])
if sm:  # a CRD: no schema in kubernetes-validate, so its shape is checked here
    check(sm.get("apiVersion") == "monitoring.coreos.com/v1", "ServiceMonitor apiVersion is not monitoring.coreos.com/v1")
    ss = sm.get("spec", {})
    check(set(ss) <= {"jobLabel", "namespaceSelector", "selector", "endpoints", "targetLabels", "podTargetLabels", "sampleLimit"}, f"ServiceMonitor spec has unexpected keys {sorted(ss)}")
    check(all(svc["metadata"]["labels"].get(k) == v for k, v in ss.get("selector", {}).get("matchLabels", {}).items()) and ss.get("selector", {}).get("matchLabels"), "ServiceMonitor selector does not match the Service")
    check(svc["metadata"]["namespace"] in ss.get("namespaceSelector", {}).get("matchNames", []), "ServiceMonitor does not look in the Service's namespace")
    eps = ss.get("endpoints", [])
    check(len(eps) == 1 and eps[0].get("port") == "admin" and eps[0].get("path") == "/metrics", "ServiceMonitor endpoint is not port admin, /metrics")
    for ep in eps:
        check(set(ep) <= {"port", "path", "scheme", "interval", "scrapeTimeout", "relabelings", "metricRelabelings", "honorLabels"}, f"ServiceMonitor endpoint has unexpected keys {sorted(ep)}")
        for f in ("interval", "scrapeTimeout"):
            check(re.fullmatch(r"(\d+(ms|s|m|h))+", str(ep.get(f, ""))), f"ServiceMonitor {f} `{ep.get(f)}` is not a Prometheus duration")

pr = present("PrometheusRule", (values.get("prometheusRule") or {}).get("enabled"))
if pr:  # a CRD: checked here; its rules are docs/operations.md's, alert for alert
    check(pr.get("apiVersion") == "monitoring.coreos.com/v1", "PrometheusRule apiVersion is not monitoring.coreos.com/v1")
    doc = open("docs/operations.md", encoding="utf-8").read()
    block = re.search(r"```yaml\n(.*?)```", doc[doc.index("As a PrometheusRule:"):], re.S).group(1)
    check(pr.get("spec") == yaml.safe_load(block), "the PrometheusRule's rules differ from docs/operations.md's")
    for g in pr.get("spec", {}).get("groups", []):
        for r in g.get("rules", []):
            check(r.get("alert") and r.get("expr") and r.get("labels", {}).get("severity") in ("critical", "warning", "info"), f"rule {r.get('alert')} lacks an expr or a severity")
    names = [r.get("alert") for g in pr.get("spec", {}).get("groups", []) for r in g.get("rules", [])]
    check("AccordConsumptionStopped" in names and len(names) == len(set(names)), f"alerts {names}")

hpa = present("HorizontalPodAutoscaler", values["autoscaling"]["enabled"])
if hpa:
    t = hpa["spec"]["scaleTargetRef"]
    check(t == {"apiVersion": "apps/v1", "kind": workload, "name": dep["metadata"]["name"]}, f"HPA does not target the {workload}")
    check("replicas" not in dep["spec"], "Deployment sets replicas although the HPA owns them")
    check(hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"], "HPA minReplicas > maxReplicas")
else:
    check(dep["spec"].get("replicas") == values["replicaCount"], "Deployment replicas is not replicaCount")

pdb = present("PodDisruptionBudget", values["podDisruptionBudget"]["enabled"])
if pdb:
    check(matches_pods(pdb["spec"]["selector"]["matchLabels"]), "PDB selector does not match the pods")
    check(("maxUnavailable" in pdb["spec"]) != ("minAvailable" in pdb["spec"]), "PDB sets both or neither of maxUnavailable and minAvailable")

np = present("NetworkPolicy", values["networkPolicy"]["enabled"])
if np:
    nps = np["spec"]
    check(matches_pods(nps["podSelector"]["matchLabels"]), "NetworkPolicy does not select the pods")
    check(set(nps["policyTypes"]) == {"Ingress", "Egress"}, "NetworkPolicy does not restrict both directions")
    eg = nps["egress"]
    want_peers = values["networkPolicy"]["brokers"]
    check(eg[0]["to"] == want_peers and [p["port"] for p in eg[0]["ports"]] == values["networkPolicy"]["brokerPorts"], "the first egress rule is not the brokers on their ports")
    allowed_to = [want_peers] + ([values["networkPolicy"]["dns"]["peers"]] if values["networkPolicy"]["dns"]["enabled"] else [])
    for rule in eg[1:len(allowed_to)]:
        check(rule["to"] in allowed_to and {p["port"] for p in rule["ports"]} == {values["networkPolicy"]["dns"]["port"]}, "an egress rule other than brokers and DNS")
    check(len(eg) == len(allowed_to) + len(values["networkPolicy"]["extraEgress"]), "egress has rules beyond brokers, DNS and extraEgress")
    check(all(r.get("to") for r in eg), "an egress rule without `to` (allows every destination)")
    check(all([p["port"] for p in r["ports"]] == ["admin"] for r in nps["ingress"]), "ingress allows more than the admin port")

dash = None
for d in by_kind.get("ConfigMap", []):
    if "accord.json" in d.get("data", {}):
        dash = d
check((dash is not None) == bool(values["dashboard"]["enabled"]), "dashboard ConfigMap present but not enabled, or enabled but absent")
if dash:
    for lk, lv in values["dashboard"]["labels"].items():
        check(dash["metadata"]["labels"].get(lk) == lv, f"dashboard ConfigMap lacks the sidecar label {lk}={lv}")
    check(json.loads(dash["data"]["accord.json"]) == json.load(open("helm/accord/dashboards/accord.json")), "the dashboard in the ConfigMap differs from dashboards/accord.json")

if problems:
    for p in problems:
        print(f"  - {p}")
    sys.exit(1)
PY

# The dashboard on its own: valid JSON, and every metric it queries is one the
# gateway exports (SPEC section 5 and the Kafka client's), every SPEC one shown.
cat >"${WORK}/dashboard.py" <<'PY'
import json, re, sys
d = json.load(open("helm/accord/dashboards/accord.json"))
spec = {"accord_events_received_total", "accord_events_forwarded_total", "accord_events_dropped_total",
        "accord_fields_removed_total", "accord_fields_pseudonymised_total", "accord_fields_generalised_total",
        "accord_agreement_info", "accord_agreement_reloads_total", "accord_processing_seconds"}
kafka = {"accord_kafka_consumer_lag", "accord_kafka_producer_queue_messages", "accord_kafka_delivery_errors_total"}
exprs = []
def walk(n):
    if isinstance(n, dict):
        if isinstance(n.get("expr"), str):
            exprs.append(n["expr"])
        for v in n.values():
            walk(v)
    elif isinstance(n, list):
        for v in n:
            walk(v)
walk(d)
used = {re.sub(r"_(bucket|sum|count)$", "", m) if m.startswith("accord_processing_seconds") else m
        for e in exprs for m in re.findall(r"\baccord_[a-z_]+", e)}
problems = []
if not d.get("uid") or not d.get("title"):
    problems.append("no uid or title")
if used - spec - kafka:
    problems.append(f"queries unknown metrics {sorted(used - spec - kafka)}")
if (spec | kafka) - used:
    problems.append(f"does not show {sorted((spec | kafka) - used)}")
ids = [p["id"] for p in d["panels"]]
if len(ids) != len(set(ids)):
    problems.append("duplicate panel ids")
for e in exprs:
    if e.count("(") != e.count(")") or e.count("{") != e.count("}"):
        problems.append(f"unbalanced query: {e}")
for p in problems:
    print(f"  - {p}")
print(f"  {len(exprs)} queries, {len(d['panels'])} panels", file=sys.stderr)
sys.exit(1 if problems else 0)
PY

# ----------------------------------------------------------------- the cases --

# name | values file | extra helm arguments
cases=(
    "defaults|helm/values/defaults.yaml|"
    "production|helm/values/production.yaml|"
    "all-on|helm/values/all-on.yaml|--set-file agreement.content=examples/agreement.yaml"
    "statefulset|helm/values/statefulset.yaml|--set-file agreement.content=examples/agreement.yaml"
)

render() {  # render OUT KUBE_VERSION ARGS...: helm template into OUT
    local out="$1" kube="$2"
    shift 2
    "$HELM" template "$RELEASE" "$CHART" --namespace "$NAMESPACE" --kube-version "$kube" "$@" >"$out" 2>"${out}.err"
}

validate() {  # validate FILE KUBE_VERSION: kubernetes-validate, CRDs noted
    local file="$1" kube="$2" out
    out="$("${VENV}/bin/kubernetes-validate" --strict --quiet -k "$kube" "$file" 2>&1)" || { printf '%s\n' "$out" | sed 's/^/  /' >&2; return 1; }
    # Unknown kinds are a WARN with exit 0: only the ServiceMonitor CRD may be one.
    if printf '%s\n' "$out" | grep '^WARN' | grep -v -e 'kind ServiceMonitor with api version monitoring.coreos.com/v1' -e 'kind PrometheusRule with api version monitoring.coreos.com/v1' >&2; then
        return 1
    fi
    if printf '%s\n' "$out" | grep -q 'kind ServiceMonitor' && [[ "$kube" == "${K8S_VERSIONS[0]}" ]]; then
        say "  ServiceMonitor (CRD monitoring.coreos.com/v1): kubernetes-validate has no schema for it; checked structurally by the assertions"
    fi
}

for case in "${cases[@]}"; do
    IFS='|' read -r name values extra <<<"$case"
    # shellcheck disable=SC2206
    args=(-f "$values" $extra)
    agreement_file=""
    [[ "$extra" == *"agreement.content="* ]] && agreement_file="${extra##*agreement.content=}"
    say "case ${name}: ${values} ${extra}"
    ok=1
    kinds=""
    if ! "$HELM" lint --strict "$CHART" --namespace "$NAMESPACE" --kube-version "${K8S_VERSIONS[0]}" "${args[@]}" >"${WORK}/${name}.lint" 2>&1; then
        sed 's/^/  /' "${WORK}/${name}.lint" >&2
        say "  helm lint failed"
        ok=0
    fi
    for kube in "${K8S_VERSIONS[@]}"; do
        out="${WORK}/${name}-${kube}.yaml"
        if ! render "$out" "$kube" "${args[@]}"; then
            sed 's/^/  /' "${out}.err" >&2
            say "  helm template failed at Kubernetes ${kube}"
            ok=0
            continue
        fi
        kinds="$(grep '^kind: ' "$out" | cut -d' ' -f2 | sort | tr '\n' ' ')"
        if ! validate "$out" "$kube"; then
            say "  kubernetes-validate --strict -k ${kube} failed"
            ok=0
        fi
        if ! "$PY" "${WORK}/assert.py" "$out" "${CHART}/values.yaml" "$values" "$agreement_file" >&2; then
            say "  assertions failed (above)"
            ok=0
        fi
    done
    if [[ $ok == 1 ]]; then
        say "  lint, render, validate (Kubernetes ${K8S_VERSIONS[*]}), assertions: ok; ${kinds}"
        pass "$name"
    else
        fail "$name"
    fi
done

# ----------------------------------------------------- what must be refused --

refused() {  # refused NAME EXPECTED-MESSAGE ARGS...: the render must fail saying so
    local name="$1" expected="$2"
    shift 2
    if render "${WORK}/refused.yaml" "${K8S_VERSIONS[0]}" "$@"; then
        fail "refuses ${name}: it rendered"
    elif ! grep -qF -- "$expected" "${WORK}/refused.yaml.err"; then
        sed 's/^/  /' "${WORK}/refused.yaml.err" >&2
        fail "refuses ${name}: not with \"${expected}\""
    else
        pass "refuses ${name}"
    fi
}
D=(-f helm/values/defaults.yaml)
refused "no values at all" "config.kafka.brokers is required"
refused "no key Secret" "pseudonymKey.existingSecret is required" "${D[@]}" --set pseudonymKey.existingSecret=
refused "a key in the values" "additional properties 'key' not allowed" "${D[@]}" --set pseudonymKey.key=c2VjcmV0
refused "no key id" "pseudonymKey.id is required" "${D[@]}" --set pseudonymKey.id=
refused "no agreement" "agreement.content is required" "${D[@]}" --set agreement.content=
refused "agreement both inline and existing" "agreement.existingConfigMap is set" "${D[@]}" --set agreement.existingConfigMap=dpo-agreement
refused "a grace period shorter than the drain" "must exceed config.limits.drainTimeout" "${D[@]}" --set terminationGracePeriodSeconds=25
refused "a bad drain timeout" "drainTimeout" "${D[@]}" --set config.limits.drainTimeout=soon
refused "more enforcing threads than the gateway takes" "threads" "${D[@]}" --set config.limits.threads=300
refused "a NetworkPolicy without brokers" "networkPolicy.brokers is required" "${D[@]}" --set networkPolicy.enabled=true
refused "the quarantine topic as an input" "is also an input topic" "${D[@]}" --set config.kafka.quarantineTopic=sensors.raw
refused "a literal Kafka password in values" "holds a literal secret" "${D[@]}" --set 'config.kafka.properties.sasl\.password=hunter2'
refused "a bad delivery mode" "delivery" "${D[@]}" --set config.kafka.delivery=at_most_once
for secret in ssl.key.pem ssl.key.password ssl.keystore.password sasl.username sasl.oauthbearer.client.secret sasl.oauthbearer.config sasl.oauthbearer.assertion.private.key.pem sasl.oauthbearer.assertion.private.key.passphrase; do
    refused "a literal ${secret} in values" "holds a literal secret" "${D[@]}" --set "config.kafka.consumer.${secret//./\\.}=literal"
done
refused "a fixed transactional.id in StatefulSet mode" "must be empty with workload.kind: StatefulSet" "${D[@]}" --set workload.kind=StatefulSet --set config.kafka.delivery=exactly_once --set config.kafka.transactionalId=accord-tx
refused "an unknown workload kind" "workload" "${D[@]}" --set workload.kind=DaemonSet
refused "a cluster older than 1.31" "older than 1.31" "${D[@]}" --kube-version 1.30.0

# --------------------------------- helm template works without --kube-version --
if "$HELM" template "$RELEASE" "$CHART" --namespace "$NAMESPACE" "${D[@]}" >"${WORK}/nokube.yaml" 2>"${WORK}/nokube.err"; then
    pass "helm template without --kube-version"
else
    sed 's/^/  /' "${WORK}/nokube.err" >&2
    fail "helm template without --kube-version"
fi
refused "an audit trail without an audit key" "audit.signingKey.existingSecret is required" "${D[@]}" --set audit.enabled=true
refused "the audit key in the pseudonym key's Secret" "keep the audit key in a Secret of its own" "${D[@]}" --set audit.enabled=true --set audit.signingKey.existingSecret="$(sed -n 's/^ *existingSecret: *//p' helm/values/defaults.yaml | head -1)"
refused "an audit key in the values" "additional properties 'key' not allowed" "${D[@]}" --set audit.signingKey.key=c2VjcmV0

# ------------------------------------------ checksum: config rolls, agreement not --
checksum() { grep -m1 'checksum/config:' "$1" | awk '{print $2}'; }
if ! { render "${WORK}/c0.yaml" "${K8S_VERSIONS[0]}" "${D[@]}" \
        && render "${WORK}/c1.yaml" "${K8S_VERSIONS[0]}" "${D[@]}" --set config.kafka.group=accord-2 \
        && render "${WORK}/c2.yaml" "${K8S_VERSIONS[0]}" "${D[@]}" --set-file agreement.content=examples/agreement.yaml; }; then
    fail "checksum/config: the defaults did not render"
elif [[ -n "$(checksum "${WORK}/c0.yaml")" && "$(checksum "${WORK}/c0.yaml")" != "$(checksum "${WORK}/c1.yaml")" \
        && "$(checksum "${WORK}/c0.yaml")" == "$(checksum "${WORK}/c2.yaml")" ]]; then
    pass "checksum/config changes with the gateway config, not with the agreement"
else
    fail "checksum/config: config change $(checksum "${WORK}/c0.yaml") -> $(checksum "${WORK}/c1.yaml"), agreement change -> $(checksum "${WORK}/c2.yaml")"
fi

# --------------------------------------------- the agreement, byte for byte --
# Awkward but legal files must reach the pod unchanged: signatures are over bytes.
i=0
exact_failed=0
for content in $'agreement:\n  id: x\n' $'  leading spaces\n\ttab\n# comment\n---\n' $'no newline at the end' \
               $'trailing blank lines\n\n\n' $'unicode: Ondernemingsraad \xe2\x80\x94 \xc3\xa9\xc3\xa8\n' $'\n\nleading blank lines\n' \
               $'crlf\r\nline\r\n' $'key: "quoted" \'single\' \\ backslash  \n' $'\n' $' \n' $'last line blank\n \n'; do
    i=$((i + 1))
    printf '%s' "$content" >"${WORK}/agreement-${i}.yaml"
    if ! render "${WORK}/exact-${i}.yaml" "${K8S_VERSIONS[0]}" "${D[@]}" --set-file "agreement.content=${WORK}/agreement-${i}.yaml" \
        || ! "$PY" "${WORK}/assert.py" "${WORK}/exact-${i}.yaml" "${CHART}/values.yaml" helm/values/defaults.yaml "${WORK}/agreement-${i}.yaml" >&2; then
        exact_failed=1
        fail "agreement byte for byte: file ${i} ($(printf '%q' "$content"))"
    fi
done
[[ $exact_failed == 1 ]] || pass "agreement byte for byte (${i} awkward files)"

# -------------------------------------------------------------- the dashboard --
if "$PY" "${WORK}/dashboard.py" >&2; then
    pass "dashboard: every SPEC section 5 and Kafka metric shown, no unknown one"
else
    fail "dashboard"
fi

# ------------------------------------ the validator is not vacuous (self-test) --
if ! grep -q 'readOnlyRootFilesystem:' "${WORK}/c0.yaml" 2>/dev/null; then
    fail "kubernetes-validate self-test: no rendered Deployment to break"
elif sed 's/readOnlyRootFilesystem:/readOnlyRootFileSystem:/' "${WORK}/c0.yaml" >"${WORK}/broken.yaml" \
        && validate "${WORK}/broken.yaml" "${K8S_VERSIONS[0]}" 2>/dev/null; then
    fail "kubernetes-validate accepted a Deployment with a misspelt field"
else
    pass "kubernetes-validate rejects a misspelt field (self-test)"
fi

printf '%s\n' "${results[@]}" >&2
printf 'helm: %d passed, %d failed\n' "$passed" "$failed"
[[ $failed == 0 ]]
