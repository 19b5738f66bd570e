"""Property-guided molecule optimisation in the latent space (CMA-ES), as MolMIM offers it.

    results = optimize_molecules(model, tokenizer, ["CCOc1ccccc1"], objective="qed", budget=200,
                                 min_similarity=0.4, seed=0)
    results[0].best_smiles, results[0].improvement

For each start molecule x: encode mu(x) (B=1, K, D), flatten it to a K*D vector, and search around it for
latents whose greedy decodings score higher, subject to Tanimoto similarity (ECFP4: Morgan radius 2, 2048
bits) >= `min_similarity` to x. Two searches share the same oracle budget:
  - "cmaes": CMA-ES (the `cmaes` library) started at mu with step size `sigma`, `population_size` latents a
    generation. Each generation is ranked by Deb's feasibility rules: feasible candidates (valid, scored,
    similar enough) by score, above valid candidates that violate the similarity floor (by how far below it
    they are), above invalid decodes and molecules the objective could not score. CMA-ES only uses ranks.
  - "random": mu + sigma * N(0, I) latents (`model.sample_around`), the baseline.
The budget counts candidates: each decoded latent is one oracle call, valid or not. A decoded molecule seen
before in the same search is looked up rather than scored again.

What comes back, per start molecule, method and threshold, is an `OptimizationResult`: the best feasible
candidate when it scores strictly higher than the start, else the start itself (status "start_returned").
So every returned molecule is valid, meets the similarity floor and scores at least as well as the start.
A start that RDKit cannot parse, or that the objective cannot score, gives status "failed" with the reason;
an objective that raises, returns None, NaN or inf on candidates is counted per molecule (`scoring_failures`,
the first one in `message`) and those candidates rank with invalid ones. Nothing stops the run.

Needs RDKit and `cmaes`: `pip install "cmim-hf[optimize]"`.
"""

from __future__ import annotations

import math
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from .embeddings import generation_length, max_input_length
from .tokenization import check_texts

__all__ = ["METHODS", "OptimizationResult", "optimize_molecules"]

METHODS = ("cmaes", "random")
_EXTRA = 'pip install "cmim-hf[optimize]"'


@dataclass
class OptimizationResult:
    """The outcome of one search from one start molecule.

    status: "improved" (a better molecule was found), "start_returned" (no candidate met the similarity floor
        and scored strictly higher: the start is returned) or "failed" (the start is not a valid molecule or
        could not be scored; see `message`).
    best_smiles / best_score: the returned molecule (RDKit-canonical) and its score; None when failed.
    improvement: best_score - start_score (0.0 when the start is returned).
    similarity: Tanimoto (ECFP4) of best_smiles to the start (1.0 when the start is returned).
    oracle_calls: candidates (decoded latents) evaluated, the budget's unit.
    fraction_valid: candidates RDKit could parse / oracle_calls.
    scoring_failures: distinct valid molecules among the candidates that the objective could not score
        (an exception, None, NaN or inf).
    message: why the molecule failed, or the first scoring failure; "" when there is nothing to report.
    seconds: wall time of this search.
    """

    start_smiles: str
    method: str
    objective: str
    min_similarity: float
    status: str
    start_score: float | None
    best_smiles: str | None
    best_score: float | None
    improvement: float | None
    similarity: float | None
    oracle_calls: int
    fraction_valid: float | None
    scoring_failures: int
    message: str
    seconds: float

    @property
    def start_returned(self) -> bool:
        return self.status == "start_returned"

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class _Candidate:
    smiles: str | None  # canonical; None: the decoding is not a valid molecule
    score: float | None = None  # None: invalid, or the objective could not score it
    similarity: float = 0.0

    def feasible(self, min_similarity: float) -> bool:
        return self.score is not None and self.similarity >= min_similarity


def _safe_score(scorer: Callable[[str], float | None], smiles: str) -> tuple[float | None, str]:
    """The objective's value for one molecule, or None and why not (an exception, None, not a number, NaN, inf)."""
    try:
        value = scorer(smiles)
    except Exception as error:  # a user's objective may fail in any way; it must not stop the run
        return None, f"{type(error).__name__}: {error}"
    if value is None:
        return None, "returned None (cannot score)"
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None, f"returned {value!r}, not a number"
    return (value, "") if math.isfinite(value) else (None, f"returned {value}")


