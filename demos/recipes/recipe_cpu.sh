#!/usr/bin/env bash
# The CPU recipe of the shipped model (models/shipped): collect -> pretrain the encoder ->
# cache features -> train the predictor -> demonstrations -> goal policy -> export. Every stage
# is resumable: rerun the same command after a crash or kill and finished work is skipped
# (episodes, checkpoints, cached episodes), so nothing is lost. Budget: the world model (stages
# 1-4) <= 90 minutes on 2 cores; the policy stages (5-7) add about 2 hours (measured stage by
# stage in docs/shipped-model.md; stage times are printed), plus ~15 min for the other tasks'
# demonstrations (5b: 3 x 600 episodes collected and cached, measured beside other jobs).
#
#   bash demos/recipes/recipe_cpu.sh                  # everything into runs/shipped, then models/shipped
#   RUN=runs/try2 PRETRAIN_STEPS=500 TRAIN_STEPS=500 DECAY_STEPS=100 EXPORT= bash demos/recipes/recipe_cpu.sh
#
# Then evaluate:  wm-eval model=models/shipped tasks=[reach,grasp,reach_with_object,pick_place] \
#                   methods=[random,oracle_cem,wm_cem,wm_icem,reference_cem] episodes=50
set -euo pipefail
cd "$(dirname "$0")/../.."

RUN=${RUN:-runs/shipped}
EPISODES=${EPISODES:-600}
PRETRAIN_STEPS=${PRETRAIN_STEPS:-2500}
# two views make 32 tokens a frame, about half the single view's steps/s: 11 000 steps keep the
# recipe under 90 minutes (the single-view model shipped before trained 16 000 / 4 000)
TRAIN_STEPS=${TRAIN_STEPS:-11000}
DECAY_STEPS=${DECAY_STEPS:-3000}   # the last steps anneal the learning rate linearly to 0
DEMOS=${DEMOS:-3600}               # pick-and-place demonstrations (expert + noisy) for the policy
TASK_DEMOS=${TASK_DEMOS:-600}      # demonstrations of each other task (reach, reach_with_object, grasp)
POLICY_STEPS=${POLICY_STEPS:-20000}
POLICY_ENSEMBLE=${POLICY_ENSEMBLE:-3}  # policies (seeds 0..K-1) whose mean action is the policy
PROPOSAL_STEPS=${PROPOSAL_STEPS:-10000}
EXPORT=${EXPORT-models/shipped}   # empty: do not copy the result into the repo
# cameras the world model sees side by side (worldmodel/models/views.py): the exterior camera, plus
# the wrist camera, where a grasp fills the image instead of a few pixels
VIEWS=${VIEWS:-exterior+wrist}
WRIST=false
case "+$VIEWS+" in *+wrist+*) WRIST=true ;; esac
export MUJOCO_GL=${MUJOCO_GL:-egl}

stage() {
    local name=$1
    shift
    local t0=$SECONDS
    echo "== recipe: $name: $*"
    "$@"
    echo "== recipe: $name done in $((SECONDS - t0)) s (total $SECONDS s)"
}

# 1. pick-and-place episodes (expert / noisy / exploratory): every motion the four tasks need
stage collect wm-collect env=pick_place episodes="$EPISODES" image_size=64 workers=2 \
    out_dir="$RUN/data" expert_frac=0.3 noisy_frac=0.3 explore_frac=0.4 wrist_camera="$WRIST"
# 2. V-JEPA pretraining of the small encoder on the exterior videos; the EMA target encoder is
#    exported (the wrist frames are encoded by the same frozen encoder)
stage pretrain wm-pretrain data_root="$RUN/data" out_dir="$RUN/pretrain" encoder=vit_tiny_cpu \
    total_steps="$PRETRAIN_STEPS"
# 3. frozen features of every frame (its views side by side), fp16, memory-mapped
stage cache wm-cache data_root="$RUN/data" encoder_dir="$RUN/pretrain/encoder" \
    cache_dir="$RUN/features" views="$VIEWS"
# 4. the action-conditioned predictor on the cached features
stage train wm-train data_root="$RUN/data" encoder_dir="$RUN/pretrain/encoder" \
    cache_dir="$RUN/features" views="$VIEWS" out_dir="$RUN/predictor" predictor=tiny \
    max_steps="$TRAIN_STEPS" decay_steps="$DECAY_STEPS"
# 5. demonstrations (another seed than the training data) and their features, for the policy
stage demos wm-collect env=pick_place episodes="$DEMOS" image_size=64 workers=2 seed=1 \
    out_dir="$RUN/demos" expert_frac=0.5 noisy_frac=0.5 explore_frac=0.0 wrist_camera="$WRIST"
stage demos-cache wm-cache data_root="$RUN/demos" encoder_dir="$RUN/pretrain/encoder" \
    cache_dir="$RUN/demos_features" views="$VIEWS"
# 5b. demonstrations of the other tasks, so the policy serves every task's final goal image
ROOTS="$RUN/demos" CACHES="$RUN/demos_features"
for task in reach reach_with_object grasp; do
    stage "demos-$task" wm-collect env="$task" episodes="$TASK_DEMOS" image_size=64 workers=2 \
        seed=2 out_dir="$RUN/demos_$task" expert_frac=0.5 noisy_frac=0.5 explore_frac=0.0 \
        wrist_camera="$WRIST"
    stage "demos-$task-cache" wm-cache data_root="$RUN/demos_$task" \
        encoder_dir="$RUN/pretrain/encoder" cache_dir="$RUN/demos_${task}_features" views="$VIEWS"
    ROOTS="$ROOTS,$RUN/demos_$task" CACHES="$CACHES,$RUN/demos_${task}_features"
done
# 6. the goal-conditioned policy on the frozen latents: any task from its final goal image
stage policy wm-train-policy model="$RUN/predictor/world_model" data_root="[$ROOTS]" \
    cache_dir="[$CACHES]" out_dir="$RUN/policy" steps="$POLICY_STEPS" \
    ensemble="$POLICY_ENSEMBLE" install=true
# 7. the planner's proposal (wm_pcem): the same, half of its goals 1-16 steps ahead
stage proposal wm-train-policy model="$RUN/predictor/world_model" data_root="$RUN/demos" \
    cache_dir="$RUN/demos_features" out_dir="$RUN/proposal" steps="$PROPOSAL_STEPS" \
    final_goal_frac=0.5 hindsight_max=16 proposal=true install=true

if [ -n "$EXPORT" ]; then
    mkdir -p "$(dirname "$EXPORT")"
    rm -rf "$EXPORT.tmp"
    cp -r "$RUN/predictor/world_model" "$EXPORT.tmp"
    rm -rf "$EXPORT"
    mv "$EXPORT.tmp" "$EXPORT"
    du -sh "$EXPORT"
fi
echo "== recipe: finished in $SECONDS s"
