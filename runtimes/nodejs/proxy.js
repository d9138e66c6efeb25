// Node.js action proxy: serves the OpenWhisk action protocol (POST /init, POST /run).
//
// Node standard library only. Listens with HTTP/1.1 keep-alive on the Unix socket named by
// TRIGGERHUB_SOCKET, or on TCP 0.0.0.0:$TRIGGERHUB_PORT (inside a container only).
// After every /run and every failed /init the sentinel line is written to stdout and stderr
// (before the HTTP answer, so a client that has the answer can also find both sentinels).
// With TRIGGERHUB_LIFELINE_FD (the process runtime) it exits once that pipe ends: the hub holds
// its only write end, so end-of-file means the hub is gone, however it ended.
'use strict';

const fs = require('fs');
const http = require('http');
const net = require('net');
const os = require('os');
const path = require('path');
const vm = require('vm');
const zlib = require('zlib');

const SENTINEL = 'XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX';

let actionMain = null;
let initAttempted = false;

function endActivation() {
  process.stdout.write(SENTINEL + '\n');
  process.stderr.write(SENTINEL + '\n');
}

function envString(value) {
  return typeof value === 'string' ? value : JSON.stringify(value);
}

// ------------------------------------------------------------------------------ zip

// Reads a zip archive (stored or deflated entries) into a directory. Node has no zip reader.
function extractZip(buffer, root) {
  let eocd = -1;
  for (let i = buffer.length - 22; i >= Math.max(0, buffer.length - 65557); i--) {
    if (buffer.readUInt32LE(i) === 0x06054b50) { eocd = i; break; }
  }
  if (eocd < 0) throw new Error('the binary code is not a zip archive');
  const count = buffer.readUInt16LE(eocd + 10);
  let offset = buffer.readUInt32LE(eocd + 16);
  for (let n = 0; n < count; n++) {
    if (buffer.readUInt32LE(offset) !== 0x02014b50) throw new Error('corrupt zip central directory');
    const method = buffer.readUInt16LE(offset + 10);
    const compressedSize = buffer.readUInt32LE(offset + 20);
    const nameLength = buffer.readUInt16LE(offset + 28);
    const extraLength = buffer.readUInt16LE(offset + 30);
    const commentLength = buffer.readUInt16LE(offset + 32);
    const localOffset = buffer.readUInt32LE(offset + 42);
    const name = buffer.toString('utf8', offset + 46, offset + 46 + nameLength);
    offset += 46 + nameLength + extraLength + commentLength;
    const target = path.resolve(root, name);
    if (!target.startsWith(root + path.sep)) throw new Error(`zip entry escapes the action directory: ${name}`);
    if (name.endsWith('/')) { fs.mkdirSync(target, { recursive: true }); continue; }
    const dataStart = localOffset + 30 + buffer.readUInt16LE(localOffset + 26) + buffer.readUInt16LE(localOffset + 28);
    const data = buffer.subarray(dataStart, dataStart + compressedSize);
    let content;
    if (method === 0) content = data;
    else if (method === 8) content = zlib.inflateRawSync(data);
    else throw new Error(`unsupported zip compression method ${method} for ${name}`);
    fs.mkdirSync(path.dirname(target), { recursive: true });
    fs.writeFileSync(target, content);
  }
}

// ------------------------------------------------------------------------------ action

function loadBinary(code, mainName) {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'action-'));
  extractZip(Buffer.from(code, 'base64'), root);
  let entry = path.join(root, 'index.js');
  const pkg = path.join(root, 'package.json');
  if (fs.existsSync(pkg)) {
    const manifest = JSON.parse(fs.readFileSync(pkg, 'utf8'));
    if (manifest.main) entry = path.join(root, manifest.main);
  }
  if (!fs.existsSync(entry)) throw new Error('Zipped actions must contain either package.json or index.js at the root.');
  process.chdir(root);
  const exported = require(entry);
  const main = exported[mainName] || (mainName === 'main' && typeof exported === 'function' ? exported : undefined);
  if (typeof main !== 'function') throw new Error(`Action entrypoint '${mainName}' is not a function.`);
  return main;
}

// Plain source: compiled as a sloppy-mode function body, so that a top-level `function main`
// is found by name, while `module.exports.main = ...` / `exports.main = ...` also work.
function loadSource(code, mainName) {
  const module = { exports: {} };
  const lookup = /^[A-Za-z_$][\w$]*$/.test(mainName)
    ? `\n;return typeof ${mainName} === 'function' ? ${mainName} : undefined;` : '\n;return undefined;';
  const params = ['require', 'module', 'exports', '__filename', '__dirname'];
  new vm.Script(code, { filename: 'index.js' });  // reports syntax errors of the code alone
  const body = new Function(...params, code + lookup);  // eslint-disable-line no-new-func
  let main = body(require, module, module.exports, path.join(process.cwd(), 'index.js'), process.cwd());
  if (typeof main !== 'function') main = module.exports[mainName];
  if (typeof main !== 'function' && mainName === 'main' && typeof module.exports === 'function') main = module.exports;
  if (typeof main !== 'function') throw new Error(`Action entrypoint '${mainName}' is not a function.`);
  return main;
}

