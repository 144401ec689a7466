// `hypura serve` driven by the official npm clients `ollama` and `openai`
// (pinned in tests/server/package.json, installed by `make test-deps`), and by
// raw HTTP for what a client library would never send.
//
// usage: node server_test.cjs HYPURA_BIN MODEL.gguf NODE_MODULES_DIR
// Exit 0: all checks passed; 1: a check failed (each is printed); 77: the
// clients are not installed (run `make test-deps`).
'use strict';
const { spawn, spawnSync } = require('node:child_process');
const { createRequire } = require('node:module');
const path = require('node:path');
const fs = require('node:fs');
const http = require('node:http');

const [bin, modelPath, nodeModules] = process.argv.slice(2);
if (!bin || !modelPath || !nodeModules) {
  console.error('usage: node server_test.cjs HYPURA_BIN MODEL.gguf NODE_MODULES_DIR');
  process.exit(2);
}
if (!fs.existsSync(path.join(nodeModules, 'ollama')) || !fs.existsSync(path.join(nodeModules, 'openai'))) {
  console.error(`skipped: no ollama/openai clients in ${nodeModules} (run: make test-deps)`);
  process.exit(77);
}
const req = createRequire(path.resolve(nodeModules, 'x.js'));
const { Ollama } = req('ollama');
const OpenAI = req('openai').default || req('openai');

