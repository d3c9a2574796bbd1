"""Bulwark's agent: the Lambda handlers, the agent loop and the tools it may call."""
