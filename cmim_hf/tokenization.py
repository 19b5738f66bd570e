"""The SMILES tokenizer, bulk encoding and padding, and the input checks shared by the embedding, pipeline and
data-preparation code.

The tokenizer is a plain `transformers.PreTrainedTokenizerFast` (a `TokenizersBackend` in transformers 5):
a word-level vocabulary over the tokens of a SMILES regex, so a saved folder reloads with
`AutoTokenizer.from_pretrained` and needs no custom code.

The vocabulary is the five special tokens, then a fixed, chemistry-complete base set, then any extra
tokens of a user corpus. The base set already contains every token of the MOSES corpus (24 distinct
tokens, checked in `tests/test_tokenization.py`) and of the FreeSolv and solubility downstream sets, so the
project's default tokenizer is built without reading any corpus.
"""

from __future__ import annotations

import json
import math
import re
import warnings
import weakref
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal, NamedTuple

import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

__all__ = [
    "BASE_TOKENS",
    "SMILES_REGEX",
    "SPECIAL_TOKENS",
    "build_smiles_tokenizer",
    "check_and_encode",
    "check_texts",
    "default_smiles_tokenizer",
    "encode_texts",
    "pad_sequences",
    "regex_smiles_encoder",
    "split_smiles",
]

# One alternative per SMILES token: bracket atoms, two-letter organic atoms, one-letter atoms, bonds,
# branches, two-digit ring closures (%10..%99) and single-digit ring closures.
SMILES_REGEX = (
    r"(\[[^\]]+]|Br?|Cl?|N|O|S|P|F|I|b|c|n|o|s|p|\(|\)|\.|=|#|-|\+|\\|\/|:|~|@|\?|>|\*|\$|\%[0-9]{2}|[0-9])"
)
_SMILES_PATTERN = re.compile(SMILES_REGEX)

# Position == id. These ids are fixed: the model config's pad/bos/eos/mask defaults rely on them.
SPECIAL_TOKENS: tuple[str, ...] = ("<pad>", "<bos>", "<eos>", "<unk>", "<mask>")
PAD_TOKEN, BOS_TOKEN, EOS_TOKEN, UNK_TOKEN, MASK_TOKEN = SPECIAL_TOKENS


# ------------------------------------------------------------------------------------------------
# The base vocabulary
# ------------------------------------------------------------------------------------------------
class _BracketPattern(NamedTuple):
    """A family of bracket atoms: every combination of these fields."""

    symbols: tuple[str, ...]
    hydrogens: tuple[int, ...] = (0,)
    charges: tuple[int, ...] = (0,)
    chiralities: tuple[str, ...] = ("",)
    isotopes: tuple[int | None, ...] = (None,)


def _bracket_atom(symbol: str, chirality: str, hydrogens: int, charge: int, isotope: int | None) -> str:
    """Write a bracket atom the way RDKit does: `[13CH3]`, `[C@@H]`, `[NH3+]`, `[Ca+2]`, `[O-]`."""
    h = "" if hydrogens == 0 else "H" if hydrogens == 1 else f"H{hydrogens}"
    q = "" if charge == 0 else "+" if charge == 1 else "-" if charge == -1 else f"{charge:+d}"
    return f"[{'' if isotope is None else isotope}{symbol}{chirality}{h}{q}]"


_ALKALI = ("Li", "Na", "K", "Rb", "Cs")
_ALKALINE_EARTH = ("Be", "Mg", "Ca", "Sr", "Ba")
# Transition, post-transition and f-block metals found in drug, catalyst and salt records.
_METALS = (
    "Al", "Sc", "Ti", "V", "Cr", "Mn", "Fe", "Co", "Ni", "Cu", "Zn", "Ga", "Y", "Zr", "Nb", "Mo", "Tc",
    "Ru", "Rh", "Pd", "Ag", "Cd", "In", "Sn", "Sb", "Hf", "Ta", "W", "Re", "Os", "Ir", "Pt", "Au", "Hg",
    "Tl", "Pb", "Bi", "La", "Ce", "Nd", "Sm", "Eu", "Gd", "Tb", "Dy", "Er", "Yb", "Lu", "Th", "U",
)  # fmt: skip