const NAME = path.basename(modelPath).replace(/\.gguf$/i, '');
const CTX = 8192;
let failed = 0;
let checks = 0;
function check(ok, what) {
  checks++;
  if (!ok) {
    failed++;
    console.error(`FAILED: ${what}`);
  }
  return ok;
}
function eq(got, want, what) {
  return check(got === want, `${what}: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
}

// `hypura run` greedy text for a prompt: what the API must reproduce.
function runText(prompt, n) {
  const r = spawnSync(bin, ['run', '-m', modelPath, '-p', prompt, '-n', String(n), '--temp', '0',
    '-t', '2', '-c', String(CTX)], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`hypura run failed: ${r.stderr}`);
  return r.stdout;
}

function startServer() {
  return new Promise((resolve, reject) => {
    const p = spawn(bin, ['serve', '-m', modelPath, '--port', '0', '-t', '2', '-c', String(CTX),
      '--parallel', '2', '--max-body', '1M'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    const timer = setTimeout(() => reject(new Error(`serve did not start: ${err}`)), 60000);
    p.stderr.on('data', (d) => {
      err += d.toString();
      const m = err.match(/listening on http:\/\/[^:]+:(\d+)/);
      if (m) {
        clearTimeout(timer);
        resolve({ proc: p, port: Number(m[1]), log: () => err });
      }
    });
    p.on('error', reject);
    p.on('exit', (code) => reject(new Error(`serve exited with ${code}: ${err}`)));
  });
}

// A raw request: { status, headers, body }.
function raw(port, method, urlPath, body, headers = {}) {
  return new Promise((resolve, reject) => {
    const r = http.request({ host: '127.0.0.1', port, method, path: urlPath, headers }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers,
        body: Buffer.concat(chunks).toString('utf8') }));
    });
    r.on('error', reject);
    if (body !== undefined) r.write(body);
    r.end();
  });
}

function isJsonError(res, status, what) {
  eq(res.status, status, `${what}: status`);
  let j = null;
  try { j = JSON.parse(res.body); } catch (e) { /* checked below */ }
  check(j && j.error !== undefined, `${what}: JSON error body, got ${res.body}`);
  return j;
}

async function testOllama(port) {
  const ol = new Ollama({ host: `http://127.0.0.1:${port}` });
  const root = await raw(port, 'GET', '/');
  eq(root.status, 200, 'GET / status');
  eq(root.body, 'Ollama is running', 'GET / body');
  const v = await ol.version();
  check(typeof v.version === 'string' && v.version.length > 0, 'version');

  const tags = await ol.list();
  eq(tags.models.length, 1, 'tags: one model');
  eq(tags.models[0].name, `${NAME}:latest`, 'tags: name');
  check(tags.models[0].size > 0 && /^[0-9a-f]{64}$/.test(tags.models[0].digest), 'tags: size, digest');
  eq(tags.models[0].details.format, 'gguf', 'tags: format');

  const show = await ol.show({ model: NAME });
  eq(show.details.family, 'llama', 'show: family');
  eq(show.model_info['general.architecture'], 'llama', 'show: model_info');
  check(Array.isArray(show.capabilities) && show.capabilities.includes('completion'), 'show: capabilities');

  const ps = await ol.ps();
  eq(ps.models.length, 1, 'ps: one model');
  eq(ps.models[0].model, `${NAME}:latest`, 'ps: name');
  // the memory the model takes, the GPU's part of it (0 on the CPU)
  check(ps.models[0].size > 0 && ps.models[0].size_vram >= 0 &&
    ps.models[0].size_vram <= ps.models[0].size, `ps: size ${ps.models[0].size}, size_vram ${ps.models[0].size_vram}`);

  // greedy generate: the same text as `hypura run`, raw or not (no chat template)
  const prompt = 'Once upon a time';
  const want = runText(prompt, 24);
  check(want.length > 0, 'hypura run printed text');
  for (const rawFlag of [true, false]) {
    const g = await ol.generate({ model: NAME, prompt, raw: rawFlag, stream: false,
      options: { temperature: 0, num_predict: 24 } });
    eq(g.response, want, `generate (raw ${rawFlag}) = hypura run`);
    eq(g.done, true, 'generate: done');
    eq(g.done_reason, 'length', 'generate: done_reason at num_predict');
    eq(g.eval_count, 24, 'generate: eval_count');
    check(g.prompt_eval_count > 0, 'generate: prompt_eval_count');
    for (const k of ['total_duration', 'load_duration', 'prompt_eval_duration', 'eval_duration'])
      check(Number.isInteger(g[k]) && g[k] >= 0, `generate: ${k} is nanoseconds`);
    check(g.total_duration >= g.eval_duration, 'generate: total >= eval duration');
    check(Array.isArray(g.context) && g.context.length === g.prompt_eval_count + 24, 'generate: context');
  }
  // streamed: the pieces add up to the same text
  let streamed = '';
  let last = null;
  let n = 0;
  for await (const part of await ol.generate({ model: NAME, prompt, stream: true,
    options: { temperature: 0, num_predict: 24 } })) {
    if (!part.done) streamed += part.response;
    n++;
    last = part;
  }
  eq(streamed, want, 'streamed generate = hypura run');
  check(n > 2, 'streamed generate: several objects');
  eq(last.done, true, 'streamed generate: last is done');
  eq(last.done_reason, 'length', 'streamed generate: done_reason');
  eq(last.eval_count, 24, 'streamed generate: eval_count');

  // a stop string: the text before it, done_reason stop
  const words = want.trim().split(/\s+/);
  const stopWord = words.length > 2 ? words[2] : words[0];
  const st = await ol.generate({ model: NAME, prompt, stream: false,
    options: { temperature: 0, num_predict: 24, stop: [stopWord] } });
  eq(st.response, want.slice(0, want.indexOf(stopWord)), 'generate with stop: text before it');
  eq(st.done_reason, 'stop', 'generate with stop: done_reason');

  // the same seed gives the same sampled text
  const s1 = await ol.generate({ model: NAME, prompt, stream: false, options: { temperature: 1, seed: 42, num_predict: 16 } });
  const s2 = await ol.generate({ model: NAME, prompt, stream: false, options: { temperature: 1, seed: 42, num_predict: 16 } });
  eq(s1.response, s2.response, 'seeded sampling repeats');

  // chat, streamed and not, and a second turn on top of the first
  const msgs = [{ role: 'system', content: 'You are terse.' }, { role: 'user', content: 'Hello there' }];
  const c1 = await ol.chat({ model: NAME, messages: msgs, stream: false, options: { temperature: 0, num_predict: 12 } });
  eq(c1.message.role, 'assistant', 'chat: role');
  check(c1.message.content.length > 0, 'chat: content');
  eq(c1.done_reason, 'length', 'chat: done_reason');
  let cs = '';
  let clast = null;
  for await (const part of await ol.chat({ model: NAME, messages: msgs, stream: true, options: { temperature: 0, num_predict: 12 } })) {
    cs += part.message.content;
    clast = part;
  }
  eq(cs, c1.message.content, 'streamed chat = chat');
  eq(clast.done, true, 'streamed chat: done');
  const turn2 = msgs.concat([c1.message, { role: 'user', content: 'And again' }]);
  const c2 = await ol.chat({ model: NAME, messages: turn2, stream: false, options: { temperature: 0, num_predict: 12 } });
  check(c2.prompt_eval_count > c1.prompt_eval_count, 'second turn: longer prompt');
  // empty messages: the "load" answer
  const ld = await ol.chat({ model: NAME, messages: [] });
  eq(ld.done_reason, 'load', 'chat with no messages: load');

  // unknown model: 404 with Ollama's message
  try {
    await ol.generate({ model: 'no-such-model', prompt: 'x', stream: false });
    check(false, 'unknown model: an error');
  } catch (e) {
    eq(e.status_code, 404, 'unknown model: status');
    check(/model "no-such-model" not found, try pulling it first/.test(e.error || e.message), `unknown model: message ${e.message}`);
  }
  // ":latest" is the same model
  const gl = await ol.generate({ model: `${NAME}:latest`, prompt, stream: false, options: { temperature: 0, num_predict: 24 } });
  eq(gl.response, want, 'model name with :latest');
}

async function testOpenAI(port) {
  const oa = new OpenAI({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey: 'unused', maxRetries: 0 });
  const models = await oa.models.list();
  eq(models.data.length, 1, 'v1/models: one');
  eq(models.data[0].id, `${NAME}:latest`, 'v1/models: id');
  const m1 = await oa.models.retrieve(NAME);
  eq(m1.id, `${NAME}:latest`, 'v1/models/ID');

  const messages = [{ role: 'user', content: 'Tell me a story' }];
  const c = await oa.chat.completions.create({ model: NAME, messages, max_tokens: 10, temperature: 0 });
  eq(c.object, 'chat.completion', 'chat.completions: object');
  eq(c.choices[0].message.role, 'assistant', 'chat.completions: role');
  eq(c.choices[0].finish_reason, 'length', 'chat.completions: finish_reason');
  eq(c.usage.completion_tokens, 10, 'chat.completions: usage.completion_tokens');
  eq(c.usage.total_tokens, c.usage.prompt_tokens + 10, 'chat.completions: usage.total_tokens');
  const stream = await oa.chat.completions.create({ model: NAME, messages, max_tokens: 10, temperature: 0,
    stream: true, stream_options: { include_usage: true } });
  let text = '';
  let finish = null;
  let usage = null;
  for await (const chunk of stream) {
    if (chunk.usage) usage = chunk.usage;
    for (const ch of chunk.choices) {
      if (ch.delta && ch.delta.content) text += ch.delta.content;
      if (ch.finish_reason) finish = ch.finish_reason;
    }
  }
  eq(text, c.choices[0].message.content, 'streamed chat.completions = non-streamed');
  eq(finish, 'length', 'streamed chat.completions: finish_reason');
  check(usage && usage.completion_tokens === 10, 'streamed chat.completions: usage chunk');

  // legacy completions: the raw prompt, as `hypura run`
  const prompt = 'The little robot';
  const want = runText(prompt, 16);
  const t = await oa.completions.create({ model: NAME, prompt, max_tokens: 16, temperature: 0 });
  eq(t.choices[0].text, want, 'completions = hypura run');
  eq(t.choices[0].finish_reason, 'length', 'completions: finish_reason');
  let ts = '';
  for await (const chunk of await oa.completions.create({ model: NAME, prompt, max_tokens: 16, temperature: 0, stream: true }))
    ts += chunk.choices[0] ? chunk.choices[0].text : '';
  eq(ts, want, 'streamed completions = hypura run');
  // stop and seed
  const words = want.trim().split(/\s+/);
  const stopWord = words.length > 1 ? words[1] : words[0];
  const ss = await oa.completions.create({ model: NAME, prompt, max_tokens: 16, temperature: 0, stop: stopWord });
  eq(ss.choices[0].text, want.slice(0, want.indexOf(stopWord)), 'completions with stop');
  eq(ss.choices[0].finish_reason, 'stop', 'completions with stop: finish_reason');
  const a = await oa.completions.create({ model: NAME, prompt, max_tokens: 12, temperature: 1, top_p: 0.9, seed: 7 });
  const b = await oa.completions.create({ model: NAME, prompt, max_tokens: 12, temperature: 1, top_p: 0.9, seed: 7 });
  eq(a.choices[0].text, b.choices[0].text, 'completions: seed repeats');

  // SSE framing as sent
  const sse = await raw(port, 'POST', '/v1/chat/completions', JSON.stringify({ model: NAME, messages,
    max_tokens: 3, stream: true }), { 'content-type': 'application/json' });
  eq(sse.status, 200, 'SSE status');
  check(/^text\/event-stream/.test(sse.headers['content-type']), 'SSE content type');
  check(sse.body.endsWith('data: [DONE]\n\n'), `SSE ends with [DONE]: ${JSON.stringify(sse.body.slice(-40))}`);
  try {
    await oa.chat.completions.create({ model: 'gpt-4o', messages, max_tokens: 2 });
    check(false, 'openai unknown model: an error');
  } catch (e) {
    eq(e.status, 404, 'openai unknown model: status');
  }
}

async function testBadInputs(port) {
  const js = { 'content-type': 'application/json' };
  isJsonError(await raw(port, 'POST', '/api/generate', '{"model": "x", "prompt": ', js), 400, 'malformed JSON');
  isJsonError(await raw(port, 'POST', '/api/chat', '[1, 2]', js), 400, 'JSON that is not an object');
  isJsonError(await raw(port, 'POST', '/api/generate', '', js), 400, 'empty body');
  isJsonError(await raw(port, 'POST', '/v1/chat/completions', 'nonsense', js), 400, 'OpenAI malformed JSON');
  const e1 = isJsonError(await raw(port, 'POST', '/api/generate',
    JSON.stringify({ model: NAME, prompt: 'x', options: { temperature: 'hot' } }), js), 400, 'wrong type');
  check(e1 && /temperature/.test(e1.error), 'wrong type: names the field');
  isJsonError(await raw(port, 'POST', '/api/generate',
    JSON.stringify({ model: NAME, prompt: 'x', options: { top_p: 3 } }), js), 400, 'out of range');
  isJsonError(await raw(port, 'POST', '/api/chat',
    JSON.stringify({ model: NAME, messages: [{ role: 'wizard', content: 'x' }] }), js), 400, 'bad role');
  isJsonError(await raw(port, 'POST', '/api/generate', JSON.stringify({ prompt: 'x' }), js), 400, 'no model');
  const big = JSON.stringify({ model: NAME, prompt: 'a'.repeat(2 << 20) });
  isJsonError(await raw(port, 'POST', '/api/generate', big, js), 413, 'body over the limit');
  const m = isJsonError(await raw(port, 'GET', '/api/generate'), 405, 'GET on a POST endpoint');
  const r405 = await raw(port, 'DELETE', '/api/tags');
  eq(r405.status, 405, 'DELETE /api/tags');
  eq(r405.headers.allow, 'GET,HEAD', 'Allow header');
  check(m !== null, '405 body');
  isJsonError(await raw(port, 'GET', '/api/nothing'), 404, 'unknown path');
  isJsonError(await raw(port, 'POST', '/api/show', JSON.stringify({ model: 'nope' }), js), 404, 'show unknown model');
  const long = JSON.stringify({ model: NAME, prompt: 'word '.repeat(CTX), stream: false });
  isJsonError(await raw(port, 'POST', '/api/generate', long, js), 400, 'prompt longer than the context');
  // still serving
  eq((await raw(port, 'GET', '/')).status, 200, 'alive after bad inputs');
}

// Two streams that would run until the context is full are dropped after
// their first object; the sequences must come free at once (the generation
// stops), so a short request is answered long before either could finish.
async function testDisconnect(port) {
  const body = JSON.stringify({ model: NAME, prompt: 'Once', options: { num_predict: -1, temperature: 1 } });
  const drop = () => new Promise((resolve) => {
    const r = http.request({ host: '127.0.0.1', port, method: 'POST', path: '/api/generate',
      headers: { 'content-type': 'application/json' } }, (res) => {
      res.once('data', () => { r.destroy(); resolve(); });
    });
    r.on('error', () => resolve());
    r.end(body);
  });
  await Promise.all([drop(), drop()]);
  const t0 = Date.now();
  const r = await raw(port, 'POST', '/api/generate', JSON.stringify({ model: NAME, prompt: 'Hi',
    stream: false, options: { num_predict: 2 } }), { 'content-type': 'application/json' });
  const ms = Date.now() - t0;
  eq(r.status, 200, 'request after disconnects');
  // filling 8192 positions takes far longer than this on any machine
  check(ms < 8000, `disconnected generations stopped (next request took ${ms} ms)`);
}

async function testLoad(port) {
  const ol = new Ollama({ host: `http://127.0.0.1:${port}` });
  const oa = new OpenAI({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey: 'unused', maxRetries: 0 });
  const want = (await ol.generate({ model: NAME, prompt: 'Load test', stream: false,
    options: { temperature: 0, num_predict: 6 } })).response;
  let next = 0;
  let ok = 0;
  const errors = [];
  const total = 200;
  async function worker() {
    while (next < total) {
      const i = next++;
      try {
        let text;
        if (i % 3 === 0) {
          text = (await ol.generate({ model: NAME, prompt: 'Load test', stream: false,
            options: { temperature: 0, num_predict: 6 } })).response;
        } else if (i % 3 === 1) {
          text = '';
          for await (const p of await ol.generate({ model: NAME, prompt: 'Load test', stream: true,
            options: { temperature: 0, num_predict: 6 } })) text += p.response;
        } else {
          text = (await oa.completions.create({ model: NAME, prompt: 'Load test', max_tokens: 6,
            temperature: 0 })).choices[0].text;
        }
        if (text === want) ok++;
        else errors.push(`request ${i}: ${JSON.stringify(text)} != ${JSON.stringify(want)}`);
      } catch (e) {
        errors.push(`request ${i}: ${e.message}`);
      }
    }
  }
  await Promise.all(Array.from({ length: 16 }, worker));
  eq(ok, total, `200 requests at concurrency 16 (${errors.slice(0, 3).join('; ')})`);
}

async function main() {
  const srv = await startServer();
  try {
    await testOllama(srv.port);
    await testOpenAI(srv.port);
    await testBadInputs(srv.port);
    await testDisconnect(srv.port);
    await testLoad(srv.port);
  } catch (e) {
    failed++;
    console.error(`FAILED: ${e.stack || e}`);
  }
  const exited = new Promise((resolve) => srv.proc.on('exit', (code) => resolve(code)));
  srv.proc.kill('SIGTERM');
  eq(await exited, 0, 'serve exits 0 on SIGTERM');
  if (failed) console.error(srv.log().split('\n').slice(-20).join('\n'));
  console.log(`${checks - failed} of ${checks} checks passed`);
  process.exit(failed ? 1 : 0);
}
main();
