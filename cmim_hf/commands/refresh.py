"""`cmim-hf refresh`: re-save model folders (or the shipped checkpoints) with this package's code and a card
regenerated from their files, keeping weights and files; refuses if their embeddings would change (see
`cmim_hf.refreshing`)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from ..checks import ArgumentParser

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    from ..refreshing import EmbeddingsChangedError, refresh_model_folder, shipped_card_copy, shipped_location

    parser = ArgumentParser(
        prog="cmim-hf refresh",
        description="Re-save model folders with this package's code (code copies, config) and a card regenerated "
                    "from their files, keeping their weights, storage dtype, tokenizer and other files; refuses if "
                    "their embeddings would change. --shipped also writes model_cards/<name>.md.")
    parser.add_argument("folders", nargs="*", help="model folders to refresh")
    parser.add_argument("--shipped", action="store_true", help="refresh the checkpoints shipped in the package")
    parser.add_argument("--allow_embedding_change", action="store_true",
                        help="write the folder even if its embeddings change (report the change)")
    args = parser.parse_args(argv)
    folders = [(Path(f), None) for f in args.folders]
    if args.shipped:
        from ..pretrained import list_pretrained, pretrained_path

        folders += [(pretrained_path(name), name) for name in list_pretrained()]
    if not folders:
        parser.error("name at least one model folder, or pass --shipped")
    for folder, _ in folders:
        if not (folder / "config.json").is_file():
            parser.error(f"{folder} is not a model folder (no config.json)")
    for folder, shipped_name in folders:
        try:
            changes = refresh_model_folder(folder, allow_embedding_change=args.allow_embedding_change,
                                           location=shipped_location(folder) if shipped_name else None)
        except (EmbeddingsChangedError, ValueError, TypeError, FileNotFoundError) as error:  # a broken folder too
            print(f"cmim-hf refresh: error: {error}", file=sys.stderr)
            return 1
        print(f"refreshed {folder}: largest embedding change {max(changes.values()):.3g} "
              f"({', '.join(f'{k} {v:.3g}' for k, v in changes.items())})")
        if shipped_name:
            from ..saving import atomic_write

            copy = atomic_write(shipped_card_copy(shipped_name), (folder / "README.md").read_bytes())
            print(f"card: {folder / 'README.md'} -> {copy}")
    return 0
