"""The Accelerate training loop of `cmim-hf train` and `accelerate launch -m cmim_hf.training`.

`train` reads as setup -> loop -> save. The modules it calls: `data_preparation.py` (splits, tokenization, InfoNCE
views, loader), `model.py` (`build_model`), `checkpoints.py` (write, verify, rotate, resume), `tracking.py`
(trackers, log file, summary) and `eval_loop.py` (validation loss, token accuracy, exact reconstruction).

The loop calls `model(**batch, latent_loss_weight=w)` and reads `outputs.loss` and its parts; nothing in it
waits on the host except at logging, evaluation and checkpoint steps (no per-step `.item()`).

A non-finite loss or gradient norm stops the run with `NonFiniteLossError`, naming the first bad step. It is
detected at the next logging/evaluation/checkpoint step and always before anything is saved, so no checkpoint
or final model ever holds weights touched by it; resume from the last checkpoint (perhaps with a lower
learning rate).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from accelerate import Accelerator, DistributedDataParallelKwargs, skip_first_batches
from accelerate.utils import DataLoaderConfiguration, DistributedType, set_seed
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import get_scheduler

from cmim_hf.cards import CARD_DATA_FILE, VALIDATION_FILE, card_data_from_files, render_model_card
from cmim_hf.data import NAMED_DATASETS
from cmim_hf.saving import atomic_write, save_model_folder, write_json_atomic
from cmim_hf.checks import check_output_dir

from .arguments import CMIMTrainingArguments, resolved_recipe, run_output_dir
from .checkpoints import (FINAL_DIR_NAME, TrainState, find_checkpoints, load_initial_weights, prepare_output_dir, resume,
                          save_checkpoint)
from .collator import CMIMDataCollator, LengthGroupedBatchSampler
from .data_preparation import PreparedData, prepare_data, train_loader
from .distributed import describe_shard_units, is_sharded, make_accelerator, shard_shared_parameters
from .errors import NonFiniteLossError, TrainingError
from .eval_loop import evaluate, loss_parts, reconstruction_examples
from .model import build_model, model_from_config, training_objective
from .tracking import (
    LOG_FILE,
    METRICS_CSV,
    close_logging,
    flat_config,
    format_metrics,
    make_trackers,
    print_summary,
    setup_logging,
)

__all__ = ["NonFiniteMonitor", "TrainResult", "run", "train"]

logger = logging.getLogger("cmim_hf.training")


@dataclass
class TrainResult:
    output_dir: Path
    final_dir: Path | None
    global_step: int
    metrics: dict[str, float] = field(default_factory=dict)
    resumed_from: Path | None = None


def train(args: CMIMTrainingArguments, model_args, recipe: dict) -> TrainResult:
    """Run one training job described by `args`, `model_args` (a `ModelArguments`) and the recipe read."""
    output_dir = check_output_dir(run_output_dir(args, recipe))
    args = dataclasses.replace(args, output_dir=str(output_dir))
    accelerator = _accelerator(args, model_args.objective, output_dir)
    prepare_output_dir(accelerator, output_dir, args.resume_from_checkpoint, args.overwrite_output_dir)
    tokenizer, data = _data(accelerator, args, model_args)
    set_seed(args.seed)
    model = build_model(model_args, tokenizer)
    if args.init_from and not find_checkpoints(output_dir):
        logger.info(f"weights from {load_initial_weights(model, tokenizer, args.init_from)}")
    set_seed(args.seed + accelerator.process_index)  # different dropout / latent noise on each process
    run = _prepare(accelerator, args, model, tokenizer, data,
                   resolved_recipe(recipe["name"], recipe.get("description", ""), args, model_args))
    resumed_from = resume(accelerator, args.resume_from_checkpoint, output_dir, run.scheduler, run.state,
                          model=run.model, optimizer=run.optimizer)
    accelerator.log_with = make_trackers(args, output_dir, run.state.global_step if resumed_from else None)
    accelerator.init_trackers(args.run_name or recipe["name"], config=flat_config(run.recipe))
    sharded = " sharded (FSDP)" if is_sharded(accelerator) else ""
    logger.info(f"training {run.total_steps} steps ({run.state.global_step} done), {accelerator.num_processes} "
                f"process(es){sharded}, batch {args.per_device_train_batch_size} x {args.gradient_accumulation_steps} "
                f"accumulation x {accelerator.num_processes}, mixed precision {accelerator.mixed_precision}, "
                f"device {accelerator.device}{', torch.compile' if args.torch_compile else ''}")
    try:  # trackers are closed (files flushed) however the run ends
        metrics = _loop(run)
        final_dir = _save_final(run, metrics)
    except BaseException:
        for tracker in accelerator.trackers:
            tracker.finish()
        raise
    global_step = run.state.global_step
    _release(run)
    if accelerator.is_main_process:
        print_summary(final_dir, metrics, data.eval_source, plain=model_args.objective == "plain")
    close_logging()
    return TrainResult(output_dir, final_dir, global_step, metrics, resumed_from)


# ---------------------------------------------------------------------------------------------------------
# Setup
# ---------------------------------------------------------------------------------------------------------


def _accelerator(args: CMIMTrainingArguments, objective: str, output_dir: Path) -> Accelerator:
    """The run's Accelerator, with logging set up."""
    mixed_precision = "no"
    if args.bf16:
        from accelerate.utils import is_bf16_available

        mixed_precision = "bf16" if is_bf16_available() else "no"
    # Launched processes without accelerators run on CPU over gloo, sharded with an FSDP config; a run that is not
    # what its launcher asked for stops here (see distributed.py).
    accelerator = make_accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=mixed_precision,
        project_dir=str(output_dir),
        log_with=None,  # trackers are attached after resuming (the CSV log is trimmed to the resumed step)
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=objective == "ae")],
        dataloader_config=DataLoaderConfiguration(non_blocking=torch.cuda.is_available()),
    )
    setup_logging(accelerator, output_dir)
    if args.bf16 and mixed_precision == "no":
        logger.warning("--bf16: this hardware has no bf16 support; training in fp32")
    if objective == "ae" and args.latent_loss_warmup_steps:
        logger.info("latent_loss_warmup_steps has no effect with objective `ae`")
    return accelerator


