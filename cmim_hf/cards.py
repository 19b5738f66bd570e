"""Model cards, generated from a card-data object and a Jinja2 template, never written by hand.

    write_model_card(folder)                      # README.md of a saved folder, from the folder's own files
    write_model_card(folder, model_id="org/cmim-moses-small")   # ... naming its Hub repo (`cmim-hf push` does)
    card = card_data_from_folder(folder)          # the CMIMCardData those files give
    text = render_model_card(model, card)         # README.md text for a model in memory

Everything a card says comes from the folder: `config.json` (architecture, objective, dtypes), `recipe.yaml`
(the training recipe and data), `eval_results.json` (the training run's final validation, with reconstruction
examples), `evaluation.json` and its plots (`cmim-hf evaluate MODEL --output_dir D --update_card`), and
`card_data.json`, the card's own settings that no other file holds (name or Hub id, where the usage code finds
the model, licence, tags, description, training rows, validation source). No figure is typed into a card, so
`cmim-hf refresh` regenerates every card from the repository.

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

import dataclasses
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
    "CARD_DATA_FILE",
    "EVALUATION_FILE",
    "PLOT_FILES",
    "VALIDATION_FILE",
    "ArchitectureSummary",
    "attach_evaluation",
    "CMIMCardData",
    "card_data_from_folder",
    "hub_eval_results",
    "model_card_template_path",
    "render_model_card",
    "write_model_card",
]

BASE_TAGS: tuple[str, ...] = ("cmim", "mim", "chemistry", "smiles", "molecules")
TEMPLATE_NAME = "template.md"
# The folder's files a card is made from (besides config.json, recipe.yaml and the weights' headers).
CARD_DATA_FILE = "card_data.json"  # the card's own settings (`CMIMCardData.SETTINGS`)
VALIDATION_FILE = "eval_results.json"  # the training run's final validation (written by `cmim-hf train`)
EVALUATION_FILE = "evaluation.json"  # `cmim-hf evaluate` results (copied in with --update_card)
PLOT_FILES: tuple[str, ...] = ("downstream.png", "latent_pca.png")  # `cmim-hf evaluate`'s plots
# Entries that count or list what was measured: shown as "on N molecules" in the text, never as metrics.
COUNT_KEYS = frozenset({"n", "num_samples", "num_reconstruction_samples", "samples_per_seed", "seeds", "examples",
                        "reconstruction_examples", "selected", "dataset", "split"})
EXAMPLES_SHOWN = 8

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
_DTYPES = {"F16": "float16", "BF16": "bfloat16", "F32": "float32", "F64": "float64"}


def stored_weights(weight_files) -> tuple[int, str | None]:
    """The number of parameters in safetensors `weight_files` and the floating-point dtype they are stored in
    ("float16" for cmim-moses-small; the narrowest when they mix; None when none is floating-point)."""
    from safetensors import safe_open

    count, stored = 0, set()
    for path in weight_files:
        with safe_open(str(path), framework="pt") as handle:
            for key in handle.keys():
                tensor = handle.get_slice(key)
                count += math.prod(tensor.get_shape())
                stored.add(tensor.get_dtype())
    floating = sorted(_DTYPES[d] for d in stored if d in _DTYPES)
    return count, floating[0] if floating else None


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
    dtype: str = "float32"  # what the model computes in
    storage_dtype: str = "float32"  # what its weights are stored in (float16 halves a download)

    @classmethod
    def from_config(cls, config, num_parameters: int, *, dtype: str | None = None,
                    storage_dtype: str | None = None) -> ArchitectureSummary:
        """From a `CMIMConfig` (or anything with its attribute names) and a parameter count."""
        names = [f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING
                 and f.name != "num_parameters"]
        missing = [n for n in names if not hasattr(config, n)]
        if missing:
            raise TypeError(f"config {type(config).__name__} lacks {missing}; expected a CMIMConfig")
        dtype = dtype or str(getattr(config, "dtype", None) or "float32").removeprefix("torch.")
        return cls(**{n: getattr(config, n) for n in names}, num_parameters=int(num_parameters), dtype=dtype,
                   storage_dtype=storage_dtype or dtype)

    @classmethod
    def from_model(cls, model) -> ArchitectureSummary:
        """From a loaded `CMIMModel` / `CMIMForConditionalGeneration`; tied weights are counted once."""
        dtype = str(model.dtype).removeprefix("torch.")
        return cls.from_config(model.config, sum(p.numel() for p in model.parameters()), dtype=dtype)

    @classmethod
    def from_folder(cls, folder: str | os.PathLike) -> ArchitectureSummary:
        """From a saved folder without loading the weights: `config.json` plus the safetensors headers
        (which store tied weights once, so the count equals `from_model`'s)."""
        from .modeling import CMIMConfig

        folder = Path(folder)
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(f"{folder} has no config.json: not a saved model folder")
        weight_files = sorted(folder.glob("model*.safetensors"))
        if not weight_files:
            raise FileNotFoundError(f"{folder} has no model.safetensors (or shards): cannot count parameters")
        count, storage_dtype = stored_weights(weight_files)
        config = json.loads((folder / "config.json").read_text())
        dtype = config.get("dtype") or config.get("torch_dtype") or storage_dtype or "float32"
        return cls.from_config(CMIMConfig.from_pretrained(folder), count, dtype=dtype,
                               storage_dtype=storage_dtype or dtype)


@dataclass
class CMIMCardData:
    """Everything a cMIM model card says, as data. `render_model_card` turns it into README.md text;
    `card_data_from_folder` reads it from a saved folder.

    Args:
        model_id: Hub repo id ("org/cmim-moses-small") or model name; the title and the `model-index` name.
        location: how the usage code names the model: its Hub repo id, or the path of its folder relative to
            where the code runs. Default: `model_id`.
        objective: "cmim", "mim", "vae", "ae" or "infonce"; by default the model config's `objective`.
        architecture: filled from the model (or saved folder) by `render_model_card` / `write_model_card`
            when left as None.
        dataset_name: the training data, e.g. "MOSES".
        dataset_id: the Hub data-set id of the training data, for the `datasets:` metadata (only a real Hub
            id: left out otherwise).
        num_molecules: number of training rows (sequences).
        recipe: the training recipe (the `recipe.yaml` of the run), shown as YAML.
        validation: the training run's final validation (`eval_results.json`): `token_accuracy` on
            `num_samples` rows, `exact_reconstruction` on `num_reconstruction_samples`, the loss parts, and
            `reconstruction_examples` ([input, greedy reconstruction] pairs).
        validation_source: what was validated on: a named corpus ("MOSES", with `validation_split`), a file, or
            a description ("mols.csv, rows held out").
        validation_split: the split of `validation_source` validated on, e.g. "test".
        eval_results: `cmim-hf evaluate`'s results (`evaluation.json`): `{"tasks": {TASK: {FEATURES: {PROBE:
            {METRIC: value}}}}, "reconstruction": {PART: {...}}, "generation": {...}, "settings": ...}`
            (any part may be absent). `METRIC_std` entries become "± std"; counts and lists are not metrics.
        plots: file names (relative to the repository) of figures to show under the evaluation.
        license: SPDX-style Hub licence id.
        tags: Hub tags; `BASE_TAGS` are always included.
        description: an optional paragraph placed under the title.
        baseline_features: feature-set names in `eval_results["tasks"]` that are baselines, not this model.
        extra: free-form values available to custom templates as `cmim.extra`.
    """

    model_id: str
    location: str | None = None
    objective: str | None = None
    architecture: ArchitectureSummary | None = None
    dataset_name: str | None = None
    dataset_id: str | None = None
    num_molecules: int | None = None
    recipe: Mapping[str, Any] = field(default_factory=dict)
    validation: Mapping[str, Any] | None = None
    validation_source: str | None = None
    validation_split: str | None = None
    eval_results: Mapping[str, Any] | None = None
    plots: Sequence[str] = field(default_factory=list)
    license: str = "apache-2.0"
    tags: Sequence[str] = field(default_factory=lambda: list(BASE_TAGS))
    description: str | None = None
    baseline_features: Sequence[str] = BASELINE_NAMES
    extra: Mapping[str, Any] = field(default_factory=dict)

    # The fields `card_data.json` keeps: what no other file of the folder says.
    SETTINGS = ("model_id", "location", "description", "license", "tags", "num_molecules", "validation_source",
                "extra")

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
        for name in ("eval_results", "validation"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Mapping):
                raise TypeError(f"{name} must be a dict, got {type(value).__name__}")
        unknown = set(self.eval_results or {}) - {"tasks", "reconstruction", "generation", "excluded", "settings"}
        if unknown:
            raise ValueError(f"eval_results has unknown parts {sorted(unknown)}; expected 'tasks', "
                             "'reconstruction', 'generation' (and optionally 'excluded', 'settings')")
        for part, metrics in ((self.eval_results or {}).get("reconstruction") or {}).items():
            if not isinstance(metrics, Mapping):
                raise ValueError(f"eval_results['reconstruction'][{part!r}] must be a dict of measures of one set of "
                                 f"molecules (as `cmim-hf evaluate` writes), got {metrics!r}")

    def settings(self) -> dict[str, Any]:
        """The part `card_data.json` keeps (see `SETTINGS`)."""
        return {name: _plain(getattr(self, name)) for name in self.SETTINGS}

    def to_hub_card_data(self) -> ModelCardData:
        """The YAML metadata: library, task, tags, data sets, licence and the `model-index`."""
        eval_results = hub_eval_results(self)
        return ModelCardData(
            library_name="transformers",
            pipeline_tag="feature-extraction",
            license=self.license,
            tags=list(dict.fromkeys([*BASE_TAGS, *self.tags])),
            datasets=[self.dataset_id] if self.dataset_id else None,
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
    """(name, value, std) for each measurement of a metrics dict, one level of nesting flattened with spaces
    ({"prior": {"validity": 0.9}} -> "prior validity"); `*_std` entries become the std of their metric; counts,
    lists and labels (`COUNT_KEYS`) are left out."""
    out = []
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if str(key).endswith("_std") or key in COUNT_KEYS:
            continue
        if isinstance(value, Mapping):
            out.extend(_flat_metrics(value, prefix=f"{name} "))
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


def _named_dataset(name: str | None):
    from .data import NAMED_DATASETS

    return NAMED_DATASETS.get(str(name).lower()) if name else None


def _dataset(name: str | None) -> tuple[str, str]:
    """(display name, Hub dataset type) of a data set named in results: a named corpus ("moses") gets its
    title and Hub id, anything else itself and its slug."""
    spec = _named_dataset(name)
    if spec is not None:
        return spec.title or spec.name, spec.hub_id or _slug(spec.name)
    return str(name or "unspecified"), _slug(name or "unspecified")


def _best_probes(probes: Mapping) -> Mapping:
    """The probe inner cross-validation chose (`best`) when there is one, else every probe."""
    return {"best": probes["best"]} if "best" in probes else probes


def hub_eval_results(card_data: CMIMCardData) -> list[EvalResult]:
    """The card's `model-index`: `huggingface_hub.EvalResult`s, without counts (they are in the text).

    Downstream tasks: per task one result group named after the task ("freesolv: probes on the embeddings"),
    holding for each of this model's embedding kinds (baselines left out) the metrics of the probe inner CV
    chose, named "METRIC (KIND embedding, best probe)"; task type "tabular-regression" for error metrics
    (rmse, ...), "tabular-classification" otherwise. Reconstruction: the training run's validation and each
    evaluated set of molecules, on their own data set. Generation: prior samples and samples around seeds.
    """
    results: list[EvalResult] = []
    evaluation = card_data.eval_results or {}
    baselines = set(card_data.baseline_features)
    for task, feature_sets in (evaluation.get("tasks") or {}).items():
        for features, probes in feature_sets.items():
            if features in baselines:
                continue
            for probe, metrics in _best_probes(probes).items():
                which = "best probe" if probe == "best" else f"{probe} probe"
                for metric, value, _ in _flat_metrics(metrics):
                    results.append(EvalResult(
                        task_type=_task_type(metric), task_name=f"{task}: probes on the embeddings",
                        dataset_type=_slug(task), dataset_name=str(task), metric_type=metric,
                        metric_value=value, metric_name=f"{metric} ({features} embedding, {which})"))
    validation = card_data.validation or {}
    if _flat_metrics(_validation_metrics(validation)):
        name, dataset_type = _dataset(card_data.validation_source or card_data.dataset_name)
        for metric, value, _ in _flat_metrics(_validation_metrics(validation)):
            results.append(EvalResult(
                task_type="text2text-generation", task_name="SMILES reconstruction", dataset_type=dataset_type,
                dataset_name=name, dataset_split=card_data.validation_split, metric_type=metric,
                metric_value=value, metric_name=f"{metric} (validation, training run)"))
    for part, metrics in (evaluation.get("reconstruction") or {}).items():
        name, dataset_type = _dataset(metrics.get("dataset") or part)
        for metric, value, _ in _flat_metrics(metrics):
            results.append(EvalResult(
                task_type="text2text-generation", task_name="SMILES reconstruction", dataset_type=dataset_type,
                dataset_name=name, dataset_split=metrics.get("split"), metric_type=metric,
                metric_value=value, metric_name=f"{metric} ({part})"))
    generation = evaluation.get("generation") or {}
    if generation:
        name, dataset_type = _dataset(card_data.dataset_name)
        for metric, value, _ in _flat_metrics(generation):
            results.append(EvalResult(
                task_type="text-generation", task_name="SMILES generation from the latent",
                dataset_type=dataset_type, dataset_name=name, metric_type=metric.replace(" ", "_"),
                metric_value=value, metric_name=metric))
    return results


def _validation_metrics(validation: Mapping) -> dict[str, float]:
    """The reconstruction measures of the training run's validation (the loss parts stay in eval_results.json)."""
    return {k: validation[k] for k in ("token_accuracy", "exact_reconstruction") if k in validation}


def _format(value: float, std: float | None, digits: int) -> str:
    text = f"{value:.{digits}f}"
    return text if std is None else f"{text} ± {std:.{digits}f}"


def _task_tables(tasks: Mapping, baselines: set[str], digits: int, settings: Mapping) -> list[dict]:
    """Per task: probes as columns, feature sets as rows, cells "metric / metric" with ± std; the molecules and
    outer folds from the evaluation's settings."""
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
        molecules = _count((settings.get("n_molecules") or {}).get(task))
        folds = (settings.get("outer_folds") or {}).get(task)
        scheme = None if folds is None else (f"{folds}-fold cross-validation" if folds > 1 else "one test split")
        tables.append({"task": str(task), "metrics": " / ".join(metric_names), "direction": direction,
                       "probes": [str(p) for p in probes], "rows": rows,
                       "about": "; ".join(x for x in (molecules and f"{molecules} molecules", scheme) if x)})
    return tables


def _count(value) -> str | None:
    return f"{int(value):,}" if _number(value) is not None else None


def _reconstruction_rows(reconstruction: Mapping | None, digits: int) -> list[dict]:
    rows = []
    for part, metrics in (reconstruction or {}).items():
        name, _ = _dataset(metrics.get("dataset") or part)
        split = f" {metrics['split']}" if metrics.get("split") else ""
        cells = {m: _format(v, s, digits) for m, v, s in _flat_metrics(metrics)}
        rows.append({"molecules": f"{name}{split}" if metrics.get("dataset") else str(part), "n": _count(metrics.get("n")),
                     "token_accuracy": cells.get("token_accuracy", ""), "exact": cells.get("exact", ""),
                     "exact_canonical": cells.get("exact_canonical", "")})
    return rows


def _generation_context(generation: Mapping | None, digits: int) -> dict | None:
    if not generation:
        return None
    prior = generation.get("prior") or {}
    around = generation.get("around") or {}
    return {
        "prior": [{"metric": m, "value": _format(v, s, digits)} for m, v, s in _flat_metrics(prior)],
        "prior_n": _count(prior.get("n")),
        "around": [{"radius": radius, **{m: _format(v, s, digits) for m, v, s in _flat_metrics(values)}}
                   for radius, values in (around.get("radii") or {}).items()],
        "around_metrics": list(dict.fromkeys(m for values in (around.get("radii") or {}).values()
                                             for m, _, _ in _flat_metrics(values))),
        "around_seeds": len(around.get("seeds") or []),
        "around_per_seed": _count(around.get("samples_per_seed")),
    }


def _example(smiles: str, reconstruction: str, limit: int = 80) -> dict:
    """One example row; a long (runaway) decoding is cut for the table."""
    shown = reconstruction if len(reconstruction) <= limit else reconstruction[:limit] + " ..."
    return {"input": smiles, "output": shown, "exact": smiles == reconstruction}


def _examples(card_data: CMIMCardData) -> tuple[list[dict], str | None]:
    """Reconstruction examples ([input, greedy reconstruction]) and where they come from: the evaluation's
    first data set, else the training run's validation."""
    for part, metrics in ((card_data.eval_results or {}).get("reconstruction") or {}).items():
        if metrics.get("examples"):
            name, _ = _dataset(metrics.get("dataset") or part)
            split = f" {metrics['split']}" if metrics.get("split") else ""
            return [_example(a, b) for a, b in metrics["examples"]], f"{name}{split}"
    examples = (card_data.validation or {}).get("reconstruction_examples")
    if examples:
        source = " ".join(x for x in (card_data.validation_source, card_data.validation_split) if x)
        return ([_example(a, b) for a, b in examples],
                f"the validation data ({source})" if source else "the validation data")
    return [], None


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
    validation = card_data.validation or {}
    recipe = dict(card_data.recipe or {})
    examples, examples_source = _examples(card_data)
    # The usage code's molecules: examples the model reconstructs exactly, first; what it does with them is said
    usage = sorted(examples, key=lambda e: not e["exact"])[:2] or [{"input": s, "exact": None} for s in
                                                                   ("CCO", "c1ccccc1O")]
    location = card_data.location or card_data.model_id
    return {
        "model_id": card_data.model_id,
        "model_name": card_data.model_id.rsplit("/", 1)[-1],
        "location": location,
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
        "validation": [{"metric": name.replace("_", " "), "value": _format(value, None, digits),
                        "n": _count(validation.get("num_samples" if name == "token_accuracy"
                                                   else "num_reconstruction_samples"))}
                       for name, value, _ in _flat_metrics(_validation_metrics(validation))],
        "validation_source": " ".join(x for x in (card_data.validation_source, card_data.validation_split) if x),
        "examples": examples[:EXAMPLES_SHOWN],
        "examples_source": examples_source,
        "examples_exact": sum(e["exact"] for e in examples),
        "examples_total": len(examples),
        "usage_smiles_code": json.dumps([e["input"] for e in usage]),
        "usage_exact": None if usage[0]["exact"] is None else sum(e["exact"] for e in usage),
        "has_evaluation": bool(results.get("tasks") or results.get("reconstruction") or results.get("generation")),
        "task_tables": _task_tables(results.get("tasks") or {}, set(card_data.baseline_features), digits,
                                    results.get("settings") or {}),
        "reconstruction": _reconstruction_rows(results.get("reconstruction"), digits),
        "generation": _generation_context(results.get("generation"), digits),
        "plots": [str(p) for p in card_data.plots],
        "license": card_data.license,
        "extra": dict(card_data.extra or {}),
    }


def _plain(value):
    """Plain YAML- and JSON-safe types (numpy scalars, tuples, paths)."""
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


# ---------------------------------------------------------------------------------------------------------
# A saved folder's card, from its own files
# ---------------------------------------------------------------------------------------------------------


def _read_json(path: Path):
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error}); the card cannot be made from it") from None


