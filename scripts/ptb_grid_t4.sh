#!/usr/bin/env bash
# The PTB grids behind the defaults (docs/results/h200-grid), unroll 4 unless named, hidden 256, batch 64, run side by
# side on one GPU (one lmdni-train process per run), then tabulated by lmdni-compare. Usage: scripts/ptb_grid_t4.sh
# 1|2|3 [OUT_DIR]. Run from the repository root. (A sweep that is a product of values is one Hydra multirun instead:
# lmdni-train -m hydra/launcher=joblib hydra.launcher.n_jobs=8 method=bptt,dni seed=1,2, with lmdni[parallel].)
# Settings that differ from today's defaults (CHANGELOG.md): trainer.lr=2e-3 in grids 1-2 (grid 3: 1e-3),
# dni.head_input=raw (add it to C to reproduce exactly), dni.aux_in_target=true (pinned below); copy runs: aligned
# phase, one learned symbol per pattern.
set -euo pipefail
which="${1:?grid 1, 2 or 3}"
OUT_DIR="${2:-grid$which}"
mkdir -p "$OUT_DIR"
runs() {  # runs NAME=OVERRIDES ...: all side by side, each with the common overrides $C
  for spec in "$@"; do
    name="${spec%%=*}"
    # shellcheck disable=SC2086
    lmdni-train $C ${spec#*=} hydra.run.dir="$OUT_DIR/$name" trainer.progress=false >"$OUT_DIR/$name.log" 2>&1 &
  done
  wait
  lmdni-compare "$OUT_DIR" --out "$OUT_DIR"
}
case "$which" in
1) C="trainer.lr=2e-3 trainer.max_chars=10000000 trainer.max_seconds=230 device=cuda threads=1"
   runs "bptt=method=bptt" "bptt_s2=method=bptt seed=2" "bptt_T8=method=bptt trainer.unroll=8" \
     "dni=method=dni dni.scale=0.1 dni.lr=3e-3" "dni_s2=method=dni dni.scale=0.1 dni.lr=3e-3 seed=2" \
     "dni_s03=method=dni dni.scale=0.3 dni.lr=3e-3" "dni_s05=method=dni dni.scale=0.5 dni.lr=3e-3" \
     "dni_lr1e2=method=dni dni.scale=0.1 dni.lr=1e-2" \
     "dni_shuffle=method=dni dni.scale=0.1 dni.lr=3e-3 dni.ablation=shuffle" \
     "dni_aux=method=dni_aux dni.aux_in_target=true dni.scale=0.1 dni.lr=3e-3" \
     "copy_bptt=data=copy data.phase=aligned model.symbols=embedding method=bptt" "copy_dni=data=copy data.phase=aligned model.symbols=embedding method=dni dni.scale=0.1 dni.lr=3e-3" \
     "copy_aux=data=copy data.phase=aligned model.symbols=embedding method=dni_aux dni.aux_in_target=true dni.scale=0.1 dni.lr=3e-3" ;;
2) C="trainer.lr=2e-3 trainer.max_chars=10000000 trainer.max_seconds=200 device=cuda threads=1"
   runs "aux_s2=method=dni_aux dni.aux_in_target=true dni.scale=0.1 dni.lr=3e-3 seed=2" \
     "aux_noinject=method=dni_aux dni.aux_in_target=true dni.scale=0 dni.lr=3e-3" \
     "aux_shuffle=method=dni_aux dni.aux_in_target=true dni.scale=0.1 dni.lr=3e-3 dni.ablation=shuffle" \
     "aux_T8=method=dni_aux dni.aux_in_target=true dni.scale=0.1 dni.lr=3e-3 trainer.unroll=8" \
     "dni_T8=method=dni dni.scale=0.1 dni.lr=3e-3 trainer.unroll=8" "bptt_lr1e3=method=bptt trainer.lr=1e-3" \
     "dni_mlp=method=dni dni.scale=0.1 dni.lr=3e-3 dni.head_hidden_size=512" \
     "aux_w1=method=dni_aux dni.aux_in_target=true dni.scale=0.1 dni.lr=3e-3 dni.aux_weight=1.0" ;;
3) C="trainer.lr=1e-3 trainer.max_chars=8000000 trainer.max_seconds=165 device=cuda threads=1"
   runs "bptt=method=bptt" "bptt_s2=method=bptt seed=2" \
     "dni=method=dni dni.scale=0.1 dni.lr=3e-3" "dni_s2=method=dni dni.scale=0.1 dni.lr=3e-3 seed=2" \
     "dni_aux=method=dni_aux dni.aux_in_target=true dni.scale=0.1 dni.lr=3e-3" \
     "dni_shuffle=method=dni dni.scale=0.1 dni.lr=3e-3 dni.ablation=shuffle" ;;
*) echo "ptb_grid_t4.sh: error: grid must be 1, 2 or 3" >&2; exit 2 ;;
esac
