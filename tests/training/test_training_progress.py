"""Training off a terminal (nohup, CI, `dvc repro` logs) prints plain progress lines
(:class:`samsar.progress.Progress`, tested in tests/test_progress.py)."""

from __future__ import annotations

import re

from samsar.training.loop import train_variant


def test_training_off_a_terminal_prints_progress_lines(tiny_project, capsys):
    params = tiny_project({"train": {"epochs": 2, "seeds": [0]}})
    summary = train_variant(params, "decoder_only")
    err = capsys.readouterr().err  # pytest's captured stderr is not a TTY
    lines = re.findall(r"^decoder_only seed 0: step (\d+)/(\d+) \(\d+ %\).*loss", err, flags=re.M)
    assert lines and lines[-1][0] == lines[-1][1] == str(summary["steps"][0])
