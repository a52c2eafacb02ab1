#!/usr/bin/env bash
# Usage: bash tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [train.py args...]
# srun starts GPUS tasks (default 1; GPUS_PER_NODE, CPUS_PER_TASK, SRUN_ARGS: tools/slurm_run.sh),
# each running tools/train.py --launcher slurm. batch_size is per task: GPUS tasks train on
# GPUS x batch_size samples per step (--auto-scale-lr scales the lr to match).
# Python: PYTHON=..., else the activated venv, else ./.venv/bin/python, else python3
# (tools/dist_env.sh). The master port: MASTER_PORT, else 29500.
source "$(dirname "$0")/slurm_run.sh"
srun_tasks "$1" "$2" "$REPO_ROOT/tools/train.py" "$3" --work-dir="$4" --launcher="slurm" "${@:5}"
