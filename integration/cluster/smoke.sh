#!/usr/bin/env bash
# Manual smoke test of the local control plane built by build.sh:
#   etcd -> kube-apiserver (/readyz) -> kube-controller-manager + kube-scheduler
#   (+ a second scheduler with the `stork` profile and extender config) -> kwok
#   -> a fake Node becomes Ready -> a Pod scheduled onto it becomes Running
#   -> a mutating webhook with a `service:` clientConfig is reached through
#      STORK_WEBHOOK_SERVICE_MAP (tiny python3 webhook server)
#   -> a pod with schedulerName: stork is scheduled through a scheduler extender
#      (tiny python3 extender that accepts every node).
# Everything runs from a temp dir and is killed on exit. These command lines are
# the reference for the Rust e2e harness (see README.md).
#
# Usage: integration/cluster/smoke.sh [--keep]   (--keep: leave the run dir for inspection)
# Env:   STORK_K8S_BIN_DIR (default integration/.cache/bin), KUBECTL (default kubectl),
#        SMOKE_HOLD=<seconds>: keep the cluster up that long at the end, then re-check
#        that the kwok node is still Ready (lease heartbeats vs. node-lifecycle-controller)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bin="${STORK_K8S_BIN_DIR:-$(dirname "$here")/.cache/bin}"
KUBECTL="${KUBECTL:-kubectl}"
command -v python3 >/dev/null || { echo "smoke.sh needs python3 (free ports, test webhook and extender)" >&2; exit 1; }
keep=0; [[ "${1:-}" == "--keep" ]] && keep=1
K8S="$bin/k8s-local"; KWOK="$bin/kwok"
[[ -x "$K8S" && -x "$KWOK" ]] || { echo "missing binaries in $bin; run integration/cluster/build.sh" >&2; exit 1; }

