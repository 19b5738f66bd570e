"""Latent-space optimisation: scores, CMA-ES and random search on the shipped tiny model, the CLI, the benchmark."""

import importlib.util
import json
import math
import os
import subprocess
import sys

import pytest

pytest.importorskip("rdkit")
pytest.importorskip("cmaes")

from rdkit import Chem, RDConfig  # noqa: E402
from rdkit.Chem import Crippen  # noqa: E402

from cmim_hf import load_pretrained, optimize_molecules  # noqa: E402
from cmim_hf.chem import canonicalize, tanimoto_to_seed  # noqa: E402
from cmim_hf.commands.optimize import main as optimize_main  # noqa: E402
from cmim_hf.optimization import _Candidate, _feasibility_ranks  # noqa: E402
from cmim_hf.scoring import logp, plogp, qed, resolve_objective, sa_score, tpsa  # noqa: E402

STARTS = ["CCOc1ccccc1C(=O)N", "Cc1ccc(S(=O)(=O)N2CCCC2)cc1"]
FAST = dict(budget=30, population_size=10, sigma=0.1, seed=0)


@pytest.fixture(scope="module")
def tiny():
    return load_pretrained("cmim-moses-tiny", device="cpu")


def _comparable(results):
    return [{k: v for k, v in r.as_dict().items() if k != "seconds"} for r in results]


def count_atoms(smiles):
    """A user objective: heavy atoms."""
    return Chem.MolFromSmiles(smiles).GetNumAtoms()


# ------------------------------------------------------------------------------------------------
# Scores
# ------------------------------------------------------------------------------------------------
def test_sa_score_equals_rdkit_contrib_module_loaded_the_usual_way():
    """The data-only loading of RDKit's fragment table gives RDKit's own SA scores."""
    spec = importlib.util.spec_from_file_location("sascorer_reference",
                                                  os.path.join(RDConfig.RDContribDir, "SA_Score", "sascorer.py"))
    reference = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(reference)  # reads fpscores.pkl.gz with pickle.load, as RDKit does
    for smiles in ["c1ccccc1", "CC(=O)Oc1ccccc1C(=O)O", "C1CCCCCCCC1", *STARTS]:
        mol = Chem.MolFromSmiles(smiles)
        assert sa_score(mol) == pytest.approx(reference.calculateScore(mol), abs=1e-12)
    assert 1.0 <= sa_score(Chem.MolFromSmiles("c1ccccc1")) < 2.0  # benzene is trivial to make


def test_plogp_is_logp_minus_sa_minus_large_ring_penalty():
    nine_ring = "C1CCCCCCCC1"  # a 9-membered ring: penalty 9 - 6 = 3
    assert plogp(nine_ring) == pytest.approx(Crippen.MolLogP(Chem.MolFromSmiles(nine_ring))
                                             - sa_score(Chem.MolFromSmiles(nine_ring)) - 3)
    benzene = "c1ccccc1"  # six-membered: no ring penalty
    assert plogp(benzene) == pytest.approx(logp(benzene) - sa_score(Chem.MolFromSmiles(benzene)))
    assert logp(benzene) == pytest.approx(1.6866)
    assert tpsa("CCO") == pytest.approx(20.23)
    assert 0.0 < qed("CC(=O)Oc1ccccc1C(=O)O") < 1.0
    for scorer in (qed, logp, plogp, tpsa):
        assert scorer("C1CC(") is None


def test_resolve_objective():
    assert resolve_objective("qed") == ("qed", qed)
    assert resolve_objective("math:sqrt")[1](4.0) == 2.0
    assert resolve_objective(count_atoms) == ("count_atoms", count_atoms)
    for bad, message in (("foo", "unknown objective 'foo'; expected one of qed, logp, plogp, tpsa or module:function"),
                         ("no_such_module_xyz:f", "cannot import module 'no_such_module_xyz'"),
                         ("math:no_such_function", "module 'math' has no function 'no_such_function'")):
        with pytest.raises(ValueError, match=message):
            resolve_objective(bad)


def test_feasibility_ranks_follow_debs_rules():
    candidates = [_Candidate(None), _Candidate("A", 1.0, 0.1), _Candidate("B", 5.0, 0.5), _Candidate("C", 2.0, 0.3),
                  _Candidate("D", None, 0.9), _Candidate("E", 9.0, 0.45)]
    # feasible by score (E 9 > B 5), then infeasible by shortfall (C 0.1 < A 0.3), then invalid or unscored
    assert _feasibility_ranks(candidates, 0.4) == [4.0, 3.0, 1.0, 2.0, 4.0, 0.0]


