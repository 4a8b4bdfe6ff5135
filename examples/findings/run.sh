#!/usr/bin/env bash
# The paper's findings as sweeps over the quickstart (examples/findings/README.md).
#   examples/findings/run.sh full [f2 f3 f1 ddt]   the protocol: 3 seeds, the quickstart's own settings
#   examples/findings/run.sh mini [f2 f3 f1 ddt]   what fitted a 2-core machine shared by ~6 agents (load
#                                                 average 10-20): 1 seed (SEEDS=n to change), decoder 300 steps
#                                                 (not 600), denoiser STEPS=1000 steps of 64 (not 1,500 of 96),
#                                                 30 samples per class (not 100); else as the quickstart;
#                                                 one torch thread per process (OMP_NUM_THREADS=1): under that
#                                                 load a DiT^DH step took 0.9 s with 1 thread, 6.6 s with 2
# Run from the repository root. Every sweep adopts finished stages from the sweeps before it (--reuse), so
# the decoder of a seed is trained once for f2, f1 and ddt (and f3's tau 0.8 point). Rerun to resume.
set -euo pipefail
scale=${1:-full}
shift || true
findings=${*:-f2 f3 f1 ddt}
case $scale in
  full) seeds=${SEEDS:-3}; fixed=() ;;
  mini) seeds=${SEEDS:-1}
        export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
        fixed=(--set stages.train_decoder.steps=300 --set stages.train_denoiser.steps=${STEPS:-1000}
               --set stages.train_denoiser.batch_size=64 --set stages.sample.per_class=30) ;;
  *) echo "usage: $0 full|mini [f2 f3 f1 ddt]" >&2; exit 2 ;;
esac
out=runs/findings-$scale${STEPS:+-$STEPS}
reuse=(--reuse "$out")
[ -n "${REUSE:-}" ] && reuse+=(--reuse "$REUSE")  # e.g. an earlier sweep with the same decoder settings
mkdir -p "$out"
metrics=gfid,class_accuracy,class_accuracy_mean,psnr,ssim
dit='{name: lightning-dit, params: {hidden_size: 128, depth: 6, num_heads: 4, num_classes: 10}}'
dit_dh='{name: dit-dh, params: {hidden_size: [128, 192], depth: [4, 1], num_heads: [4, 4], num_classes: 10}}'

sweep() {  # NAME GRID-ARGS...: one finding's sweep, timed, with the load average before and after
  local name=$1
  shift
  echo "== $name: $(date -u +%FT%TZ) load: $(cut -d' ' -f1-3 /proc/loadavg)"
  local start=$SECONDS
  python -m rae_framework sweep examples/quickstart.yaml "$@" --repeat-seeds "$seeds" --metrics "$metrics" \
    "${fixed[@]}" --out "$out/$name" "${reuse[@]}"
  echo "== $name: $((SECONDS - start)) s wall, $(date -u +%FT%TZ) load: $(cut -d' ' -f1-3 /proc/loadavg)"
}

for finding in $findings; do
  case $finding in
    f2) sweep finding2-shift --grid components.schedule.params.shift_base=${SHIFT_BASES:-256,4096,64,1024} ;;
    f3) sweep finding3-noise-tau --grid autoencoder.noise_tau=0.0,0.8 ;;
    f1) if [ "$scale" = full ]; then widths=${WIDTHS:-32,48,64,96,128}; else widths=${WIDTHS:-32,64,128}; fi
        sweep finding1-width --set components.denoiser="$dit" --grid components.denoiser.params.hidden_size=$widths ;;
    ddt) sweep ddt-head --grid "components.denoiser=$dit,$dit_dh" ;;
    *) echo "unknown finding '$finding' (f1 f2 f3 ddt)" >&2; exit 2 ;;
  esac
done
