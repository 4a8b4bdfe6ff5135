#!/usr/bin/env bash
# The GPU check of issue 13, on a machine with one NVIDIA GPU (at most 10 minutes):
#   bench/gpu_check.sh [OUT.json]            xformers vs SDPA, bf16 DiT^DH-XL step + MFU at a share of 32,
#                                            DINOv2-B + ViT-XL throughput, CUDA draws and latent cache
#   bench/gpu_check.sh --dry-run [OUT.json]  the same code on CPU with tiny sizes (no CUDA call)
# Figures go to one JSON file (default gpu_check.json); each check's line is printed as it finishes.
set -euo pipefail
cd "$(dirname "$0")/.."
dry=()
if [[ "${1:-}" == "--dry-run" ]]; then dry=(--dry-run); shift; fi
out="${1:-gpu_check.json}"
export HF_HUB_OFFLINE=1
if [[ ${#dry[@]} -eq 0 ]]; then nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; fi
timeout 600 python bench/gpu_check.py "${dry[@]}" --out "$out"
