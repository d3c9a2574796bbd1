// Evaluate IAM requests with @cloud-copilot/iam-simulate, for tests/infra/test_iam_matrix.py and
// the local AWS MCP Server (local/fakes/aws_mcp_server.py), which checks each downstream call
// with it.
//
// One process for every case: reads JSON from stdin,
//   {"cases": [{"id": str, "principal": ARN, "actions": [str, ...], "resource": ARN,
//               "accountId": str, "context": {key: str | [str]},
//               "identityPolicies": [{"name": str, "policy": {...}}],
//               "permissionBoundaries": [{"name": str, "policy": {...}}] | null,
//               "resourcePolicy": {...} | null,
//               "sameRequestContext": bool?, "unlistedResourceArn": bool?}]}
// and writes JSON to stdout,
//   {"results": [{"id", "result": "Allowed" | "ImplicitlyDenied" | "ExplicitlyDenied" | "Error",
//                 "actions": [{"action", "result", "ignoredContextKeys", "keptContextKeys"?,
//                              "unvalidated"?, "errors"?, "explicitDenies"?}]}]}
// ("explicitDenies": "<policy>/<Sid>" of each Deny statement that matched, in validated runs).
//
// One API request can need several IAM actions (AssumeRole with session tags and a source
// identity is authorized as sts:AssumeRole + sts:TagSession + sts:SetSourceIdentity): the
// request is allowed only when each of them is; an explicit deny on any of them wins. An input
// the simulator rejects (bad policy, action, ARN, context key) is reported as "Error".
//
// runSimulation validates the input, then drops context keys the service reference does not
// list for the action. Two cases opt out of part of that, and fall back to runUnsafeSimulation
// (the same evaluation engine, without the input checks):
// - "sameRequestContext": the actions of one API call are authorized against that call's one
//   request context, as IAM does (sts:SourceIdentity is not listed for sts:TagSession, yet it
//   is part of the AssumeRole call). Keys the validated run dropped are kept ("keptContextKeys").
// - "unlistedResourceArn": an ARN form AWS uses but the service reference lacks (Bedrock's
//   regionless global foundation-model ARN, arn:aws:bedrock:::foundation-model/MODEL);
//   only the "no.resource.types" rejection is accepted ("unvalidated").

import { runSimulation, runUnsafeSimulation } from '@cloud-copilot/iam-simulate'

const RANK = { Allowed: 0, ImplicitlyDenied: 1, ExplicitlyDenied: 2, Error: 3 }
const STRICT = { simulationMode: 'Strict' }

async function readStdin() {
  const chunks = []
  for await (const chunk of process.stdin) chunks.push(chunk)
  return JSON.parse(Buffer.concat(chunks).toString('utf8'))
}

function unsafe(simulation) {
  // runUnsafeSimulation loads the resource policy without the name its explain step reads:
  // hand it over as an iam-policy ValidatedPolicy carrying one.
  return runUnsafeSimulation(
    {
      ...simulation,
      resourcePolicy: simulation.resourcePolicy && {
        __validated: true,
        policyDocument: simulation.resourcePolicy,
        metadata: { name: 'ResourcePolicy' },
        errors: []
      }
    },
    STRICT
  )
}

async function evaluate(testCase, action) {
  const simulation = {
    request: {
      principal: testCase.principal,
      action,
      resource: { resource: testCase.resource, accountId: testCase.accountId },
      contextVariables: testCase.context ?? {}
    },
    identityPolicies: testCase.identityPolicies ?? [],
    serviceControlPolicies: [],
    resourceControlPolicies: [],
    resourcePolicy: testCase.resourcePolicy ?? undefined,
    permissionBoundaryPolicies: testCase.permissionBoundaries ?? undefined
  }
  const response = await runSimulation(simulation, STRICT)
  if (response.resultType === 'error') {
    if (testCase.unlistedResourceArn && response.errors.message === 'no.resource.types') {
      return { action, result: unsafe(simulation), ignoredContextKeys: [], unvalidated: true }
    }
    return { action, result: 'Error', errors: response.errors }
  }
  const results = response.resultType === 'single' ? [response.result] : response.results
  const ignoredContextKeys = [...new Set(results.flatMap((r) => r.ignoredContextKeys ?? []))]
  if (testCase.sameRequestContext && ignoredContextKeys.length > 0) {
    return {
      action,
      result: unsafe(simulation),
      ignoredContextKeys: [],
      keptContextKeys: ignoredContextKeys
    }
  }
  const explicitDenies = results.flatMap((r) => {
    const a = r.analysis ?? {}
    return [a.identityAnalysis, a.permissionBoundaryAnalysis, a.resourceAnalysis]
      .flatMap((part) => part?.denyStatements ?? [])
      .map((s) => `${s.policyId ?? 'ResourcePolicy'}/${s.explain?.identifier ?? '?'}`)
  })
  return { action, result: response.overallResult, ignoredContextKeys, explicitDenies }
}

const input = await readStdin()
const output = []
for (const testCase of input.cases) {
  const actions = []
  for (const action of testCase.actions) actions.push(await evaluate(testCase, action))
  const result = actions.reduce(
    (worst, a) => (RANK[a.result] > RANK[worst] ? a.result : worst),
    'Allowed'
  )
  output.push({ id: testCase.id, result, actions })
}
process.stdout.write(JSON.stringify({ results: output }))
