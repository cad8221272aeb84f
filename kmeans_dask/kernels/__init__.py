"""Layer 1, pure kernels: numpy and numba only (no Dask, no pandas, no I/O). Each takes one
in-memory chunk plus small broadcast values and returns small partials that the engine adds."""
