"""The `neurosearch` command line.

Every command reads search.toml (``--config``), and any value in it can be
overridden with ``--set section.key=value``. Mistakes a user can make end in one
clear message and exit code 2, never a traceback.

Start-up imports only typer and rich: each command imports what it needs (torch,
MLflow, Optuna: seconds each) after its arguments and config are checked, so
``--help``, a mistake, ``studies`` and ``report`` answer at once (``studies`` and
``report`` read Optuna's tables without its storage class: study/reader.py).
tests/test_startup.py keeps the heavy libraries out of these commands.
"""

from __future__ import annotations

import errno
import functools
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Callable, Optional

from .signals import exit_code, hold_during_start_up, raise_on_sigterm

# the command itself (python -m, or the console script), not an import by a library or by
# a spawned worker (whose __main__ is "__mp_main__", and which its parent stops with SIGTERM)
if __name__ == "__main__" or (Path(sys.argv[0]).name == "neurosearch"
                              and getattr(sys.modules.get("__main__"), "__name__", None) == "__main__"):
    hold_during_start_up()  # until main() is ready for a signal: before the imports below

import typer  # noqa: E402
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from neurosearch.simulators import SimulatorError

from .errors import UserError

if TYPE_CHECKING:
    from .config import Config

app = typer.Typer(
    help="Find the shallowest neural network that reproduces a NEURON neuron model (Optuna + PyTorch + MLflow).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# a log file or a pipe keeps whole lines (grep finds them); tables still fit 120 columns
console = Console(width=None if sys.stdout.isatty() else 120, soft_wrap=not sys.stdout.isatty())

ConfigOpt = Annotated[
    Path, typer.Option("--config", "-c", help="The study's search.toml; relative paths in it resolve against its folder.")
]
SetOpt = Annotated[
    Optional[list[str]],
    typer.Option("--set", "-s", help="Override a config value, e.g. --set training.epochs=3 (repeatable)."),
]
StorageOpt = Annotated[Optional[str], typer.Option("--storage", help="Optuna storage URL (overrides study.storage).")]
StudyOpt = Annotated[Optional[str], typer.Option("--study", help="Study name (overrides study.name).")]
ProgressOpt = Annotated[bool, typer.Option("--progress/--no-progress", help="Show progress bars.")]


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        console.print(f"neurosearch {version('neurosearch')}", highlight=False)
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[bool, typer.Option(
        "--version", callback=_print_version, is_eager=True, help="Print the version and exit.")] = False,
) -> None:
    # the options before the command; no docstring: it would replace the app's help text
    pass


def _command(function: Callable[..., None] | None = None, *, name: str | None = None) -> Any:
    """A command whose whole body answers a signal: Ctrl-C or SIGTERM (``signals``) ends it
    with one line and exit code 130 or 143 (the shell's convention, 128 + the signal), and
    so does one held while the command line started (its imports).

    Caught here, inside the command, because the CLI framework would otherwise turn it
    into a silent exit before ``main`` sees it. ``name``: the command's name, where it is
    not the function's (``import``)."""
    if function is None:
        return functools.partial(_command, name=name)

    @functools.wraps(function)
    def body(*args: Any, **kwargs: Any) -> None:
        try:
            raise_on_sigterm()  # from here a signal raises; one held during start-up, at once
            return function(*args, **kwargs)
        except KeyboardInterrupt as interrupt:
            raise typer.Exit(_interrupted(interrupt)) from None

    return app.command(name)(body)


def _interrupted(interrupt: KeyboardInterrupt) -> int:
    """The line a signal ends a command with; returns its exit code."""
    console.print("\ninterrupted: finished work is kept; run the same command again to resume.")
    return exit_code(interrupt)


def _config(path: Path, sets: list[str] | None, storage: str | None = None, study: str | None = None) -> Config:
    """The config with --set applied, then --storage/--study taken as given (never re-parsed as TOML)."""
    from .config import load_config

    values = {key: value for key, value in (("study.storage", storage), ("study.name", study)) if value}
    return load_config(path, list(sets or []), values)


