"""Interview coach: a question bank, hybrid retrieval over it, grounded answers and mock interviews."""