function init(message) {
  const value = (message && message.value) || {};
  if (initAttempted) { endActivation(); return [403, { error: 'Cannot initialize the action more than once.' }]; }
  if (typeof value.code !== 'string' || value.code.length === 0) {
    endActivation();
    return [403, { error: 'Missing main/no code to execute.' }];
  }
  initAttempted = true;
  for (const [key, envValue] of Object.entries(value.env || {})) process.env[key] = envString(envValue);
  const mainName = typeof value.main === 'string' && value.main ? value.main : 'main';
  try {
    actionMain = value.binary ? loadBinary(value.code, mainName) : loadSource(value.code, mainName);
  } catch (err) {
    console.error(err);
    endActivation();
    return [502, { error: `Initialization has failed due to: ${err}` }];
  }
  return [200, { ok: true }];
}

async function run(message) {
  if (actionMain === null) { endActivation(); return [500, { error: 'no action defined yet' }]; }
  for (const [key, envValue] of Object.entries(message)) {
    if (key !== 'value') process.env['__OW_' + key.toUpperCase()] = envString(envValue);
  }
  const args = message.value === undefined ? {} : message.value;
  let answer;
  try {
    const result = await actionMain(args);
    if (result === null || typeof result !== 'object') answer = [502, { error: 'The action did not return a dictionary.' }];
    else answer = [200, result];
  } catch (err) {
    if (err !== null && typeof err === 'object' && !(err instanceof Error)) {
      answer = [200, 'error' in err ? err : { error: err }];  // reject({...}): an application error
    } else {
      console.error(err);
      answer = [502, { error: `An error has occurred: ${err}` }];
    }
  }
  endActivation();
  return answer;
}

// ------------------------------------------------------------------------------ HTTP

async function handle(req, body) {
  const route = req.url.split('?')[0];
  if (req.method !== 'POST' || (route !== '/init' && route !== '/run')) {
    return [404, { error: `unknown route ${req.method} ${req.url}; use POST /init or POST /run` }];
  }
  let message;
  try { message = JSON.parse(body.length ? body : '{}'); } catch (e) {
    return [400, { error: 'The request body is not valid JSON.' }];
  }
  if (message === null || typeof message !== 'object' || Array.isArray(message)) {
    return [400, { error: 'The request body must be a JSON object.' }];
  }
  return route === '/init' ? init(message) : run(message);
}

function respond(res, status, answer) {
  let payload;
  try { payload = Buffer.from(JSON.stringify(answer)); } catch (err) {
    status = 502;
    payload = Buffer.from(JSON.stringify({ error: `The action did not return a JSON serializable result: ${err}` }));
  }
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': payload.length });
  res.end(payload);
}

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (chunk) => chunks.push(chunk));
  req.on('end', () => {
    handle(req, Buffer.concat(chunks).toString('utf8'))
      .then(([status, answer]) => respond(res, status, answer))
      .catch((err) => respond(res, 500, { error: `proxy failure: ${err}` }));
  });
});
server.keepAliveTimeout = 0;  // the invoker holds one connection for the runtime's whole life
server.requestTimeout = 0;
server.headersTimeout = 0;

const lifelineFd = process.env.TRIGGERHUB_LIFELINE_FD;
delete process.env.TRIGGERHUB_LIFELINE_FD;  // not the action's
if (lifelineFd) {
  const lifeline = new net.Socket({ fd: Number(lifelineFd), readable: true, writable: false });
  lifeline.on('end', () => process.exit(0));
  lifeline.on('error', () => { /* the action closed it: keep serving */ });
  lifeline.resume();
  lifeline.unref();
}

if (process.env.TRIGGERHUB_PORT) {
  server.listen(Number(process.env.TRIGGERHUB_PORT), '0.0.0.0');
} else if (process.env.TRIGGERHUB_SOCKET) {
  try { fs.unlinkSync(process.env.TRIGGERHUB_SOCKET); } catch (e) { /* not there yet */ }
  server.listen(process.env.TRIGGERHUB_SOCKET);
} else {
  console.error('proxy.js: set TRIGGERHUB_SOCKET (a Unix socket path) or TRIGGERHUB_PORT');
  process.exit(2);
}