_BRACKET_PATTERNS: tuple[_BracketPattern, ...] = (
    # Organic-subset atoms in brackets: charges, radicals, explicit hydrogens ([NH3+], [CH2], [O-], [OH]).
    _BracketPattern(("C", "N", "P", "B", "Si", "Ge", "As"), (0, 1, 2, 3, 4), (0, 1, -1)),
    _BracketPattern(("O", "S", "Se", "Te"), (0, 1, 2, 3), (0, 1, -1)),
    _BracketPattern(("S", "Se", "O"), (0,), (2, -2)),  # charge-separated sulfonyls ([S+2]), oxide ([O-2])
    _BracketPattern(("F", "Cl", "Br", "I"), (0, 1), (0, 1, -1)),  # halides [Cl-], acids [ClH]
    _BracketPattern(("Cl", "Br", "I"), (0,), (2, 3)),  # perchlorate [Cl+3], iodanes [I+3]
    # Aromatic atoms in brackets: pyrrole-type [nH], pyridinium [n+], cyclopentadienide [cH-].
    _BracketPattern(("c", "n", "p", "b"), (0, 1), (0, 1, -1)),
    _BracketPattern(("o", "s", "se", "te", "as"), (0, 1), (0, 1)),
    # Tetrahedral stereocentres ([C@@H], [N@+], sulfoxides [S@], phosphines [P@], borates [B@-]).
    _BracketPattern(("C", "Si", "Ge", "Sn"), (0, 1), (0,), ("@", "@@")),
    _BracketPattern(("N", "P", "As", "S", "Se"), (0, 1), (0, 1), ("@", "@@")),
    _BracketPattern(("B",), (0, 1), (-1,), ("@", "@@")),
    # Hydrogen, wildcard and noble gases.
    _BracketPattern(("H",), (0,), (0, 1, -1)),
    _BracketPattern(("*", "He", "Ne", "Ar", "Kr", "Xe")),
    # Metals: neutral, common cations and hydrides ([Na+], [Ca+2], [Fe+3], [LiH]).
    _BracketPattern(_ALKALI, (0, 1), (0, 1)),
    _BracketPattern(_ALKALINE_EARTH, (0,), (0, 1, 2)),
    _BracketPattern(_METALS, (0,), (0, 1, 2, 3)),
    _BracketPattern(("Ti", "Zr", "Hf", "Sn", "Pb", "Pt", "Ce", "Mn", "U"), (0,), (4,)),
    # Isotopic labels: deuterium/tritium, 13C/14C labelling, PET and radiopharmaceutical nuclides.
    _BracketPattern(("H",), isotopes=(2, 3)),
    _BracketPattern(("C",), (0, 1, 2, 3), isotopes=(11, 13, 14)),
    _BracketPattern(("c",), (0, 1), isotopes=(13, 14)),
    _BracketPattern(("N",), (0, 1, 2), isotopes=(13, 15)),
    _BracketPattern(("n",), isotopes=(15,)),
    _BracketPattern(("O",), (0, 1, 2), isotopes=(15, 17, 18)),
    _BracketPattern(("F",), (0,), (0, -1), isotopes=(18,)),
    _BracketPattern(("P",), isotopes=(32, 33)),
    _BracketPattern(("S",), isotopes=(35,)),
    _BracketPattern(("Cl",), isotopes=(36,)),
    _BracketPattern(("Br",), isotopes=(76, 77, 82)),
    _BracketPattern(("I",), (0, 1), (0, -1), isotopes=(123, 124, 125, 131)),
    _BracketPattern(("Tc",), isotopes=(99,)),
)


