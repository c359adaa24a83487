#!/usr/bin/env bash
# Does up-weighting what moves make the predictor follow the wrist view, and plan better?
# From a finished CPU recipe run (RUN, see recipe_cpu.sh), fine-tune its predictor for STEPS
# more steps at each motion_weight in WEIGHTS (0 is the control: the same extra steps with the
# plain loss), then measure each model's motion gain (planning/harness/diagnostics/motion_gain.py) and its goal-image
# success with iCEM on development instances (wm-eval dev_instances=true: drawn from seeds
# 100000+, never the evaluation task ids). Resumable: rerun after a kill.
#
#   RUN=runs/shipped OUT=runs/motion_weight bash demos/experiments/motion_weight_study.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
RUN=${RUN:?RUN=<a finished recipe run folder>}
OUT=${OUT:-runs/motion_weight}
WEIGHTS=${WEIGHTS:-0 3 10 30}
STEPS=${STEPS:-2000}
DEV_EPISODES=${DEV_EPISODES:-20}
DEV_WEIGHTS=${DEV_WEIGHTS:-0 30}   # the weights whose models are also evaluated (slow part)
VIEWS=${VIEWS:-exterior+wrist}     # as the recipe run was made (recipe_cpu.sh VIEWS)
export MUJOCO_GL=${MUJOCO_GL:-egl}

for w in $WEIGHTS; do
    wm-train data_root="$RUN/data" encoder_dir="$RUN/pretrain/encoder" cache_dir="$RUN/features" \
        views="$VIEWS" out_dir="$OUT/mw$w" predictor=tiny max_steps="$STEPS" \
        decay_steps=$((STEPS * 2 / 5)) warmup_steps=50 lr=2e-4 \
        init_from="$RUN/predictor/world_model" motion_weight="$w" progress=false
done
echo "== motion gain (24 start frames x 3 moves; 1 = the predictor moves the view as far as the arm)"
echo "-- recipe model, before fine-tuning"
python -m planning.harness.diagnostics.motion_gain --model "$RUN/predictor/world_model" --instances 24 --moves 3 | tail -3
for w in $WEIGHTS; do
    echo "-- motion_weight=$w, val: $(tail -n 1 "$OUT/mw$w/eval_log.csv")"
    python -m planning.harness.diagnostics.motion_gain --model "$OUT/mw$w/world_model" --instances 24 --moves 3 | tail -3
done
dev_eval() {  # model folder, out dir
    wm-eval model="$1" out_dir="$2" workers=2 \
        episodes="$DEV_EPISODES" episodes_per_method.wm_icem="$DEV_EPISODES" dev_instances=true \
        seed=100000 "tasks=[reach,grasp,pick_place]" "methods=[wm_icem]"
}
dev_eval "$RUN/predictor/world_model" "$OUT/dev_recipe"
for w in $DEV_WEIGHTS; do
    dev_eval "$OUT/mw$w/world_model" "$OUT/dev_mw$w"
done
