"""Layer 3, the job as plain Python: the config schema, the pipeline stages (plan -> read ->
scale -> sweep -> fit -> assign -> score -> commit), the result tables, the portable
segmentation model and the demo data. Runs without Prefect; ``flows/`` wraps it."""
