// Drives a running triggerhub with the official `openwhisk` npm client.
// Env: __OW_API_HOST (http://127.0.0.1:port), __OW_API_KEY. Exits non-zero on the first failure.
'use strict';
const assert = require('node:assert/strict');
const openwhisk = require('openwhisk');

const ow = openwhisk({ apihost: process.env.__OW_API_HOST, api_key: process.env.__OW_API_KEY });
const CODE = "function main(params) { return { hello: params.name || 'world' }; }";

async function waitFor(id) {
  for (let i = 0; i < 200; i++) {
    try { return await ow.activations.get({ activationId: id }); } catch (e) {
      if (e.statusCode !== 404) throw e;
      await new Promise(r => setTimeout(r, 50));
    }
  }
  throw new Error(`activation ${id} never recorded`);
}

async function main() {
  const created = await ow.actions.create({ name: 'hello', action: CODE });
  assert.equal(created.exec.kind, 'nodejs:20');
  const updated = await ow.actions.update({ name: 'hello', action: CODE, params: { name: 'param' } });
  assert.equal(updated.version, '0.0.2');
  const got = await ow.actions.get({ name: 'hello' });
  assert.deepEqual(got.parameters, [{ key: 'name', value: 'param' }]);
  const listed = await ow.actions.list();
  assert.deepEqual(listed.map(a => a.name), ['hello']);

  const result = await ow.actions.invoke({ name: 'hello', blocking: true, result: true, params: { name: 'js' } });
  assert.deepEqual(result, { hello: 'js' });

  await ow.triggers.create({ name: 'tick' });
  await ow.rules.create({ name: 'tick-hello', trigger: 'tick', action: 'hello' });
  const rule = await ow.rules.get({ name: 'tick-hello' });
  assert.equal(rule.status, 'active');
  const fired = await ow.triggers.invoke({ name: 'tick', params: { name: 'trigger' } });
  assert.match(fired.activationId, /^[0-9a-f]{32}$/);
  const triggerRecord = await waitFor(fired.activationId);
  const ruleOutcome = JSON.parse(triggerRecord.logs[0]);
  assert.equal(ruleOutcome.rule, 'guest/tick-hello');
  const actionRecord = await waitFor(ruleOutcome.activationId);
  assert.deepEqual(actionRecord.response.result, { hello: 'trigger' });

  await ow.rules.disable({ name: 'tick-hello' });
  assert.equal((await ow.rules.get({ name: 'tick-hello' })).status, 'inactive');
  await ow.rules.enable({ name: 'tick-hello' });
  assert.equal((await ow.rules.get({ name: 'tick-hello' })).status, 'active');

  const activations = await ow.activations.list({ name: 'hello', limit: 10 });
  assert.ok(activations.length >= 2);
  const logs = await ow.activations.logs({ activationId: actionRecord.activationId });
  assert.deepEqual(logs, { logs: [] });
  const res = await ow.activations.result({ activationId: actionRecord.activationId });
  assert.deepEqual(res.result, { hello: 'trigger' });

  const echo = await ow.actions.invoke({ name: '/whisk.system/utils/echo', blocking: true, result: true, params: { x: 1 } });
  assert.deepEqual(echo, { x: 1 });

  await ow.rules.delete({ name: 'tick-hello' });
  await ow.triggers.delete({ name: 'tick' });
  await ow.actions.delete({ name: 'hello' });
  assert.deepEqual(await ow.actions.list(), []);
  try {
    await ow.actions.get({ name: 'hello' });
    assert.fail('get after delete must fail');
  } catch (e) {
    assert.equal(e.statusCode, 404);
  }
  console.log(JSON.stringify({ ok: true, steps: 22 }));
}

main().catch(err => { console.error(err && err.stack || err); process.exit(1); });
