// The template's security questions, answered by the policy engine, against docs/iam-answers.md.
// Run by `make iam`, which first writes the questions from the translated template.
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { test } from 'node:test'
import { runSimulation } from '@cloud-copilot/iam-simulate'
import { answerAll, decide, expectedAnswers, loadJson } from './evaluate.mjs'

const questions = loadJson(process.env.IAM_QUESTIONS ?? new URL('./build/questions.json', import.meta.url))
const expected = expectedAnswers(readFileSync(new URL('../../../docs/iam-answers.md', import.meta.url), 'utf8'))

function column(name) {
  return Object.fromEntries(Object.entries(expected).map(([id, row]) => [id, row[name]]))
}

function differences(answers, wanted) {
  return Object.keys(wanted).filter((id) => answers[id] !== wanted[id])
}

const CONFIGURATIONS = ['default', 'private', 'local', 'primary', 'replica', 'promoted']

test('the table and the questions asked are the same list', () => {
  for (const configuration of CONFIGURATIONS) {
    assert.deepEqual(Object.keys(questions[configuration]).sort(), Object.keys(expected).sort())
  }
})

for (const configuration of CONFIGURATIONS) {
  test(`every answer for the ${configuration} parameters is the table's`, async () => {
    const answers = await answerAll(questions[configuration])

    assert.deepEqual(differences(answers, column(configuration)), [])
  })
}

test('naming the developers\' roles changes only the developers\' answers', async () => {
  // Given the default stack and a dev stack that names two developer roles
  const defaults = await answerAll(questions.default)
  const local = await answerAll(questions.local)

  // Then every answer that differs is one of those roles' own, and each is a yes
  const changed = differences(local, defaults)
  assert.ok(changed.length > 0)
  assert.deepEqual(changed.filter((id) => !/^(broker|refresher)-developer-/.test(id)), [])
  assert.deepEqual(changed.filter((id) => local[id] !== 'yes'), [])
})

test('a multi-Region primary answers as a single-Region stack, but for its replica Region', async () => {
  // Given the default stack and a primary that replicates its secrets to one Region
  const defaults = await answerAll(questions.default)
  const primary = await answerAll(questions.primary)

  // Then only replicating there, and the refresher's fixed name, change an answer
  assert.deepEqual(differences(primary, defaults).sort(), [
    'admin-replicates-credentials-to-the-replica-region',
    'broker-invokes-the-primary-regions-refresher'
  ])
})

test('promoting a replica stack changes only which refresher its broker invokes', async () => {
  // Given a replica stack before and after promotion
  const replica = await answerAll(questions.replica)
  const promoted = await answerAll(questions.promoted)

  // Then its broker invokes its own refresher instead of the primary's, and nothing else moves
  assert.deepEqual(differences(promoted, replica).sort(), [
    'broker-invokes-refresher',
    'broker-invokes-the-primary-regions-refresher'
  ])
  assert.equal(promoted['broker-invokes-refresher'], 'yes')
  assert.equal(promoted['broker-invokes-the-primary-regions-refresher'], 'no')
})

test('a deliberately widened broker policy turns its answer red', async () => {
  // Given the default stack, but the broker's policy and the credentials secret's resource
  // policy widened to let the broker read the credentials
  const answers = await answerAll(questions.widened)

  // Then exactly that answer differs from the table
  assert.deepEqual(differences(answers, column('default')), ['broker-reads-credentials'])
})

const secretArn = 'arn:aws:secretsmanager:us-east-1:123456789012:secret:s/credentials-AbC123'
const keyArn = 'arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab'

function decryptWith(context) {
  return {
    principal: 'arn:aws:sts::123456789012:assumed-role/reader/session',
    action: 'kms:Decrypt',
    resource: keyArn,
    resourceAccount: '123456789012',
    context: { 'aws:PrincipalArn': 'arn:aws:iam::123456789012:role/reader', ...context },
    identityPolicies: [],
    resourcePolicy: {
      Version: '2012-10-17',
      Statement: [
        {
          Effect: 'Allow',
          Principal: { AWS: 'arn:aws:iam::123456789012:role/reader' },
          Action: 'kms:Decrypt',
          Resource: '*',
          Condition: { StringEquals: { 'kms:EncryptionContext:SecretARN': secretArn } }
        }
      ]
    }
  }
}

test('canary: this engine release still drops kms:EncryptionContext keys (else drop the workaround in evaluate.mjs)', async () => {
  const request = decryptWith({ 'kms:EncryptionContext:SecretARN': secretArn })
  const response = await runSimulation(
    {
      request: {
        principal: request.principal,
        action: request.action,
        resource: { resource: request.resource, accountId: request.resourceAccount },
        contextVariables: request.context
      },
      identityPolicies: [],
      serviceControlPolicies: [],
      resourceControlPolicies: [],
      resourcePolicy: request.resourcePolicy
    },
    {}
  )

  assert.equal(response.resultType, 'single')
  assert.deepEqual(response.result.ignoredContextKeys, ['kms:EncryptionContext:SecretARN'])
  assert.equal(response.overallResult, 'ImplicitlyDenied')
})

test('with the workaround, an encryption-context condition decides both ways', async () => {
  assert.equal(await decide(decryptWith({ 'kms:EncryptionContext:SecretARN': secretArn })), 'Allowed')
  assert.equal(await decide(decryptWith({ 'kms:EncryptionContext:SecretARN': secretArn + 'x' })), 'ImplicitlyDenied')
  assert.equal(await decide(decryptWith({})), 'ImplicitlyDenied')
})

test('a context key the action cannot carry is an error, not silently ignored', async () => {
  await assert.rejects(decide(decryptWith({ 's3:prefix': 'x' })), /context keys not valid/)
})