def _recipe_data(recipe: Mapping) -> dict[str, Any]:
    """What a resolved recipe says about the training data: its name, Hub id, rows and validation source."""
    training = recipe.get("training") or {}
    dataset = training.get("dataset")
    if not dataset:
        return {}
    spec = _named_dataset(dataset)
    if spec is None:
        return {"dataset_name": str(dataset), "num_molecules": training.get("max_train_samples")}
    from .data import default_eval_split

    title = spec.title or spec.name
    data = {"dataset_name": title, "dataset_id": spec.hub_id,
            "num_molecules": training.get("max_train_samples") or spec.num_rows.get(training.get("train_split"))}
    if training.get("eval_dataset"):
        return {**data, "validation_source": str(training["eval_dataset"])}
    eval_split = default_eval_split(spec.files, training.get("eval_split"))
    return {**data, "validation_source": title if eval_split else None, "validation_split": eval_split}


def card_data_from_files(name: str, *, recipe: Mapping | None = None, validation: Mapping | None = None,
                         evaluation: Mapping | None = None, settings: Mapping | None = None,
                         plots: Sequence[str] = (), **overrides) -> CMIMCardData:
    """The card data that a folder's files give (see `card_data_from_folder`), from their contents: `name` is
    the model's name when `settings` (card_data.json) gives none; `overrides` replace fields."""
    settings = dict(settings or {})
    unknown = set(settings) - set(CMIMCardData.SETTINGS)
    if unknown:
        raise ValueError(f"{CARD_DATA_FILE} has unknown fields {sorted(unknown)}; expected some of "
                         f"{list(CMIMCardData.SETTINGS)}")
    values: dict[str, Any] = {"model_id": name, **_recipe_data(recipe or {})}
    values.update({k: v for k, v in settings.items() if v is not None})
    values.update(recipe=dict(recipe or {}), validation=validation, eval_results=evaluation, plots=list(plots))
    values.update(overrides)
    return CMIMCardData(**values)