def _data(accelerator: Accelerator, args: CMIMTrainingArguments, model_args) -> tuple[Any, PreparedData]:
    """The tokenizer and the prepared splits (main process first, so the others read its cache)."""
    max_length = args.max_length or model_args.max_position_embeddings
    if max_length > model_args.max_position_embeddings:
        raise TrainingError(f"max_length={max_length} exceeds the model's max_position_embeddings="
                            f"{model_args.max_position_embeddings}")
    start = time.perf_counter()
    with accelerator.main_process_first():
        tokenizer, data = prepare_data(args, args.tokenizer, max_length, model_args.objective)
    for line in data.report:
        logger.info(line)
    logger.info(f"data ready in {time.perf_counter() - start:.1f}s")
    return tokenizer, data


@dataclass
class _Run:
    """One run's prepared pieces, shared by the loop, its evaluations and checkpoints, and the final save."""

    args: CMIMTrainingArguments
    accelerator: Accelerator
    output_dir: Path
    recipe: dict  # resolved: saved with every checkpoint and the final model
    tokenizer: Any
    data: PreparedData
    collator: CMIMDataCollator
    config: Any  # the model's
    model: torch.nn.Module | None  # prepared by Accelerate (wrapped, perhaps compiled)
    optimizer: torch.optim.Optimizer | None
    scheduler: Any
    train_loader: DataLoader | None
    train_sampler: LengthGroupedBatchSampler | None
    total_steps: int
    state: TrainState


