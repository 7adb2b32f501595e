"""Which base model a LoRA adapter belongs to: the check before an adapter is trained on or loaded.

PEFT writes the base model's name into the adapter's `adapter_config.json` (`base_model_name_or_path`:
what the trainer loaded, here the checkpoint directory `VlaR1Policy.resolve_checkpoint()` gave). An
adapter made for another base would load without error when the shapes happen to agree and then answer
nonsense, so it is refused by name before any training or trial starts.
"""

from __future__ import annotations

import json
from pathlib import Path

ADAPTER_CONFIG = "adapter_config.json"


class AdapterError(ValueError):
    """The adapter cannot be used with this base model (missing, unreadable or made for another)."""


def adapter_base(adapter: str | Path) -> str:
    """The base model an adapter directory names; AdapterError if it is not a readable PEFT adapter."""
    path = Path(adapter).expanduser() / ADAPTER_CONFIG
    try:
        base = json.loads(path.read_text(encoding="utf-8"))["base_model_name_or_path"]
    except FileNotFoundError:
        raise AdapterError(f"adapter {adapter}: no {ADAPTER_CONFIG} (not a PEFT adapter directory)") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise AdapterError(f"adapter {adapter}: unreadable {ADAPTER_CONFIG} ({type(exc).__name__}: {exc})") from None
    if not isinstance(base, str) or not base:
        raise AdapterError(f"adapter {adapter}: {ADAPTER_CONFIG} names no base_model_name_or_path")
    return base


def check_adapter(adapter: str | Path, model: str, checkpoint: Path) -> Path:
    """The adapter's directory, after checking it was made for `model` (as given: hub id or directory)
    whose weights are in `checkpoint`. The base matches when it is the same name or the same directory."""
    base = adapter_base(adapter)
    same_directory = Path(base).expanduser().resolve() == Path(checkpoint).resolve()
    if base != model and not same_directory:
        raise AdapterError(f"adapter {adapter} was trained on {base}, not on {model} ({checkpoint})")
    return Path(adapter).expanduser()
