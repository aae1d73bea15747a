"""Augment a causal LM the user already has (``transformers`` or ``ncl.llama``) with the differentiable computer,
behind ``transformers``' conventions: :func:`augment` (``ncl.augment``), :class:`AugmentedModel`
(``ncl.AugmentedModel``), its files (:mod:`ncl.hf.files`) and the digit reader for any tokenizer
(:mod:`ncl.hf.tokens`). See docs/augmented.md, "Your own model".
"""

from ncl.hf.model import AugmentedModel, AugmentedOutput, augment, base_kind, computer_config, install_library

__all__ = ["AugmentedModel", "AugmentedOutput", "augment", "base_kind", "computer_config", "install_library"]
