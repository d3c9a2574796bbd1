"""`make demo` (`python -m local.demo`): the CDK deploy into local AWS (`deploy`), the agent
fleet against the Claude emulator (`run`) and the report of what it did (`report`)."""
