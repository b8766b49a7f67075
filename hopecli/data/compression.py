"""The codecs a feature store's features can be written with (`extract/import --compression`).

"none" is the default: V-JEPA 2 features in float16 compress poorly (zstd saved 8% of the
space on the seeds' features) while every read pays the decode, and an uncompressed chunk
is read with one readinto (bench/store.py measures each codec). Kept apart from store.py
so that the CLI's options can name them without importing Zarr.
"""

COMPRESSIONS = ("none", "zstd", "lz4")
DEFAULT_COMPRESSION = "none"
