#!/usr/bin/env bash
# Usage: bash tools/slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT [test.py args...]
# srun starts GPUS tasks (default 1; GPUS_PER_NODE, CPUS_PER_TASK, SRUN_ARGS: tools/slurm_run.sh),
# each running tools/test.py --launcher slurm on a share of the split.
# Python: PYTHON=..., else the activated venv, else ./.venv/bin/python, else python3
# (tools/dist_env.sh). The master port: MASTER_PORT, else 29500.
source "$(dirname "$0")/slurm_run.sh"
srun_tasks "$1" "$2" "$REPO_ROOT/tools/test.py" "$3" "$4" --launcher="slurm" "${@:5}"
