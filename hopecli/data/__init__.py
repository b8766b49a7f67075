"""Clips, sidecars, synthetic physics, video reading and the Zarr feature store."""
