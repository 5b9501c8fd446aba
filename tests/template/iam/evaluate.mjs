// Answers the template's security questions with @cloud-copilot/iam-simulate, an IAM policy
// engine: identity policies, resource policies (secrets, key, API, function) and their
// conditions, same- and cross-account rules, KMS's key-policy trust.
//
// Each question is a list of requests (tests/template/iam_questions.py writes them from the
// translated template); its answer is "yes" when every request is allowed.
import { readFileSync } from 'node:fs'
import { createValidatedPolicy, validateResourcePolicy } from '@cloud-copilot/iam-policy'
import { runSimulation, runUnsafeSimulation } from '@cloud-copilot/iam-simulate'

// Version 0.1.173 of the engine drops the context keys kms:EncryptionContext:* (its action data
// names them with a ${EncryptionContextKey} placeholder that it never matches), so every
// encryption-context condition would fail closed. Requests that carry such keys are therefore
// validated as usual first (policies, action, resource, every other context key), then
// evaluated with all their context keys. The canary test shows when a release fixes this.
export const DROPPED_PREFIX = 'kms:encryptioncontext:'

function simulation(request) {
  return {
    request: {
      principal: request.principal,
      action: request.action,
      resource: { resource: request.resource, accountId: request.resourceAccount },
      contextVariables: request.context
    },
    identityPolicies: request.identityPolicies.map((policy, index) => ({
      name: `identity-${index}`,
      policy
    })),
    serviceControlPolicies: [],
    resourceControlPolicies: [],
    resourcePolicy: request.resourcePolicy ?? undefined
  }
}

export async function decide(request) {
  const checked = await runSimulation(simulation(request), {})
  if (checked.resultType === 'error') {
    throw new Error(`invalid request ${request.action} on ${request.resource}: ${JSON.stringify(checked.errors)}`)
  }
  if (checked.resultType !== 'single') {
    throw new Error(`expected one resource for ${request.action} on ${request.resource}`)
  }
  const ignored = checked.result.ignoredContextKeys ?? []
  const unexpected = ignored.filter((key) => !key.toLowerCase().startsWith(DROPPED_PREFIX))
  if (unexpected.length > 0) {
    throw new Error(`context keys not valid for ${request.action}: ${unexpected.join(', ')}`)
  }
  if (ignored.length === 0) {
    return checked.overallResult
  }
  const unchecked = simulation(request)
  if (unchecked.resourcePolicy) {
    // Named, as the checked run names it: the unchecked run reads the name from here.
    unchecked.resourcePolicy = createValidatedPolicy(unchecked.resourcePolicy, validateResourcePolicy, { name: 'resource' })
  }
  return runUnsafeSimulation(unchecked, {})
}

export async function answer(requests) {
  for (const request of requests) {
    if ((await decide(request)) !== 'Allowed') {
      return 'no'
    }
  }
  return 'yes'
}

export async function answerAll(questions) {
  const answers = {}
  for (const [id, requests] of Object.entries(questions)) {
    answers[id] = await answer(requests)
  }
  return answers
}

// docs/iam-answers.md: | id | question | default | private | local | primary | replica | promoted |
// (the header row names the configurations, in the order of their columns)
export function expectedAnswers(markdown) {
  const rows = {}
  let columns = []
  for (const line of markdown.split('\n')) {
    const cells = line.split('|').map((cell) => cell.trim())
    if (cells[1] === 'id' && cells[2] === 'question') {
      columns = cells.slice(3, -1)
      continue
    }
    if (columns.length === 0 || !/^`[a-z0-9-]+`$/.test(cells[1] ?? '')) {
      continue
    }
    rows[cells[1].slice(1, -1)] = Object.fromEntries(columns.map((name, index) => [name, cells[3 + index]]))
  }
  return rows
}

export function loadJson(path) {
  return JSON.parse(readFileSync(path, 'utf8'))
}