def _prepare(accelerator: Accelerator, args: CMIMTrainingArguments, model, tokenizer, data: PreparedData,
             recipe: dict) -> _Run:
    """Write the resolved recipe, then build the loader, optimizer and scheduler and prepare them."""
    output_dir = Path(args.output_dir)
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(output_dir / "recipe.yaml", yaml.safe_dump(recipe, sort_keys=False))
    config = model.config
    objective = training_objective(config)
    latent = f"latent {config.latent_tokens}x{config.latent_size}" if objective != "plain" else "no latent"
    backbone = getattr(config, "backbone_config", None) if objective != "plain" else config
    logger.info(f"model: {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters, objective {objective}, "
                f"{latent}, {backbone.model_type if backbone is not None else 'native'} encoder-decoder, vocabulary "
                f"{config.vocab_size}")
    collator = CMIMDataCollator(tokenizer.pad_token_id, config.decoder_start_token_id, args.pad_to_multiple_of,
                                getattr(config, "max_position_embeddings", None))
    loader, sampler = train_loader(data.train, collator, args)
    if is_sharded(accelerator):
        shard_shared_parameters(accelerator, model)
    model, optimizer, loader = accelerator.prepare(model, _optimizer(model, args), loader)
    if is_sharded(accelerator):
        logger.info(f"FSDP-wrapped modules: {describe_shard_units(model)}")
    if args.torch_compile:
        # Compiled here rather than through Accelerate's dynamo plugin, which a process keeps from its first
        # Accelerator (`compare` trains many models in one process). Lengths vary by batch: dynamo's automatic
        # dynamic shapes recompile once, then one graph serves every length. Checkpoints, evaluation and the
        # saved model use the plain module (unwrap_model(..., keep_torch_compile=False)).
        model = torch.compile(model)
    if args.max_steps > 0:
        total_steps = args.max_steps
    else:
        updates_per_epoch = math.ceil(len(loader) / args.gradient_accumulation_steps)
        total_steps = max(1, math.ceil(args.num_train_epochs * updates_per_epoch))
    warmup = int(round(args.warmup_steps * total_steps)) if args.warmup_steps < 1 else int(args.warmup_steps)
    # Stepped by the loop once per optimizer step (not prepared: Accelerate would step it once per process).
    scheduler = get_scheduler(args.lr_scheduler_type, optimizer, num_warmup_steps=warmup,
                              num_training_steps=total_steps)
    state = TrainState()  # saved by save_checkpoint as JSON, with the scheduler's state (never pickled)
    return _Run(args, accelerator, output_dir, recipe, tokenizer, data, collator, config, model, optimizer,
                scheduler, loader, sampler, total_steps, state)


def _optimizer(model: torch.nn.Module, args: CMIMTrainingArguments) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for _, param in model.named_parameters():
        if param.requires_grad:
            (decay if param.ndim >= 2 else no_decay).append(param)  # no decay on biases and norms
    groups = [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=args.learning_rate, betas=(args.adam_beta1, args.adam_beta2),
                             eps=args.adam_epsilon)


def _latent_weight(step: int, warmup: int) -> float:
    """MolMIM's ramp of the latent-loss weight, 0 at the first step to 1 after `warmup` steps."""
    return 1.0 if warmup <= 0 else min(1.0, step / warmup)


# ---------------------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------------------


def _loop(run: _Run) -> dict[str, float]:
    """Optimizer steps up to `total_steps`, logging, evaluating and checkpointing on schedule, then the final
    evaluation. Returns the last evaluation's metrics."""
    args, accelerator, state = run.args, run.accelerator, run.state
    log = _TrainingLog(run)
    monitor = NonFiniteMonitor(accelerator.device, grad_norms=args.max_grad_norm > 0)
    progress = tqdm(total=run.total_steps, initial=state.global_step, desc="training", dynamic_ncols=True,
                    disable=args.disable_tqdm or not accelerator.is_local_main_process)
    last_metrics: dict[str, float] = {}
    run.model.train()
    while state.global_step < run.total_steps:
        for batch in _epoch_batches(run):
            outputs, grad_norm = _step(run, batch)
            state.batches_in_epoch += 1
            log.add(outputs)
            monitor.observe(state.global_step + 1, outputs.loss, grad_norm)
            if not accelerator.sync_gradients:
                continue
            log.add_grad_norm(grad_norm)
            run.scheduler.step()
            state.global_step += 1
            progress.update(1)
            last_metrics = _on_schedule(run, log, monitor, progress) or last_metrics
            if state.global_step >= run.total_steps:
                break
        else:  # the epoch ran out
            state.epoch += 1
            state.batches_in_epoch = 0
    progress.close()
    monitor.check(accelerator, run.output_dir)
    if run.data.stream_tokenizer is not None:
        logger.info(f"training data: {run.data.stream_tokenizer.report()}")
    return _evaluate(run) or last_metrics


