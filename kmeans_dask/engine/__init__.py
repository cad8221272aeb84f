"""Layer 2, the Dask plumbing: where per-block work runs (executor), persisted row blocks,
input preparation, k-means|| rounds, Lloyd passes, silhouettes, cluster quality and the KNN
graph. Inputs are validated by the public estimators before they reach this layer."""
