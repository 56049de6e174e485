"""bandit_router: picks, for every LLM request, the model worth its price, and learns online."""