class _Oracle:
    """Evaluates the decoded candidates of one start molecule: canonical form, similarity to the start, score.

    Scores and similarities are cached per canonical SMILES; objective failures are counted, the first kept.
    """

    def __init__(self, start: str, scorer: Callable[[str], float | None]):
        from .chem import canonicalize, tanimoto_to_seed

        self._canonicalize, self._tanimoto = canonicalize, tanimoto_to_seed
        self.start, self.scorer = start, scorer
        self.seen: dict[str, tuple[float | None, float]] = {}  # canonical SMILES -> (score, similarity)
        self.calls = self.valid = self.failures = 0
        self.first_failure = ""

    def __call__(self, texts: Sequence[str]) -> list[_Candidate]:
        canonical = [self._canonicalize(text) for text in texts]
        new = list(dict.fromkeys(c for c in canonical if c is not None and c not in self.seen))
        for smiles, similarity in zip(new, self._tanimoto(new, self.start) if new else []):
            value, why = _safe_score(self.scorer, smiles)
            if value is None:
                self.failures += 1
                self.first_failure = self.first_failure or f"objective failed on {smiles!r}: {why}"
            self.seen[smiles] = (value, float(similarity))
        self.calls += len(texts)
        self.valid += sum(c is not None for c in canonical)
        return [_Candidate(c, *self.seen[c]) if c is not None else _Candidate(None) for c in canonical]


def _feasibility_ranks(candidates: Sequence[_Candidate], min_similarity: float) -> list[float]:
    """Ranks to minimise (0 = best) by Deb's feasibility rules: feasible by score, then valid and scored but
    below the similarity floor by the shortfall, then invalid or unscored."""
    def key(c: _Candidate) -> tuple[int, float]:
        if c.score is None:
            return 2, 0.0
        if c.similarity >= min_similarity:
            return 0, -c.score
        return 1, min_similarity - c.similarity

    keys = [key(c) for c in candidates]
    order = sorted(set(keys))
    return [float(order.index(k)) for k in keys]


def _molecule_seed(seed: int, start: str) -> int:
    """A seed per (seed, canonical start molecule): a molecule's search does not depend on its neighbours in
    the input list, so an interrupted batch resumes with the same results."""
    return int(np.random.SeedSequence([seed, zlib.crc32(start.encode())]).generate_state(1)[0])


class _Decoder:
    """Greedy decoding of latents to strings, in batches."""

    def __init__(self, model, tokenizer, max_new_tokens: int | None):
        self.model, self.tokenizer = model, tokenizer
        self.kwargs = generation_length(model, max_new_tokens)

    def latents(self, latents: np.ndarray) -> list[str]:
        """Decode (N, K*D) latents."""
        ids = self.model.decode_latents(torch.as_tensor(latents, dtype=torch.float32), **self.kwargs)
        return self.tokenizer.batch_decode(ids, skip_special_tokens=True)

    def around(self, encoded, radius: float, n: int, generator: torch.Generator) -> list[str]:
        """Decode n latents mu + radius * N(0, I) around the encoded start."""
        ids = self.model.sample_around(encoded["input_ids"], encoded["attention_mask"], radius=radius, num_samples=n,
                                       generator=generator, **self.kwargs)
        return self.tokenizer.batch_decode(ids, skip_special_tokens=True)


def _cmaes_search(decoder: _Decoder, oracle: _Oracle, mean: np.ndarray, *, budget: int, population_size: int,
                  sigma: float, min_similarity: float, seed: int) -> list[_Candidate]:
    """CMA-ES from `mean` (K*D,); returns every candidate evaluated. A last, partial generation (budget not a
    multiple of the population) is evaluated but not told: the search ends there."""
    from cmaes import CMA

    optimizer = CMA(mean=mean.astype(np.float64), sigma=sigma, population_size=population_size, seed=seed)
    evaluated: list[_Candidate] = []
    while len(evaluated) < budget:
        n = min(population_size, budget - len(evaluated))
        latents = np.stack([optimizer.ask() for _ in range(n)])  # (n, K*D)
        candidates = oracle(decoder.latents(latents))
        evaluated += candidates
        if n == population_size:
            ranks = _feasibility_ranks(candidates, min_similarity)
            optimizer.tell(list(zip(latents, ranks)))
    return evaluated


