// Drives a running triggerhub with the official `openwhisk` npm client.
// Env: __OW_API_HOST (http://127.0.0.1:port), __OW_API_KEY. Exits non-zero on the first failure.
'use strict';
const assert = require('node:assert/strict');
const openwhisk = require('openwhisk');

const ow = openwhisk({ apihost: process.env.__OW_API_HOST, api_key: process.env.__OW_API_KEY });
const CODE = "function main(params) { return { hello: params.name || 'world' }; }";
const BOOK = "function main(params) { return { book: params.id, shelf: params.shelf }; }";

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

  // API gateway routes through the client's route calls (web/whisk.system/apimgmt/*)
  await ow.actions.create({ name: 'book', action: BOOK, annotations: { 'web-export': true } });
  try {
    await ow.routes.create({ basepath: '/shop', relpath: '/hello', operation: 'GET', action: 'hello' });
    assert.fail('a route to a non-web action must be refused');
  } catch (e) {
    assert.equal(e.statusCode, 400);
  }
  const route = await ow.routes.create({ name: 'shop-api', basepath: '/shop', relpath: '/books/{id}',
    operation: 'GET', action: 'book' });
  assert.equal(route.gwApiActivated, true);
  assert.deepEqual(Object.keys(route.apidoc.paths), ['/books/{id}']);
  assert.deepEqual(route.apidoc.paths['/books/{id}'].get['x-openwhisk'].action, 'book');
  const listedRoutes = await ow.routes.list();
  assert.deepEqual(listedRoutes.apis.map(a => a.value.apidoc.basePath), ['/shop']);
  const gotRoute = await ow.routes.get({ basepath: '/shop' });
  assert.equal(gotRoute.apis[0].value.apidoc.info.title, 'shop-api');
  const served = await fetch(`${route.gwApiUrl}/shop/books/42?shelf=top`);
  assert.equal(served.status, 200);
  assert.deepEqual(await served.json(), { book: '42', shelf: 'top' });
  await ow.routes.delete({ basepath: '/shop' });
  assert.deepEqual((await ow.routes.list()).apis, []);
  assert.equal((await fetch(`${route.gwApiUrl}/shop/books/42`)).status, 404);
  await ow.actions.delete({ name: 'book' });

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
  console.log(JSON.stringify({ ok: true, steps: 32 }));
}

main().catch(err => { console.error(err && err.stack || err); process.exit(1); });
