"""Off a terminal, a scene prediction prints a progress line (strip, ETA) at least every 30 s."""

from __future__ import annotations

import functools
import io

from predict_helpers import speckle_scene, write_geotiff

import samsar.inference.predict as predict_module
from samsar.inference.predict import predict_scene
from samsar.progress import Progress

STRIPS = 30  # 64 px windows, 48 px stride: 64 + 48 * 29 rows


class TickingClock:
    """Monotonic seconds that advance by ``tick`` each time they are read: no sleeping."""

    def __init__(self, tick: float) -> None:
        self.now, self.tick = 0.0, tick

    def __call__(self) -> float:
        self.now += self.tick
        return self.now


def _progress_lines(monkeypatch, tmp_path, intensity_adapter, tick: float) -> list[str]:
    stream = io.StringIO()  # not a terminal
    monkeypatch.setattr(predict_module, "Progress", functools.partial(Progress, stream=stream, clock=TickingClock(tick)))
    scene = write_geotiff(tmp_path / "tall.tif", speckle_scene(64 + 48 * (STRIPS - 1), 64))
    predict_scene(intensity_adapter, scene, tmp_path / f"classes-{tick:g}.tif", batch_size=8, device="cpu")
    return stream.getvalue().splitlines()


def test_slow_strips_print_a_line_each_at_least_every_30_seconds(monkeypatch, tmp_path, intensity_adapter):
    lines = _progress_lines(monkeypatch, tmp_path, intensity_adapter, tick=40.0)  # each strip takes 40 s
    assert len(lines) == STRIPS
    assert lines[0] == f"tall.tif: strip 1/{STRIPS} (3 %), 40 s, ETA 19 min 20 s"
    assert lines[-1] == f"tall.tif: strip {STRIPS}/{STRIPS} (100 %), 20 min 00 s"


def test_fast_strips_print_every_tenth(monkeypatch, tmp_path, intensity_adapter):
    lines = _progress_lines(monkeypatch, tmp_path, intensity_adapter, tick=1.0)
    assert [line.split(",")[0] for line in lines] == [f"tall.tif: strip {n}/{STRIPS} ({100 * n // STRIPS} %)"
                                                      for n in range(3, STRIPS + 1, 3)]