@_command
def run(
    config: ConfigOpt = Path("search.toml"),
    set_: SetOpt = None,
    storage: StorageOpt = None,
    study: StudyOpt = None,
    progress: ProgressOpt = True,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Also write the report as JSON here.")] = None,
) -> None:
    """Create or resume the study and run its planned trials; then report the shallowest passing network.

    Start the same command on other machines with a shared --storage URL to add workers.
    """
    cfg = _config(config, set_, storage, study)
    from .runner import run as run_study

    _quiet_libraries()
    try:
        report = run_study(cfg, console, progress, json_out)
    except Exception as exc:  # the storage failed mid-run past reconnect_s: one line, not a traceback
        from .study.workspace import storage_failure

        message = storage_failure(cfg, exc)
        if message is None:
            raise
        raise UserError(message) from None
    if json_out:
        json_out.write_text(report.to_json())


app.command(
    "worker",
    help="Join a study as one more worker (same as `run`): start it on any number of machines with the same "
    "--storage URL (e.g. postgresql://user@db-host/neurosearch) and a work_dir on a shared file system.",
)(run)


PartOpt = Annotated[Optional[str], typer.Option(
    "--part", metavar="K/N", help="Simulate only part K of N (1 ≤ K ≤ N) into the shared dataset folder, e.g. "
    "--part ${SLURM_ARRAY_TASK_ID}/40 in an array --array=1-40; a plain `simulate` merges the parts.")]
CalibrateOpt = Annotated[bool, typer.Option(
    "--calibrate-only", help="Only measure (or find) the drive calibration: run it once before the parts start.")]


def _simulate_step(part: Optional[str], calibrate_only: bool, config: Path, sets: list[str] | None,
                   progress: bool) -> None:
    """One step of a dataset simulated on many machines: its calibration, or one part."""
    from neurosearch.simulators import Part

    if part is not None and calibrate_only:
        raise UserError("--part and --calibrate-only are separate steps: give one of them")
    which = Part.parse(part) if part is not None else None  # a bad K/N fails before anything runs
    cfg = _config(config, sets)
    from neurosearch.simulators import calibrate_drive, generate_part

    from .study.workspace import Workspace

    _quiet_libraries(mlflow_too=False)  # a step logs nothing to MLflow
    if which is None:
        from neurosearch.simulators.calibrate import describe

        record = calibrate_drive(cfg.simulator, Workspace.of(cfg).datasets, progress=progress)
        console.print("the config gives the drive (simulator.stimulus.rate_scale): nothing to calibrate"
                      if record is None else escape(describe(record)), highlight=False, soft_wrap=True)
    else:
        result = generate_part(cfg.simulator, Workspace.of(cfg).datasets, which, progress=progress)
        console.print(escape(result.summary()), highlight=False, soft_wrap=True)


@_command
def simulate(
    config: ConfigOpt = Path("search.toml"),
    set_: SetOpt = None,
    progress: ProgressOpt = True,
    part: PartOpt = None,
    calibrate_only: CalibrateOpt = False,
    exchange: Annotated[Optional[Path], typer.Option(
        "--exchange", metavar="FOLDER", help="Also write the dataset to FOLDER in the exchange format (one .npz per "
        "simulation, with its split), for other tools.")] = None,
) -> None:
    """Generate (or find in the cache) the study's NEURON ground-truth dataset, or one step of it on a cluster."""
    if part is not None or calibrate_only:
        return _simulate_step(part, calibrate_only, config, set_, progress)
    cfg = _config(config, set_)
    if cfg.data.dataset is not None and exchange is None:
        raise UserError(f"this study trains on the imported dataset {cfg.data.dataset} ([data] dataset): "
                        "nothing to simulate")
    from .folders import writable_folder
    from .runner import print_rates
    from .runner import simulate as make_dataset

    _quiet_libraries()
    dataset = make_dataset(cfg, progress)
    if dataset.merged:
        console.print(f"merged {len(dataset.merged)} simulations from the parts' records")
    console.print(
        f"dataset {dataset.path}: {len(dataset)} simulations × {dataset.duration_ms} ms, {dataset.n_inputs} inputs"
    )
    calibration = dataset.manifest.get("calibration")
    if calibration:
        from neurosearch.simulators.calibrate import describe

        console.print(escape(describe(calibration)), highlight=False, soft_wrap=True)
    print_rates(dataset, console)
    speed = dataset.wall_s_per_simulated_s
    if speed:
        console.print(f"NEURON cost: {speed:.2f} wall-seconds per simulated second on one core")
    if exchange is not None:
        from neurosearch.simulators.importing import export_dataset

        written = export_dataset(dataset, writable_folder(exchange, "--exchange folder"))
        console.print(f"wrote {len(written)} exchange files to {exchange}", highlight=False, soft_wrap=True)