def _random_search(decoder: _Decoder, oracle: _Oracle, encoded, *, budget: int, population_size: int, sigma: float,
                   seed: int) -> list[_Candidate]:
    """`budget` latents mu + sigma * N(0, I), decoded `population_size` at a time."""
    generator = torch.Generator().manual_seed(seed)
    evaluated: list[_Candidate] = []
    while len(evaluated) < budget:
        n = min(population_size, budget - len(evaluated))
        evaluated += oracle(decoder.around(encoded, sigma, n, generator))
    return evaluated


def _check_options(budget, population_size, sigma, thresholds, seed, methods) -> None:
    for name, value, low in (("budget", budget, 1), ("population_size", population_size, 2)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be an int >= 0, got {seed!r}")
    if not (isinstance(sigma, (int, float)) and math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma must be a finite number > 0, got {sigma!r}")
    if not thresholds:
        raise ValueError("min_similarity needs at least one threshold")
    for value in thresholds:
        if not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0):
            raise ValueError(f"min_similarity must be in [0, 1], got {value!r}")
    for method in methods:
        if method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)} or 'both', got {method!r}")


def _require_dependencies() -> None:
    try:
        import cmaes  # noqa: F401
        import rdkit  # noqa: F401
    except ImportError as error:
        raise ImportError(f"optimize_molecules needs RDKit and cmaes ({error.name} is missing): {_EXTRA}") from error


def optimize_molecules(
    model,
    tokenizer,
    start_smiles: str | Iterable[str],
    objective: str | Callable[[str], float | None] = "plogp",
    *,
    method: str | Sequence[str] = "cmaes",
    budget: int = 200,
    population_size: int = 20,
    sigma: float = 0.5,
    min_similarity: float | Sequence[float] = 0.4,
    seed: int = 0,
    max_new_tokens: int | None = None,
    progress: bool = False,
) -> list[OptimizationResult]:
    """Search the latent space around each start molecule for molecules that score higher (see the module doc).

    Args:
        model: a `CMIMForConditionalGeneration` (eval mode); tokenizer: its tokenizer.
        start_smiles: one SMILES or several.
        objective: "qed", "logp", "plogp", "tpsa", "module:function", or a callable SMILES -> float or None.
            Higher is better.
        method: "cmaes", "random", "both", or a list of methods.
        budget: candidates (decoded latents) per search.
        population_size: latents per CMA-ES generation (and per decoding batch of the random search).
        sigma: CMA-ES's initial step size and the random search's noise scale, in latent units. The default, 0.5,
            suits cmim-moses-base (posterior sigma 0.37); 0.1 suited cmim-moses-small (sigma 0.0025); both from
            16-molecule pilots (results/optimize/pilot/).
        min_similarity: the Tanimoto floor, or several: CMA-ES runs once per threshold (its ranking depends on
            it); random search draws once and reports each threshold, as separate runs with the same seed would.
        seed: makes the searches reproducible; each molecule's own seed derives from it and its canonical SMILES.
        max_new_tokens: longest decoding; default the model's.
        progress: a tqdm bar over the start molecules.

    Returns:
        One `OptimizationResult` per start molecule, method and threshold, in that order (start-major).
    """
    methods = list(METHODS) if method == "both" else [method] if isinstance(method, str) else list(method)
    thresholds = [min_similarity] if isinstance(min_similarity, (int, float)) else list(min_similarity)
    _check_options(budget, population_size, sigma, thresholds, seed, methods)
    _require_dependencies()
    from .chem import canonicalize
    from .scoring import resolve_objective

    objective_name, scorer = resolve_objective(objective)
    starts = check_texts(start_smiles, name="start_smiles")
    search = _Search(model, tokenizer, scorer, objective_name, methods=methods, thresholds=thresholds, budget=budget,
                     population_size=population_size, sigma=sigma, seed=seed, max_new_tokens=max_new_tokens)
    results: list[OptimizationResult] = []
    for start in tqdm(starts, desc="optimizing", unit="molecule", disable=not progress):
        results += search.run(start, canonicalize(start))
    return results


