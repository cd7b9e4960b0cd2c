"""Checks of the installed library versions that fail late and deep otherwise (one clear line instead)."""

from .errors import UsageError


def check_lora_support():
    """UsageError naming both versions when the installed peft cannot put a LoRA on transformers' text encoders.

    transformers refuses a peft older than its MIN_PEFT_VERSION only when the adapter is added, deep inside the loop
    (or inside diffusers' load_lora_weights); a user who installed outside the lock should hear it first, in one line.
    """
    import transformers

    try:
        import peft
    except ImportError:
        raise UsageError(f"LoRA needs peft, which is not installed (transformers {transformers.__version__}): "
                         "install the project's lock with `make install`") from None
    from packaging.version import Version
    from transformers.integrations import peft as transformers_peft

    need = getattr(transformers_peft, "MIN_PEFT_VERSION", None)
    if need and Version(peft.__version__) < Version(need):
        raise UsageError(f"LoRA needs peft >= {need} with transformers {transformers.__version__}, but peft "
                         f"{peft.__version__} is installed: install the project's lock (`make install`), or a "
                         "transformers that accepts this peft")
