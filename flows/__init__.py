"""Prefect flows: thin orchestration over :mod:`kmeans_dask.pipeline`."""
