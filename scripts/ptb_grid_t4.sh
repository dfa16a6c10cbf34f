#!/usr/bin/env bash
# The PTB grids behind the defaults (docs/results/h200-grid), unroll 4 unless named, hidden 256, batch 64, run side by
# side on one GPU with scripts/grid.py. Usage: scripts/ptb_grid_t4.sh 1|2|3 [OUT_DIR]. Run from the repository root.
# Grids 1-2 ran with trainer.lr=2e-3 (the first default), grid 3 with trainer.lr=1e-3 (the current default).
# They ran before dni.head_input and dni.aux_in_target existed: the behaviour then was head_input=raw (add it to C to
# reproduce exactly) and aux_in_target=true (pinned below); copy runs: aligned phase, one learned symbol per pattern.
set -euo pipefail
which="${1:?grid 1, 2 or 3}"
OUT_DIR="${2:-grid$which}"
case "$which" in
1) C="trainer.lr=2e-3 trainer.max_chars=10000000 trainer.max_seconds=230 device=cuda threads=1"
   python3 scripts/grid.py --jobs 13 --out "$OUT_DIR" --common "$C" \
     --run "bptt=method=bptt" --run "bptt_s2=method=bptt seed=2" --run "bptt_T8=method=bptt trainer.unroll=8" \
     --run "dni=method=dni dni.scale=0.1 dni.lr=3e-3" --run "dni_s2=method=dni dni.scale=0.1 dni.lr=3e-3 seed=2" \
     --run "dni_s03=method=dni dni.scale=0.3 dni.lr=3e-3" --run "dni_s05=method=dni dni.scale=0.5 dni.lr=3e-3" \
     --run "dni_lr1e2=method=dni dni.scale=0.1 dni.lr=1e-2" \
     --run "dni_shuffle=method=dni dni.scale=0.1 dni.lr=3e-3 dni.ablation=shuffle" \
     --run "dni_aux=method=dni_aux dni.aux_in_target=true dni.scale=0.1 dni.lr=3e-3" \
     --run "copy_bptt=data=copy data.phase=aligned model.symbols=embedding method=bptt" --run "copy_dni=data=copy data.phase=aligned model.symbols=embedding method=dni dni.scale=0.1 dni.lr=3e-3" \
     --run "copy_aux=data=copy data.phase=aligned model.symbols=embedding method=dni_aux dni.aux_in_target=true dni.scale=0.1 dni.lr=3e-3" ;;
2) C="trainer.lr=2e-3 trainer.max_chars=10000000 trainer.max_seconds=200 device=cuda threads=1"
   python3 scripts/grid.py --jobs 8 --out "$OUT_DIR" --common "$C" \
     --run "aux_s2=method=dni_aux dni.aux_in_target=true dni.scale=0.1 dni.lr=3e-3 seed=2" \
     --run "aux_noinject=method=dni_aux dni.aux_in_target=true dni.scale=0 dni.lr=3e-3" \
     --run "aux_shuffle=method=dni_aux dni.aux_in_target=true dni.scale=0.1 dni.lr=3e-3 dni.ablation=shuffle" \
     --run "aux_T8=method=dni_aux dni.aux_in_target=true dni.scale=0.1 dni.lr=3e-3 trainer.unroll=8" \
     --run "dni_T8=method=dni dni.scale=0.1 dni.lr=3e-3 trainer.unroll=8" --run "bptt_lr1e3=method=bptt trainer.lr=1e-3" \
     --run "dni_mlp=method=dni dni.scale=0.1 dni.lr=3e-3 dni.head_hidden_size=512" \
     --run "aux_w1=method=dni_aux dni.aux_in_target=true dni.scale=0.1 dni.lr=3e-3 dni.aux_weight=1.0" ;;
3) C="trainer.lr=1e-3 trainer.max_chars=8000000 trainer.max_seconds=165 device=cuda threads=1"
   python3 scripts/grid.py --jobs 6 --out "$OUT_DIR" --common "$C" \
     --run "bptt=method=bptt" --run "bptt_s2=method=bptt seed=2" \
     --run "dni=method=dni dni.scale=0.1 dni.lr=3e-3" --run "dni_s2=method=dni dni.scale=0.1 dni.lr=3e-3 seed=2" \
     --run "dni_aux=method=dni_aux dni.aux_in_target=true dni.scale=0.1 dni.lr=3e-3" \
     --run "dni_shuffle=method=dni dni.scale=0.1 dni.lr=3e-3 dni.ablation=shuffle" ;;
*) echo "ptb_grid_t4.sh: error: grid must be 1, 2 or 3" >&2; exit 2 ;;
esac