@_command(name="import")
def import_(
    fmt: Annotated[str, typer.Argument(
        metavar="FORMAT", help="neuronio (Beniaguev et al.'s pickles) or exchange (one .npz per simulation; "
        "see the README).")],
    sources: Annotated[list[Path], typer.Argument(
        metavar="PATH...", help="Files or folders to import. With --valid and --test, these are the training split.")],
    valid: Annotated[Optional[list[Path]], typer.Option(
        "--valid", help="Files or folders of the validation split (repeatable); give --test too.")] = None,
    test: Annotated[Optional[list[Path]], typer.Option(
        "--test", help="Files or folders of the test split (repeatable): the published test files stay test.")] = None,
    name: Annotated[Optional[str], typer.Option(
        "--name", help="What reports call this ground truth (default: the first path's folder name).")] = None,
    discard_ms: Annotated[Optional[int], typer.Option(
        "--discard-ms", help="Drop the first N ms of each simulation (default: 500 for neuronio, as the anchors' "
        "evaluation does; 0 for exchange).")] = None,
    config: ConfigOpt = Path("search.toml"),
    set_: SetOpt = None,
    progress: ProgressOpt = True,
) -> None:
    """Import ground truth you already hold (NeuronIO files, or any simulator's output in the exchange format) into a dataset a study searches on.

    Without --valid/--test, simulations are split 50/25/25 (or as the exchange files say). An interrupted import resumes when the same command runs again. Then search on it with: neurosearch run --set 'data.dataset="<the folder it prints>"'.
    """
    if (valid is None) != (test is None):
        raise UserError("give both --valid and --test (the anchors' own split), or neither (split 50/25/25)")
    label = name or (sources[0].resolve().parent.name if sources[0].is_file() else sources[0].resolve().name)
    from .config import safe_name

    try:
        safe_name("--name", label)
    except ValueError as exc:
        raise UserError(f"{exc} (give --name)") from None
    cfg = _config(config, set_) if config.exists() else _config(None, set_)
    from neurosearch.simulators.importing import find_sources, import_dataset

    split = "train" if valid is not None else None
    files = find_sources(fmt.lower(), {split: sources, **({"valid": valid, "test": test} if valid is not None else {})})
    from .folders import writable_folder
    from .study.workspace import Workspace

    folder = writable_folder(Workspace.of(cfg).datasets, "work_dir's dataset folder")
    dataset = import_dataset(fmt.lower(), files, folder, name=label, discard_ms=discard_ms, progress=progress)
    from .runner import print_rates  # torch and MLflow (seconds): not before a bad file is found
    sizes = ", ".join(f"{s} {len(dataset.indices(s))}" for s in ("train", "valid", "test"))
    console.print(f"dataset {dataset.path}: {len(dataset)} simulations × {dataset.duration_ms} ms "
                  f"(after discarding {dataset.manifest['discard_ms']} ms), {dataset.n_inputs} inputs; {sizes}",
                  highlight=False, soft_wrap=True)
    print_rates(dataset, console)
    console.print(f"search on it: neurosearch run --set 'data.dataset=\"{dataset.path}\"' "
                  "(or [data] dataset = … in search.toml)", highlight=False, soft_wrap=True, markup=False)


StudiesOpt = Annotated[Optional[list[str]], typer.Option(
    "--study", metavar="NAME[@URL]",
    help="Study name (overrides study.name). Repeat it to read several studies side by side, e.g. one per cell; "
    "NAME@URL reads a study from another storage.")]


