"""The digits demo: distribution-wise rewards fine-tune a flow model on scikit-learn's 8x8 digits.

``python -m examples.digits`` (or ``make demo``) trains a feature CNN and a class-conditional
flow-matching generator (cached under ``out/cache``), uploads the real-digit target and a
generated pool to the reward service, fine-tunes with GRPO (the digit class is the prompt,
advantages normalised per class) on per-sample distribution-wise credits, group rewards, credits
with a stalled pool and per-sample classifier confidence over several seeds, and writes
``out/demo/results.json`` with PNG grids and curves. ``--unconditional`` runs the same comparison
on an unconditional flow (``make demo-unconditional``).
"""
