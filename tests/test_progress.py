"""Off a terminal (nohup, CI, `dvc repro` logs) pretraining, training and evaluation print plain
progress lines: every 10 % of the total and at least every 30 s."""

from __future__ import annotations

import io

from samsar.progress import PLAIN_SECONDS, Progress, format_seconds


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


class FakeClock:
    """Seconds that pass only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_slow_loop_prints_at_least_every_30_seconds_with_step_loss_and_eta():
    assert PLAIN_SECONDS == 30.0
    clock, stream = FakeClock(), io.StringIO()
    bar = Progress(1000, "pretrain", stream=stream, clock=clock)  # 10 % = 100 steps: far away
    bar.set_postfix(loss="0.912")
    clock.now += 29.0
    bar.update(1)
    assert stream.getvalue() == ""  # 29 s: not yet
    clock.now += 1.0
    bar.update(1)  # 30 s since the start: a line
    line = stream.getvalue().splitlines()[-1]
    assert line == "pretrain: step 2/1000 (0 %), 30 s, ETA 4 h 09 min, loss 0.912"  # 15 s a step, 998 left
    clock.now += 20.0
    bar.update(1)
    assert len(stream.getvalue().splitlines()) == 1  # 20 s after the last line
    clock.now += 10.0
    bar.update(1)
    assert stream.getvalue().splitlines()[-1].startswith("pretrain: step 4/1000 (0 %), 1 min 00 s, ETA ")


def test_evaluation_counts_tiles():
    clock, stream = FakeClock(), io.StringIO()
    bar = Progress(40, "evaluate lora seed 0", stream=stream, unit="tile", clock=clock)
    bar.update(8)
    bar.update(32)
    bar.close()
    lines = stream.getvalue().splitlines()
    assert lines[0] == "evaluate lora seed 0: tile 8/40 (20 %), 0 s, ETA 0 s"
    assert lines[-1] == "evaluate lora seed 0: tile 40/40 (100 %), 0 s" and len(lines) == 2


def test_durations_read_as_a_person_would_say_them():
    assert [format_seconds(s) for s in (0, 42.4, 185, 7620)] == ["0 s", "42 s", "3 min 05 s", "2 h 07 min"]


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