# ------------------------------------------------------------------------------------------------
# optimize_molecules
# ------------------------------------------------------------------------------------------------
def test_optimize_is_reproducible_and_every_returned_molecule_is_valid_similar_and_no_worse(tiny):
    model, tokenizer = tiny
    thresholds = [0.0, 0.4]
    results = optimize_molecules(model, tokenizer, STARTS, "qed", method="both", min_similarity=thresholds, **FAST)
    assert _comparable(results) == _comparable(
        optimize_molecules(model, tokenizer, STARTS, "qed", method="both", min_similarity=thresholds, **FAST))
    # start-major, then method, then threshold
    assert [(r.start_smiles, r.method, r.min_similarity) for r in results] == [
        (s, m, t) for s in STARTS for m in ("cmaes", "random") for t in thresholds]
    assert any(r.status == "improved" for r in results)  # the tiny model does find better molecules
    for r in results:
        assert r.status in ("improved", "start_returned") and r.oracle_calls == FAST["budget"]
        assert canonicalize(r.best_smiles) == r.best_smiles  # valid and canonical
        assert r.best_score == pytest.approx(qed(r.best_smiles))
        assert r.start_score == pytest.approx(qed(r.start_smiles))
        assert r.best_score >= r.start_score and r.improvement == pytest.approx(r.best_score - r.start_score)
        [similarity] = tanimoto_to_seed([r.best_smiles], r.start_smiles)
        assert similarity == pytest.approx(r.similarity) and similarity >= r.min_similarity
        assert 0.0 <= r.fraction_valid <= 1.0 and r.scoring_failures == 0 and r.message == ""
        if r.status == "start_returned":
            assert r.best_smiles == canonicalize(r.start_smiles) and r.improvement == 0.0 and r.similarity == 1.0
        else:
            assert r.best_score > r.start_score


def test_results_do_not_depend_on_the_other_start_molecules(tiny):
    """Each molecule's seed comes from the seed and its SMILES: alone or in a batch, the same result."""
    model, tokenizer = tiny
    both = optimize_molecules(model, tokenizer, STARTS, "logp", **FAST)
    alone = optimize_molecules(model, tokenizer, STARTS[1:], "logp", **FAST)
    assert _comparable(both[1:]) == _comparable(alone)


def test_random_search_reports_each_threshold_as_separate_runs_would(tiny):
    model, tokenizer = tiny
    together = optimize_molecules(model, tokenizer, STARTS[:1], "qed", method="random", min_similarity=[0.0, 0.5],
                                  **FAST)
    separate = [optimize_molecules(model, tokenizer, STARTS[:1], "qed", method="random", min_similarity=t, **FAST)[0]
                for t in (0.0, 0.5)]
    assert _comparable(together) == _comparable(separate)


def test_budget_that_is_not_a_multiple_of_the_population(tiny):
    model, tokenizer = tiny
    [result] = optimize_molecules(model, tokenizer, STARTS[:1], "qed", budget=25, population_size=10, seed=1)
    assert result.oracle_calls == 25


def test_start_is_returned_and_flagged_when_nothing_is_better(tiny):
    model, tokenizer = tiny
    start = canonicalize(STARTS[0])

    def only_the_start_is_good(smiles):
        return 1.0 if smiles == start else 0.0

    for method in ("cmaes", "random"):
        [result] = optimize_molecules(model, tokenizer, [STARTS[0]], only_the_start_is_good, method=method, **FAST)
        assert result.start_returned and result.status == "start_returned"
        assert (result.best_smiles, result.best_score, result.improvement, result.similarity) == (start, 1.0, 0.0, 1.0)
        assert result.objective == "only_the_start_is_good"


def test_custom_callable_is_the_objective(tiny):
    model, tokenizer = tiny
    seen = []

    def heavy_atoms(smiles):
        seen.append(smiles)
        return count_atoms(smiles)

    results = optimize_molecules(model, tokenizer, STARTS, heavy_atoms, min_similarity=0.0, **FAST)
    assert canonicalize(STARTS[0]) in seen and len(seen) > len(STARTS)  # the starts and decoded candidates
    assert all(canonicalize(s) == s for s in seen)  # it is handed canonical SMILES of valid molecules only
    for r in results:
        assert r.best_score == count_atoms(r.best_smiles) and r.best_score >= r.start_score
    assert any(r.status == "improved" for r in results)  # bigger molecules are easy to find