def _base_tokens() -> tuple[str, ...]:
    """The fixed base set in a fixed order: atoms, bracket atoms, bond/other symbols, ring closures."""
    organic = ("B", "C", "N", "O", "P", "S", "F", "Cl", "Br", "I", "b", "c", "n", "o", "p", "s")
    bracket = [
        _bracket_atom(symbol, chirality, h, q, isotope)
        for pattern in _BRACKET_PATTERNS
        for isotope in pattern.isotopes
        for symbol in pattern.symbols
        for chirality in pattern.chiralities
        for h in pattern.hydrogens
        for q in pattern.charges
    ]
    # Every single-character alternative of SMILES_REGEX that is not an atom.
    symbols = ("(", ")", ".", "=", "#", "-", "+", "\\", "/", ":", "~", "@", "?", ">", "*", "$")
    rings = tuple("0123456789") + tuple(f"%{i}" for i in range(10, 100))
    # dict.fromkeys: drop repeats across overlapping patterns, keep first-seen order.
    return tuple(dict.fromkeys((*organic, *bracket, *symbols, *rings)))


BASE_TOKENS: tuple[str, ...] = _base_tokens()


# ------------------------------------------------------------------------------------------------
# Building the tokenizer
# ------------------------------------------------------------------------------------------------
def split_smiles(smiles: str) -> list[str]:
    """Split one SMILES string into regex tokens, e.g. `"C[C@H](N)Cl"` -> `["C", "[C@H]", "(", "N", ")", "Cl"]`.

    Characters that match no alternative of `SMILES_REGEX` are dropped here; the tokenizer instead maps
    each run of them to `<unk>`.
    """
    return _SMILES_PATTERN.findall(smiles)


def build_smiles_tokenizer(
    smiles: Iterable[str] | None = None,
    *,
    model_max_length: int = 128,
    min_frequency: int = 1,
) -> PreTrainedTokenizerFast:
    """Build the word-level SMILES tokenizer.

    Args:
        smiles: optional corpus (any iterable of str, e.g. a list or a `Dataset` column). Tokens it has
            that the base set lacks are appended to the vocabulary, most frequent first (ties by string).
        model_max_length: longest input, in tokens including `<bos>` and `<eos>`.
        min_frequency: a corpus token joins the vocabulary only if it occurs at least this often.
            The special tokens and the base set are always in.

    Returns:
        A `PreTrainedTokenizerFast` with ids `<pad>`=0, `<bos>`=1, `<eos>`=2, `<unk>`=3, `<mask>`=4;
        `tokenizer("CCO")["input_ids"]` is `[1, id(C), id(C), id(O), 2]`, padding on the right,
        `decode(..., skip_special_tokens=True)` gives the SMILES back without spaces.
    """
    if not isinstance(model_max_length, int) or model_max_length < 3:
        raise ValueError(f"model_max_length must be an int >= 3 (<bos>, a token, <eos>), got {model_max_length!r}")
    if not isinstance(min_frequency, int) or min_frequency < 1:
        raise ValueError(f"min_frequency must be an int >= 1, got {min_frequency!r}")

    counts: Counter[str] = Counter()
    if smiles is not None:
        for i, text in enumerate([smiles] if isinstance(smiles, str) else smiles):
            if not isinstance(text, str):
                raise TypeError(f"smiles[{i}] is {type(text).__name__} ({_preview(text)}), expected a str")
            counts.update(split_smiles(text))
    known = set(SPECIAL_TOKENS) | set(BASE_TOKENS)
    extra = [t for t, n in counts.items() if n >= min_frequency and t not in known]
    extra.sort(key=lambda t: (-counts[t], t))  # most frequent first; ties by string, for a deterministic order
    vocab = {token: i for i, token in enumerate((*SPECIAL_TOKENS, *BASE_TOKENS, *extra))}

    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token=UNK_TOKEN))
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex(SMILES_REGEX), behavior="isolated")
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS_TOKEN} $A {EOS_TOKEN}",
        special_tokens=[(BOS_TOKEN, vocab[BOS_TOKEN]), (EOS_TOKEN, vocab[EOS_TOKEN])],
    )
    tokenizer.decoder = decoders.Fuse()  # SMILES have no spaces between tokens
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        unk_token=UNK_TOKEN,
        mask_token=MASK_TOKEN,
        model_max_length=model_max_length,
        model_input_names=["input_ids", "attention_mask"],
        padding_side="right",
        clean_up_tokenization_spaces=False,  # its English rules ("n't", " .") must not touch SMILES
    )