@_command
def report(
    config: ConfigOpt = Path("search.toml"),
    set_: SetOpt = None,
    storage: StorageOpt = None,
    study: StudiesOpt = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    figure: Annotated[Optional[Path], typer.Option(
        "--figure", help="With several studies: also draw AUC and FCI against depth, a line per study, to this PNG.")] = None,
    mlflow_too: Annotated[bool, typer.Option(
        "--mlflow", help="With several studies: also log the table and the figure as one run of the experiment "
        "'neurosearch comparisons' in the config's tracking store.")] = False,
) -> None:
    """Print a study's depth frontier and shallowest passing network from its storage;
    with several --study, the studies side by side (which cell needs the deeper network).

    With --storage and --study no config file is needed (e.g. on another machine).
    """
    names = list(study or [])
    # without a config file, each study's storage is given (--storage, or NAME@URL)
    standalone = bool(names) and not config.exists() and not mlflow_too
    one_name = names[0] if len(names) == 1 and "@" not in names[0] else None
    cfg = None if standalone else _config(config, set_, storage, one_name)
    default_url = cfg.study.storage if cfg else storage
    wanted = [_study_at(n, default_url) for n in names] or [(cfg.study.name, cfg.study.storage)]
    if len(wanted) == 1 and (figure or mlflow_too):
        raise UserError("--figure and --mlflow draw several studies side by side: give --study more than once")
    from .study.reader import read_study

    _quiet_libraries(mlflow_too=mlflow_too)
    if len(wanted) == 1:
        from .answer.report import build_report, render

        name, url = wanted[0]
        result = build_report(read_study(url, name))
        if json_out:
            print(result.to_json())
        else:
            render(result, console)
        return
    from .answer.compare import compare, log_comparison
    from .answer.compare import figure as draw
    from .answer.compare import render as render_comparison

    comparison = compare([(read_study(url, name), url) for name, url in wanted])
    if json_out:
        print(comparison.to_json())
    else:
        render_comparison(comparison, console)
    if figure:
        draw(comparison, figure)
    if mlflow_too:
        url = log_comparison(comparison, cfg.tracking.uri, cfg.tracking.artifacts)
        if not json_out:
            console.print(f"logged to MLflow: {url}", highlight=False, soft_wrap=True)


def _study_at(name: str, default_url: str | None) -> tuple[str, str]:
    """``NAME@URL`` or ``NAME`` (in ``default_url``) as (name, url)."""
    if "@" in name:
        study, url = name.split("@", 1)
        if study and url:
            return study, url
        raise UserError(f"--study {name!r}: write NAME@URL, e.g. l5pc-nmda@sqlite:///work/optuna.db")
    if default_url is None:
        raise UserError(f"--study {name!r} names no storage: add --storage URL, or write NAME@URL")
    return name, default_url


@_command
def studies(
    config: ConfigOpt = Path("search.toml"), set_: SetOpt = None, storage: StorageOpt = None
) -> None:
    """List the studies in a storage with their trial counts."""
    url = storage if storage and not config.exists() else _config(config, set_, storage).study.storage
    from .study.reader import list_studies

    table = Table(title="studies")
    for column in ("name", "trials", "best", "started"):
        table.add_column(column)
    for listed in list_studies(url):
        started = listed.started.strftime("%Y-%m-%d %H:%M") if listed.started else "—"
        table.add_row(listed.name, str(listed.n_trials), "—" if listed.best is None else f"{listed.best:.4f}", started)
    console.print(table)


@_command
def ui(
    config: ConfigOpt = Path("search.toml"),
    set_: SetOpt = None,
    host: Annotated[str, typer.Option("--host", help="Interface to bind; 0.0.0.0 exposes the UI to the network.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.", min=1, max=65535)] = 5000,
) -> None:
    """Start the MLflow UI on the study's tracking store and print its URL (Ctrl-C stops it).

    One experiment per study; the run "study <name>" holds the depth-frontier plot, the summary table and the registered winner; one child run per trial holds its learning curves, ROC curve, voltage trace, spec and weights.
    """
    cfg = _config(config, set_)
    from .tracking.ui import serve  # the server is another process: nothing here to quiet

    serve(cfg.tracking.uri, cfg.tracking.artifacts, cfg.experiment_name, host, port,
          lambda line: console.print(line, highlight=False, soft_wrap=True))  # a URL on one line, never wrapped


