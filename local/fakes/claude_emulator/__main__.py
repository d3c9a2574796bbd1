"""`python -m local.fakes.claude_emulator --config '{...}'`: serve the emulator, print its port."""

from local.fakes.claude_emulator.server import main

main()
