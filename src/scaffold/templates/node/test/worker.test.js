// Tests of the worker: the protocol (each test runs worker.js as the host would, a task on
// stdin, the result on stdout, the exit code) and the business logic (processTask directly).
// Run them with `npm test` (which is `node --test`).

'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const { spawnSync } = require('node:child_process');

const { TASK_TYPES, processTask, validateTask, ValidationError } = require('../worker.js');

const WORKER = path.join(__dirname, '..', 'worker.js');
const TASK_TYPE = TASK_TYPES[0];
// Params your processTask() accepts: change these along with it.
const SAMPLE_PARAMS = { input_data: 'hello world' };

/** Run the worker with `input` on stdin; return its exit code and its one result object. */
function run(input) {
  const child = spawnSync(process.execPath, [WORKER], { input, encoding: 'utf8', timeout: 10000 });
  assert.equal(child.error, undefined, `the worker could not run: ${child.error}`);
  assert.ok(child.stdout.endsWith('\n'), `stdout is not one line: ${JSON.stringify(child.stdout)}`);
  const lines = child.stdout.split('\n');
  assert.equal(lines.length, 2, `stdout holds more than one line: ${JSON.stringify(child.stdout)}`);
  return { code: child.status, output: JSON.parse(lines[0]), stderr: child.stderr };
}

function task(fields = {}) {
  return { id: 'test-1', type: TASK_TYPE, params: SAMPLE_PARAMS, ...fields };
}

test('a valid task succeeds: exit 0 and one JSON result line', () => {
  const { code, output } = run(JSON.stringify(task()));
  assert.equal(code, 0);
  assert.equal(output.success, true);
  assert.equal(typeof output.result, 'object');
  assert.ok(Array.isArray(output.logs));
});

test('empty params succeed', () => {
  const { code, output } = run(JSON.stringify(task({ params: {} })));
  assert.equal(code, 0);
  assert.equal(output.success, true);
});

test('an unknown task type is a validation error: exit 2, not retriable', () => {
  const { code, output } = run(JSON.stringify(task({ type: 'Not.A.Known.Type' })));
  assert.equal(code, 2);
  assert.equal(output.success, false);
  assert.equal(output.error.type, 'ValidationError');
  assert.equal(output.error.message, 'Unknown task type: Not.A.Known.Type');
  assert.equal(output.error.retry_possible, false);
});

test('a task without an id is a validation error: exit 2', () => {
  const { id, ...withoutId } = task();
  const { code, output } = run(JSON.stringify(withoutId));
  assert.equal(code, 2);
  assert.equal(output.error.type, 'ValidationError');
  assert.equal(output.error.retry_possible, false);
});

test('invalid JSON on stdin: exit 2, not retriable', () => {
  const { code, output } = run(`{"id": "test-1", "type": "${TASK_TYPE}", "params": {`);
  assert.equal(code, 2);
  assert.equal(output.success, false);
  assert.equal(output.error.type, 'JSONDecodeError');
  assert.equal(output.error.retry_possible, false);
});

test('a task spread over several lines is read whole', () => {
  const { code, output } = run(JSON.stringify(task(), null, 2));
  assert.equal(code, 0);
  assert.equal(output.success, true);
});

test('validateTask accepts a task and refuses a wrong one', () => {
  validateTask(task());
  assert.throws(() => validateTask(task({ params: [] })), ValidationError);
  assert.throws(() => validateTask(task({ type: '' })), ValidationError);
  assert.throws(() => validateTask([]), ValidationError);
});

// REPLACE THIS along with processTask(): a test of your business logic.
test('processTask upper-cases input_data', async () => {
  const result = await processTask(TASK_TYPE, { input_data: 'héllo wörld' });
  assert.equal(result.processed, true);
  assert.equal(result.task_type, TASK_TYPE);
  assert.equal(result.processed_input, 'HÉLLO WÖRLD');
  const empty = await processTask(TASK_TYPE, {});
  assert.equal(empty.processed_input, undefined);
});

test('processTask refuses input_data that is not a string', async () => {
  await assert.rejects(processTask(TASK_TYPE, { input_data: 5 }), ValidationError);
});