run="$(mktemp -d "${TMPDIR:-/tmp}/stork-smoke.XXXXXX")"
pids=()
cleanup() {
  local rc=$?
  # Stop in reverse start order, each one fully (SIGTERM, then SIGKILL after 10s),
  # so that nothing outlives etcd/apiserver and logs stay quiet.
  for ((i=${#pids[@]}-1; i>=0; i--)); do
    local p="${pids[i]}" n=0
    kill "$p" 2>/dev/null || continue
    while kill -0 "$p" 2>/dev/null && (( n++ < 100 )); do sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  if [[ $rc != 0 ]]; then
    echo "--- FAILED (rc=$rc); last log lines:" >&2
    for f in "$run"/*.log; do echo "== $f" >&2; tail -n 15 "$f" >&2; done
  fi
  if [[ $keep == 1 || $rc != 0 ]]; then echo "run dir kept: $run" >&2; else rm -rf "$run"; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step() { printf '\n[smoke %5ss] %s\n' "$SECONDS" "$*"; }
# wait_for <seconds> <description> <command...>
wait_for() {
  local t="$1" what="$2"; shift 2
  local deadline=$((SECONDS + t))
  until "$@" >/dev/null 2>&1; do
    if (( SECONDS >= deadline )); then echo "timeout (${t}s) waiting for: $what" >&2; return 1; fi
    sleep 0.5
  done
  printf '[smoke %5ss]   ok: %s\n' "$SECONDS" "$what"
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
start() { # start <name> <cmd...>: background process, log to $run/<name>.log
  local name="$1"; shift
  printf '[smoke %5ss] start %s: %s\n' "$SECONDS" "$name" "$*"
  "$@" >"$run/$name.log" 2>&1 &
  pids+=($!)
}

ETCD_PORT=$(free_port); ETCD_PEER_PORT=$(free_port); API_PORT=$(free_port)
KCM_PORT=$(free_port); SCHED_PORT=$(free_port); STORK_SCHED_PORT=$(free_port); WEBHOOK_PORT=$(free_port)
EXTENDER_PORT=$(free_port)

step "certificates (openssl) in $run"
cd "$run"
openssl_quiet() { openssl "$@" 2>/dev/null; }
# CA (signs the apiserver serving cert, client certs and the webhook serving cert)
openssl_quiet ecparam -name prime256v1 -genkey -noout -out ca.key
openssl_quiet req -x509 -new -key ca.key -sha256 -days 3650 -subj "/CN=stork-e2e-ca" -out ca.crt
# sign <name> <subject> <extensions>
sign() {
  openssl_quiet ecparam -name prime256v1 -genkey -noout -out "$1.key"
  openssl_quiet req -new -key "$1.key" -subj "$2" -out "$1.csr"
  printf '%s\n' "$3" > "$1.ext"
  openssl_quiet x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -sha256 -days 3650 -extfile "$1.ext" -out "$1.crt"
}
sign apiserver "/CN=kube-apiserver" "basicConstraints=CA:FALSE
keyUsage=digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:127.0.0.1,IP:10.0.0.1"
# admin identity for every component (system:masters); CN = user, O = group
sign admin "/O=system:masters/CN=admin" "basicConstraints=CA:FALSE
keyUsage=digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
# webhook serving cert: the apiserver verifies it against <service>.<namespace>.svc
sign webhook "/CN=stork-service.kube-system.svc" "basicConstraints=CA:FALSE
keyUsage=digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=DNS:stork-service.kube-system.svc,DNS:stork-service.kube-system.svc.cluster.local"
# service-account token signing key pair
openssl_quiet genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out sa.key
openssl_quiet pkey -in sa.key -pubout -out sa.pub

"$KUBECTL" config --kubeconfig=admin.kubeconfig set-cluster local --server="https://127.0.0.1:$API_PORT" \
  --certificate-authority=ca.crt --embed-certs=true >/dev/null
"$KUBECTL" config --kubeconfig=admin.kubeconfig set-credentials admin \
  --client-certificate=admin.crt --client-key=admin.key --embed-certs=true >/dev/null
"$KUBECTL" config --kubeconfig=admin.kubeconfig set-context local --cluster=local --user=admin >/dev/null
"$KUBECTL" config --kubeconfig=admin.kubeconfig use-context local >/dev/null
export KUBECONFIG="$run/admin.kubeconfig"
kc() { "$KUBECTL" --kubeconfig="$run/admin.kubeconfig" "$@"; }

step "etcd"
start etcd "$K8S" etcd \
  --name=etcd0 --data-dir="$run/etcd" \
  --listen-client-urls="http://127.0.0.1:$ETCD_PORT" --advertise-client-urls="http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-cluster="etcd0=http://127.0.0.1:$ETCD_PEER_PORT" \
  --unsafe-no-fsync=true --log-level=warn
wait_for 30 "etcd /health" curl -fsS "http://127.0.0.1:$ETCD_PORT/health"

step "kube-apiserver"
STORK_WEBHOOK_SERVICE_MAP="stork-service.kube-system:443=127.0.0.1:$WEBHOOK_PORT" \
start apiserver "$K8S" apiserver \
  --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
  --bind-address=127.0.0.1 --secure-port="$API_PORT" --advertise-address=127.0.0.1 \
  --tls-cert-file="$run/apiserver.crt" --tls-private-key-file="$run/apiserver.key" --cert-dir="$run/apiserver-certs" \
  --client-ca-file="$run/ca.crt" \
  --service-account-issuer="https://kubernetes.default.svc.cluster.local" \
  --service-account-key-file="$run/sa.pub" --service-account-signing-key-file="$run/sa.key" \
  --service-cluster-ip-range=10.0.0.0/24 \
  --authorization-mode=Node,RBAC --allow-privileged=true \
  --endpoint-reconciler-type=none --enable-priority-and-fairness=false
wait_for 90 "apiserver /readyz" kc get --raw /readyz
kc get --raw '/readyz?verbose' | tail -n 1
kc version | sed 's/^/  /'

step "kube-controller-manager"
start controller-manager "$K8S" controller-manager \
  --kubeconfig="$run/admin.kubeconfig" \
  --bind-address=127.0.0.1 --secure-port="$KCM_PORT" --cert-dir="$run/kcm-certs" \
  --leader-elect=false --controllers='*' \
  --service-account-private-key-file="$run/sa.key" --root-ca-file="$run/ca.crt" \
  --use-service-account-credentials=false
wait_for 60 "controller-manager /healthz" curl -fsSk "https://127.0.0.1:$KCM_PORT/healthz"

step "kube-scheduler (default) + kube-scheduler (stork profile, extender at 127.0.0.1:$EXTENDER_PORT; stork uses 8099)"
cat > scheduler.yaml <<EOF
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
clientConnection:
  kubeconfig: $run/admin.kubeconfig
leaderElection:
  leaderElect: false
EOF
cat > stork-scheduler.yaml <<EOF
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
clientConnection:
  kubeconfig: $run/admin.kubeconfig
leaderElection:
  leaderElect: false
profiles:
- schedulerName: stork
extenders:
- urlPrefix: http://127.0.0.1:$EXTENDER_PORT
  filterVerb: filter
  prioritizeVerb: prioritize
  weight: 5
  httpTimeout: 5m0s
  enableHTTPS: false
  nodeCacheCapable: false
  ignorable: false
EOF
start scheduler "$K8S" scheduler --config="$run/scheduler.yaml" \
  --bind-address=127.0.0.1 --secure-port="$SCHED_PORT" --cert-dir="$run/scheduler-certs"
start stork-scheduler "$K8S" scheduler --config="$run/stork-scheduler.yaml" \
  --bind-address=127.0.0.1 --secure-port="$STORK_SCHED_PORT" --cert-dir="$run/stork-scheduler-certs"
wait_for 60 "scheduler /healthz" curl -fsSk "https://127.0.0.1:$SCHED_PORT/healthz"
wait_for 60 "stork scheduler /healthz" curl -fsSk "https://127.0.0.1:$STORK_SCHED_PORT/healthz"

step "kwok"
: > kwok.yaml   # explicit (empty) config so ~/.kwok/kwok.yaml is never read
start kwok "$KWOK" \
  --kubeconfig="$run/admin.kubeconfig" --config="$run/kwok.yaml" \
  --manage-all-nodes=false --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
  --node-ip=127.0.0.1 --cidr=10.244.0.0/16 --node-lease-duration-seconds=40

step "fake node"
wait_for 60 "namespace default has ServiceAccount default" kc -n default get serviceaccount default
kc apply -f - <<'EOF'
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-0
  annotations:
    kwok.x-k8s.io/node: fake
  labels:
    kubernetes.io/hostname: kwok-node-0
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    type: kwok
spec:
  taints:
  - key: kwok.x-k8s.io/node
    value: fake
    effect: NoSchedule
EOF
wait_for 60 "node kwok-node-0 Ready" kc wait --for=condition=Ready node/kwok-node-0 --timeout=1s
# node-lifecycle-controller removes node.kubernetes.io/not-ready once it sees Ready=True
wait_for 60 "node kwok-node-0 has no not-ready taint" \
  bash -c "! \"$KUBECTL\" --kubeconfig=\"$run/admin.kubeconfig\" get node kwok-node-0 -o jsonpath='{.spec.taints[*].key}' | grep -q not-ready"
kc get node kwok-node-0 -o wide

step "pod scheduled by kube-scheduler onto the kwok node"
kc apply -f - <<'EOF'
apiVersion: v1
kind: Pod
metadata:
  name: smoke
  namespace: default
spec:
  containers:
  - name: c
    image: fake-image
  tolerations:
  - key: kwok.x-k8s.io/node
    operator: Exists
    effect: NoSchedule
EOF
wait_for 60 "pod smoke Running" bash -c "[[ \$(\"$KUBECTL\" --kubeconfig=\"$run/admin.kubeconfig\" -n default get pod smoke -o jsonpath='{.status.phase}') == Running ]]"
kc -n default get pod smoke -o wide

step "pod deletion is finished by kwok (no kubelet)"
kc -n default delete pod smoke --wait=true --timeout=60s
echo "  deleted"

step "mutating webhook via service reference stork-service.kube-system:443 -> 127.0.0.1:$WEBHOOK_PORT"
cat > webhook.py <<'EOF'
import base64, http.server, json, ssl, sys
port, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3]
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        patch = [{"op": "add", "path": "/metadata/annotations", "value": {"smoke/mutated-by": "webhook" + self.path}}]
        body = json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": {
            "uid": review["request"]["uid"], "allowed": True, "patchType": "JSONPatch",
            "patch": base64.b64encode(json.dumps(patch).encode()).decode()}}).encode()
        self.send_response(200); self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); ctx.load_cert_chain(cert, key)
srv = http.server.HTTPServer(("127.0.0.1", port), H); srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
srv.serve_forever()
EOF
start webhook python3 webhook.py "$WEBHOOK_PORT" "$run/webhook.crt" "$run/webhook.key"
wait_for 10 "webhook server listening" bash -c "echo > /dev/tcp/127.0.0.1/$WEBHOOK_PORT"
kc apply -f - <<EOF
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata:
  name: smoke-webhook
webhooks:
- name: smoke.stork.test
  admissionReviewVersions: ["v1"]
  sideEffects: None
  failurePolicy: Fail
  timeoutSeconds: 5
  objectSelector:
    matchLabels:
      smoke-webhook: "true"
  rules:
  - apiGroups: [""]
    apiVersions: ["v1"]
    operations: ["CREATE"]
    resources: ["pods"]
  clientConfig:
    service:
      name: stork-service
      namespace: kube-system
      port: 443
      path: /mutate
    caBundle: $(base64 -w0 < ca.crt)
EOF
# the webhook configuration is picked up asynchronously; retry until mutated
hooked_pod() {
  kc create -o jsonpath='{.metadata.name} {.metadata.annotations}' -f - <<'EOF'
apiVersion: v1
kind: Pod
metadata:
  generateName: hooked-
  namespace: default
  labels:
    smoke-webhook: "true"
spec:
  containers:
  - name: c
    image: fake-image
  tolerations:
  - key: kwok.x-k8s.io/node
    operator: Exists
EOF
}
hooked_ok() { hooked_pod | tee -a "$run/hooked.out" | grep -q 'webhook/mutate'; }
wait_for 30 "pod created through the webhook is mutated" hooked_ok
tail -n 1 "$run/hooked.out"; echo

step "pod with schedulerName: stork goes through the scheduler extender"
cat > extender.py <<'EOF'
import http.server, json, sys
port, hits = int(sys.argv[1]), sys.argv[2]
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        args = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        nodes = [n["metadata"]["name"] for n in (args.get("Nodes") or {}).get("items") or []] or args.get("NodeNames") or []
        with open(hits, "a") as f: f.write("%s %s %s\n" % (self.path, args["Pod"]["metadata"]["name"], ",".join(nodes)))
        if self.path == "/filter":
            out = {"Nodes": args.get("Nodes"), "NodeNames": args.get("NodeNames"), "FailedNodes": {}, "Error": ""}
        else:
            out = [{"Host": n, "Score": 10} for n in nodes]
        body = json.dumps(out).encode()
        self.send_response(200); self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
EOF
start extender python3 extender.py "$EXTENDER_PORT" "$run/extender.hits"
wait_for 10 "extender listening" bash -c "echo > /dev/tcp/127.0.0.1/$EXTENDER_PORT"
kc apply -f - <<'EOF'
apiVersion: v1
kind: Pod
metadata:
  name: via-stork
  namespace: default
spec:
  schedulerName: stork
  containers:
  - name: c
    image: fake-image
  tolerations:
  - key: kwok.x-k8s.io/node
    operator: Exists
EOF
wait_for 60 "pod via-stork Running" bash -c "[[ \$(\"$KUBECTL\" --kubeconfig=\"$run/admin.kubeconfig\" -n default get pod via-stork -o jsonpath='{.status.phase}') == Running ]]"
echo "  extender calls:"; sed 's/^/    /' "$run/extender.hits"
grep -q '^/filter via-stork kwok-node-0' "$run/extender.hits"
grep -q '^/prioritize via-stork' "$run/extender.hits" || echo "  (no /prioritize call: with a single feasible node the scheduler skips scoring)"

if [[ -n "${SMOKE_HOLD:-}" ]]; then
  step "holding the cluster for ${SMOKE_HOLD}s (KUBECONFIG=$run/admin.kubeconfig)"
  sleep "$SMOKE_HOLD"
  kc get nodes,pods -A -o wide
  kc wait --for=condition=Ready node/kwok-node-0 --timeout=1s
  [[ -z "$(kc get node kwok-node-0 -o jsonpath='{.spec.taints[?(@.key=="node.kubernetes.io/unreachable")].key}')" ]]
  kc -n default get pod via-stork -o jsonpath='{.status.phase}' | grep -qx Running
  echo "  node still Ready, no unreachable taint, pod still Running"
fi

step "all good; component versions"
"$K8S" version | sed 's/^/  /'
"$KWOK" --version 2>/dev/null | sed 's/^/  /' || true
