"""What ModelArts' custom-image specifications promise inside the container, in one place:
the build context writes it into the Dockerfile, the boot programs assume it, the emulator
maps it onto a folder of this machine and the tests check it.

Training (v2 jobs with ``algorithm.engine.image_url``): the boot command runs in the
default user's home ``/home/ma-user``; ``code_dir`` arrives in ``MA_JOB_DIR/<last level of
code_dir>``; inputs and outputs with a ``local_dir`` are downloaded before and uploaded
after the command. Serving (``model_type: Image``): an HTTP server on port 8080 answering
the ``apis`` of ``config.json`` and ``GET /health`` -> 200 ``{"health": "true"}``, logs on
standard output, SIGTERM drains before exit.
"""

HOME = "/home/ma-user"
USER, UID, GROUP, GID = "ma-user", 1000, "ma-group", 100
JOB_DIR = f"{HOME}/modelarts/user-job-dir"          # MA_JOB_DIR
INPUTS_DIR = f"{HOME}/modelarts/inputs"             # <name>_0/ per input channel
OUTPUTS_DIR = f"{HOME}/modelarts/outputs"           # <name>_0/ per output channel
APP_DIR = f"{HOME}/app"                             # the project's runtime (orchestrator package)
BOOT_DIR = f"{HOME}/boot"                           # run_train.sh, run_serve.sh
TRAIN_BOOT = f"{BOOT_DIR}/run_train.sh"
SERVE_BOOT = f"{BOOT_DIR}/run_serve.sh"
MODEL_DIR = "/home/mind/model"                      # where the model package is mounted for serving
PORT = 8080
HEALTH_URL = "/health"

# environment of the serving boot (set in the Dockerfile; tests and the emulator override them)
MODEL_DIR_ENV, HOST_ENV, PORT_ENV = "MODEL_DIR", "SERVE_HOST", "SERVE_PORT"


def input_dir(name: str) -> str:
    return f"{INPUTS_DIR}/{name}_0/"


def output_dir(name: str) -> str:
    return f"{OUTPUTS_DIR}/{name}_0/"


def under(home, path: str):
    """``path`` (below ``HOME``) relative to another home folder ``home`` (a ``Path``)."""
    return home / path[len(HOME):].lstrip("/")


def train_command(boot_file: str) -> str:
    """The v2 job's ``algorithm.command``: the image's training boot with the boot file
    relative to ``MA_JOB_DIR``; ModelArts appends the inputs, outputs and hyperparameters."""
    return f"/bin/sh {TRAIN_BOOT} {boot_file}"


def health_config() -> dict:
    """The ``health`` entry of an image model's ``config.json``; the field names are those of
    the SDK's typed ``Health`` (v2 services' health probes)."""
    return {"check_method": "HTTP", "protocol": "http", "url": HEALTH_URL, "initial_delay_seconds": 10,
            "timeout_seconds": 5, "period_seconds": 10, "failure_threshold": 3}
