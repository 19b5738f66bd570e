"""Tracking a training run: the CSV metrics log and the other trackers, the log file and console lines, and the
summary printed at the end."""

from __future__ import annotations

import csv
import io
import logging
import os
import sys
import time
from pathlib import Path

import datasets
from accelerate import Accelerator
from accelerate.tracking import GeneralTracker
from tqdm.auto import tqdm

from cmim_hf.saving import atomic_write

from .arguments import CMIMTrainingArguments
from .errors import TrainingError

__all__ = ["LOG_FILE", "METRICS_CSV", "CSVTracker", "close_logging", "flat_config", "format_metrics",
           "make_trackers", "print_summary", "setup_logging"]

logger = logging.getLogger("cmim_hf.training")

METRICS_CSV = "metrics.csv"
LOG_FILE = "train.log"


class CSVTracker(GeneralTracker):
    """Long-format metrics log, `step,name,value,time`, one row per logged value. On resume, rows after the
    resumed step (written by the interrupted run) are dropped, so the file tells one consistent history."""

    name = "csv"
    requires_logging_directory = False
    COLUMNS = ["step", "name", "value", "time"]
    main_process_only = True

    def __init__(self, path: str | os.PathLike, keep_until_step: int | None = None):
        super().__init__()
        self.path = Path(path)
        self.keep_until_step = keep_until_step
        self._file = None
        self._writer = None

    @property
    def tracker(self):
        return self._writer

    def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.keep_until_step is not None and self.path.is_file():
            # The kept rows go to a new file that replaces the old one in one step: a crash now leaves one or
            # the other whole, never a truncated log.
            buffer = io.StringIO()
            writer = csv.writer(buffer)
            writer.writerow(self.COLUMNS)
            writer.writerows(self._rows_until(self.keep_until_step))
            atomic_write(self.path, buffer.getvalue())
            self._file = self.path.open("a", newline="")
        else:
            self._file = self.path.open("w", newline="")
            csv.writer(self._file).writerow(self.COLUMNS)
        self._writer = csv.writer(self._file)
        self._file.flush()

    def _rows_until(self, step: int) -> list[list[str]]:
        """The log's rows up to `step`; rows a crash cut short (the last line of a killed run) are dropped."""
        rows, malformed = [], 0
        with self.path.open(newline="") as handle:
            reader = csv.reader(handle)
            if next(reader, self.COLUMNS) != self.COLUMNS:  # (the default lets an empty file through: killed before its header)
                raise TrainingError(f"{self.path} is not a metrics log (its header is not {','.join(self.COLUMNS)}); "
                                 "move it away to resume")
            for row in reader:
                if len(row) != len(self.COLUMNS) or not row[0].isdigit():
                    malformed += 1
                elif int(row[0]) <= step:
                    rows.append(row)
        if malformed:
            logger.warning(f"{self.path}: dropped {malformed} incomplete row(s), written as a run was killed")
        return rows

    def log(self, values: dict, step: int | None = None, **kwargs) -> None:
        now = f"{time.time():.3f}"
        for name, value in values.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self._writer.writerow([step, name, repr(float(value)), now])
        self._file.flush()

    def finish(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def flat_config(recipe: dict) -> dict:
    """Recipe as `section/field -> scalar` for tracker hyper-parameter tables."""
    flat = {}
    for section in ("model", "training"):
        for key, value in recipe[section].items():
            if isinstance(value, (list, tuple)):
                value = ",".join(map(str, value))
            flat[f"{section}/{key}"] = "" if value is None else value
    flat["recipe"] = recipe["name"]
    return flat


def make_trackers(args: CMIMTrainingArguments, output_dir: Path, keep_until_step: int | None) -> list:
    """The CSV log, TensorBoard when installed, and W&B when asked for and installed."""
    from accelerate.utils import is_tensorboard_available, is_wandb_available

    trackers: list = [CSVTracker(output_dir / METRICS_CSV, keep_until_step)]
    if is_tensorboard_available():
        from accelerate.tracking import TensorBoardTracker

        # purge_step: a resumed run drops the events the interrupted run logged after its checkpoint
        purge = {} if keep_until_step is None else {"purge_step": keep_until_step + 1}
        trackers.append(TensorBoardTracker("tensorboard", output_dir, **purge))
    else:
        logger.warning("TensorBoard is not installed (pip install 'cmim-hf[train]'): logging to CSV only")
    wanted = {name.lower() for name in args.report_to}
    if wanted & {"wandb", "all"}:
        if is_wandb_available():
            trackers.append("wandb")
        elif "wandb" in wanted:
            logger.warning("report_to asks for wandb, which is not installed: skipping it")
    unknown = wanted - {"wandb", "all", "tensorboard", "csv", "none"}
    if unknown:
        logger.warning(f"report_to: ignoring unknown tracker(s) {sorted(unknown)} (known: tensorboard, csv, wandb)")
    return trackers


class _TqdmHandler(logging.StreamHandler):
    def emit(self, record):
        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # noqa: BLE001 - logging must never break training
            self.handleError(record)


class _DropTiedWeightNotice(logging.Filter):
    """Accelerate warns at every checkpoint that it dropped `lm_head.weight`; it is tied to the decoder's
    embeddings by design and comes back on load."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Removed shared tensor {'lm_head.weight'}" not in record.getMessage()


def setup_logging(accelerator: Accelerator, output_dir: Path) -> None:
    """Log lines through tqdm (so they do not break the bar) and, on the main process, into `train.log`."""
    notice_filter = _DropTiedWeightNotice()
    accelerate_logger = logging.getLogger("accelerate.utils.other")
    if not any(isinstance(f, _DropTiedWeightNotice) for f in accelerate_logger.filters):
        accelerate_logger.addFilter(notice_filter)
    logger.setLevel(logging.INFO if accelerator.is_main_process else logging.WARNING)
    logger.propagate = False
    close_logging()  # a previous run's handlers, in this process
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S")
    console = _TqdmHandler()
    console.setFormatter(formatter)
    logger.addHandler(console)
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        file_handler = logging.FileHandler(output_dir / LOG_FILE)
        file_handler.setFormatter(formatter)
        logger.addHandler(file_handler)
    else:
        datasets.disable_progress_bars()


def close_logging() -> None:
    """Detach and close the handlers `setup_logging` attached (the log file is complete)."""
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()


def format_metrics(metrics: dict[str, float]) -> str:
    return ", ".join(f"{k.split('/', 1)[-1]}={v:.4g}" for k, v in metrics.items())


def print_summary(final_dir: Path, metrics: dict[str, float], eval_source: str, plain: bool = False) -> None:
    """The end of a run: where the model is, its validation figures, and how to embed with it (`plain`: a
    stock transformers encoder-decoder, which embeds through this package)."""
    print(f"\nModel saved to {final_dir}")
    if metrics:
        line = (f"Validation ({int(metrics['eval/num_samples'])} rows of {eval_source}): loss "
                f"{metrics['eval/loss']:.4f}, token accuracy {100 * metrics['eval/token_accuracy']:.2f}%")
        if "eval/exact_reconstruction" in metrics:
            line += (f", exact reconstruction {100 * metrics['eval/exact_reconstruction']:.1f}% "
                     f"(greedy, {int(metrics['eval/num_reconstruction_samples'])} rows)")
        print(line)
    if plain:
        print(f"Embed molecules with it:\n  cmim-hf embed --model {final_dir} 'CC(=O)Oc1ccccc1C(=O)O'")
        return
    print("Embed molecules with it:\n"
          f"  python -c \"from transformers import pipeline; print(len(pipeline('feature-extraction', "
          f"model='{final_dir}', trust_remote_code=True)('CC(=O)Oc1ccccc1C(=O)O')))\"")
