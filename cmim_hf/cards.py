"""Model cards, generated from a card-data object and a Jinja2 template, never written by hand.

    card = CMIMCardData(model_id="org/cmim-moses-small", dataset_name="MOSES", num_molecules=1_584_663,
                        recipe=recipe, eval_results=results, plots=["embeddings.png"])
    text = render_model_card(model, card)          # README.md text: YAML metadata + body
    save_model_folder(model, tokenizer, out, extra_files={"README.md": text})
    write_model_card(folder, card)                  # or: (re)write README.md of an existing saved folder

The YAML header is `huggingface_hub.ModelCardData` (so the Hub indexes library, task, tags, data sets,
licence and the `model-index` of evaluation results); the body comes from `model_cards/template.md`
(shipped as the package data `cmim_hf.model_cards`) through `huggingface_hub.ModelCard.from_template`.

`library_name: transformers`: a saved folder *is* a transformers repository with custom code
(`config.json` with `auto_map`, `model.safetensors`, `modeling_cmim.py`), so the Hub's "Use this model"
snippet (`AutoModel.from_pretrained(..., trust_remote_code=True)`), its download counting (by
`config.json`) and the search filter "transformers" all work. `cmim-hf` is not a library the Hub knows:
it would get no snippet, and the package is not needed to load the model anyway.
"""

from __future__ import annotations

import importlib.resources
import json
import math
import numbers
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml
from huggingface_hub import EvalResult, ModelCard, ModelCardData

from .evaluation.names import BASELINE_NAMES, LOWER_IS_BETTER
from .saving import atomic_write

__all__ = [
    "BASE_TAGS",
    "ArchitectureSummary",
    "CMIMCardData",
    "eval_results_to_hub",
    "model_card_template_path",
    "render_model_card",
    "write_model_card",
]

BASE_TAGS: tuple[str, ...] = ("cmim", "mim", "chemistry", "smiles", "molecules")
TEMPLATE_NAME = "template.md"

OBJECTIVE_DESCRIPTIONS = {
    "cmim": ("The contrastive Mutual Information Machine (cMIM): the A-MIM objective (reconstruction plus the "
             "symmetric latent log-densities under the encoder and the N(0, I) prior) plus a contrastive term on "
             "the sampled latents that needs no augmentation and averages its negatives, so it is insensitive to "
             "the batch size."),
    "mim": ("The Mutual Information Machine (A-MIM): reconstruction plus the symmetric latent log-densities "
            "under the encoder and the N(0, I) prior, which favours high mutual information and clustered codes."),
    "vae": "A variational auto-encoder: reconstruction plus beta * KL(q(z|x) || N(0, I)).",
    "ae": "A deterministic auto-encoder (z = mu, reconstruction only), the no-regulariser baseline.",
    "infonce": ("A-MIM plus InfoNCE (NT-Xent) between two randomised SMILES of each molecule, the "
                "augmentation-based contrastive baseline."),
}


# ---------------------------------------------------------------------------------------------------------
# Card data
# ---------------------------------------------------------------------------------------------------------


