# Sourced by tools/slurm_train.sh and tools/slurm_test.sh: the Python (tools/dist_env.sh) and
# srun_tasks PARTITION JOB_NAME SCRIPT [ARGS...], which runs "$PYTHON -u SCRIPT ARGS" in
# GPUS srun tasks. Environment: GPUS (tasks, one per GPU; default 1), GPUS_PER_NODE (default
# GPUS, at most 8), CPUS_PER_TASK (default 5), SRUN_ARGS (more srun options, split at spaces,
# e.g. SRUN_ARGS="--time=2:00:00 --mem=32G").
source "$(dirname "${BASH_SOURCE[0]}")/dist_env.sh"
GPUS=${GPUS:-1}
GPUS_PER_NODE=${GPUS_PER_NODE:-$(( GPUS < 8 ? GPUS : 8 ))}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
SRUN_ARGS=${SRUN_ARGS:-""}

srun_tasks() {
    local partition=$1 job_name=$2
    shift 2
    # $SRUN_ARGS unquoted: split into words on purpose.
    PYTHONPATH="$REPO_ROOT":$PYTHONPATH \
    srun -p "$partition" \
        --job-name="$job_name" \
        --gres=gpu:"$GPUS_PER_NODE" \
        --ntasks="$GPUS" \
        --ntasks-per-node="$GPUS_PER_NODE" \
        --cpus-per-task="$CPUS_PER_TASK" \
        --kill-on-bad-exit=1 \
        $SRUN_ARGS \
        "$PYTHON" -u "$@"
}
