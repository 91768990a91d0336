"""Off a terminal (nohup, CI, `dvc repro` logs) training and pretraining print plain progress lines."""

from __future__ import annotations

import io
import re

from samsar.training.loop import train_variant
from samsar.training.progress import Progress


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_plain_lines_every_tenth_of_the_budget_off_a_terminal():
    stream = io.StringIO()  # not a TTY
    bar = Progress(20, "pretrain", stream=stream)
    for step in range(20):
        bar.set_postfix(loss=f"{1 / (step + 1):.3f}")
        bar.update(1)
    bar.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 10 and lines[0].startswith("pretrain: step 2/20 (10 %)")
    assert lines[-1].startswith("pretrain: step 20/20 (100 %)") and lines[-1].endswith("loss 0.050")


def test_a_time_interval_also_prints_and_other_ranks_stay_silent():
    stream = io.StringIO()
    bar = Progress(1000, "lora seed 0", stream=stream, seconds=0.0)  # every update is "a minute later"
    bar.update(1)
    bar.update(1)
    assert stream.getvalue().splitlines()[-1].startswith("lora seed 0: step 2/1000 (0 %)")
    silent = io.StringIO()
    other = Progress(10, "rank 1", enabled=False, stream=silent)
    other.update(10)
    other.close()
    assert silent.getvalue() == ""


def test_a_terminal_gets_the_bar_not_plain_lines():
    stream = FakeTty()
    bar = Progress(10, "pretrain", stream=stream)
    bar.update(10)
    bar.close()
    assert "step 10/10 (100 %)" not in stream.getvalue() and "10/10" in stream.getvalue()


def test_training_off_a_terminal_prints_progress_lines(tiny_project, capsys):
    params = tiny_project({"train": {"epochs": 2, "seeds": [0]}})
    summary = train_variant(params, "decoder_only")
    err = capsys.readouterr().err  # pytest's captured stderr is not a TTY
    lines = re.findall(r"^decoder_only seed 0: step (\d+)/(\d+) \(\d+ %\).*loss", err, flags=re.M)
    assert lines and lines[-1][0] == lines[-1][1] == str(summary["steps"][0])
