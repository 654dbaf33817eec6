#!/usr/bin/env bash
# Regenerate every file of benchmarks/results/ one after another, on a quiet machine (nothing else
# running: the timings are ratios against a baseline measured in the same process, but a loaded
# machine still adds noise). Each script records its own command and provenance in its JSON.
set -euo pipefail
cd "$(dirname "$0")/.."
run() { echo "== $*"; start=$(date +%s); python "$@"; echo "== $1: $(( $(date +%s) - start )) s"; }
run benchmarks/demo.py --seeds 3
run benchmarks/baselines.py --seeds 3
run benchmarks/sparse_demo.py --sparsity 0.5 --seeds 2
run benchmarks/fisher_iu.py --seeds 3 --threads 2
run benchmarks/per_sample_fisher.py --samples 512 --batch-size 256 --repeats 3 --threads 2
run benchmarks/ssd_cache.py
run benchmarks/derived_cache.py --threads 2
run benchmarks/ssd_digits_presets.py --seeds 3
run benchmarks/adversarial.py --seeds 5 --repeats 3 --threads 2
run benchmarks/unrolling_study.py
run benchmarks/certified_removal.py
run benchmarks/defaults_health.py --seeds 3
run benchmarks/bench_backends.py
run benchmarks/pool_metrics.py
# on a GPU machine only:
# run benchmarks/gpu_throughput.py --device cuda --grid
# long (2-3 h on 2 cores; resumable, can run in parts with --methods / --datasets):
# run benchmarks/tuning.py --seeds 3 --budget 15 --threads 1
