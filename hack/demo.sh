#!/usr/bin/env bash
# make demo: a real control plane, the Collibra simulator and the operator on
# loopback, with examples/ applied. Prints the OAuthClients and which keys
# each Secret holds (never the values). Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."

# Everything the demo calls, checked before a 15-minute build starts.
missing=()
for tool in cargo go kubectl python3 curl; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
if ((${#missing[@]})); then
  echo "make demo needs these on PATH: ${missing[*]} (Debian: apt-get install python3 curl)" >&2
  exit 1
fi

work=$(mktemp -d -t collibra-demo.XXXXXX)
pids=()
cleanup() {
  trap - EXIT INT TERM
  echo
  echo "stopping..."
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

cargo build -q --workspace --bins
bin=target/debug

echo "== control plane (etcd, kube-apiserver, kube-controller-manager; first run builds them)"
"$bin/control-plane" --kubeconfig "$work/kubeconfig" >"$work/control-plane.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 3600); do
  [ -s "$work/kubeconfig" ] && break
  if ! kill -0 "${pids[0]}" 2>/dev/null; then cat "$work/control-plane.log"; exit 1; fi
  sleep 0.5
done
export KUBECONFIG="$work/kubeconfig"
cat "$work/control-plane.log"

echo "== CRDs"
kubectl apply --server-side -f crds/ >/dev/null
kubectl wait --for=condition=Established --timeout=60s crd --all >/dev/null

sim_port=$(free_port)
echo "== Collibra simulator on 127.0.0.1:$sim_port"
"$bin/collibra-sim" --listen "127.0.0.1:$sim_port" >"$work/sim.log" 2>&1 &
pids+=($!)

metrics_port=$(free_port)
echo "== operator (metrics on 127.0.0.1:$metrics_port; log: $work/operator.log)"
COLLIBRA_CLIENT_ID=operator COLLIBRA_CLIENT_SECRET=operator-secret \
  "$bin/collibra-oauth-operator" run \
  --collibra-url "http://127.0.0.1:$sim_port" \
  --metrics-addr "127.0.0.1:$metrics_port" >"$work/operator.log" 2>&1 &
pids+=($!)

echo "== examples/"
kubectl apply -f examples/
kubectl wait --for=condition=Ready --timeout=60s oauthclients --all >/dev/null
echo
kubectl get oauthclients
echo
for s in $(kubectl get oauthclients -o jsonpath='{range .items[*]}{.status.secretName}{" "}{end}'); do
  keys=$(kubectl get secret "$s" -o go-template='{{range $k, $v := .data}}{{$k}} {{end}}')
  echo "Secret $s holds: $keys"
done
echo
echo "Registered in the simulator: $(curl -s "http://127.0.0.1:$sim_port/_sim/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["requests"])')"
echo "Try: KUBECONFIG=$KUBECONFIG kubectl get oac -w    (Ctrl-C here stops everything)"
wait "${pids[2]}"
