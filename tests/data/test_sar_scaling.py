"""SarScaler: conversions to dB, percentile clipping, channel composition, round trip."""

import json

import numpy as np
import pytest

from samsar.data.scaling import ReservoirSample, SarScaler


def test_intensity_amplitude_and_db_inputs_agree_after_conversion():
    intensity = np.random.default_rng(0).exponential(0.1, size=(32, 32)).astype(np.float32)
    db = SarScaler("intensity").convert(intensity)
    assert np.allclose(SarScaler("amplitude").convert(np.sqrt(intensity)), db, atol=1e-4)
    assert np.allclose(SarScaler("db").convert(10 * np.log10(intensity)), db, atol=1e-4)
    assert np.allclose(SarScaler("intensity", to_db=False).convert(intensity)[..., 0], intensity)


def test_fit_clips_at_the_training_percentiles_and_scales_to_unit_range():
    train = np.random.default_rng(1).exponential(1.0, size=(64, 64)).astype(np.float32)
    scaler = SarScaler("intensity", percentiles=(2.0, 98.0)).fit([train])
    low, high = np.percentile(10 * np.log10(train), [2.0, 98.0])
    assert scaler.low == pytest.approx((low,), abs=1e-3) and scaler.high == pytest.approx((high,), abs=1e-3)
    out = scaler.transform(train)
    assert out.shape == (3, 64, 64) and out.dtype == np.float32
    assert out.min() == 0.0 and out.max() == 1.0
    assert np.mean(out == 0.0) == pytest.approx(0.02, abs=0.01)
    # Statistics come from the fitting data only: a much brighter scene saturates.
    assert scaler.transform(train * 1000).mean() > 0.95


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_integer_and_float_inputs(dtype):
    raw = (np.arange(16 * 16).reshape(16, 16) % 200 + 1).astype(dtype)
    scaler = SarScaler("amplitude", to_db=False, percentiles=(0.0, 100.0)).fit([raw])
    out = scaler.transform(raw)
    assert out[0].min() == 0.0 and out[0].max() == 1.0
    assert np.allclose(out[0], (raw.astype(np.float32) - 1) / 199, atol=1e-6)


def test_channel_composition_for_sam():
    rng = np.random.default_rng(2)
    single = rng.exponential(1.0, (8, 8)).astype(np.float32)
    out = SarScaler().fit([single]).transform(single)
    assert np.array_equal(out[0], out[1]) and np.array_equal(out[1], out[2])

    dual = rng.exponential(1.0, (8, 8, 2)).astype(np.float32)
    out = SarScaler().fit([dual]).transform(dual)
    assert np.allclose(out[2], (out[0] + out[1]) / 2)

    pauli = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
    scaler = SarScaler("amplitude", to_db=False).fit([pauli])
    assert len(scaler.low) == 3 and scaler.transform(pauli).shape == (3, 8, 8)
    with pytest.raises(ValueError, match="channel"):
        scaler.transform(pauli[..., :2])


def test_non_finite_values_map_to_zero_and_unfitted_scaler_refuses():
    raw = np.ones((4, 4), np.float32)
    raw[0, 0] = np.nan
    scaler = SarScaler().fit([np.random.default_rng(3).exponential(1.0, (8, 8))])
    assert scaler.transform(raw)[:, 0, 0].tolist() == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="not fitted"):
        SarScaler().transform(raw)


def test_dict_round_trip_through_json_gives_the_same_transform():
    raw = np.random.default_rng(4).exponential(1.0, (16, 16, 2)).astype(np.float32)
    scaler = SarScaler("intensity", percentiles=(1.0, 99.0)).fit([raw])
    again = SarScaler.from_dict(json.loads(json.dumps(scaler.to_dict())))
    assert again == scaler
    assert np.array_equal(again.transform(raw), scaler.transform(raw))


def test_reservoir_sample_is_bounded_and_uniform():
    sample = ReservoirSample(capacity=1000, seed=0)
    for start in range(0, 100_000, 500):
        sample.add(np.arange(start, start + 500, dtype=np.float64)[:, None])
    values = sample.values[:, 0]
    assert values.shape == (1000,) and len(np.unique(values)) == 1000
    # Uniform over the stream: early and late rows are equally likely to be kept.
    assert abs(np.mean(values < 50_000) - 0.5) < 0.06
