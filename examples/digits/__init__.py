"""The digits demo: distribution-wise rewards fine-tune a flow model on scikit-learn's 8x8 digits.

``python -m examples.digits`` (or ``make demo``) trains a feature CNN and a flow-matching
generator (cached under ``out/cache``), uploads the real-digit target and a generated pool to the
reward service, fine-tunes with GRPO on distribution-wise and on per-sample rewards over several
seeds, and writes ``out/demo/results.json`` with PNG grids and curves.
"""
