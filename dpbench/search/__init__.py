"""Private hyper-parameter search: search spaces, the secret plan of trials, trials calibrated under one
search budget, and the selection of the best by a noised validation score (``python -m dpbench.search``)."""
