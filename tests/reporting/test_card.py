"""Model-card helpers: HTML with inlined figures, sizes, method descriptions."""

import base64

from samsar.models.variants import VARIANTS
from samsar.evaluation.metrics import format_metric
from samsar.reporting.card import human_bytes, method_description, render_html


def test_html_inlines_local_png_figures(tmp_path):
    png = b"\x89PNG\r\n\x1a\nfake"
    (tmp_path / "cm.png").write_bytes(png)
    html = render_html("# Card\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n![cm](cm.png)\n\n![gone](missing.png)\n", tmp_path, "t")
    assert f'src="data:image/png;base64,{base64.b64encode(png).decode()}"' in html
    assert 'src="missing.png"' in html  # left as is rather than broken silently
    assert "<table>" in html and "<title>t</title>" in html


def test_formatting_helpers():
    assert format_metric(None) == "n/a" and format_metric(float("nan")) == "n/a" and format_metric(0.12345) == "0.123"
    assert human_bytes(512) == "512 B" and human_bytes(1536) == "1.5 KiB" and human_bytes(3 * 2**20) == "3.0 MiB"


def test_every_registered_method_has_a_description():
    for name in VARIANTS:
        text = method_description(name)
        assert text and "``" not in text


def test_head_description_follows_the_adapter_options():
    from samsar.reporting.card import head_description

    assert "classwise head (one logit map per class, no prompts)" in head_description({"head": "classwise"})
    box = head_description({"head": "box_prompt", "box_prompt": {"boxes": "per_image", "jitter": 20}})
    assert "no prompts" not in box and "one box around all objects" in box and "0-20 px" in box
    assert "needs box prompts at prediction (`samsar predict --boxes`); test scores use exact ground-truth boxes" in box
