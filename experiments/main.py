"""Run an experiment config: `python -m experiments.main --config=configs/ragp_fft.py[:tiny]`.

The config's `job` picks what runs: GAN-SR training (configs/mse, ragan, ragp, ragp_fft; the default), DeSRA
fine-tuning (configs/desra_finetune.py; `--online` for its continual loop) or the artifact localizer
(configs/localizer.py).

Flags: `--config` (an ml_collections config file; `:variant` after the path, `--config.a.b=value` overrides
any key) and `--workdir` (default ./runs/<config name>[_<variant>]). Rerunning the same command resumes.
Launched as one process per host on a pod, pass `--distributed` to call jax.distributed.initialize(): on TPU pods
and SLURM/MPI clusters it finds the coordinator itself; elsewhere give `--coordinator_address`, `--num_processes`
and `--process_id` (on CPU hosts also set JAX_CPU_COLLECTIVES_IMPLEMENTATION=gloo). The log holds warnings and the
project's own progress; `--verbosity 0` adds the libraries' INFO lines (orbax's per-checkpoint ones, JAX's).
"""

import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

config_flags.DEFINE_config_file("config", None, "Experiment config file (configs/*.py[:variant]).", lock_config=True)
flags.DEFINE_string("workdir", None, "Where checkpoints, logs, samples and the final model go.")
flags.DEFINE_bool("distributed", False, "Multi-host: call jax.distributed.initialize() before anything else.")
flags.DEFINE_string("coordinator_address", None, "With --distributed: host:port of process 0 (else auto-detected).")
flags.DEFINE_integer("num_processes", None, "With --distributed: number of processes (else auto-detected).")
flags.DEFINE_integer("process_id", None, "With --distributed: this process's index (else auto-detected).")
flags.DEFINE_bool("online", False, "DeSRA fine-tuning only: the continual loop (same as --config.online=True).")
flags.mark_flag_as_required("config")
FLAGS = flags.FLAGS


def default_workdir(config) -> str:
    """runs/<name>[_<variant>], e.g. runs/ragp_fft_tiny for configs/ragp_fft.py:tiny."""
    return os.path.join("runs", f"{config.name}_{config.variant}" if config.variant else config.name)


def run_job(config, workdir: str) -> dict:
    """Checks `config` (configs.validation) and runs the job it names (`config.job`) in `workdir`; returns its
    final evaluation summary."""
    import jax

    from configs import validation

    validation.check(config, jax.device_count())
    job = config.get("job", "sr")
    if job == "sr":
        from experiments import train

        return train.train_and_evaluate(config, workdir)
    if job == "desra_finetune":
        from experiments import finetune

        return finetune.run_finetune(config, workdir)
    from experiments import localizer

    return localizer.train_localizer(config, workdir)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    import jax

    if FLAGS.distributed:
        jax.distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
    from desra_jax.compilation import enable_compilation_cache
    from desra_jax.training.loop import TrainingInterrupted
    from experiments.command import quiet_libraries  # after jax.distributed: it imports the detection modules

    config = FLAGS.config
    if FLAGS.online:
        if "online" not in config:
            raise app.UsageError(f"--online: the config {config.name} has no online mode "
                                 "(configs/desra_finetune.py has)")
        config.online = True

    logging.set_verbosity(logging.INFO)
    quiet_libraries()
    enable_compilation_cache()
    workdir = FLAGS.workdir or default_workdir(config)
    logging.info("config %s, workdir %s, %d devices on %d processes", FLAGS["config"].config_filename, workdir,
                 jax.device_count(), jax.process_count())
    try:
        summary = run_job(config, workdir)
    except TrainingInterrupted as stopped:
        print(f"interrupted by {stopped}", file=sys.stderr)
        sys.exit(130)
    except (ValueError, OSError) as error:  # bad config values, bad data, unwritable workdirs: a message
        if isinstance(error, OSError) and error.filename:
            error = f"{error.filename}: {error.strerror}"
        logging.debug("traceback", exc_info=True)
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    print(f"done: {workdir}/model; validation " + ", ".join(f"{k}={v:.4f}" for k, v in summary.items()))


def parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing, with an override of a key the config lacks (`--config.foo=1`) reported as a bad
    flag (a message and the usage) instead of ml_collections' chained tracebacks."""
    try:
        return app.parse_flags_with_usage(argv)
    except (AttributeError, KeyError) as error:
        overrides = [arg.split("=")[0] for arg in argv[1:] if arg.startswith("--config.")]
        print(f"error: {' or '.join(overrides) or '--config'}: no such key in the config ({error})", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
