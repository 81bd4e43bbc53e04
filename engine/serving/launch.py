"""What ``engine.serve`` serves: a model repository (Triton's flags), or ``--onnx``/``--model`` as a
repository of one, turned into a :class:`~engine.serving.fleet.Fleet` of deployments.

Every model version gets its own batcher and instances, sized by its ``config.pbtxt`` where
that sets them and by ``--max-batch``, ``--max-queue-delay-us`` and ``--instances`` where it
does not; ``--threads``, ``--device``, ``--backend`` and ``--precision`` apply to every model.
"""
from __future__ import annotations

from pathlib import Path

from engine.serving.deployment import Batching, Deployment
from engine.serving.fleet import MODES, Fleet
from engine.serving.jobs import Limits
from engine.serving.model import ServedModel
from engine.serving.options import ServeOptions
from engine.serving.repository import ModelEntry, VersionSource, ZooSource, scan


def add_arguments(parser, sources) -> None:
    """The repository flags; ``--model-repository`` joins the mutually exclusive ``sources`` group."""
    sources.add_argument("--model-repository", type=Path, metavar="DIR",
                         help="serve every model of a Triton model repository: DIR/<model>/<version>/model.onnx "
                              "(or zoo.json), DIR/<model>/config.pbtxt")
    parser.add_argument("--model-control-mode", choices=MODES,
                        help="none (load all at start), explicit (--load-model at start, then the repository "
                             "extension's load/unload), poll (load all, re-read the repository); default none")
    parser.add_argument("--load-model", action="append", metavar="NAME",
                        help="explicit mode: a model to load at start (repeat; '*' loads all)")
    parser.add_argument("--repository-poll-secs", type=float,
                        help="poll mode: seconds between repository scans (default 15)")


def open_version(source: VersionSource, instances: int, options: ServeOptions) -> ServedModel:
    """The version's model, opened ``instances`` times with the server's ``--threads``, ``--device``,
    ``--backend`` and ``--precision`` (a zoo model is exported on first use)."""
    placement = {"instances": instances, "threads": options.threads, "device": options.device,
                 "backend": options.backend, "precision": options.precision}
    if source.zoo is not None:
        from engine.models.cache import cached_model

        zoo = source.zoo
        cached = cached_model(zoo.model, zoo.library, zoo.weights, zoo.seed)
        return ServedModel(cached.path, torch_module=cached.torch_module(), **placement)
    return ServedModel(source.onnx, **placement)


def open_single(options: ServeOptions) -> ServedModel:
    """The model of ``--onnx`` or ``--model`` (exported on first use), opened ``--instances`` times."""
    source = VersionSource(1, onnx=options.onnx) if options.onnx else \
        VersionSource(1, zoo=ZooSource(options.model, options.model_library, options.weights, options.seed))
    return open_version(source, options.instances, options)


def deployer(options: ServeOptions, limits: Limits, run_instance, opened: ServedModel | None = None):
    """``deploy(entry)``: every served version of ``entry`` loaded, warmed up and started, or the
    error of the first that fails (the others closed). ``opened``: the model of a repository
    of one, already opened by the command (its load errors have their own exit codes)."""
    def deploy(entry: ModelEntry) -> list[Deployment]:
        nonlocal opened
        settings = entry.settings
        batching = Batching(settings.max_batch or options.max_batch,
                            options.max_queue_delay_us if settings.max_queue_delay_us is None
                            else settings.max_queue_delay_us,
                            settings.instances or options.instances)
        started: list[Deployment] = []
        try:
            for source in entry.versions:
                model, opened = opened or open_version(source, batching.instances, options), None
                try:
                    model.warmup(batching.max_batch)
                    deployment = Deployment(entry.name, str(source.version), model, batching, limits)
                except BaseException:
                    model.close()
                    raise
                deployment.start(run_instance)
                started.append(deployment)
        except BaseException:
            for deployment in started:
                deployment.retire(0)
            raise
        return started
    return deploy


def build_fleet(options: ServeOptions, limits: Limits, run_instance, log, opened: ServedModel | None = None) -> Fleet:
    """The fleet ``options`` asks for, its start-up models loaded (a failed one reported, not raised,
    except for the model of ``--onnx``/``--model``, which ``opened`` already holds)."""
    deploy = deployer(options, limits, run_instance, opened)
    if options.model_repository is None:
        entry = ModelEntry(opened.name, versions=[VersionSource(1, onnx=opened.path)])  # a repository of one
        fleet = Fleet(lambda: {entry.name: entry}, deploy, drain_timeout_s=options.drain_timeout_s, log=log)
        fleet.start(strict=True)
        return fleet
    root = options.model_repository
    fleet = Fleet(lambda: scan(root), deploy, mode=options.model_control_mode,
                  drain_timeout_s=options.drain_timeout_s, log=log)
    if options.model_control_mode == "explicit":
        fleet.start(options.load_model or [])
    else:
        fleet.start()
    if options.model_control_mode == "poll":
        fleet.start_polling(options.repository_poll_secs)
    return fleet


def announce(fleet: Fleet, options: ServeOptions, curve: bool, log) -> None:
    """One line per model version serving: classes, backend, instances, batching."""
    for d in fleet.deployments():
        model, batching = d.model, d.batching
        log(f"model {d.name} version {d.version} ({model.num_classes} classes) on {model.runs_on()}, "
            f"{batching.instances} instance(s) x {options.threads} thread(s), max batch {batching.max_batch}, "
            f"delay {batching.max_queue_delay_us} us, {options.workers} workers{', CURVE' if curve else ''}")
