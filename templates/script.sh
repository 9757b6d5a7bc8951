{# cvcycle job script: extends the scheduler template that signac-flow picked (slurm.sh under
   SLURM). `base_script` must stay a variable: the quoted "base_script.sh" would drop the
   #!/bin/bash and #SBATCH header lines. #}
{% extends base_script %}
{% block tasks %}
{% if base_script == "slurm.sh" %}
{# one process with np threads (np = resources.cpus), on one node #}
#SBATCH --nodes=1
#SBATCH --ntasks=1
#SBATCH --cpus-per-task={{ resources.ncpu_tasks }}
{% if resources.ngpu_tasks %}
#SBATCH --gres=gpu:{{ resources.ngpu_tasks }}
{% endif %}
{% else %}
{{ super() }}
{% endif %}
{% endblock tasks %}
{% block custom_content %}
# Python environment: the submitter's virtualenv (sbatch exports VIRTUAL_ENV), else the project's .venv.
set +u
if [ -n "${VIRTUAL_ENV:-}" ] && [ -f "${VIRTUAL_ENV}/bin/activate" ]; then
    source "${VIRTUAL_ENV}/bin/activate"
elif [ -f .venv/bin/activate ]; then
    source .venv/bin/activate
fi
set -u
{% endblock custom_content %}
{% block pre_operation scoped %}
{% set cpus = operation.directives.omp_num_threads or operation.directives.np or 1 %}
export OMP_NUM_THREADS={{ cpus }} MKL_NUM_THREADS={{ cpus }} OPENBLAS_NUM_THREADS={{ cpus }}
{% if operation.directives.walltime %}
{% set seconds = operation.directives.walltime.total_seconds()|int %}
{# stop early enough to write the last checkpoint: 10 % of the walltime, at most 10 minutes #}
export CVCYCLE_WALLTIME_SECONDS={{ seconds - [600, seconds // 10]|min }}
{% endif %}
{% endblock pre_operation %}