def test_raising_or_nan_objective_is_reported_per_molecule_without_stopping(tiny):
    model, tokenizer = tiny
    starts = [canonicalize(s) for s in STARTS]

    def fragile(smiles):
        if smiles == starts[1]:
            raise RuntimeError("cannot score this one")
        if smiles == starts[0]:
            return 0.5
        return math.nan if len(smiles) % 2 else None

    results = optimize_molecules(model, tokenizer, [*STARTS, "C1CC("], fragile, method="both", **FAST)
    first = [r for r in results if r.start_smiles == STARTS[0]]
    assert len(first) == 2 and all(r.status == "start_returned" and r.scoring_failures > 0 for r in first)
    assert all(r.message.startswith("objective failed on ") and ("returned nan" in r.message or
                                                                  "returned None" in r.message) for r in first)
    second = [r for r in results if r.start_smiles == STARTS[1]]
    assert [r.status for r in second] == ["failed", "failed"] and second[0].best_smiles is None
    assert second[0].message == "objective failed on the start molecule: RuntimeError: cannot score this one"
    invalid = [r for r in results if r.start_smiles == "C1CC("]
    assert [r.message for r in invalid] == ["the start is not a valid molecule"] * 2


def test_bad_options_raise(tiny):
    model, tokenizer = tiny
    for kwargs, message in ((dict(budget=0), "budget must be an int >= 1"),
                            (dict(min_similarity=1.5), r"min_similarity must be in \[0, 1\]"),
                            (dict(sigma=float("nan")), "sigma must be a finite number > 0"),
                            (dict(population_size=1), "population_size must be an int >= 2"),
                            (dict(method="annealing"), "method must be one of cmaes, random or 'both'"),
                            (dict(objective="foo"), "unknown objective 'foo'")):
        with pytest.raises(ValueError, match=message):
            optimize_molecules(model, tokenizer, STARTS, **kwargs)


def test_import_without_rdkit_or_cmaes_and_the_error_names_the_extra():
    code = ("import sys\n"
            "import cmim_hf\n"
            "assert 'rdkit' not in sys.modules and 'cmaes' not in sys.modules\n"
            "for blocked in ('cmaes', 'rdkit'):\n"
            "    sys.modules[blocked] = None  # makes `import <blocked>` raise ImportError\n"
            "    try:\n"
            "        cmim_hf.optimize_molecules(None, None, ['CCO'])\n"
            "    except ImportError as error:\n"
            "        print(error)\n"
            "    del sys.modules[blocked]\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f'optimize_molecules needs RDKit and cmaes ({blocked} is missing): '
                                          'pip install "cmim-hf[optimize]"' for blocked in ("cmaes", "rdkit")]


