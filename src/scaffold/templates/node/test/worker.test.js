// Tests of the worker: the protocol (each test runs worker.js as the host would, a task on
// stdin, the result on stdout, the exit code; in persistent mode one process, one task line at
// a time) and the business logic (processTask directly). Run them with `npm test` (which is
// `node --test`).

'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const { spawn, spawnSync } = require('node:child_process');

const { TASK_TYPES, processTask, validateTask, ValidationError } = require('../worker.js');

const WORKER = path.join(__dirname, '..', 'worker.js');
const TASK_TYPE = TASK_TYPES[0];
// Params your processTask() accepts: change these along with it.
const SAMPLE_PARAMS = { input_data: 'hello world' };

/** This environment, with WH_WORKER_MODE set only when a test asks for it. */
function environment(persistent = false) {
  const env = { ...process.env };
  delete env.WH_WORKER_MODE;
  if (persistent) env.WH_WORKER_MODE = 'persistent';
  return env;
}

/** Run the worker with `input` on stdin; return its exit code and its one result object. */
function run(input) {
  const child = spawnSync(process.execPath, [WORKER], {
    input,
    encoding: 'utf8',
    timeout: 10000,
    env: environment(),
  });
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

// ------------------------------------------------------------------------------------------
// Persistent mode: one process, the handshake, then one result line per task line.
// ------------------------------------------------------------------------------------------

/** The worker started as the host starts it with `mode: persistent`. read() resolves to the
 * next stdout line, parsed; close() ends stdin and resolves to the exit code. Each test has a
 * time limit, so a worker that stops answering fails it instead of hanging. */
function startPersistent() {
  const child = spawn(process.execPath, [WORKER], {
    env: environment(true),
    stdio: ['pipe', 'pipe', 'ignore'],
  });
  const lines = [];
  const readers = [];
  let pending = '';
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (text) => {
    pending += text;
    let newline;
    while ((newline = pending.indexOf('\n')) !== -1) {
      lines.push(pending.slice(0, newline));
      pending = pending.slice(newline + 1);
    }
    while (lines.length > 0 && readers.length > 0) readers.shift()(JSON.parse(lines.shift()));
  });
  const exited = new Promise((resolve) => child.on('exit', (code) => resolve(code)));
  const read = () =>
    new Promise((resolve) => {
      if (lines.length > 0) resolve(JSON.parse(lines.shift()));
      else readers.push(resolve);
    });
  return {
    child,
    read,
    send(line) {
      child.stdin.write(line + '\n');
      return read();
    },
    async close() {
      child.stdin.end();
      const code = await exited;
      assert.deepEqual(lines, [], 'stdout after the last result');
      assert.equal(pending, '', 'stdout after the last result');
      return code;
    },
  };
}

const LIMIT = { timeout: 10000 };

test('persistent: the handshake comes first, before any task', LIMIT, async () => {
  const worker = startPersistent();
  const handshake = await worker.read();
  assert.equal(handshake.ready, true);
  assert.equal(handshake.mode, 'persistent');
  assert.equal(await worker.close(), 0);
});

test('persistent: tasks are answered in order, each with its own logs', LIMIT, async () => {
  const worker = startPersistent();
  await worker.read();
  for (let n = 0; n < 5; n++) {
    const output = await worker.send(JSON.stringify(task({ id: `t-${n}`, params: { input_data: `task ${n}` } })));
    assert.equal(output.success, true);
    assert.equal(output.result.processed_input, `TASK ${n}`);
    const received = output.logs.filter((e) => e.message.startsWith('Received task'));
    assert.deepEqual(received.map((e) => e.message), [`Received task t-${n} of type ${TASK_TYPE}`]);
  }
  assert.equal(await worker.close(), 0);
});

test('persistent: a failed task does not end the worker', LIMIT, async () => {
  const worker = startPersistent();
  await worker.read();
  const failed = await worker.send(JSON.stringify(task({ type: 'Not.A.Known.Type' })));
  assert.equal(failed.success, false);
  assert.equal(failed.error.retry_possible, false);
  assert.equal((await worker.send(JSON.stringify(task()))).success, true);
  assert.equal(await worker.close(), 0);
});

test('persistent: invalid JSON gets a failure, blank lines none, and the worker goes on', LIMIT, async () => {
  const worker = startPersistent();
  await worker.read();
  const failed = await worker.send(`{"id": "test-1", "type": `);
  assert.equal(failed.error.type, 'JSONDecodeError');
  assert.equal(failed.error.retry_possible, false);
  worker.child.stdin.write('\n   \n'); // blank lines are not tasks: no answer
  assert.equal((await worker.send(JSON.stringify(task({ id: 'after' })))).success, true);
  assert.equal(await worker.close(), 0);
});

test('persistent: SIGTERM between tasks ends the worker', LIMIT, async () => {
  const worker = startPersistent();
  await worker.read();
  const exited = new Promise((resolve) => worker.child.on('exit', (code, signal) => resolve({ code, signal })));
  worker.child.kill('SIGTERM');
  const { code } = await exited;
  assert.equal(code, 1);
});