@dataclass
class ArchitectureSummary:
    """The geometry of a cMIM model as the card reports it. Build it with `from_model` or `from_folder`."""

    encoder_layers: int
    encoder_hidden_size: int
    encoder_attention_heads: int
    encoder_ffn_dim: int
    decoder_layers: int
    decoder_hidden_size: int
    decoder_attention_heads: int
    decoder_ffn_dim: int
    latent_tokens: int
    latent_size: int
    latent_pooling: str
    vocab_size: int
    max_position_embeddings: int
    latent_dim: int  # K * D, the size of the flattened latent (and of the "latent" embedding)
    embedding_size: int  # the size of the "informative" embedding
    num_parameters: int

    @classmethod
    def from_config(cls, config, num_parameters: int) -> ArchitectureSummary:
        """From a `CMIMConfig` (or anything with its attribute names) and a parameter count."""
        names = [f for f in cls.__dataclass_fields__ if f != "num_parameters"]
        missing = [n for n in names if not hasattr(config, n)]
        if missing:
            raise TypeError(f"config {type(config).__name__} lacks {missing}; expected a CMIMConfig")
        return cls(**{n: getattr(config, n) for n in names}, num_parameters=int(num_parameters))

    @classmethod
    def from_model(cls, model) -> ArchitectureSummary:
        """From a loaded `CMIMModel` / `CMIMForConditionalGeneration`; tied weights are counted once."""
        return cls.from_config(model.config, sum(p.numel() for p in model.parameters()))

    @classmethod
    def from_folder(cls, folder: str | os.PathLike) -> ArchitectureSummary:
        """From a saved folder without loading the weights: `config.json` plus the safetensors headers
        (which store tied weights once, so the count equals `from_model`'s)."""
        from safetensors import safe_open

        from .modeling import CMIMConfig

        folder = Path(folder)
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(f"{folder} has no config.json: not a saved model folder")
        weight_files = sorted(folder.glob("model*.safetensors"))
        if not weight_files:
            raise FileNotFoundError(f"{folder} has no model.safetensors (or shards): cannot count parameters")
        count = 0
        for path in weight_files:
            with safe_open(str(path), framework="pt") as handle:
                for key in handle.keys():
                    count += math.prod(handle.get_slice(key).get_shape())
        return cls.from_config(CMIMConfig.from_pretrained(folder), count)


@dataclass
class CMIMCardData:
    """Everything a cMIM model card says, as data. `render_model_card` turns it into README.md text.

    Args:
        model_id: Hub repo id ("org/cmim-moses-small") or model name; used in the usage code and as the
            `model-index` name.
        objective: "cmim", "mim", "vae", "ae" or "infonce"; by default the model config's `objective`.
        architecture: filled from the model (or saved folder) by `render_model_card` / `write_model_card`
            when left as None.
        dataset_name: the training data, e.g. "MOSES".
        dataset_id: the Hub data-set id for the `datasets:` metadata; by default `dataset_name`.
        num_molecules: number of training molecules (sequences).
        recipe: the training recipe (the `recipe.yaml` of the run), shown as YAML.
        eval_results: `{"tasks": {TASK: {FEATURES: {PROBE: {METRIC: value}}}}, "reconstruction": {...},
            "generation": {...}}` (any part may be absent; `cmim_hf.evaluation.evaluate_downstream`'s output
            fits). `METRIC_std` entries become "± std"; `selected` and non-numbers are skipped.
        plots: file names (relative to the repository) of figures to show under the evaluation.
        license: SPDX-style Hub licence id.
        tags: Hub tags; `BASE_TAGS` are always included.
        description: an optional paragraph placed under the title.
        baseline_features: feature-set names in `eval_results["tasks"]` that are baselines, not this model.
        extra: free-form values available to custom templates as `cmim.extra`.
    """

    model_id: str
    objective: str | None = None
    architecture: ArchitectureSummary | None = None
    dataset_name: str | None = None
    dataset_id: str | None = None
    num_molecules: int | None = None
    recipe: Mapping[str, Any] = field(default_factory=dict)
    eval_results: Mapping[str, Any] | None = None
    plots: Sequence[str] = field(default_factory=list)
    license: str = "apache-2.0"
    tags: Sequence[str] = field(default_factory=lambda: list(BASE_TAGS))
    description: str | None = None
    baseline_features: Sequence[str] = BASELINE_NAMES
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.model_id, str) or not self.model_id.strip():
            raise ValueError(f"model_id must be a non-empty str (a repo id or name), got {self.model_id!r}")
        if self.objective is not None and self.objective not in OBJECTIVE_DESCRIPTIONS:
            raise ValueError(f"objective must be one of {tuple(OBJECTIVE_DESCRIPTIONS)}, got {self.objective!r}")
        if self.num_molecules is not None and (not isinstance(self.num_molecules, numbers.Integral)
                                               or self.num_molecules < 0):
            raise ValueError(f"num_molecules must be a non-negative int, got {self.num_molecules!r}")
        if isinstance(self.plots, str) or isinstance(self.tags, str):
            raise TypeError("plots and tags must be lists of str, not a single str")
        if self.eval_results is not None and not isinstance(self.eval_results, Mapping):
            raise TypeError(f"eval_results must be a dict, got {type(self.eval_results).__name__}")
        unknown = set(self.eval_results or {}) - {"tasks", "reconstruction", "generation", "excluded", "settings"}
        if unknown:
            raise ValueError(f"eval_results has unknown parts {sorted(unknown)}; expected 'tasks', "
                             "'reconstruction', 'generation' (and optionally 'excluded', 'settings')")

    def to_hub_card_data(self) -> ModelCardData:
        """The YAML metadata: library, task, tags, data sets, licence and the `model-index`."""
        eval_results = eval_results_to_hub(self.eval_results, dataset_name=self.dataset_name,
                                           dataset_id=self.dataset_id, baseline_features=self.baseline_features)
        dataset = self.dataset_id or self.dataset_name
        return ModelCardData(
            library_name="transformers",
            pipeline_tag="feature-extraction",
            license=self.license,
            tags=list(dict.fromkeys([*BASE_TAGS, *self.tags])),
            datasets=[dataset] if dataset else None,
            model_name=self.model_id,
            eval_results=eval_results or None,
        )