def _epoch_batches(run: _Run):
    """The current epoch's batches, without those a resumed run already consumed."""
    if run.train_sampler is not None:
        run.train_sampler.set_epoch(run.state.epoch)
    run.train_loader.set_epoch(run.state.epoch)
    done = run.state.batches_in_epoch
    return skip_first_batches(run.train_loader, done) if done else run.train_loader


def _step(run: _Run, batch: dict[str, torch.Tensor]):
    """Forward, backward and (at the end of an accumulation) clip and step. Returns the outputs and the gradient
    norm before clipping (None when not clipped or not an optimizer step)."""
    args, accelerator, model = run.args, run.accelerator, run.model
    with accelerator.accumulate(model):
        weight = {} if training_objective(run.config) == "plain" else \
            {"latent_loss_weight": _latent_weight(run.state.global_step, args.latent_loss_warmup_steps)}
        outputs = model(**batch, **weight)
        accelerator.backward(outputs.loss)
        grad_norm = None
        if accelerator.sync_gradients and args.max_grad_norm > 0:
            grad_norm = accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
        run.optimizer.step()
        run.optimizer.zero_grad(set_to_none=True)
    return outputs, grad_norm


def _on_schedule(run: _Run, log: _TrainingLog, monitor: NonFiniteMonitor, progress) -> dict[str, float] | None:
    """After an optimizer step: log, evaluate, checkpoint when their step comes (the final evaluation is the
    loop's). Checks for a non-finite loss before each. Returns the evaluation's metrics, if one ran."""
    args, accelerator, step = run.args, run.accelerator, run.state.global_step
    last = step >= run.total_steps
    metrics = None
    if step % args.logging_steps == 0 or last:
        monitor.check(accelerator, run.output_dir)
        logs = log.write(step)
        progress.set_postfix(loss=f"{logs['train/loss']:.4f}", lr=f"{logs['train/learning_rate']:.2e}")
    if args.eval_steps > 0 and step % args.eval_steps == 0 and not last:
        monitor.check(accelerator, run.output_dir)
        metrics = _evaluate(run)
    if args.save_steps > 0 and step % args.save_steps == 0:
        monitor.check(accelerator, run.output_dir)
        save_checkpoint(accelerator, run.output_dir, run.state, run.scheduler, run.recipe, run.tokenizer,
                        args.save_total_limit, model=run.model, optimizer=run.optimizer)
    return metrics


def _evaluate(run: _Run) -> dict[str, float]:
    """Evaluate on the validation split (if any) and log the metrics."""
    if run.data.eval is None:
        return {}
    args = run.args
    metrics = evaluate(run.model, run.data.eval, run.collator, run.accelerator, tokenizer=run.tokenizer,
                       batch_size=args.per_device_eval_batch_size,
                       num_reconstruction_samples=args.num_reconstruction_samples, seed=args.seed,
                       max_samples=args.max_eval_samples)
    run.accelerator.log(metrics, step=run.state.global_step)
    logger.info(f"step {run.state.global_step}: {format_metrics(metrics)}")
    return metrics


