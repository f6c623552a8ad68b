#!/bin/bash
# Where umi-host's CPU goes per task: runs `umi_workload_bench --only E2E`,
# profiles the first host (config/hardware/reference.yaml) with `perf record`
# for 3 s, and prints its CPU per task split into groups of symbols.
#
#   bench/perf_breakdown.sh [HOST_BINARY [PLUGIN_DIR]]   (defaults: build/release)
# Needs perf (linux-perf) and a release build (scripts/build release).
set -euo pipefail
cd "$(dirname "$0")/.."
host=${1:-$PWD/build/release/bin/umi-host}
plugins=${2:-$PWD/build/release/lib/umi/plugins}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
build/release/bin/umi_workload_bench --only E2E --throughput-tasks "${TASKS:-5000000}" \
  --host-binary "$host" --plugin-dir "$plugins" > "$out/e2e" 2>&1 &
bench=$!
for _ in $(seq 1 600); do pgrep -x umi-host > /dev/null && break; sleep 0.1; done
sleep 1
perf record -F 2000 -p "$(pgrep -n -x umi-host)" -o "$out/perf.data" -- sleep 3 > /dev/null 2>&1
wait "$bench"
perf report -i "$out/perf.data" --no-children --sort dso,sym --stdio -g none 2>/dev/null | grep '%' | grep -v '^#' \
  > "$out/syms"
python3 - "$out" <<'PY'
import re, sys
out = sys.argv[1]
order = ['kernel: TCP/IP', 'kernel: wake-ups, task switches, polling', 'kernel: other', 'ZeroMQ (libzmq)',
         'malloc/free', 'dedup window (ResultCache)', 'telemetry', 'decode (msgpack in)', 'encode (msgpack out)',
         'clock reads', 'plugin', 'the rest of the host']
share = dict.fromkeys(order, 0.0)
for line in open(out + '/syms'):
    m = re.match(r'\s*([\d.]+)%\s+(\S+)\s+\[(.)\]\s+(.*)', line)
    if not m:
        continue
    pct, dso, kind, sym = float(m.group(1)), m.group(2), m.group(3), m.group(4)
    if kind == 'k':
        if re.search(r'tcp|ip_|skb|net_|napi|sock|inet|loopback|dev_|neigh|nf_|sk_|netif|xmit|softirq', sym):
            group = 'kernel: TCP/IP'
        elif re.search(r'futex|wake|sched|switch|schedule|epoll|poll|eventfd|hrtimer|irq|ipi|idle|select', sym):
            group = 'kernel: wake-ups, task switches, polling'
        else:
            group = 'kernel: other'
    elif 'libzmq' in dso: group = 'ZeroMQ (libzmq)'
    elif re.search(r'malloc|free|_int_|tcache|consolidate|unlink_chunk|operator new|operator delete', sym):
        group = 'malloc/free'
    elif 'ResultCache' in sym: group = 'dedup window (ResultCache)'
    elif 'Telemetry' in sym or 'TaskRecord' in sym: group = 'telemetry'
    elif 'clock_gettime' in sym or 'vdso' in dso or 'read_tsc' in sym: group = 'clock reads'
    elif dso.endswith('.so') and not dso.startswith('lib'): group = 'plugin'
    elif re.search(r'DecodeMessage|unpack|parse_helper|create_object_visitor|IsValidUtf8|zone', sym):
        group = 'decode (msgpack in)'
    elif re.search(r'EncodeResult|packer|Pack\b|pack_', sym): group = 'encode (msgpack out)'
    else: group = 'the rest of the host'
    share[group] += pct
e2e = open(out + '/e2e').read()
m = re.search(r'reference\.yaml \(8 concurrent\)\s+(\d+)\s+\S+\s+\S+\s+([\d.]+)', e2e)
rate, us = float(m.group(1)), float(m.group(2))
print(f'{rate:,.0f} tasks/s, host CPU {us:.2f} us/task (perf attached)')
print(f'{"where":42s} {"share":>7s} {"us/task":>8s}')
for group in order:
    print(f'{group:42s} {share[group]:6.1f}% {share[group] * us / 100:8.2f}')
PY
