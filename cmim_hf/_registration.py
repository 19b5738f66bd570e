"""`import cmim_hf` registers the model family with transformers' Auto classes, at the moment they can be used.

Registering needs the model classes, and defining them imports transformers and torch: seconds that
`cmim-hf --help` (which imports this package to reach its argument parser) must not pay. So `import cmim_hf`
registers at once only when transformers' Auto classes are already loaded. Otherwise it leaves an import hook
that registers as soon as they load: `from transformers import AutoConfig` (or AutoModel, pipeline, ...) after
`import cmim_hf` finds "cmim" registered, as if the package had imported them itself.

The hook watches every import of a `transformers` or `cmim_hf.modeling` module and registers when the
outermost one has finished and `transformers.models.auto` has been loaded: then no module the registration
imports is half-initialised. It removes itself once the registration is done.
"""

from __future__ import annotations

import importlib.abc
import sys
import threading

__all__ = ["register_auto_classes", "register_when_transformers_loads"]

_AUTO_MODULE = "transformers.models.auto.configuration_auto"  # loaded with (or before) every Auto class
_WATCHED = ("transformers", "cmim_hf.modeling")
_lock = threading.RLock()
_state = threading.local()  # depth: watched imports in progress on this thread
_registered = False


def register_auto_classes() -> None:
    """Register CMIMConfig, CMIMModel (AutoModel) and CMIMForConditionalGeneration (AutoModelForSeq2SeqLM)."""
    global _registered
    with _lock:
        if _registered:
            return
        _registered = True  # set first: the imports below come back through the hook
        try:
            from transformers import AutoConfig, AutoModel, AutoModelForSeq2SeqLM

            from .modeling import CMIMConfig, CMIMForConditionalGeneration, CMIMModel

            AutoConfig.register(CMIMConfig.model_type, CMIMConfig, exist_ok=True)
            AutoModel.register(CMIMConfig, CMIMModel, exist_ok=True)
            AutoModelForSeq2SeqLM.register(CMIMConfig, CMIMForConditionalGeneration, exist_ok=True)
        finally:
            _remove_hook()


def _is_watched(name: str) -> bool:
    return any(name == root or name.startswith(root + ".") for root in _WATCHED)


class _WatchingLoader(importlib.abc.Loader):
    """The module's own loader, counting the watched imports in progress."""

    def __init__(self, loader):
        self._loader = loader

    def __getattr__(self, name):  # get_source, get_filename, get_resource_reader, ...: the real loader's
        return getattr(self._loader, name)

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        _state.depth = getattr(_state, "depth", 0) + 1
        try:
            self._loader.exec_module(module)
        finally:
            _state.depth -= 1
        if _state.depth == 0 and not _registered and _AUTO_MODULE in sys.modules:
            register_auto_classes()


class _RegistrationHook(importlib.abc.MetaPathFinder):
    """Finds watched modules with the finders after it and wraps their loaders in `_WatchingLoader`."""

    def find_spec(self, name, path=None, target=None):
        if not _is_watched(name):
            return None
        finders = sys.meta_path[sys.meta_path.index(self) + 1:] if self in sys.meta_path else []
        for finder in finders:
            find = getattr(finder, "find_spec", None)
            spec = find(name, path, target) if find is not None else None
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _WatchingLoader(spec.loader)
                return spec
        return None


_hook = _RegistrationHook()


def _remove_hook() -> None:
    if _hook in sys.meta_path:
        sys.meta_path.remove(_hook)


def register_when_transformers_loads() -> None:
    """Register now if transformers' Auto classes are loaded, else as soon as they are (see the module notes)."""
    with _lock:
        if _registered:
            return
        if _AUTO_MODULE in sys.modules:
            register_auto_classes()
        elif _hook not in sys.meta_path:
            sys.meta_path.insert(0, _hook)