def card_data_from_folder(folder: str | os.PathLike, *, name: str | None = None,
                          location: str | None = None, **overrides) -> CMIMCardData:
    """The card data of a saved folder, from its files (see the module notes); `overrides` replace fields.

    name, location: the model's name and where its usage code finds it, when `card_data.json` does not say
        (default: the folder's name, its parent's for a run's `final/`; and the name)."""
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{folder} has no config.json: not a saved model folder")
    recipe = yaml.safe_load((folder / "recipe.yaml").read_text()) if (folder / "recipe.yaml").is_file() else {}
    resolved = folder.resolve()
    settings = _read_json(folder / CARD_DATA_FILE) or {}
    if location is not None and not settings.get("location"):
        settings["location"] = location
    return card_data_from_files(
        name or (resolved.parent.name if resolved.name == "final" else resolved.name), recipe=recipe,
        validation=_read_json(folder / VALIDATION_FILE), evaluation=_read_json(folder / EVALUATION_FILE),
        settings=settings, plots=[p for p in PLOT_FILES if (folder / p).is_file()],
        **overrides)


def write_model_card(folder: str | os.PathLike, card_data: CMIMCardData | None = None, *,
                     template_path: str | os.PathLike | None = None, digits: int = 3, **overrides) -> Path:
    """Render the card of the saved model in `folder` and write `folder/README.md` and its settings
    (`card_data.json`) atomically. Returns the README path.

    card_data: the card's data; default `card_data_from_folder(folder, **overrides)`. The architecture is read
        from config.json and the safetensors headers (weights not loaded)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"model folder {folder} does not exist")
    if card_data is None:
        card_data = card_data_from_folder(folder, **overrides)
    elif overrides:
        card_data = dataclasses.replace(card_data, **overrides)
    architecture = card_data.architecture or ArchitectureSummary.from_folder(folder)
    objective = json.loads((folder / "config.json").read_text()).get("objective")  # None: card_data must say
    text = _render(card_data, architecture, objective, template_path, digits)
    atomic_write(folder / CARD_DATA_FILE, json.dumps(card_data.settings(), indent=2) + "\n")
    return atomic_write(folder / "README.md", text)


def attach_evaluation(folder: str | os.PathLike, results_dir: str | os.PathLike) -> Path:
    """Put a `cmim-hf evaluate` run of the model in `folder` into it: `results_dir/results.json` becomes
    `evaluation.json`, the plots are copied next to it, and the card is rewritten (its evaluation tables and
    `model-index`). Returns the README path."""
    folder, results_dir = Path(folder), Path(results_dir)
    results = results_dir / "results.json"
    if not results.is_file():
        raise FileNotFoundError(f"{results} does not exist: run `cmim-hf evaluate MODEL --output_dir {results_dir}`")
    atomic_write(folder / EVALUATION_FILE, results.read_bytes())
    for plot in PLOT_FILES:
        if (results_dir / plot).is_file():
            atomic_write(folder / plot, (results_dir / plot).read_bytes())
    return write_model_card(folder)
