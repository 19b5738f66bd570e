"""`cmim-hf push DIR REPO_ID`: upload a saved model folder (with its README.md card) to a Hub repo."""

from __future__ import annotations

from collections.abc import Sequence

from ..checks import ArgumentParser
from . import fail, user_errors


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="cmim-hf push", description=__doc__.split(": ", 1)[1])
    parser.add_argument("folder", metavar="DIR", help="a folder written by save_model_folder, with README.md")
    parser.add_argument("repo_id", metavar="REPO_ID", help="the Hub repo, namespace/name (created if needed)")
    parser.add_argument("--private", action="store_true", help="create the repo private")
    parser.add_argument("--revision", default=None, help="branch to commit to (created if missing); default main")
    parser.add_argument("--create_pr", action="store_true", help="open a pull request instead of committing")
    parser.add_argument("--commit_message", default=None)
    parser.add_argument("--token", default=None, help="Hub token; default the logged-in one (HF_TOKEN)")
    args = parser.parse_args(argv)
    from ..publishing import push_folder

    try:
        url = push_folder(args.folder, args.repo_id, private=args.private, revision=args.revision,
                          create_pr=args.create_pr, token=args.token, commit_message=args.commit_message)
    except user_errors() as error:
        return fail("push", error)
    print(url)
    return 0