@_command
def export(
    config: ConfigOpt = Path("search.toml"),
    set_: SetOpt = None,
    storage: StorageOpt = None,
    study: StudyOpt = None,
    format_: Annotated[str, typer.Option("--format", "-f", help="torchscript (a .pt for torch.jit.load) or onnx.")] = "torchscript",
    trial: Annotated[Optional[int], typer.Option("--trial", help="Trial number to export (default: the report's winner).")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="File to write (default: work_dir/exports/<study>-trial-<n>.pt|.onnx).")] = None,
) -> None:
    """Export the winning network (or --trial N) as a standalone TorchScript or ONNX file.

    The file takes input spikes (float32, batch × n_inputs × time, 1 ms bins) and returns the spike probability and the somatic voltage in mV (each batch × time); a JSON file next to it describes it. The export is checked against the in-process network on a test simulation of the dataset and the largest difference is printed.
    """
    fmt = format_.lower()
    if fmt not in ("torchscript", "onnx"):
        raise UserError(f"--format must be torchscript or onnx, got {format_!r}")
    cfg = _config(config, set_, storage, study)
    from .tracking.export import export_trial

    _quiet_libraries()
    result = export_trial(cfg, fmt, trial, output)
    console.print(f"trial {result.trial} exported as {result.format}: {result.path}", highlight=False, soft_wrap=True)
    console.print(f"  what it takes and returns: {result.info_path}", highlight=False, soft_wrap=True)
    if result.fixed_time_ms:
        console.print(f"  recurrent network: this file takes exactly {result.fixed_time_ms} ms of input", highlight=False)
    if result.max_abs_diff is None:
        console.print("  round trip not checked (install onnxruntime to check ONNX files)")
    else:
        diffs = ", ".join(f"{name} {value:.2e}" for name, value in result.max_abs_diff.items())
        console.print(f"  max |exported - in-process| on {result.checked_on}: {diffs}", highlight=False, soft_wrap=True)


def _quiet_libraries(mlflow_too: bool = True) -> None:
    """Our own progress lines replace Optuna's and MLflow's per-call INFO logs.

    Each command calls it once its arguments are checked, not ``main``: importing MLflow
    takes seconds, and ``studies`` and ``report`` (``mlflow_too=False``) never use it."""
    import logging
    import warnings

    import optuna

    if mlflow_too:
        import mlflow  # noqa: F401  (configures its loggers on import; quiet them after)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)


#: what the machine, not the code, got wrong: no permission, a read-only file system, a full disk
ENVIRONMENT_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT}


def _error(message: str) -> None:
    """One error line; the message is text, never rich markup (``[simulator]`` stays)."""
    console.print(f"[bold red]error:[/bold red] {escape(message)}", highlight=False, soft_wrap=True)  # never wrapped


def main() -> None:
    """Console-script entry point: user errors become one message, exit code 2.

    As the last resort, a file the machine refuses (permission, read-only, disk full) is
    one line naming the file too; any other exception is a bug and keeps its traceback."""
    try:
        app()
    except SystemExit:  # no command body ran (--help, a usage error): a signal held meanwhile ends it the same way
        try:
            raise_on_sigterm()
        except KeyboardInterrupt as interrupt:
            sys.exit(_interrupted(interrupt))
        raise
    except (UserError, SimulatorError) as exc:
        _error(str(exc))
        sys.exit(2)
    except OSError as exc:
        if exc.errno not in ENVIRONMENT_ERRNOS:
            raise
        where = " ".join(str(name) for name in (exc.filename, exc.filename2) if name is not None)
        _error(f"{where + ': ' if where else ''}{exc.strerror or exc}")
        sys.exit(2)


if __name__ == "__main__":  # python -m neurosearch.search.cli
    main()
