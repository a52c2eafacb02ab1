#!/usr/bin/env bash
# Usage: bash tools/dist_train.sh CONFIG NPROC [train.py args...]
# batch_size is per process: NPROC processes train on NPROC x batch_size samples per step.
# Python: PYTHON=..., else the activated venv, else ./.venv/bin/python, else python3
# (tools/dist_env.sh). Without CUDA the processes use gloo (mmbal.utils.setup_cpu_distributed).
CONFIG=$1
NPROC=$2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
source "$(dirname "$0")/dist_env.sh"

PYTHONPATH="$REPO_ROOT":$PYTHONPATH \
"$PYTHON" -m torch.distributed.run \
    --nnodes="$NNODES" --node_rank="$NODE_RANK" --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$NPROC" --master_port="$PORT" \
    "$REPO_ROOT/tools/train.py" "$CONFIG" --launcher pytorch "${@:3}"