# ------------------------------------------------------------------------------------------------
# cmim-hf optimize
# ------------------------------------------------------------------------------------------------
@pytest.fixture
def no_model_loading(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the arguments were checked")

    monkeypatch.setattr("cmim_hf.embeddings.load_pretrained", refuse)


@pytest.mark.parametrize("argv, message", [
    (["CCO", "--budget", "0"], "argument --budget: expected an integer >= 1, got '0'"),
    (["CCO", "--min_similarity", "1.5"], "argument --min_similarity: expected a Tanimoto similarity in [0, 1], got '1.5'"),
    (["CCO", "--min_similarity", "-0.1"], "argument --min_similarity: expected a Tanimoto similarity in [0, 1], got '-0.1'"),
    (["CCO", "--objective", "foo"], "argument --objective: unknown objective 'foo'; expected one of qed, logp, plogp, "
                                    "tpsa or module:function"),
    (["--input", "/no/such/file.smi"], "argument --input: cannot read start molecules from /no/such/file.smi: no "
                                       "such file or folder: /no/such/file.smi"),
    (["CCO", "--sigma", "nan"], "argument --sigma: expected a finite number > 0, got 'nan'"),
    (["CCO", "--min_similarity", "inf"], "argument --min_similarity: expected a Tanimoto similarity in [0, 1], got 'inf'"),
    (["CCO", "--population_size", "1"], "argument --population_size: CMA-ES needs at least 2, got 1"),
    (["CCO", "--output", "out.parquet"], "argument --output: expected a .csv or .json file, got 'out.parquet'"),
    ([], "no start molecules: give SMILES as arguments or a file with --input"),
    (["--benchmark", "qed", "--objective", "logp"], "--benchmark sets its own start molecules, objectives, methods "
                                                    "and thresholds and writes into --output_dir; it does not take "
                                                    "--objective"),
])
def test_cli_bad_arguments_are_one_line_errors_before_loading(argv, message, no_model_loading, capsys):
    assert optimize_main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err == f"cmim-hf optimize: error: {message} (see cmim-hf optimize --help)\n" and captured.out == ""


def test_the_help_names_every_built_in_property():
    """optimize's --help lists the property names without importing RDKit: the list is the scorers' own."""
    from cmim_hf.commands.optimize import PROPERTY_NAMES
    from cmim_hf.scoring import PROPERTY_SCORES

    assert PROPERTY_NAMES == tuple(PROPERTY_SCORES)


def test_cli_unreadable_start_file_is_an_argument_error(tmp_path, no_model_loading, capsys):
    folder = tmp_path / "a_folder.smi"
    folder.mkdir()
    assert optimize_main(["--input", str(folder)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"cmim-hf optimize: error: argument --input: cannot read start molecules from {folder}: ")
    assert err.count("\n") == 1


def test_cli_writes_reproducible_results_and_a_summary(tmp_path, monkeypatch, capsys):
    (tmp_path / "starts.smi").write_text(f"{STARTS[0]} first\n{STARTS[1]} second\n")
    (tmp_path / "my_scores.py").write_text("from rdkit import Chem\n\n\ndef count_atoms(smiles):\n"
                                           "    return Chem.MolFromSmiles(smiles).GetNumAtoms()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    argv = ["--model", "cmim-moses-tiny", "--input", str(tmp_path / "starts.smi"), "--objective",
            "my_scores:count_atoms", "--method", "both", "--budget", "20", "--population_size", "10",
            "--min_similarity", "0", "0.4", "--seed", "3", "--device", "cpu"]
    assert optimize_main([*argv, "--output", str(tmp_path / "a.json")]) == 0
    out = capsys.readouterr().out
    assert "summary" in out and "cmaes, min similarity 0.4: " in out
    assert optimize_main([*argv, "--output", str(tmp_path / "b.json")]) == 0
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for rows_ in [rows] for r in rows_]  # noqa: E731
    a = json.loads((tmp_path / "a.json").read_text())["results"]
    assert strip(a) == strip(json.loads((tmp_path / "b.json").read_text())["results"])
    assert len(a) == 8 and {r["objective"] for r in a} == {"my_scores:count_atoms"}
    assert all(r["best_score"] == count_atoms(r["best_smiles"]) for r in a)
    assert optimize_main([*argv, "--output", str(tmp_path / "a.csv")]) == 0
    lines = (tmp_path / "a.csv").read_text().splitlines()
    assert lines[0].startswith("start_smiles,method,objective,min_similarity,status,start_score,best_smiles") \
        and len(lines) == 9


# ------------------------------------------------------------------------------------------------
# The benchmark
# ------------------------------------------------------------------------------------------------
def test_benchmark_resumes_where_it_stopped(tmp_path, monkeypatch, capsys):
    pytest.importorskip("scipy")
    import cmim_hf.optimization as optimization

    options = ["--benchmark", "qed", "--output_dir", str(tmp_path), "--model", "cmim-moses-tiny", "--num_molecules",
               "3", "--population_size", "10", "--device", "cpu"]
    argv = [*options, "--budget", "20"]
    assert optimize_main(argv) == 0
    rows_path = tmp_path / "qed" / "rows.jsonl"
    complete = rows_path.read_text().splitlines()
    assert len(complete) == 3
    starts = json.loads((tmp_path / "qed" / "starts.json").read_text())["molecules"]
    assert all(0.7 <= s["score"] <= 0.8 for s in starts) and len(starts) == 3
    summary = json.loads((tmp_path / "summary.json").read_text())["tasks"][0]
    assert summary["molecules_done"] == 3 and summary["settings"]["command"].endswith("cmim-hf optimize " + " ".join(argv))
    assert [(r["method"], r["min_similarity"], r["molecules"]) for r in summary["table"]] == [("cmaes", 0.4, 3),
                                                                                             ("random", 0.4, 3)]
    assert "| cmaes | 0.4 |" in (tmp_path / "summary.md").read_text()

    # An interruption while the third molecule's line was being written: a cut line is dropped and redone.
    rows_path.write_text("\n".join(complete[:2]) + "\n" + complete[2][:40])
    calls = []
    real = optimization.optimize_molecules

    def counting(model, tokenizer, smiles, *args, **kwargs):
        calls.append(smiles)
        return real(model, tokenizer, smiles, *args, **kwargs)

    monkeypatch.setattr(optimization, "optimize_molecules", counting)
    assert optimize_main(argv) == 0
    assert calls == [[json.loads(complete[2])["start_smiles"]]]  # only the unfinished molecule
    redone = rows_path.read_text().splitlines()
    strip = lambda line: [{k: v for k, v in r.items() if k != "seconds"} for r in json.loads(line)["results"]]  # noqa: E731
    assert [strip(line) for line in redone] == [strip(line) for line in complete]
    assert json.loads((tmp_path / "qed" / "settings.json").read_text())["invocations"] == 2

    assert optimize_main([*options, "--budget", "30"]) == 1
    assert "holds a run with other settings (budget: 20 there, 30 now)" in capsys.readouterr().err


def test_sa_fragment_table_loader_refuses_pickles_that_name_code():
    import io
    import pickle

    from cmim_hf.scoring import _DataOnlyUnpickler

    assert _DataOnlyUnpickler(io.BytesIO(pickle.dumps([[-1.5, 7, 8]]))).load() == [[-1.5, 7, 8]]
    with pytest.raises(pickle.UnpicklingError, match="refusing to load posix.system|refusing to load nt.system"):
        _DataOnlyUnpickler(io.BytesIO(pickle.dumps(os.system))).load()


def test_benchmark_start_molecules(monkeypatch):
    from cmim_hf.evaluation import optimization_benchmark as bench

    molecules = ["CCO", "c1ccccc1", "CC(=O)Oc1ccccc1C(=O)O", "C1CCCCCCCC1", *STARTS,
                 "CC(C)Cc1ccc(cc1)C(C)C(=O)O", "Cn1cnc2c1c(=O)n(C)c(=O)n2C"]
    monkeypatch.setattr(bench, "_moses_test", lambda: molecules)
    lowest = bench.select_start_molecules("plogp", 3)
    assert [m["score"] for m in lowest] == sorted(plogp(s) for s in molecules)[:3]
    assert all(m["score"] == plogp(m["smiles"]) for m in lowest)
    drug_like = bench.select_start_molecules("qed", 2, seed=0)
    assert sorted(m["smiles"] for m in drug_like) == sorted(STARTS)  # the two with QED in [0.7, 0.8]
    with pytest.raises(ValueError, match="unknown benchmark task 'logp'"):
        bench.select_start_molecules("logp", 2)


def test_benchmark_summary_figures():
    pytest.importorskip("scipy")
    from cmim_hf.evaluation.optimization_benchmark import summarize_task

    def result(start, method, threshold, improvement, status=None, similarity=0.5):
        status = status or ("improved" if improvement > 0 else "start_returned")
        return {"start_smiles": start, "method": method, "min_similarity": threshold, "status": status,
                "improvement": improvement, "best_score": 0.0, "similarity": similarity, "fraction_valid": 0.5}

    # three molecules at floor 0.4: CMA-ES improves 2.0, 1.0, 0.0; random 1.0, 0.0, 0.0
    rows = [{"start_smiles": s, "wall_seconds": 1800.0, "results": [
        result(s, "cmaes", 0.4, c), result(s, "random", 0.4, r)]} for s, c, r in (("A", 2.0, 1.0), ("B", 1.0, 0.0),
                                                                                 ("C", 0.0, 0.0))]
    rows[2]["results"].append(result("D", "cmaes", 0.4, None, status="failed"))  # a failed start is counted apart
    summary = summarize_task("plogp", rows, {"selection_seconds": 0.0})
    cmaes_04 = next(r for r in summary["table"] if r["method"] == "cmaes" and r["min_similarity"] == 0.4)
    assert cmaes_04["molecules"] == 4 and cmaes_04["failed"] == 1
    assert cmaes_04["improvement"] == {"mean": pytest.approx(1.0), "std": pytest.approx(1.0)}  # sd of 2, 1, 0
    assert cmaes_04["success_rate"] == pytest.approx(2 / 3)
    assert cmaes_04["improvement_of_successes"] == {"mean": pytest.approx(1.5), "std": pytest.approx(0.5 ** 0.5)}
    random_00 = next(r for r in summary["table"] if r["method"] == "random" and r["min_similarity"] == 0.0)
    assert random_00["molecules"] == 0 and random_00["success_rate"] is None
    [pair] = [p for p in summary["cmaes_vs_random"] if p["min_similarity"] == 0.4]
    assert (pair["pairs"], pair["cmaes_better"], pair["random_better"], pair["ties"]) == (3, 2, 0, 1)
    assert pair["mean_difference"] == pytest.approx(2 / 3) and 0 < pair["wilcoxon_p"] <= 1
    assert summary["wall_hours"] == pytest.approx(1.5)