# ---------------------------------------------------------------------------------------------------------
# Evaluation results: model-index and tables
# ---------------------------------------------------------------------------------------------------------


def _number(value) -> float | None:
    """A finite real number as float; None for anything else (str, bool, None, NaN, lists)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _flat_metrics(metrics: Mapping, prefix: str = "") -> list[tuple[str, float, float | None]]:
    """(name, value, std) for each number of a metrics dict, one level of nesting flattened with spaces
    ({"prior": {"validity": 0.9}} -> "prior validity"); `*_std` entries become the std of their metric."""
    out = []
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.extend(_flat_metrics(value, prefix=f"{name} "))
            continue
        if str(key).endswith("_std") or key == "selected":
            continue
        number = _number(value)
        if number is not None:
            out.append((name, number, _number(metrics.get(f"{key}_std"))))
    return out


def _slug(name: str) -> str:
    """A Hub-style id for a `model-index` dataset type: "MOSES test" -> "moses-test"."""
    return re.sub(r"[^a-z0-9._/-]+", "-", str(name).lower()).strip("-") or "unspecified"


def _task_type(metric: str) -> str:
    return "tabular-regression" if metric in LOWER_IS_BETTER else "tabular-classification"


def eval_results_to_hub(eval_results: Mapping | None, *, dataset_name: str | None = None,
                        dataset_id: str | None = None,
                        baseline_features: Sequence[str] = BASELINE_NAMES) -> list[EvalResult]:
    """Turn the evaluation dict into `huggingface_hub.EvalResult`s for the card's `model-index`.

    Downstream tasks: one result per (task, feature set, probe, metric) of this model's feature sets
    (baselines are left out), task type "tabular-regression" for error metrics (rmse, ...) and
    "tabular-classification" otherwise, data set = the task, metric name "METRIC (FEATURES, PROBE)".
    Reconstruction and generation: one result per number, on the part's own "dataset" entry, else the
    training data (`dataset_id` / `dataset_name`). Dataset types are Hub-style ids ("MOSES test" -> "moses-test").
    """
    if not eval_results:
        return []
    results: list[EvalResult] = []
    baselines = set(baseline_features)
    for task, feature_sets in (eval_results.get("tasks") or {}).items():
        for features, probes in feature_sets.items():
            if features in baselines:
                continue
            for probe, metrics in probes.items():
                for metric, value, _ in _flat_metrics(metrics):
                    results.append(EvalResult(
                        task_type=_task_type(metric), task_name=f"{task} (probe on {features} embeddings)",
                        dataset_type=_slug(task), dataset_name=str(task), metric_type=metric,
                        metric_value=value, metric_name=f"{metric} ({features}, {probe})",
                    ))
    for part, task_type, task_name in (("reconstruction", "text2text-generation", "SMILES reconstruction"),
                                       ("generation", "text-generation", "SMILES generation from the latent")):
        metrics = eval_results.get(part)
        if not metrics:
            continue
        dataset = str(metrics.get("dataset") or dataset_name or dataset_id or "unspecified")
        dataset_type = _slug(metrics["dataset"]) if metrics.get("dataset") else (dataset_id or _slug(dataset))
        split = metrics.get("split")
        for metric, value, _ in _flat_metrics({k: v for k, v in metrics.items() if k not in ("dataset", "split")}):
            results.append(EvalResult(
                task_type=task_type, task_name=task_name, dataset_type=dataset_type, dataset_name=dataset,
                dataset_split=str(split) if split else None, metric_type=metric.replace(" ", "_"),
                metric_value=value, metric_name=metric,
            ))
    return results


def _format(value: float, std: float | None, digits: int) -> str:
    text = f"{value:.{digits}f}"
    return text if std is None else f"{text} ± {std:.{digits}f}"


def _task_tables(tasks: Mapping, baselines: set[str], digits: int) -> list[dict]:
    """Per task: probes as columns, feature sets as rows, cells "metric / metric" with ± std."""
    tables = []
    for task, feature_sets in tasks.items():
        probes = list(dict.fromkeys(p for probe_map in feature_sets.values() for p in probe_map))
        metric_names = list(dict.fromkeys(m for probe_map in feature_sets.values() for metrics in probe_map.values()
                                          for m, _, _ in _flat_metrics(metrics)))
        rows = []
        for features, probe_map in feature_sets.items():
            cells = []
            for probe in probes:
                flat = {m: (v, s) for m, v, s in _flat_metrics(probe_map.get(probe, {}))}
                cells.append(" / ".join(_format(*flat[m], digits) for m in metric_names if m in flat))
            rows.append({"features": str(features), "baseline": features in baselines, "cells": cells})
        direction = "lower" if metric_names and metric_names[0] in LOWER_IS_BETTER else "higher"
        tables.append({"task": str(task), "metrics": " / ".join(metric_names), "direction": direction,
                       "probes": [str(p) for p in probes], "rows": rows})
    return tables


def _metric_rows(metrics: Mapping | None, digits: int) -> list[dict]:
    if not metrics:
        return []
    return [{"metric": name, "value": _format(value, std, digits)}
            for name, value, std in _flat_metrics({k: v for k, v in metrics.items() if k not in ("dataset", "split")})]


# ---------------------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------------------


def model_card_template_path() -> Path:
    """The card template `template.md`.

    Found as the package data `cmim_hf.model_cards` (regular and editable installs, pyproject mapping
    `model_cards/` -> `cmim_hf.model_cards`), else in the source checkout's top-level `model_cards/`.
    """
    candidates = []
    try:
        resource = importlib.resources.files("cmim_hf.model_cards") / TEMPLATE_NAME
        with importlib.resources.as_file(resource) as path:  # a real file for path-based installs
            candidates.append(Path(path))
    except (ModuleNotFoundError, TypeError, FileNotFoundError, NotADirectoryError):
        pass
    package_dir = Path(__file__).resolve().parent
    candidates += [package_dir / "model_cards" / TEMPLATE_NAME, package_dir.parent / "model_cards" / TEMPLATE_NAME]
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(
        "the model-card template is missing; looked in: " + ", ".join(str(p) for p in candidates)
        + ". It ships as package data `cmim_hf.model_cards` (model_cards/template.md in the source tree); "
        "reinstall cmim-hf, or pass template_path="
    )


def _template_context(card_data: CMIMCardData, architecture: ArchitectureSummary, objective: str,
                      digits: int) -> dict:
    """What the template sees as `cmim`: the card data plus the derived, formatted pieces."""
    results = card_data.eval_results or {}
    baselines = set(card_data.baseline_features)
    recipe = dict(card_data.recipe or {})
    return {
        "model_id": card_data.model_id,
        "model_name": card_data.model_id.rsplit("/", 1)[-1],
        "description": card_data.description,
        "objective": objective,
        "objective_description": OBJECTIVE_DESCRIPTIONS[objective],
        "arch": asdict(architecture),
        "num_parameters_text": _human_count(architecture.num_parameters),
        "dataset_name": card_data.dataset_name,
        "dataset_id": card_data.dataset_id,
        "num_molecules": card_data.num_molecules,
        "num_molecules_text": f"{card_data.num_molecules:,}" if card_data.num_molecules is not None else None,
        "recipe": recipe,
        "recipe_yaml": yaml.safe_dump(_plain(recipe), sort_keys=False).strip() if recipe else "",
        "has_results": bool(results.get("tasks") or results.get("reconstruction") or results.get("generation")),
        "task_tables": _task_tables(results.get("tasks") or {}, baselines, digits),
        "reconstruction": _metric_rows(results.get("reconstruction"), digits),
        "generation": _metric_rows(results.get("generation"), digits),
        "plots": [str(p) for p in card_data.plots],
        "license": card_data.license,
        "extra": dict(card_data.extra or {}),
    }


def _plain(value):
    """Plain YAML-safe types (numpy scalars, tuples, paths) for the recipe dump."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, (str, int, float)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    return str(value)


