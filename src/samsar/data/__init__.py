"""samsar.data: the data stages (prepare -> preprocess -> validate) and the torch dataset.

Modules: ``synthetic`` (SAR scene simulator), ``sources`` (FUSAR-Map / folder / scene pairing),
``rasters`` (windowed reading), ``labels`` (index/palette decoding), ``raw_index`` (data/raw/index.json),
``prepare``, ``scaling`` (SarScaler), ``splits`` + ``tiling``, ``preprocess``, ``schema`` (pandera),
``validate``, ``dataset`` (TileDataset, DatasetInfo), ``errors`` (DataError).
"""