def default_smiles_tokenizer(model_max_length: int = 128) -> PreTrainedTokenizerFast:
    """The tokenizer of the project's recipes: the base set plus the MOSES training tokens.

    All 24 distinct MOSES tokens are already in `BASE_TOKENS`, so this reads no corpus and its vocabulary
    equals `build_smiles_tokenizer(moses_train_smiles)`'s (both checked by the tests).
    """
    return build_smiles_tokenizer(None, model_max_length=model_max_length)


# ------------------------------------------------------------------------------------------------
# Bulk encoding
# ------------------------------------------------------------------------------------------------
# On SMILES the tokenizers library's regex `Split` pre-tokenizer is slower than CPython's `re.findall` plus a dict
# lookup (`cmim-hf benchmark`, section tokenization). Data preparation therefore encodes with the regex below
# whenever the tokenizer is one this module built, giving exactly the same ids.
_ENCODERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # tokenizer -> (its length, encoder or None)


def _piece_pattern(regex: str) -> re.Pattern:
    """Pieces exactly as `Split(Regex(regex), behavior="isolated")` cuts them: each match, and each maximal
    run of text between matches (which the word-level model maps to `<unk>` unless it is in the vocabulary)."""
    token = re.compile(regex)
    if token.groups != 1 or not regex.startswith("("):
        raise ValueError(f"expected a regex that is one capturing group, got {regex!r}")
    inner = "(?:" + regex[1:]
    return re.compile(f"({inner}|(?:(?!{inner}).)+)", re.DOTALL)


def regex_smiles_encoder(tokenizer: PreTrainedTokenizerBase) -> Callable[[list[str]], list[list[int]]] | None:
    """A faster function with the same output as `tokenizer(texts, add_special_tokens=True)["input_ids"]`.

    Returns None unless `tokenizer` has the structure `build_smiles_tokenizer` gives (no normalizer, a
    regex `Split` pre-tokenizer, a word-level model, `<bos> $A <eos>`); callers then use the tokenizer
    itself. Batches in which an added token (e.g. a literal `"<mask>"`) occurs are handed to the tokenizer
    too, because it matches added tokens before pre-tokenizing. The result is cached per tokenizer.
    """
    try:
        size, encoder = _ENCODERS[tokenizer]
        if size == len(tokenizer):  # a token added since makes the cached vocabulary stale
            return encoder
    except (KeyError, TypeError):
        pass
    encoder = _build_regex_encoder(tokenizer)
    try:
        _ENCODERS[tokenizer] = (len(tokenizer), encoder)
    except TypeError:  # not weak-referenceable: just do not cache
        pass
    return encoder


def encode_texts(tokenizer: PreTrainedTokenizerBase, texts: list[str]) -> list[list[int]]:
    """`tokenizer(texts, add_special_tokens=True, truncation=False)["input_ids"]`, through
    `regex_smiles_encoder` when the tokenizer allows it (same ids, faster)."""
    encode = regex_smiles_encoder(tokenizer)
    if encode is not None:
        return encode(texts)
    return tokenizer(texts, add_special_tokens=True, truncation=False, verbose=False)["input_ids"]