def _human_count(n: int) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)


def _render(card_data: CMIMCardData, architecture: ArchitectureSummary, objective: str | None,
            template_path: str | os.PathLike | None, digits: int) -> str:
    if card_data.objective and objective and card_data.objective != objective:
        raise ValueError(f"card_data.objective is {card_data.objective!r} but the model was configured with "
                         f"{objective!r}; leave card_data.objective unset to take the model's")
    objective = card_data.objective or objective
    if objective not in OBJECTIVE_DESCRIPTIONS:
        raise ValueError(f"the card needs the objective (one of {tuple(OBJECTIVE_DESCRIPTIONS)}); got {objective!r}")
    template = Path(template_path) if template_path is not None else model_card_template_path()
    if not template.is_file():
        raise FileNotFoundError(f"model-card template {template} does not exist")
    context = _template_context(card_data, architecture, objective, digits)
    card = ModelCard.from_template(card_data.to_hub_card_data(), template_path=str(template), cmim=context)
    text = str(card)
    return text if text.endswith("\n") else text + "\n"


def render_model_card(model, card_data: CMIMCardData, *, template_path: str | os.PathLike | None = None,
                      digits: int = 3) -> str:
    """README.md text for `model` (a `CMIMModel` / `CMIMForConditionalGeneration`) described by `card_data`.

    The architecture comes from the model unless `card_data.architecture` is set; the objective from
    `card_data.objective`, else the model config. `digits`: decimals in the evaluation tables.
    """
    architecture = card_data.architecture or ArchitectureSummary.from_model(model)
    return _render(card_data, architecture, getattr(model.config, "objective", None), template_path, digits)


def write_model_card(folder: str | os.PathLike, card_data: CMIMCardData, *,
                     template_path: str | os.PathLike | None = None, digits: int = 3) -> Path:
    """Render the card for the saved model in `folder` (read from its config.json and safetensors headers,
    weights not loaded) and write `folder/README.md` atomically. Returns the README path."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"model folder {folder} does not exist")
    architecture = card_data.architecture or ArchitectureSummary.from_folder(folder)
    objective = json.loads((folder / "config.json").read_text()).get("objective")  # None: card_data must say
    text = _render(card_data, architecture, objective, template_path, digits)
    return atomic_write(folder / "README.md", text)
