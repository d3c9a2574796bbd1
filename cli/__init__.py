"""Operator commands (not deployed): `python -m cli.audit` answers "what did the agent do, for
whom, with which permissions?"; `python -m cli.dlq` lists, inspects and redrives dead-lettered
requests. Every AWS client is a parameter, so tests run them without a network."""
