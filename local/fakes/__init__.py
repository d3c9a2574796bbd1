"""Stand-ins for the services the kit talks to, each on a loopback port in a child process:
local AWS (`aws_server`, moto), the Claude emulator (`claude_emulator`, Anthropic API and
Bedrock, with `claude_batches`), the AWS MCP Server (`aws_mcp_server`, with the IAM evaluator
`iam_simulate.mjs`) and the child-process helper they share (`child`)."""
