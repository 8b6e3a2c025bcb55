"""Results across runs: paired comparisons (compare), seed groups (seeds) and the paper's table
(reproduce). numpy and the results store only: the CLI and the app both use them."""