def pad_sequences(sequences: Sequence[Sequence[int]], pad_token_id: int, pad_to_multiple_of: int | None = 8,
                  max_length: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token id lists to the longest one, rounded up to a multiple of `pad_to_multiple_of` (but
    never beyond `max_length`). Returns `(input_ids, attention_mask)`, each (B, T) int64."""
    if len(sequences) == 0:
        raise ValueError("cannot collate an empty batch")
    longest = max(len(seq) for seq in sequences)
    if longest == 0:
        raise ValueError("every sequence of the batch is empty; tokenized rows have at least <bos> and <eos>")
    width = longest
    if pad_to_multiple_of and pad_to_multiple_of > 1:
        width = math.ceil(longest / pad_to_multiple_of) * pad_to_multiple_of
    if max_length is not None:
        if longest > max_length:
            raise ValueError(f"a sequence of {longest} tokens is longer than max_length={max_length}; "
                             "the data preparation should have skipped it")
        width = min(width, max_length)
    input_ids = torch.full((len(sequences), width), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        input_ids[row, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
        attention_mask[row, : len(seq)] = 1
    return input_ids, attention_mask


def _build_regex_encoder(tokenizer: PreTrainedTokenizerBase) -> Callable[[list[str]], list[list[int]]] | None:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return None
    spec = json.loads(backend.to_str())
    pre, model, post = spec.get("pre_tokenizer") or {}, spec.get("model") or {}, spec.get("post_processor") or {}
    regex = (pre.get("pattern") or {}).get("Regex")
    single = [next(iter(item.values()))["id"] for item in post.get("single", [])]
    if (spec.get("normalizer") is not None or pre.get("type") != "Split" or regex is None
            or pre.get("behavior") != "Isolated" or pre.get("invert") or model.get("type") != "WordLevel"
            or post.get("type") != "TemplateProcessing" or len(single) != 3 or single[1] != "A"):
        return None
    try:
        pattern = _piece_pattern(regex)
    except (re.error, ValueError):  # a regex Python reads differently from Oniguruma: stay exact
        return None
    vocab = model["vocab"]
    unk = vocab[model["unk_token"]]
    bos, eos = (post["special_tokens"][name]["ids"] for name in (single[0], single[2]))
    added = [token["content"] for token in spec.get("added_tokens", [])]
    added_pattern = re.compile("|".join(map(re.escape, added))) if added else None

    def encode(texts: list[str]) -> list[list[int]]:
        if added_pattern is not None and added_pattern.search("\n".join(texts)):
            return tokenizer(texts, add_special_tokens=True, truncation=False, verbose=False)["input_ids"]
        get = vocab.get
        return [[*bos, *[get(piece, unk) for piece in pattern.findall(text)], *eos] for text in texts]

    return encode


# ------------------------------------------------------------------------------------------------
# Validating inputs
# ------------------------------------------------------------------------------------------------
_MAX_LISTED = 5  # problems spelled out in one error message; the rest are counted


def _preview(value: Any, width: int = 80) -> str:
    """`repr` of a value, cut to `width` characters so one error line stays readable."""
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def _as_text_list(texts: Any, name: str) -> list:
    """A single str becomes `[str]`; any other iterable (list, tuple, array, column) becomes a list."""
    if isinstance(texts, str):
        return [texts]
    if isinstance(texts, (bytes, bytearray, dict)) or not isinstance(texts, Iterable):
        raise TypeError(f"{name} must be a str or a sequence of str, got {type(texts).__name__} ({_preview(texts)})")
    return list(texts)


def _report(problems: list[str], total: int, what: str) -> str:
    """One message for all items with the same problem, listing the first few."""
    listed = "; ".join(problems[:_MAX_LISTED])
    more = f"; and {len(problems) - _MAX_LISTED} more" if len(problems) > _MAX_LISTED else ""
    return f"{len(problems)} of {total} {what}: {listed}{more}"


def check_texts(texts: str | Iterable[str], **checks) -> list[str]:
    """Check texts before they are tokenized, and say exactly which ones are bad: the checks and keyword
    arguments (`tokenizer`, `max_length`, `on_unknown`, `on_too_long`, `name`) of `check_and_encode`.

    Returns:
        The texts as a list of str (a single str becomes a one-item list), unchanged.
    """
    return check_and_encode(texts, **checks)[0]


def check_and_encode(
    texts: str | Iterable[str],
    *,
    tokenizer: PreTrainedTokenizerBase | None = None,
    max_length: int | None = None,
    on_unknown: Literal["ignore", "warn", "raise"] = "warn",
    on_too_long: Literal["truncate", "warn", "raise"] = "warn",
    name: str = "texts",
) -> tuple[list[str], list[list[int]] | None]:
    """Check texts before they are tokenized, and say exactly which ones are bad.

    Always checked: every item is a str (else `TypeError`) and not empty or whitespace (else `ValueError`).
    With a tokenizer, also checked:
      - unknown pieces, i.e. ids equal to `tokenizer.unk_token_id` (skipped for tokenizers without one):
        `on_unknown="raise"` raises `ValueError`, `"warn"` emits a `UserWarning`, `"ignore"` lets them pass.
      - length in tokens including special tokens, against `max_length` (default
        `tokenizer.model_max_length`): `on_too_long="raise"` raises `ValueError`, `"warn"` warns that
        they will be truncated, `"truncate"` lets the caller truncate silently.
    Every message names the item as `{name}[index]` and shows it.

    Args:
        texts: one str or an iterable of str.
        tokenizer: needed for the unknown-token and length checks.
        max_length: longest allowed input in tokens; requires `tokenizer`.
        on_unknown, on_too_long: what to do about each problem (see above).
        name: how messages refer to the input, e.g. `"inputs"` gives `inputs[3]`.

    Returns:
        The texts as a list of str (a single str becomes a one-item list), unchanged, and their full-length
        ids with special tokens (`encode_texts`), or None without a tokenizer. Warnings point at the caller
        of the function that called this one (`check_texts`, `embed_smiles`).
    """
    if on_unknown not in ("ignore", "warn", "raise"):
        raise ValueError(f"on_unknown must be 'ignore', 'warn' or 'raise', got {on_unknown!r}")
    if on_too_long not in ("truncate", "warn", "raise"):
        raise ValueError(f"on_too_long must be 'truncate', 'warn' or 'raise', got {on_too_long!r}")
    if max_length is not None and tokenizer is None:
        raise ValueError("max_length counts tokens, so check_texts needs a tokenizer to use it")
    if max_length is not None and (not isinstance(max_length, int) or max_length < 1):
        raise ValueError(f"max_length must be a positive int, got {max_length!r}")

    items = _as_text_list(texts, name)
    n = len(items)
    not_str = [f"{name}[{i}] is {type(t).__name__} ({_preview(t)})"
               for i, t in enumerate(items) if not isinstance(t, str)]  # fmt: skip
    if not_str:
        raise TypeError(_report(not_str, n, "items are not str") + "; expected str")
    blank = [f"{name}[{i}] = {_preview(t)}" for i, t in enumerate(items) if not t.strip()]
    if blank:
        raise ValueError(_report(blank, n, "items are empty or whitespace"))
    if tokenizer is None:
        return items, None
    if n == 0:
        return items, []

    check_unknown = on_unknown != "ignore" and tokenizer.unk_token_id is not None
    all_ids = encode_texts(tokenizer, items)  # no truncation: the point is to see the full length

    if check_unknown:
        unknown, unk_id = [], tokenizer.unk_token_id  # a local: the attribute costs ~4 us per read
        for i, ids in enumerate(all_ids):
            if unk_id not in ids:
                continue
            positions = [p for p, token_id in enumerate(ids) if token_id == unk_id]
            if tokenizer.is_fast:  # offsets name the unknown pieces; only the (rare) bad items need them
                offsets = tokenizer(items[i], add_special_tokens=True, truncation=False, verbose=False,
                                    return_offsets_mapping=True)["offset_mapping"]
                pieces = [items[i][slice(*offsets[p])] for p in positions]
                detail = f" (unknown: {', '.join(map(repr, pieces))})"
            else:
                detail = f" ({len(positions)} unknown)"
            unknown.append(f"{name}[{i}] = {_preview(items[i])}{detail}")
        if unknown:
            message = _report(unknown, n, f"items have pieces the tokenizer maps to {tokenizer.unk_token!r}")
            if on_unknown == "raise":
                raise ValueError(message)
            warnings.warn(message, UserWarning, stacklevel=3)

    limit = max_length if max_length is not None else tokenizer.model_max_length
    if on_too_long != "truncate":
        too_long = [
            f"{name}[{i}] = {_preview(items[i])} ({len(ids)} tokens)"
            for i, ids in enumerate(all_ids)
            if len(ids) > limit
        ]
        if too_long:
            if on_too_long == "raise":
                raise ValueError(_report(too_long, n, f"items are longer than max_length={limit} tokens"))
            message = _report(too_long, n, f"items are longer than max_length={limit} tokens and will be truncated")
            warnings.warn(message, UserWarning, stacklevel=3)
    return items, all_ids
