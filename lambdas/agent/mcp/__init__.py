"""MCP tool sources for the agent (the AWS MCP Server first).

`config` (no SDK import) describes the servers and the tools offered to Claude; `toolbox` runs
MCP tool calls (verification against `tools/list`, rate budget, audit); `client` is the only
module that imports the MCP SDK, and only when an MCP tool is called.
"""