class _Search:
    """The searches from one start molecule, with the settings they share."""

    def __init__(self, model, tokenizer, scorer, objective_name: str, *, methods: list[str], thresholds: list[float],
                 budget: int, population_size: int, sigma: float, seed: int, max_new_tokens: int | None):
        self.model, self.tokenizer, self.scorer, self.objective_name = model, tokenizer, scorer, objective_name
        self.methods, self.thresholds = methods, [float(t) for t in thresholds]
        self.budget, self.population_size, self.sigma, self.seed = budget, population_size, sigma, seed
        self.decoder = _Decoder(model, tokenizer, max_new_tokens)
        self.device = next(model.parameters()).device
        self.max_length = max_input_length(model, tokenizer)

    def _result(self, start: str, method: str, threshold: float, status: str, started: float,
                **fields) -> OptimizationResult:
        defaults = dict(start_score=None, best_smiles=None, best_score=None, improvement=None, similarity=None,
                        oracle_calls=0, fraction_valid=None, scoring_failures=0, message="")
        return OptimizationResult(start, method, self.objective_name, threshold, status, **{**defaults, **fields},
                                  seconds=round(time.perf_counter() - started, 3))

    def run(self, start: str, canonical: str | None) -> list[OptimizationResult]:
        """Every method and threshold for one start molecule (`canonical`: its RDKit-canonical form or None)."""
        started = time.perf_counter()

        def failed(why: str) -> list[OptimizationResult]:
            return [self._result(start, m, t, "failed", started, message=why) for m in self.methods
                    for t in self.thresholds]

        if canonical is None:
            return failed("the start is not a valid molecule")
        encoded = self.tokenizer([start], return_tensors="pt").to(self.device)
        if encoded["input_ids"].shape[1] > self.max_length:
            return failed(f"the start is {encoded['input_ids'].shape[1]} tokens long, longer than the model's "
                          f"maximum of {self.max_length}")
        start_score, why = _safe_score(self.scorer, canonical)
        if start_score is None:
            return failed(f"objective failed on the start molecule: {why}")
        molecule_seed = _molecule_seed(self.seed, canonical)
        with torch.no_grad():  # mu of the start: every CMA-ES search starts there
            mean = self.model.encode(encoded["input_ids"], encoded["attention_mask"])[0].reshape(-1).float().cpu()
        results = []
        for method in self.methods:
            # CMA-ES runs once per threshold (its ranking depends on it); random search draws once for all.
            for search_threshold in self.thresholds if method == "cmaes" else [None]:
                started = time.perf_counter()
                oracle = _Oracle(canonical, self.scorer)
                if method == "cmaes":
                    candidates = _cmaes_search(self.decoder, oracle, mean.numpy(),
                                               budget=self.budget, population_size=self.population_size,
                                               sigma=self.sigma, min_similarity=search_threshold, seed=molecule_seed)
                else:
                    candidates = _random_search(self.decoder, oracle, encoded, budget=self.budget,
                                                population_size=self.population_size, sigma=self.sigma,
                                                seed=molecule_seed)
                shared = dict(start_score=start_score, oracle_calls=oracle.calls,
                              fraction_valid=oracle.valid / oracle.calls, scoring_failures=oracle.failures,
                              message=oracle.first_failure)
                for threshold in self.thresholds if search_threshold is None else [search_threshold]:
                    feasible = [c for c in candidates if c.feasible(threshold)]
                    best = max(feasible, key=lambda c: c.score, default=None)
                    if best is not None and best.score > start_score:
                        results.append(self._result(start, method, threshold, "improved", started,
                                                    best_smiles=best.smiles, best_score=best.score,
                                                    improvement=best.score - start_score,
                                                    similarity=best.similarity, **shared))
                    else:  # nothing better under the floor: the start itself, which meets every requirement
                        results.append(self._result(start, method, threshold, "start_returned", started,
                                                    best_smiles=canonical, best_score=start_score, improvement=0.0,
                                                    similarity=1.0, **shared))
        return results
