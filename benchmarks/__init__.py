"""zoomcal benchmarks: each measures zoomcal against a baseline run in the same process, as a ratio."""
