# Sourced by tools/dist_{train,test}.sh and tools/slurm_run.sh: choose the Python
# that runs torchrun (or the srun tasks) and check that it has torch.
# Order: $PYTHON if set; else the activated venv ($VIRTUAL_ENV/bin/python); else the
# repository's .venv/bin/python if it exists; else python3 from PATH.
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -n "${PYTHON:-}" ]; then
    PYTHON_FROM="PYTHON"
elif [ -n "${VIRTUAL_ENV:-}" ] && [ -x "$VIRTUAL_ENV/bin/python" ]; then
    PYTHON="$VIRTUAL_ENV/bin/python"
    PYTHON_FROM="the activated venv (VIRTUAL_ENV)"
elif [ -x "$REPO_ROOT/.venv/bin/python" ]; then
    PYTHON="$REPO_ROOT/.venv/bin/python"
    PYTHON_FROM="the repository's .venv"
else
    PYTHON="python3"
    PYTHON_FROM="PATH"
fi
if ! "$PYTHON" -c "import torch" >/dev/null 2>&1; then
    echo "$(basename "$0"): '$PYTHON' (from $PYTHON_FROM) cannot import torch." >&2
    echo "Set PYTHON=/path/to/python of the environment that has torch and mmbal," \
         "or activate that venv (. .venv/bin/activate)." >&2
    exit 1
fi
