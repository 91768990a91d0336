"""Scene-scale inference: sliding windows with blended overlaps, streamed GeoTIFF in and out.

- :mod:`~samsar.inference.predict`: ``samsar predict`` (``predict_scene``, ``resolve_model``, ``PredictError``);
- :mod:`~samsar.inference.predictor`: ``Predictor`` (arrays and streamed scenes);
- :mod:`~samsar.inference.windows`: window stride and blending weights (the window grid: :func:`samsar.data.tiling.window_starts`);
- :mod:`~samsar.inference.raster`: windowed scene reading, row-band GeoTIFF writing;
- :mod:`~samsar.inference.outputs`: colour table, preview, area table.
"""