class _TrainingLog:
    """Running means of the loss parts (per batch) and of the gradient norm (per optimizer step), kept on the
    device and written to the trackers every `logging_steps`."""

    def __init__(self, run: _Run):
        self.run = run
        self.parts = loss_parts(training_objective(run.config))
        self.running = torch.zeros(len(self.parts) + 1, device=run.accelerator.device)  # parts + grad norm
        self.batches = self.steps = 0
        self.tick, self.tick_step = time.perf_counter(), run.state.global_step

    def add(self, outputs) -> None:
        self.running[: len(self.parts)] += torch.stack([getattr(outputs, p).detach().float() for p in self.parts])
        self.batches += 1

    def add_grad_norm(self, grad_norm) -> None:
        if grad_norm is not None:
            self.running[-1] += torch.as_tensor(grad_norm, device=self.running.device).float()
        self.steps += 1

    def write(self, step: int) -> dict[str, float]:
        """Log the means since the last write (across processes) with the learning rate, latent-loss weight,
        epoch and speed; reset. Returns what was logged."""
        run, args = self.run, self.run.args
        means = run.accelerator.reduce(self.running, "mean").tolist()
        now = time.perf_counter()
        logs = {f"train/{p}": means[i] / self.batches for i, p in enumerate(self.parts)}
        if args.max_grad_norm > 0:
            logs["train/grad_norm"] = means[-1] / max(self.steps, 1)
        state = run.state
        logs.update({"train/learning_rate": run.scheduler.get_last_lr()[0],
                     "train/latent_loss_weight": _latent_weight(step - 1, args.latent_loss_warmup_steps),
                     "train/epoch": state.epoch + state.batches_in_epoch / max(len(run.train_loader), 1)
                     if not args.streaming else float(state.epoch),
                     "train/steps_per_second": (step - self.tick_step) / max(now - self.tick, 1e-9)})
        run.accelerator.log(logs, step=step)
        self.running.zero_()
        self.batches = self.steps = 0
        self.tick, self.tick_step = now, step
        return logs


class NonFiniteMonitor:
    """Remembers (on the device, without syncing) the first step whose loss or gradient norm was not finite."""

    def __init__(self, device: torch.device, grad_norms: bool = True):
        self.grad_norms = grad_norms  # whether observe() receives gradient norms (clipping on)
        self.first_step = torch.full((), math.inf, device=device)
        self.loss_at_first = torch.zeros((), device=device)
        self.grad_norm_at_first = torch.zeros((), device=device)

    def observe(self, step: int, loss: torch.Tensor, grad_norm: torch.Tensor | None) -> None:
        loss = loss.detach().float()
        bad = ~torch.isfinite(loss)
        norm = torch.zeros_like(loss) if grad_norm is None else torch.as_tensor(grad_norm, device=loss.device).float()
        bad = bad | ~torch.isfinite(norm)
        new = bad & torch.isinf(self.first_step)
        self.first_step = torch.where(new, torch.full_like(self.first_step, step), self.first_step)
        self.loss_at_first = torch.where(new, loss, self.loss_at_first)
        self.grad_norm_at_first = torch.where(new, norm, self.grad_norm_at_first)

    def check(self, accelerator: Accelerator, output_dir: Path) -> None:
        """Raise `NonFiniteLossError` if any process saw a non-finite value (collective: call on all)."""
        gathered = accelerator.gather(torch.stack([self.first_step, self.loss_at_first,
                                                   self.grad_norm_at_first]).view(1, 3)).view(-1, 3)
        first = int(torch.argmin(gathered[:, 0]))
        step, loss, norm = gathered[first].tolist()
        if math.isfinite(step):
            saved = find_checkpoints(output_dir)
            where = f"the last checkpoint is {saved[-1]}" if saved else "no checkpoint was saved"
            norm_text = f", gradient norm={norm}" if self.grad_norms else ""
            raise NonFiniteLossError(
                f"non-finite training loss at step {int(step)} (loss={loss}{norm_text}, process {first}); the run "
                f"stopped before saving anything after it ({where}). Lower the learning rate or raise "
                "warmup_steps, then --resume_from_checkpoint latest.")


# ---------------------------------------------------------------------------------------------------------
# The end
# ---------------------------------------------------------------------------------------------------------


