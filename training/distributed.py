"""Multi-process training: the Accelerator of a run (FSDP2 on CPU processes as well as on GPUs), the checks that
stop a run that is not what its launcher asked for, and FSDP's sharded checkpoint state without pickle.

FSDP on CPU processes. `accelerate launch --config_file training/accelerate_configs/fsdp.yaml --num_processes 2`
on a machine without accelerators starts two processes (torchrun's launcher) with `ACCELERATE_USE_FSDP=true`;
torch's `fully_shard` (FSDP2) runs on them over gloo, but Accelerate (1.16) only turns a run into FSDP on
accelerator types and leaves CPU processes as plain data parallel, ignoring the plugin. `make_accelerator` then
does what Accelerate does on a GPU (the run's state becomes `DistributedType.FSDP` with the plugin read from the
launcher's environment), so the whole FSDP path (Accelerate's `fully_shard` wrapping, clipping, full-weight
gathering, the sharded checkpoints below) runs as on GPUs. The shard units are the model's own transformer
blocks: `TRANSFORMER_BASED_WRAP` without a class list takes the model's `_no_split_modules`, which transformers
collects from every sub-model (the native CMIMEncoderLayer/CMIMDecoderLayer, a BART backbone's
BartEncoderLayer/BartDecoderLayer, a T5 backbone's T5Block).

No silent downgrade (`check_launch`): a run with fewer processes than its launcher asked for, or asked for FSDP
and not sharded, stops with one line saying why and the command that runs it as asked.

Sharded checkpoints (`save_sharded_state`, `load_sharded_state`): Accelerate's own FSDP checkpoints are torch
distributed-checkpoint folders whose `.metadata` is a pickle (unpickled in full on load), so cmim-hf writes the
shards with torch's distributed checkpoint through its Hugging Face storage: one safetensors file per process
under `model/` and `optimizer/` (each tensor's offset in the full tensor kept as JSON in the file's header), the
optimizer's hyper-parameters as JSON, the random states with Accelerate (`random_states_<process>.pkl`, read with
`weights_only=True`). Loading reads only safetensors and JSON. A run resumes on the process count that saved it
(`checkpoints._load` refuses another: the loop position and random states are per process).
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import torch
from accelerate import Accelerator, PartialState
from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

from .errors import CheckpointError, TrainingError

__all__ = ["SHARDING_FILE", "check_launch", "describe_shard_units", "is_sharded", "load_sharded_state",
           "make_accelerator", "read_sharding", "save_sharded_state", "shard_shared_parameters",
           "sharded_required_files"]

SHARDING_FILE = "sharding.json"  # in a sharded checkpoint: its format and process count
MODEL_SHARDS_DIR, OPTIMIZER_SHARDS_DIR = "model", "optimizer"
OPTIMIZER_GROUPS_FILE = "optimizer_param_groups.json"
SHARDED_FORMAT = "fsdp2-dcp-safetensors"
_FSDP_CONFIG = Path(__file__).resolve().parent / "accelerate_configs" / "fsdp.yaml"


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "false").lower() in ("1", "true", "yes")


def fsdp_requested() -> bool:
    """Whether the launcher asked for FSDP (`accelerate launch` with an FSDP config sets it for every process)."""
    return _env_flag("ACCELERATE_USE_FSDP")


def make_accelerator(**kwargs) -> Accelerator:
    """The run's Accelerator (`kwargs` as `Accelerator` takes them, without `cpu`), sharded when the launcher
    asked for FSDP, whatever the device; then `check_launch`.

    Launched processes (torchrun, `accelerate launch --multi_gpu`/FSDP config) on a machine without accelerators
    run on CPU over gloo: Accelerate would otherwise leave each process alone, as a single-process run."""
    cpu_processes = "LOCAL_RANK" in os.environ and not torch.accelerator.is_available() and \
        (int(os.environ.get("WORLD_SIZE", "1")) > 1 or fsdp_requested())
    plugin = FullyShardedDataParallelPlugin() if fsdp_requested() else None  # read from the launcher's environment
    if plugin is not None:
        _require_sharded_checkpoints()
    accelerator = Accelerator(cpu=cpu_processes, fsdp_plugin=plugin, **kwargs)
    if plugin is not None and plugin.fsdp_version == 2 and cpu_processes and \
            accelerator.distributed_type == DistributedType.MULTI_CPU:  # FSDP1 on CPU: refused by check_launch
        _shard_cpu_processes(accelerator, plugin)
    if plugin is not None:
        # torch warns, once per unit, that an FSDP module returned a view, in case the caller changes it in place;
        # the loop only reads the outputs (tests/test_fsdp.py checks losses and weights against one process).
        warnings.filterwarnings("ignore", message=r"FSDP2-wrapped module .* returned a view tensor",
                                category=UserWarning)
    check_launch(accelerator)
    return accelerator


def _require_sharded_checkpoints() -> None:
    """Refuse an FSDP run at its start when this torch cannot write the sharded checkpoints (safetensors through
    torch's distributed checkpoint), rather than at the first save, `save_steps` of training later."""
    try:
        from torch.distributed.checkpoint import HuggingFaceStorageReader, HuggingFaceStorageWriter  # noqa: F401
    except ImportError:
        raise TrainingError(f"FSDP runs save sharded checkpoints with torch.distributed.checkpoint's "
                            f"HuggingFaceStorageWriter, which torch {torch.__version__} lacks: install a newer torch "
                            "(this package is tested with 2.13)") from None


def _shard_cpu_processes(accelerator: Accelerator, plugin: FullyShardedDataParallelPlugin) -> None:
    """Make a run of CPU processes an FSDP run, as AcceleratorState makes one on GPUs (see the module notes)."""
    state = accelerator.state
    if accelerator.mixed_precision != "no":
        plugin.set_mixed_precision(accelerator.mixed_precision)
    state.fsdp_plugin = plugin
    state.distributed_type = DistributedType.FSDP
    PartialState._shared_state["distributed_type"] = DistributedType.FSDP


def _fsdp_config_path() -> str:
    """The FSDP config's path as a user types it: relative in a checkout, absolute in an installed package."""
    try:
        return _FSDP_CONFIG.relative_to(Path.cwd()).as_posix()
    except ValueError:
        return str(_FSDP_CONFIG)


def _launch_hint(processes: int) -> str:
    return (f"accelerate launch --config_file {_fsdp_config_path()} --num_processes {processes} -m cmim_hf.training "
            f"... (on CPUs as on GPUs; or torchrun --nproc_per_node {processes} -m cmim_hf.training ... for data "
            "parallel)")


def check_launch(accelerator: Accelerator) -> None:
    """Raise `TrainingError` (one line: why, and how to run as asked) when this run is not what its launcher
    asked for:

    - `accelerate launch --cpu --num_processes N` (N > 1, or an FSDP/multi-GPU config naming N): Accelerate's
      --cpu launcher starts one process unless told of an MPI host file, so only this one runs. Its only trace in
      the process is the rendezvous address it sets for N > 1 (MASTER_ADDR) without a WORLD_SIZE;
    - a world size (WORLD_SIZE, set by torchrun and `accelerate launch`) that is not the run's process count;
    - FSDP asked for (ACCELERATE_USE_FSDP) and the run not sharded.
    """
    asked = int(os.environ.get("WORLD_SIZE", "1"))
    running = accelerator.num_processes
    accelerate_cpu_launcher = "ACCELERATE_USE_CPU" in os.environ and _env_flag("ACCELERATE_USE_CPU")
    if accelerate_cpu_launcher and "MASTER_ADDR" in os.environ and "WORLD_SIZE" not in os.environ:
        raise TrainingError(
            "`accelerate launch --cpu` was asked for several processes but started only this one (its --cpu "
            f"launcher runs one process unless given an MPI host file), so nothing would be sharded or parallel: "
            f"drop --cpu and run {_launch_hint(2)}")
    if asked != running:
        raise TrainingError(f"the launcher asked for {asked} processes (WORLD_SIZE) but this run has {running}: "
                            f"run {_launch_hint(asked)}")
    if fsdp_requested() and accelerator.distributed_type != DistributedType.FSDP:
        raise TrainingError(f"the launcher asked for FSDP but the run is {accelerator.distributed_type.value} (not "
                            f"sharded): run {_launch_hint(max(asked, 2))}")


def is_sharded(accelerator: Accelerator) -> bool:
    return accelerator.distributed_type == DistributedType.FSDP


def shard_shared_parameters(accelerator: Accelerator, model: torch.nn.Module) -> None:
    """Put the modules that hold one parameter between them into one FSDP unit, before `accelerator.prepare`
    wraps the rest (it leaves modules already sharded alone).

    Accelerate groups a tied input embedding with the output layer, but a BART or T5 backbone also shares that
    weight with its encoder's and decoder's `embed_tokens`, which would stay in the root unit: torch refuses a
    parameter managed by two units ("shared with a parameter already managed by another FSDP group"). Settings
    as Accelerate gives its embedding/head unit (kept gathered after forward: the head runs last)."""
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    if not accelerator.is_fsdp2:  # FSDP1 (a config's fsdp_version: 1) wraps its own way
        return
    holders: dict[int, list[torch.nn.Module]] = {}
    for module in model.modules():
        for param in module.parameters(recurse=False):
            holders.setdefault(id(param), []).append(module)
    groups: list[list[torch.nn.Module]] = []
    for modules in holders.values():
        if len(modules) < 2:
            continue
        overlapping = [g for g in groups if any(m in g for m in modules)]
        merged = [m for g in overlapping for m in g] + [m for m in modules if not any(m in g for g in overlapping)]
        groups = [g for g in groups if g not in overlapping] + [merged]
    plugin = accelerator.state.fsdp_plugin
    for modules in groups:
        fully_shard(modules, reshard_after_forward=False, offload_policy=plugin.cpu_offload,
                    mp_policy=plugin.mixed_precision_policy or MixedPrecisionPolicy())


def describe_shard_units(model: torch.nn.Module) -> str:
    """The FSDP-wrapped modules of a prepared model by class, in the order they were wrapped: for tiny-cpu
    "2 CMIMEncoderLayer, 1 Embedding, 2 CMIMDecoderLayer, 1 Linear, root CMIMForConditionalGeneration" (modules
    sharing a weight count one each but form one unit; the root unit holds every parameter no other unit does)."""
    from collections import Counter

    from torch.distributed.fsdp import FSDPModule

    model = _sharded_module(model)
    units: Counter[str] = Counter()
    for name, module in model.named_modules():
        if name and isinstance(module, FSDPModule):
            units[type(module).__name__.removeprefix("FSDP")] += 1
    root = type(model).__name__.removeprefix("FSDP")
    return ", ".join([*(f"{n} {cls}" for cls, n in units.items()), f"root {root}"])


def sharded_required_files() -> tuple[str, ...]:
    """The files besides the shards that a sharded checkpoint's manifest must list."""
    return (SHARDING_FILE, OPTIMIZER_GROUPS_FILE)


# ---------------------------------------------------------------------------------------------------------
# Sharded checkpoint state
# ---------------------------------------------------------------------------------------------------------


def _sharded_module(model: torch.nn.Module) -> torch.nn.Module:
    return getattr(model, "_orig_mod", model)  # torch.compile's wrapper holds the FSDP module


def _without_aliases(weights: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tied weights (the LM head and the decoder's embedding) once each: safetensors refuses tensors that share
    memory. Returns the weights kept and {alias: name kept}, in the state dict's (deterministic) order."""
    kept, aliases, first = {}, {}, {}
    for name, tensor in weights.items():
        local = tensor.to_local() if hasattr(tensor, "to_local") else tensor
        key = (local.data_ptr(), tuple(local.shape)) if local.numel() else (name,)
        if key in first:
            aliases[name] = first[key]
        else:
            first[key] = name
            kept[name] = tensor
    return kept, aliases


def _flat_optimizer_state(model: torch.nn.Module, optimizer) -> tuple[dict[str, torch.Tensor], list[dict]]:
    """The optimizer's sharded state as {"<parameter>/<name>": tensor} and its parameter groups (JSON-able, the
    parameters named). Before the first step, the state is initialised (torch steps once with zero gradients
    and zero learning rate), so that a resumed run has tensors to load into."""
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    state = get_optimizer_state_dict(model, optimizer)
    flat = {f"{param}/{name}": value for param, values in state["state"].items() for name, value in values.items()}
    return flat, state["param_groups"]


def save_sharded_state(accelerator: Accelerator, model: torch.nn.Module, optimizer, folder: Path) -> None:
    """Write this process's shards of the weights and the optimizer state, the optimizer's groups and the random
    states into `folder` (collective: call on every process). See the module notes for the format."""
    import torch.distributed.checkpoint as dcp
    from accelerate.checkpointing import save_accelerator_state
    from torch.distributed.checkpoint import HuggingFaceStorageWriter
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    model = _sharded_module(model)
    weights, _ = _without_aliases(get_model_state_dict(model))
    dcp.save(weights, storage_writer=HuggingFaceStorageWriter(str(folder / MODEL_SHARDS_DIR), save_distributed=True))
    flat, groups = _flat_optimizer_state(model, optimizer)
    dcp.save(flat, storage_writer=HuggingFaceStorageWriter(str(folder / OPTIMIZER_SHARDS_DIR), save_distributed=True))
    save_accelerator_state(str(folder), [], [], [], [], accelerator.process_index, accelerator.step,
                           accelerator.scaler)
    if accelerator.is_main_process:
        (folder / OPTIMIZER_GROUPS_FILE).write_text(json.dumps(groups, indent=2, allow_nan=False))
        (folder / SHARDING_FILE).write_text(json.dumps({"format": SHARDED_FORMAT,
                                                        "num_processes": accelerator.num_processes}, indent=2))


def read_sharding(folder: Path) -> dict | None:
    """A checkpoint's sharding record, or None for an unsharded checkpoint."""
    path = folder / SHARDING_FILE
    if not path.is_file():
        return None
    try:
        sharding = json.loads(path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"checkpoint {folder}: {SHARDING_FILE} is not valid JSON ({error})") from error
    if not isinstance(sharding, dict) or sharding.get("format") != SHARDED_FORMAT:
        raise CheckpointError(f"checkpoint {folder}: {SHARDING_FILE} does not describe a {SHARDED_FORMAT} checkpoint")
    return sharding


def load_sharded_state(accelerator: Accelerator, model: torch.nn.Module, optimizer, folder: Path) -> None:
    """Load a verified sharded checkpoint into the prepared (sharded) model and optimizer, and this process's
    random states (collective). Only safetensors and JSON are read, besides the random states (weights_only)."""
    import torch.distributed.checkpoint as dcp
    from accelerate.checkpointing import load_accelerator_state
    from torch.distributed.checkpoint import HuggingFaceStorageReader
    from torch.distributed.checkpoint.state_dict import (
        get_model_state_dict,
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    try:
        groups = json.loads((folder / OPTIMIZER_GROUPS_FILE).read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"checkpoint {folder}: {OPTIMIZER_GROUPS_FILE} is not valid JSON ({error})") from error
    if not isinstance(groups, list) or not all(isinstance(g, dict) and isinstance(g.get("params"), list)
                                               for g in groups):
        raise CheckpointError(f"checkpoint {folder}: {OPTIMIZER_GROUPS_FILE} does not hold parameter groups")
    model = _sharded_module(model)
    weights, aliases = _without_aliases(get_model_state_dict(model))
    dcp.load(weights, storage_reader=HuggingFaceStorageReader(str(folder / MODEL_SHARDS_DIR)))
    set_model_state_dict(model, {**weights, **{alias: weights[name] for alias, name in aliases.items()}})
    flat, _ = _flat_optimizer_state(model, optimizer)
    dcp.load(flat, storage_reader=HuggingFaceStorageReader(str(folder / OPTIMIZER_SHARDS_DIR)))
    state: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in flat.items():
        param, name = key.rsplit("/", 1)
        state.setdefault(param, {})[name] = value
    for group in groups:  # JSON has no tuples; AdamW unpacks betas either way, but keep the type it saved
        if isinstance(group.get("betas"), list):
            group["betas"] = tuple(group["betas"])
    set_optimizer_state_dict(model, optimizer, {"state": state, "param_groups": groups})
    override = load_accelerator_state(str(folder), [], [], [], [], accelerator.process_index, accelerator.scaler,
                                      load_kwargs={"weights_only": True})
    accelerator.step = override.get("step", accelerator.step)

