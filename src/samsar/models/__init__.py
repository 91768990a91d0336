"""samsar.models: SAM loading, fine-tuning methods, heads, segmenter and adapter artifacts.

- ``sam``: backbone registry, official checkpoints (``weights_only``), input-size interpolation.
- ``peft/``: one file per fine-tuning method (:class:`peft.base.PeftMethod`).
- ``classwise_decoder`` / ``box_prompt``: the heads on top of SAM's mask decoder.
- ``segmenter``: the trainable model; ``variants``: method registry and ``build_segmenter``.
- ``artifacts``: adapter save/load; ``describe``: per-variant size and cost table.
"""