def _save_final(run: _Run, metrics: dict[str, float]) -> Path:
    """The Hub-ready folder `output_dir/final` (weights, config, tokenizer, code, pipeline, recipe, logs)."""
    accelerator, output_dir = run.accelerator, run.output_dir
    final_dir = output_dir / FINAL_DIR_NAME
    accelerator.wait_for_everyone()
    to_save = accelerator.unwrap_model(run.model, keep_torch_compile=False)
    if accelerator.distributed_type == DistributedType.FSDP:
        state_dict = accelerator.get_state_dict(run.model)  # collective: gathers the full weights on process 0
        to_save = None
        if accelerator.is_main_process:
            to_save = model_from_config(run.config)
            to_save.load_state_dict(state_dict)
    if accelerator.is_main_process:
        eval_results = {k.split("/", 1)[1]: v for k, v in metrics.items()}
        write_json_atomic(output_dir / "eval_results.json", eval_results)
        eval_results["reconstruction_examples"] = reconstruction_examples(to_save, run.data.eval, run.collator,
                                                                          run.tokenizer)
        extra = {VALIDATION_FILE: json.dumps(eval_results, indent=2), **_card_files(run, to_save, eval_results)}
        for name in (METRICS_CSV, LOG_FILE):
            if (output_dir / name).is_file():
                extra[f"training_logs/{name}"] = (output_dir / name).read_text()
        save_model_folder(to_save, run.tokenizer, final_dir, recipe=run.recipe, extra_files=extra)
        logger.info(f"saved the model to {final_dir}")
    accelerator.wait_for_everyone()
    return final_dir


def _card_files(run: _Run, model, validation: dict) -> dict[str, str]:
    """The Hub-ready folder's card (README.md) and its settings (card_data.json): named after the run folder,
    loaded in its usage code from the path the run wrote it to, with what this run read and validated on. A plain
    encoder-decoder (objective `plain`) is a stock transformers folder: no cMIM card."""
    if training_objective(run.config) == "plain":
        return {}
    settings = {"location": str(run.output_dir / FINAL_DIR_NAME),
                "num_molecules": None if run.args.streaming else len(run.data.train)}
    if run.args.dataset not in NAMED_DATASETS:  # a named corpus's validation split is read from the recipe
        settings["validation_source"] = run.data.eval_source
    card = card_data_from_files(run.output_dir.name, recipe=run.recipe, validation=validation, settings=settings)
    return {"README.md": render_model_card(model, card), CARD_DATA_FILE: json.dumps(card.settings(), indent=2) + "\n"}


def _release(run: _Run) -> None:
    """End the run. Every reference to the DDP wrapper goes before the process group: its reducer holds the
    group, and freeing it afterwards makes gloo's destructor wait forever for the other processes."""
    run.model = run.optimizer = run.train_loader = run.scheduler = None
    run.accelerator.free_memory()
    run.accelerator.end_training()


def _resume_command(argv: list[str]) -> str:
    """The command line that continues an interrupted run: the same arguments, resuming from its latest checkpoint
    (an explicit checkpoint or --overwrite_output_dir dropped: the one would go back, the other start over)."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            if not arg.startswith("--"):  # the value of the dropped option
                continue
        name = arg.split("=", 1)[0]
        if name in ("--resume_from_checkpoint", "--overwrite_output_dir"):
            skip = "=" not in arg
            continue
        kept.append(arg)
    return shlex.join(["cmim-hf", "train", *kept, "--resume_from_checkpoint", "latest"])


def run(training_args: CMIMTrainingArguments, model_args, recipe: dict, argv: list[str]) -> int:
    """Train with the arguments `cmim_hf.commands.train.main` parsed from `argv`; returns the exit status."""
    output_dir = run_output_dir(training_args, recipe)
    main_process = int(os.environ.get("RANK", "0")) == 0
    try:
        train(training_args, model_args, recipe)
    except (TrainingError, OSError) as error:
        # every process raises the same error (the checks are collective); the first one reports it
        if main_process:
            if logger.hasHandlers():  # into the run's log (before logging is set up, the line below is all)
                logger.error(str(error))
            print(f"cmim-hf train: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if main_process:
            saved = find_checkpoints(output_dir)
            where = f"from {saved[-1]}" if saved else "no checkpoint was saved yet, so it starts afresh"
            print(f"\ncmim-hf train: interrupted; resume ({where}) with: {_resume_command(argv)}", file=sys.stderr)
        return 130
    return 0
